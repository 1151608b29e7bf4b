"""Penalty layers for large models (`keras_lossplus.layers.moe`): the output
z-loss (PaLM), the MoE load-balancing loss side by side with KerasHub's
Mixtral `compute_load_balancing_loss`, and the ST-MoE router z-loss.

Numpy references in float64, float64 finite differences of the gradient,
finite values and gradients at logits of +-100, 1e4 and ties, half
precision, all-masked batches, configs, bad arguments, and one functional
model whose `fit` logs each penalty (XLA on JAX / TensorFlow)."""

import json

import keras
import numpy as np
import pytest

import keras_lossplus as klp
from keras_lossplus import layers as P
from tests.backend_utils import BACKEND, XLA_BACKENDS, to_numpy
from tests.edge_grid import as_tensor, compiled_value_and_grad
from tests.losses.finite_differences import check_against_float64

JIT = BACKEND in XLA_BACKENDS


# ------------------------------------------------------------------ references (float64)


def ref_lse(logits):
    x = np.asarray(logits, "float64")
    m = x.max(-1, keepdims=True)
    return (m + np.log(np.exp(x - m).sum(-1, keepdims=True)))[..., 0]


def _token_mean(values, mask):
    values = np.asarray(values, "float64").reshape(-1)
    if mask is None:
        return values.mean()
    w = np.asarray(mask, "float64").reshape(-1)
    return (values * w).sum() / max(w.sum(), 1e-9)


def ref_z_loss(logits, mask=None):
    return _token_mean(ref_lse(logits) ** 2, mask)


def ref_load_balancing(logits, num_experts, top_k, mask=None):
    """Switch Transformer eq. 4 with top-k dispatch averaged over the k slots
    (KerasHub's convention): E * sum_e f_e P_e."""
    x = np.asarray(logits, "float64").reshape(-1, num_experts)
    p = np.exp(x - x.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    top = np.argsort(-x, axis=-1, kind="stable")[:, :top_k]
    dispatched = np.zeros_like(p)
    np.put_along_axis(dispatched, top, 1.0 / top_k, axis=-1)
    w = np.ones(len(x)) if mask is None else np.asarray(mask, "float64").reshape(-1)
    total = max(w.sum(), 1e-9)
    f = (dispatched * w[:, None]).sum(0) / total
    prob = (p * w[:, None]).sum(0) / total
    return num_experts * np.sum(f * prob)


Z_CLASSES = [(P.ZLossPenalty, 1e-4), (P.RouterZLossPenalty, 1e-3)]
z_classes = pytest.mark.parametrize("cls,default", Z_CLASSES, ids=["ZLossPenalty", "RouterZLossPenalty"])


def _mask(rng, shape, keep=0.7):
    mask = (rng.uniform(size=shape) < keep).astype("float32")
    mask.reshape(-1)[0] = 1.0  # at least one token
    return mask


# ------------------------------------------------------------------ values


@z_classes
@pytest.mark.parametrize("shape", [(6, 5), (2, 3, 7), (7,)], ids=str)
def test_z_loss_matches_numpy_and_passes_input_through(cls, default, shape, rng):
    logits = (rng.normal(size=shape) * 3).astype("float32")
    layer = cls(factor=0.5)
    out = layer(logits)
    np.testing.assert_array_equal(to_numpy(out), logits)
    expected = 0.5 * ref_z_loss(logits)
    np.testing.assert_allclose(to_numpy(layer.losses[0]), expected, rtol=1e-6)
    np.testing.assert_allclose(to_numpy(layer.penalty_value), expected, rtol=1e-6)
    np.testing.assert_allclose(to_numpy(P.z_loss(logits)), ref_z_loss(logits), rtol=1e-6)
    assert cls().get_config()["factor"] == pytest.approx(default)
    if len(shape) > 1:  # a padding mask: the mean over the unmasked tokens
        mask = _mask(rng, shape[:-1])
        layer = cls(factor=0.5)
        out = layer(logits, mask=mask.astype(bool))
        np.testing.assert_array_equal(to_numpy(out), logits)
        np.testing.assert_allclose(to_numpy(layer.losses[0]), 0.5 * ref_z_loss(logits, mask), rtol=1e-6)
        np.testing.assert_allclose(to_numpy(P.z_loss(logits, mask=mask)), ref_z_loss(logits, mask), rtol=1e-6)


def test_the_two_z_losses_share_one_formula(rng):
    logits = rng.normal(size=(4, 3, 5)).astype("float32")
    mask = _mask(rng, (4, 3))
    values = []
    for cls in (P.ZLossPenalty, P.RouterZLossPenalty):
        layer = cls(factor=1.0)
        layer(logits, mask=mask)
        values.append(to_numpy(layer.losses[0]))
    np.testing.assert_array_equal(values[0], values[1])
    np.testing.assert_array_equal(values[0], to_numpy(P.z_loss(logits, mask)))


@z_classes
def test_z_loss_is_exact_at_large_and_equal_logits(cls, default):
    """A stable log-sum-exp: logits of +-1e4, all equal (at 0 and at 1e4)."""
    cases = {
        "pm1e4": np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4]], "float32"),
        "equal_0": np.zeros((2, 4), "float32"),
        "equal_1e4": np.full((2, 4), 1e4, "float32"),
        "pm100": np.array([[100.0, -100.0, 100.0], [-100.0, 100.0, -100.0]], "float32"),
    }
    for name, logits in cases.items():
        layer = cls(factor=1.0)
        layer(logits)
        np.testing.assert_allclose(to_numpy(layer.losses[0]), ref_z_loss(logits), rtol=2e-6, err_msg=name)


@pytest.mark.parametrize("top_k", [1, 2, 4])
def test_load_balancing_matches_numpy(top_k, rng):
    logits = (rng.normal(size=(3, 5, 4)) * 2).astype("float32")
    mask = _mask(rng, (3, 5))
    for m in (None, mask):
        layer = P.LoadBalancingPenalty(num_experts=4, top_k=top_k, factor=0.3)
        out = layer(logits, mask=m)
        np.testing.assert_array_equal(to_numpy(out), logits)
        expected = ref_load_balancing(logits, 4, top_k, m)
        np.testing.assert_allclose(to_numpy(layer.losses[0]), 0.3 * expected, rtol=1e-5)
        np.testing.assert_allclose(to_numpy(P.load_balancing_loss(logits, 4, top_k, mask=m)), expected, rtol=1e-5)
    # top_k = num_experts: every expert gets 1/E of the slots, so the value is sum_e P_e = 1
    if top_k == 4:
        np.testing.assert_allclose(to_numpy(P.load_balancing_loss(logits, 4, 4)), 1.0, rtol=1e-6)


def test_load_balancing_extremes():
    """Even routing gives 1; every token on one expert gives E * P."""
    even = np.array([[5.0, 0.0, 0.0], [0.0, 5.0, 0.0], [0.0, 0.0, 5.0]], "float32")
    np.testing.assert_allclose(to_numpy(P.load_balancing_loss(even, 3, 1)), 1.0, rtol=1e-6)
    collapsed = np.tile(np.array([[8.0, 0.0, 0.0]], "float32"), (4, 1))
    np.testing.assert_allclose(to_numpy(P.load_balancing_loss(collapsed, 3, 1)),
                               3 * ref_lse_softmax0(collapsed), rtol=1e-6)


def ref_lse_softmax0(x):
    return float(np.exp(x[0, 0] - ref_lse(x[:1])[0]))


# ------------------------------------------------------------------ side by side with KerasHub


@pytest.fixture(scope="module")
def keras_hub_balancing():
    try:
        from keras_hub.src.models.mixtral.mixtral_decoder import (
            compute_load_balancing_loss,
        )
    except Exception as error:  # noqa: BLE001 - any import failure of the optional peer
        pytest.skip(f"keras_hub cannot be imported: {error}")
    return compute_load_balancing_loss


@pytest.mark.parametrize("shape", [(16, 4), (2, 6, 8), (3, 5, 4)], ids=str)
@pytest.mark.parametrize("top_k", [1, 2])
def test_load_balancing_equals_keras_hub(keras_hub_balancing, shape, top_k, rng):
    """KerasHub's function takes one MoE layer's router logits flattened to
    (batch * seq, E) and an attention mask (batch, seq); Mixtral's block adds
    `router_aux_loss_coef * value` in training: our `factor`."""
    E = shape[-1]
    logits = (rng.normal(size=shape) * 2).astype("float32")
    flat = logits.reshape(-1, E)
    attention = _mask(rng, shape[:-1] if len(shape) > 2 else (2, shape[0] // 2))  # KerasHub's mask is 2-D
    ours_mask = attention.reshape(shape[:-1])
    theirs = to_numpy(keras_hub_balancing(as_tensor(flat), E, top_k))
    np.testing.assert_allclose(to_numpy(P.load_balancing_loss(logits, E, top_k)), theirs, rtol=1e-6)
    theirs_masked = to_numpy(keras_hub_balancing(as_tensor(flat), E, top_k, attention_mask=as_tensor(attention)))
    np.testing.assert_allclose(to_numpy(P.load_balancing_loss(logits, E, top_k, mask=ours_mask)), theirs_masked,
                               rtol=1e-6)
    coef = 0.02  # Mixtral's router_aux_loss_coef default
    layer = P.LoadBalancingPenalty(E, top_k=top_k, factor=coef, training_only=True)
    layer(logits, mask=ours_mask, training=False)
    assert layer.losses == []
    layer(logits, mask=ours_mask, training=True)
    np.testing.assert_allclose(to_numpy(layer.losses[0]), coef * theirs_masked, rtol=1e-6)
    # an all-masked batch: 0 in both
    zeros = np.zeros_like(attention)
    np.testing.assert_allclose(to_numpy(keras_hub_balancing(as_tensor(flat), E, top_k, attention_mask=as_tensor(zeros))),
                               0.0)
    assert float(to_numpy(P.load_balancing_loss(logits, E, top_k, mask=zeros.reshape(shape[:-1])))) == 0.0


# ------------------------------------------------------------------ gradients


def _per_row(fn):
    """`fn(mask_row, logits_row)` for each row of a batch: per-sample values
    for the finite-difference helper (the rows are independent)."""
    return lambda masks, logits: keras.ops.stack([fn(masks[i], logits[i]) for i in range(logits.shape[0])])


def test_z_loss_gradient_matches_float64_differences(rng):
    """Rows of tokens (T=3, V=4), the mask as `y_true`: random, one masked
    token, +-100, equal logits, all masked (0 and gradient 0)."""
    x = (rng.normal(size=(5, 3, 4)) * 2).astype("float32")
    x[2] = 100.0 * np.where(np.arange(12).reshape(3, 4) % 2, 1.0, -1.0)
    x[3] = 1.5
    masks = np.ones((5, 3), "float32")
    masks[1, 2] = 0.0
    masks[4] = 0.0
    check_against_float64(_per_row(lambda m, q: P.z_loss(q, mask=m)),
                          lambda m, q: [ref_z_loss(q[i], m[i]) for i in range(len(q))], masks, x, step=1e-5, rtol=2e-5)


def test_load_balancing_gradient_matches_float64_differences(rng):
    """Away from ties (where the top-k choice, held constant, changes)."""
    x = (rng.normal(size=(4, 6, 4)) * 2).astype("float32")
    masks = np.ones((4, 6), "float32")
    masks[1, :2] = 0.0
    masks[3] = 0.0
    check_against_float64(_per_row(lambda m, q: P.load_balancing_loss(q, 4, 2, mask=m)),
                          lambda m, q: [ref_load_balancing(q[i], 4, 2, m[i]) for i in range(len(q))], masks, x, step=1e-5, rtol=2e-5)


EDGES = {
    "pm100": 100.0 * np.where(np.arange(24).reshape(2, 3, 4) % 2, 1.0, -1.0),
    "x100": 100.0 * np.random.default_rng(3).normal(size=(2, 3, 4)),
    "equal": np.zeros((2, 3, 4)),
    "equal_1e4": np.full((2, 3, 4), 1e4),
    "pm1e4": 1e4 * np.where(np.arange(24).reshape(2, 3, 4) % 3, 1.0, -1.0),
}
LAYERS = {
    "z": lambda: P.ZLossPenalty(1.0),
    "router_z": lambda: P.RouterZLossPenalty(1.0),
    "balance": lambda: P.LoadBalancingPenalty(4, top_k=2, factor=1.0),
}


@pytest.mark.parametrize("which", list(LAYERS))
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_finite_value_and_gradient_at_the_edges(which, dtype):
    """Compiled (XLA on JAX / TensorFlow): finite value and gradient at
    +-100, 1e4 and ties, in float32 and half precision (computed in float32;
    the gradient of a float16 input where it fits float16); an all-masked
    batch gives exactly 0 with gradient 0."""
    layer = LAYERS[which]()
    step = compiled_value_and_grad(lambda mask, x: layer.penalty((x, mask)))
    ones = as_tensor(np.ones((2, 3)))
    for name, x in EDGES.items():
        value, grad = step(ones, as_tensor(x, dtype))
        value, grad = to_numpy(value).astype("float64"), to_numpy(grad).astype("float64")
        assert np.isfinite(value), (name, value)
        rounded = to_numpy(as_tensor(x, dtype)).astype("float64")
        expected = ref_z_loss(rounded) if which != "balance" else ref_load_balancing(rounded, 4, 2)
        np.testing.assert_allclose(value, expected, rtol=1e-5, err_msg=name)
        assert np.all(np.isfinite(grad)), (name, grad)
    value, grad = step(as_tensor(np.zeros((2, 3))), as_tensor(EDGES["x100"], dtype))
    assert float(to_numpy(value)) == 0.0
    np.testing.assert_array_equal(to_numpy(grad).astype("float32"), 0.0)


@pytest.mark.parametrize("which", list(LAYERS))
def test_mixed_precision_layer_accumulates_in_float32(which, rng):
    logits = (rng.normal(size=(3, 4, 4)) * 2).astype("float32")
    layer = {"z": P.ZLossPenalty, "router_z": P.RouterZLossPenalty}.get(which)
    layer = layer(1.0, dtype="mixed_bfloat16") if layer else P.LoadBalancingPenalty(4, factor=1.0,
                                                                                  dtype="mixed_bfloat16")
    out = layer(logits)
    assert keras.backend.standardize_dtype(out.dtype) == "bfloat16"
    loss = layer.losses[0]
    assert keras.backend.standardize_dtype(loss.dtype) == "float32"
    rounded = to_numpy(out).astype("float64")
    expected = ref_z_loss(rounded) if which != "balance" else ref_load_balancing(rounded, 4, 2)
    np.testing.assert_allclose(to_numpy(loss), expected, rtol=1e-5)


def test_huge_logits_are_refused_eagerly_by_the_z_losses():
    for cls in (P.ZLossPenalty, P.RouterZLossPenalty):
        with pytest.raises(ValueError, match=f"{cls.__name__}: `inputs` holds values of magnitude"):
            cls()(np.full((2, 3), 1e30, "float32"))
    with pytest.raises(ValueError, match="z_loss: `logits`"):
        P.z_loss(np.full((2, 3), 1e30, "float32"))
    layer = P.LoadBalancingPenalty(3, factor=1.0)  # softmax and top-k: computed
    layer(np.full((2, 3), 1e30, "float32") * np.array([1.0, -1.0, 1.0], "float32"))
    assert np.isfinite(to_numpy(layer.losses[0]))


# ------------------------------------------------------------------ configs and arguments


@pytest.mark.parametrize("make", [
    lambda: P.ZLossPenalty(3e-4, training_only=True, name="z"),
    lambda: P.RouterZLossPenalty(2e-3, name="rz"),
    lambda: P.LoadBalancingPenalty(8, top_k=1, factor=0.02, training_only=True, name="lb"),
], ids=["z", "router_z", "balance"])
def test_config_round_trip(make):
    layer = make()
    config = layer.get_config()
    json.dumps(config)
    again = type(layer).from_config(config)
    assert again.get_config() == config
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(restored) is type(layer) and restored.get_config() == config


@pytest.mark.parametrize("kwargs,argument", [
    ({"num_experts": 0}, "num_experts"),
    ({"num_experts": -2}, "num_experts"),
    ({"num_experts": 2.5}, "num_experts"),
    ({"num_experts": True}, "num_experts"),
    ({"num_experts": 4, "top_k": 0}, "top_k"),
    ({"num_experts": 4, "top_k": 5}, "top_k"),
    ({"num_experts": 4, "factor": -0.1}, "factor"),
])
def test_load_balancing_bad_arguments_name_the_argument(kwargs, argument):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        P.LoadBalancingPenalty(**kwargs)
    if "factor" not in kwargs:
        with pytest.raises(ValueError, match=f"`{argument}`"):
            P.load_balancing_loss(np.zeros((2, 4), "float32"), **kwargs)


def test_z_loss_bad_factor_and_shapes_name_the_argument():
    for cls in (P.ZLossPenalty, P.RouterZLossPenalty):
        with pytest.raises(ValueError, match="`factor`"):
            cls(factor=-1.0)
        with pytest.raises(ValueError, match="`mask`"):
            cls()(np.zeros((2, 3, 4), "float32"), mask=np.ones((3, 2), "float32"))
    with pytest.raises(ValueError, match="`num_experts`"):
        P.LoadBalancingPenalty(3)(np.zeros((2, 4), "float32"))
    with pytest.raises(ValueError, match="`num_experts`"):
        P.load_balancing_loss(np.zeros((2, 4), "float32"), 3)


# ------------------------------------------------------------------ in a model


def _moe_model():
    tokens = keras.Input((5,), dtype="int32")
    emb = keras.layers.Embedding(12, 4, mask_zero=True, name="emb")(tokens)
    logits = keras.layers.Dense(6, name="lm")(emb)
    logits = P.ZLossPenalty(0.1, name="z_loss")(logits)  # the Embedding's mask arrives on its own
    router = keras.layers.Dense(3, name="router")(emb)
    router = P.LoadBalancingPenalty(3, top_k=2, factor=0.5, name="balance")(router)
    router = P.RouterZLossPenalty(0.05, name="router_z")(router)
    pooled = keras.layers.Concatenate()([keras.layers.GlobalAveragePooling1D()(logits),
                                         keras.layers.GlobalAveragePooling1D()(router)])
    return keras.Model(tokens, keras.layers.Dense(1, name="head")(pooled))


def _numpy_forward(model, tokens):
    table = model.get_layer("emb").get_weights()[0].astype("float64")
    (w_lm, b_lm), (w_r, b_r), (w_h, b_h) = (model.get_layer(n).get_weights() for n in ("lm", "router", "head"))
    mask = (tokens != 0).astype("float64")
    h = table[tokens]
    logits, router = h @ w_lm + b_lm, h @ w_r + b_r
    pool = lambda v: (v * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
    out = np.concatenate([pool(logits), pool(router)], axis=1) @ w_h + b_h
    penalties = {"z_loss": 0.1 * ref_z_loss(logits, mask), "balance": 0.5 * ref_load_balancing(router, 3, 2, mask),
                 "router_z": 0.05 * ref_z_loss(router, mask)}
    return out, penalties


def test_fit_logs_each_penalty_and_adds_them_to_the_loss(rng):
    """One step of `fit` (XLA on JAX / TensorFlow): `loss` = MSE + the three
    penalties (masked by the Embedding's padding mask), each logged under
    its layer's name, all from numpy on the pre-step weights."""
    tokens = rng.integers(1, 12, size=(8, 5)).astype("int32")
    tokens[:, 3:] *= (rng.uniform(size=(8, 2)) < 0.5)  # padding at the end of some rows
    y = rng.normal(size=(8, 1)).astype("float32")
    model = klp.log_penalties(_moe_model())
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse", jit_compile=JIT)
    out, penalties = _numpy_forward(model, tokens)
    history = model.fit(tokens, y, batch_size=8, epochs=1, verbose=0).history
    for name, value in penalties.items():
        np.testing.assert_allclose(history[name][0], value, rtol=2e-5, atol=1e-7, err_msg=name)
    np.testing.assert_allclose(history["loss"][0], np.mean((out - y) ** 2) + sum(penalties.values()), rtol=2e-5)
