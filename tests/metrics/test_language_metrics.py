"""`TokenAccuracy` and `Perplexity` without the logits: numpy references
from the logits (soft cap, tied `(V, D)` kernel, bias, ignore_class,
padding weights), the same values from ids / per-token losses / logits,
accumulation over batches, reset, config and bad arguments."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_lossplus.metrics import Perplexity, TokenAccuracy
from tests.backend_utils import BACKEND, XLA_BACKENDS, to_numpy, xla_compile

B, T, D, V = 3, 4, 6, 11


def _data(seed=0):
    rng = np.random.default_rng(seed)
    hidden = rng.normal(size=(B, T, D)).astype("float32")
    kernel = rng.normal(size=(V, D)).astype("float32")  # tied layout
    bias = rng.normal(size=(V,)).astype("float32")
    targets = rng.integers(1, V, (B, T)).astype("int32")
    targets[0, -1] = 0
    mask = np.ones((B, T), "float32")
    mask[1, -2:] = 0.0
    mask[2] *= 0.5
    return hidden, kernel, bias, targets, mask


def _ref(hidden, kernel, bias, targets, mask, cap=None, ignore_class=None):
    z = hidden.astype("float64") @ kernel.T.astype("float64") + bias
    if cap is not None:
        z = cap * np.tanh(z / cap)
    lse = np.log(np.exp(z - z.max(-1, keepdims=True)).sum(-1)) + z.max(-1)
    nll = lse - np.take_along_axis(z, targets[..., None], -1)[..., 0]
    w = mask * (1.0 if ignore_class is None else (targets != ignore_class))
    correct = z.argmax(-1) == targets
    return float((w * correct).sum() / w.sum()), float(np.exp((w * nll).sum() / w.sum())), z, nll


@pytest.mark.parametrize("cap,ignore_class", [(None, None), (2.0, 0)])
def test_values_equal_the_logits_reference_from_every_input_form(cap, ignore_class):
    hidden, kernel, bias, targets, mask = _data()
    acc_ref, ppl_ref, z, nll = _ref(hidden, kernel, bias, targets, mask, cap, ignore_class)
    forms = {
        "linear": ((hidden, kernel, bias), (hidden, kernel, bias)),
        "dict": ({"hidden": hidden, "kernel": kernel, "bias": bias},) * 2,
        "direct": (z.argmax(-1).astype("int32"), nll.astype("float32")),
        "logits": (z.astype("float32"), z.astype("float32")),
    }
    for name, (acc_input, ppl_input) in forms.items():
        acc = TokenAccuracy(ignore_class=ignore_class, chunk_size=8, transpose_kernel=True)
        ppl = Perplexity(ignore_class=ignore_class, logit_soft_cap=cap, chunk_size=8, transpose_kernel=True)
        acc.update_state(targets, acc_input, sample_weight=mask)
        ppl.update_state(targets, ppl_input, sample_weight=mask)
        np.testing.assert_allclose(float(acc.result()), acc_ref, rtol=1e-6, err_msg=name)
        np.testing.assert_allclose(float(ppl.result()), ppl_ref, rtol=1e-5, err_msg=name)


def test_accumulates_over_batches_resets_and_compiles():
    hidden, kernel, bias, targets, mask = _data(1)
    acc_ref, ppl_ref, _, _ = _ref(hidden, kernel, bias, targets, mask)
    acc, ppl = TokenAccuracy(transpose_kernel=True), Perplexity(transpose_kernel=True)
    assert float(acc.result()) == 0.0 and float(ppl.result()) == 1.0
    for i in range(B):  # one sequence per batch, per-sequence weights (B,) = the mask's rows
        sl = slice(i, i + 1)
        acc.update_state(targets[sl], (hidden[sl], kernel, bias), sample_weight=mask[sl])
        ppl.update_state(targets[sl], (hidden[sl], kernel, bias), sample_weight=mask[sl])
    np.testing.assert_allclose(float(acc.result()), acc_ref, rtol=1e-6)
    np.testing.assert_allclose(float(ppl.result()), ppl_ref, rtol=1e-5)
    acc.reset_state()
    ppl.reset_state()
    assert float(acc.result()) == 0.0 and float(ppl.result()) == 1.0
    if BACKEND in XLA_BACKENDS:  # stateless under jit: the values of one batch
        metric = Perplexity(transpose_kernel=True)

        def value(h):
            metric.reset_state()
            metric.update_state(targets, (h, kernel, bias), sample_weight=mask)
            return metric.result()

        if BACKEND == "jax":
            import jax

            def stateless(variables, h):
                variables = metric.stateless_update_state(variables, targets, (h, kernel, bias), sample_weight=mask)
                return metric.stateless_result(variables)

            out = jax.jit(stateless)([v.value for v in metric.variables], hidden)
        else:
            out = xla_compile(value)(hidden)
        np.testing.assert_allclose(float(to_numpy(out)), ppl_ref, rtol=1e-5)


def test_config_round_trip_and_registration():
    for cls in (TokenAccuracy, Perplexity):
        metric = cls(ignore_class=0, logit_soft_cap=30.0, chunk_size=64, transpose_kernel=True, name="m")
        config = metric.get_config()
        assert cls.from_config(config).get_config() == config
        assert keras.saving.get_registered_name(cls) == f"keras_lossplus>{cls.__name__}"


@pytest.mark.parametrize("kwargs,argument", [
    (dict(ignore_class=1.5), "ignore_class"),
    (dict(logit_soft_cap=-1.0), "logit_soft_cap"),
    (dict(chunk_size=0), "chunk_size"),
    (dict(transpose_kernel="yes"), "transpose_kernel"),
])
def test_bad_arguments_raise_naming_the_argument(kwargs, argument):
    for cls in (TokenAccuracy, Perplexity):
        with pytest.raises((ValueError, TypeError), match=f"`{argument}`"):
            cls(**kwargs)


def test_bad_y_pred_raises():
    hidden, kernel, bias, targets, mask = _data()
    with pytest.raises(ValueError, match="`y_pred`"):
        TokenAccuracy().update_state(targets, (hidden,))
    with pytest.raises(ValueError, match="`y_pred`"):
        Perplexity().update_state(targets, {"hidden": hidden})
    with pytest.raises(ValueError, match="`y_pred`"):
        TokenAccuracy().update_state(targets, np.zeros((B,), "float32"))
