"""Activity penalty layers: numpy references, Keras equivalents, and one
contract per layer (eager value, logged `fit` / `evaluate` values under XLA,
mixed precision, `training_only`, factors as variables, saving)."""

import dataclasses
import json
from pathlib import Path
from typing import Callable

import keras
import numpy as np
import pytest

import keras_lossplus as klp
from keras_lossplus import layers as P
from tests.backend_utils import BACKEND, XLA_BACKENDS, to_numpy
from tests.fresh_load import load_in_fresh_process

ROOT = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------ references


def ref_norm(h, l1=0.0, l2=0.0, normalize_by_batch=False):
    h = np.asarray(h, "float64")
    value = l1 * np.abs(h).sum() + l2 * (h**2).sum()
    return value / len(h) if normalize_by_batch else value


def ref_kl_sparsity(h, target=0.05, factor=1.0):
    rho = np.clip(np.asarray(h, "float64").reshape(-1, h.shape[-1]).mean(0), 1e-7, 1 - 1e-7)
    return factor * np.sum(target * np.log(target / rho) + (1 - target) * np.log((1 - target) / (1 - rho)))


def ref_decov(h, factor=0.1):
    h = np.asarray(h, "float64")
    c = (h - h.mean(0)).T @ (h - h.mean(0)) / len(h)
    return factor * 0.5 * (np.sum(c**2) - np.sum(np.diag(c) ** 2))


def ref_orthogonality(h, factor=0.01, mode="rows"):
    h = np.asarray(h, "float64")
    if mode == "columns":
        h = h.T
    h = h / np.maximum(np.linalg.norm(h, axis=1, keepdims=True), 1e-12)
    g = h @ h.T
    n = len(h)
    return factor * 0.5 * np.abs(g - np.diag(np.diag(g))).sum() / (n * (n - 1) / 2)


def ref_entropy(h, factor=0.1, from_logits=False):
    h = np.asarray(h, "float64")
    if from_logits:
        h = np.exp(h - h.max(-1, keepdims=True))
        h = h / h.sum(-1, keepdims=True)
    p = np.clip(h, 1e-7, 1.0)
    return -factor * np.mean(-(p * np.log(p)).sum(-1))


def ref_vicreg(z, variance_weight=25.0, covariance_weight=1.0, gamma=1.0, epsilon=1e-4):
    """VICReg's variance and covariance terms, as in the paper's pseudo-code."""
    z = np.asarray(z, "float64")
    n, d = z.shape
    z = z - z.mean(0)
    std = np.sqrt(z.var(0, ddof=1) + epsilon)
    cov = z.T @ z / (n - 1)
    off = cov - np.diag(np.diag(cov))
    return variance_weight * np.mean(np.maximum(0, gamma - std)) + covariance_weight * (off**2).sum() / d


def _activate(x, activation):
    x = np.asarray(x, "float64")
    if activation == "sigmoid":
        return 1 / (1 + np.exp(-x))
    if activation == "softmax":
        e = np.exp(x - x.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)
    return x


# ------------------------------------------------------------------ cases


@dataclasses.dataclass
class PenaltyCase:
    id: str
    cls: type
    kwargs: dict
    reference: Callable  # numpy activations (B, 4) -> penalty
    activation: str = "linear"  # of the Dense layer feeding the penalty
    bad_args: list = dataclasses.field(default_factory=list)

    def make(self, **overrides):
        return self.cls(**{**self.kwargs, **overrides})

    def __repr__(self):
        return self.id


def _case(id, cls, kwargs, reference, **extra):
    return PenaltyCase(id, cls, kwargs, lambda h: reference(h, **kwargs), **extra)


_negative = [({"factor": -1.0}, "factor")]
CASES = [
    _case("l1", P.L1Penalty, {"factor": 0.01}, lambda h, factor: ref_norm(h, l1=factor), bad_args=_negative),
    _case("l1_normalized", P.L1Penalty, {"factor": 0.05, "normalize_by_batch": True},
          lambda h, factor, normalize_by_batch: ref_norm(h, l1=factor, normalize_by_batch=True)),
    _case("l2", P.L2Penalty, {"factor": 0.02}, lambda h, factor: ref_norm(h, l2=factor), bad_args=_negative),
    _case("elastic_net", P.ElasticNetPenalty, {"l1": 0.01, "l2": 0.03, "normalize_by_batch": True},
          lambda h, l1, l2, normalize_by_batch: ref_norm(h, l1, l2, True),
          bad_args=[({"l1": -0.1}, "l1"), ({"l2": float("nan")}, "l2")]),
    _case("kl_sparsity", P.KLSparsityPenalty, {"target": 0.1, "factor": 0.5}, ref_kl_sparsity, activation="sigmoid",
          bad_args=[({"target": 1.0}, "target"), ({"target": 0.0}, "target"), ({"factor": -2.0}, "factor")]),
    _case("decov", P.DecorrelationPenalty, {"factor": 0.1}, ref_decov, bad_args=_negative),
    _case("orthogonality_rows", P.OrthogonalityPenalty, {"factor": 0.1, "mode": "rows"}, ref_orthogonality,
          bad_args=[({"mode": "diagonal"}, "mode")]),
    _case("orthogonality_columns", P.OrthogonalityPenalty, {"factor": 0.1, "mode": "columns"}, ref_orthogonality),
    _case("entropy_probs", P.EntropyPenalty, {"factor": 0.2}, ref_entropy, activation="softmax", bad_args=_negative),
    _case("entropy_logits", P.EntropyPenalty, {"factor": 0.2, "from_logits": True}, ref_entropy),
    _case("vicreg", P.VarianceCovariancePenalty, {"variance_weight": 2.0, "covariance_weight": 0.5}, ref_vicreg,
          bad_args=[({"variance_weight": -1.0}, "variance_weight"), ({"gamma": 0.0}, "gamma"),
                    ({"epsilon": -1.0}, "epsilon")]),
]
each = pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])


def _activations(rng, activation="linear", batch=8):
    return _activate(rng.normal(size=(batch, 4)) * 1.5, activation).astype("float32")


# ------------------------------------------------------------------ eager values


@each
def test_eager_value_matches_reference_and_input_passes_through(case, rng):
    h = _activations(rng, case.activation)
    layer = case.make()
    out = layer(h)
    np.testing.assert_array_equal(to_numpy(out), h)
    assert len(layer.losses) == 1
    np.testing.assert_allclose(to_numpy(layer.losses[0]), case.reference(h), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(to_numpy(layer.penalty_value), case.reference(h), rtol=1e-5, atol=1e-7)


@each
def test_mixed_precision_accumulates_in_float32(case, rng):
    h = _activations(rng, case.activation)
    layer = case.make(dtype="mixed_float16")
    out = layer(h)
    assert keras.backend.standardize_dtype(out.dtype) == "float16"
    loss = layer.losses[0]
    assert keras.backend.standardize_dtype(loss.dtype) == "float32"
    rounded = to_numpy(out).astype("float32")
    np.testing.assert_allclose(to_numpy(loss), case.reference(rounded), rtol=1e-4, atol=1e-6)


@each
def test_training_only_skips_inference(case, rng):
    h = _activations(rng, case.activation)
    layer = case.make(training_only=True)
    layer(h, training=False)
    assert layer.losses == []
    layer(h, training=True)
    np.testing.assert_allclose(to_numpy(layer.losses[0]), case.reference(h), rtol=1e-5, atol=1e-7)


@each
def test_config_round_trip(case):
    layer = case.make(name="penalty", training_only=True)
    config = layer.get_config()
    json.dumps(config)
    again = case.cls.from_config(config)
    assert again.get_config() == config


@each
def test_bad_arguments_name_the_argument(case):
    for kwargs, arg in case.bad_args:
        with pytest.raises((ValueError, TypeError), match=arg):
            case.make(**kwargs)


# ------------------------------------------------------------------ in a model


def build_model(case, layer=None):
    inputs = keras.Input((6,))
    h = keras.layers.Dense(4, activation=case.activation, name="pre")(inputs)
    h = (layer or case.make(name="penalty"))(h)
    outputs = keras.layers.Dense(1, name="head")(h)
    return keras.Model(inputs, outputs)


def numpy_forward(model, x, activation):
    w1, b1 = model.get_layer("pre").get_weights()
    w2, b2 = model.get_layer("head").get_weights()
    h = _activate(x.astype("float64") @ w1 + b1, activation)
    return h, h @ w2 + b2


def _data(rng, n=16):
    return rng.normal(size=(n, 6)).astype("float32"), rng.normal(size=(n, 1)).astype("float32")


@each
def test_logged_loss_is_compiled_loss_plus_penalty(case, rng):
    """One step of fit (XLA on JAX / TF): `loss` = MSE + penalty and the
    penalty is logged under the layer's name, both computed in numpy on the
    pre-step weights; evaluate likewise (`val_` entries)."""
    x, y = _data(rng)
    model = klp.log_penalties(build_model(case))
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse", jit_compile=BACKEND in XLA_BACKENDS)
    h, out = numpy_forward(model, x, case.activation)
    mse = np.mean((out - y) ** 2)
    history = model.fit(x, y, batch_size=len(x), epochs=1, verbose=0).history
    np.testing.assert_allclose(history["penalty"][0], case.reference(h), rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(history["loss"][0], mse + case.reference(h), rtol=2e-5, atol=1e-6)
    h, out = numpy_forward(model, x, case.activation)  # after the step
    logs = model.evaluate(x, y, batch_size=len(x), verbose=0, return_dict=True)
    np.testing.assert_allclose(logs["penalty"], case.reference(h), rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(logs["loss"], np.mean((out - y) ** 2) + case.reference(h), rtol=2e-5, atol=1e-6)


@each
def test_factor_variable_changes_between_epochs(case, rng):
    name = "l1" if case.cls is P.ElasticNetPenalty else ("variance_weight" if case.cls is P.VarianceCovariancePenalty else "factor")
    factor = keras.Variable(0.0, trainable=False, dtype="float32")
    model = klp.log_penalties(build_model(case, case.make(name="penalty", **{name: factor})))
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse", jit_compile=BACKEND in XLA_BACKENDS)
    x, y = _data(rng)
    first = model.fit(x, y, batch_size=len(x), verbose=0).history
    factor.assign(case.kwargs.get(name, 1.0))
    second = model.fit(x, y, batch_size=len(x), verbose=0).history
    h, _ = numpy_forward(model, x, case.activation)
    kwargs = {k: v for k, v in case.kwargs.items() if k != name}
    zero = case.cls(**kwargs, **{name: 0.0})
    zero(h.astype("float32"))
    np.testing.assert_allclose(first["penalty"][0], to_numpy(zero.losses[0]), atol=1e-6)
    np.testing.assert_allclose(second["penalty"][0], case.reference(h), rtol=2e-5, atol=1e-6)


def test_trainable_factor_variable_is_refused():
    with pytest.raises(ValueError, match="factor"):
        P.L1Penalty(keras.Variable(0.1))


# ------------------------------------------------------------------ Keras equivalents and gradients


def test_l1_normalized_equals_keras_activity_regularization(rng):
    x, y = _data(rng)
    for l1, l2 in ((0.03, 0.0), (0.0, 0.02), (0.01, 0.04)):
        ours = P.ElasticNetPenalty(l1=l1, l2=l2, normalize_by_batch=True)
        theirs = keras.layers.ActivityRegularization(l1=l1, l2=l2)
        ours(x)
        theirs(x)
        np.testing.assert_allclose(to_numpy(ours.losses[0]), to_numpy(theirs.losses[0]), rtol=1e-6)
    ours, theirs = P.L1Penalty(0.03, normalize_by_batch=True), keras.layers.ActivityRegularization(l1=0.03)
    ours(x)
    theirs(x)
    np.testing.assert_array_equal(to_numpy(ours.losses[0]), to_numpy(theirs.losses[0]))
    classic = P.L1Penalty(0.03)
    classic(x)
    np.testing.assert_allclose(to_numpy(classic.losses[0]), 0.03 * np.abs(x).sum(), rtol=1e-6)


def test_orthogonality_equals_keras_orthogonal_regularizer(rng):
    h = _activations(rng)
    for mode in ("rows", "columns"):
        layer = P.OrthogonalityPenalty(factor=0.3, mode=mode)
        layer(h)
        expected = keras.regularizers.OrthogonalRegularizer(factor=0.3, mode=mode)(keras.ops.convert_to_tensor(h))
        np.testing.assert_allclose(to_numpy(layer.losses[0]), to_numpy(expected), rtol=1e-5)


def test_orthogonality_needs_2d_inputs():
    with pytest.raises(ValueError, match="2-D"):
        P.OrthogonalityPenalty()(np.ones((2, 3, 4), "float32"))


@pytest.mark.parametrize("layer_cls", [P.L1Penalty, P.L2Penalty])
def test_gradient_includes_the_penalty(layer_cls, rng):
    """One SGD step (lr 1) with and without the penalty layer, from the same
    weights: the kernel moves by exactly the penalty's gradient."""
    x, y = _data(rng)
    factor = 0.05
    inputs = keras.Input((6,))
    pre = keras.layers.Dense(4, name="pre")
    head = keras.layers.Dense(1, name="head")
    with_penalty = keras.Model(inputs, head(layer_cls(factor)(pre(inputs))))
    without = keras.Model(inputs, head(pre(inputs)))
    start = (pre.get_weights(), head.get_weights())
    w1, b1 = start[0]
    kernels = []
    for model in (with_penalty, without):
        pre.set_weights(start[0])
        head.set_weights(start[1])
        model.compile(optimizer=keras.optimizers.SGD(1.0), loss="mse", jit_compile=BACKEND in XLA_BACKENDS)
        model.fit(x, y, batch_size=len(x), epochs=1, verbose=0, shuffle=False)
        kernels.append(pre.get_weights()[0])
    h = x.astype("float64") @ w1 + b1
    d_h = factor * (np.sign(h) if layer_cls is P.L1Penalty else 2 * h)
    penalty_grad = x.T.astype("float64") @ d_h
    np.testing.assert_allclose(kernels[1] - kernels[0], penalty_grad, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------ saving


def test_models_with_penalties_save_and_load_in_a_fresh_process(tmp_path, rng):
    x, y = _data(rng)
    expected = {}
    for case in CASES:
        model = build_model(case)
        model.compile(optimizer="adam", loss="mse")
        model.fit(x, y, batch_size=8, epochs=1, verbose=0)
        expected[case.id] = float(model.evaluate(x, y, batch_size=len(x), verbose=0))
        model.save(tmp_path / f"{case.id}.keras")
        np.savez(tmp_path / f"{case.id}.npz", x=x, y=y)
    loaded = load_in_fresh_process(tmp_path)
    for name, value in expected.items():
        np.testing.assert_allclose(loaded[name]["evaluate"], value, rtol=1e-5, err_msg=name)
