"""`linear_cross_entropy` / `LinearCrossEntropy` against the naive path:
`hidden @ kernel + bias` and Keras' own `SparseCategoricalCrossentropy(
from_logits=True)` (or `categorical_crossentropy` with label smoothing),
value and gradients with respect to `hidden`, `kernel` and `bias`, every
reduction and sample weight, eager and compiled; plus what the generic
contract suite checks for the other losses (their `y_pred` is one tensor,
this loss's is `(hidden, kernel[, bias])`): edge cases, half precision,
configs, errors."""

import json

import keras
import numpy as np
import pytest

from keras_lossplus.losses.language import LinearCrossEntropy, linear_argmax, linear_cross_entropy
from tests.backend_utils import BACKEND, XLA_BACKENDS, to_numpy, value_and_grad, with_mask, xla_compile

N, T, D, V = 3, 5, 8, 37
REDUCTIONS = ("sum_over_batch_size", "sum", "mean", "mean_with_sample_weight", "none", None)
OPTIONS = [
    {},
    {"label_smoothing": 0.1},
    {"z_loss": 1e-2},
    {"logit_soft_cap": 3.0},
    {"label_smoothing": 0.2, "z_loss": 1e-3, "logit_soft_cap": 2.0, "transpose_kernel": True},
]


def _inputs(rng, scale=1.0, dtype="float32"):
    h = (scale * rng.normal(size=(N, T, D))).astype(dtype)
    w = rng.normal(size=(D, V)).astype(dtype) / np.sqrt(D)
    b = rng.normal(size=(V,)).astype(dtype)
    y = rng.integers(0, V, size=(N, T)).astype("int32")
    return y, h, w, b


def _naive_per_token(y, h, w, b, ignore_class=None, label_smoothing=0.0, z_loss=0.0, logit_soft_cap=None,
                     transpose_kernel=False):
    """Keras' own path on the full logits."""
    ops = keras.ops
    logits = ops.matmul(h, ops.transpose(w) if transpose_kernel else w)
    if b is not None:
        logits = logits + b
    if logit_soft_cap is not None:
        logits = logit_soft_cap * ops.tanh(logits / logit_soft_cap)
    labels = y if ignore_class is None else np.where(y == ignore_class, 0, y)
    if label_smoothing:
        onehot = ops.one_hot(labels, logits.shape[-1], dtype=logits.dtype)
        values = keras.losses.categorical_crossentropy(onehot, logits, from_logits=True,
                                                       label_smoothing=label_smoothing)
    else:
        values = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
    if z_loss:
        values = values + z_loss * ops.square(ops.logsumexp(logits, axis=-1))
    if ignore_class is not None:
        values = ops.multiply(values, ops.convert_to_tensor(y != ignore_class, values.dtype))
    return values


def _pack(h, w, b):
    return np.concatenate([h.ravel(), w.ravel(), b.ravel()])


def _unpack(x, h, w, b):
    ops = keras.ops
    sizes = np.cumsum([h.size, w.size])
    return (ops.reshape(x[: sizes[0]], h.shape), ops.reshape(x[sizes[0]: sizes[1]], w.shape),
            ops.reshape(x[sizes[1]:], b.shape))


def _split(grad, h, w, b):
    sizes = np.cumsum([h.size, w.size])
    return grad[: sizes[0]].reshape(h.shape), grad[sizes[0]: sizes[1]].reshape(w.shape), grad[sizes[1]:]


def _assert_close(actual, expected, rtol=1e-5, atol=1e-5):
    np.testing.assert_allclose(np.asarray(actual, "float64"), np.asarray(expected, "float64"), rtol=rtol, atol=atol)


# ------------------------------------------------------------------ values and gradients


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(o) or "plain")
def test_function_value_and_gradients_equal_the_naive_path(options, rng):
    y, h, w, b = _inputs(rng)
    if options.get("transpose_kernel"):
        w = np.ascontiguousarray(w.T)
    upstream = rng.uniform(0.0, 2.0, size=(N, T)).astype("float32")  # any upstream gradient per token

    def ours(x):
        hh, ww, bb = _unpack(x, h, w, b)
        return keras.ops.sum(keras.ops.multiply(linear_cross_entropy(y, hh, ww, bb, chunk_size=4, **options), upstream))

    def naive(x):
        hh, ww, bb = _unpack(x, h, w, b)
        return keras.ops.sum(keras.ops.multiply(_naive_per_token(y, hh, ww, bb, **options), upstream))

    x = _pack(h, w, b)
    value, grad = value_and_grad(ours, x)
    expected_value, expected_grad = value_and_grad(naive, x)
    _assert_close(value, expected_value)
    for got, want in zip(_split(grad, h, w, b), _split(expected_grad, h, w, b)):
        _assert_close(got, want)
    per_token = linear_cross_entropy(y, h, w, b, **options)
    assert tuple(per_token.shape) == (N, T)
    _assert_close(to_numpy(per_token), to_numpy(_naive_per_token(y, h, w, b, **options)))


@pytest.mark.parametrize("reduction", REDUCTIONS, ids=str)
@pytest.mark.parametrize("ignore_class", [None, -100])
def test_class_equals_keras_sparse_categorical_crossentropy(reduction, ignore_class, rng):
    """Every reduction, sample weight (per token, per sequence, none) and
    `ignore_class` as Keras' own loss on the logits; gradients too."""
    y, h, w, b = _inputs(rng)
    if ignore_class is not None:
        y[0, 1] = y[2, 4] = ignore_class
    keras_loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=ignore_class,
                                                             reduction=reduction)
    ours = LinearCrossEntropy(ignore_class=ignore_class, reduction=reduction, chunk_size=4)
    weights = rng.uniform(0.0, 2.0, size=(N, T)).astype("float32")
    for sw in (None, weights, weights[:, :1]):
        got = ours(y, (h, w, b), sample_weight=sw)
        # with a mask, Keras merges a (B, 1) weight into the (B, T) mask (Keras' torch backend does it
        # in place and fails: the same weights broadcast give Keras' value there)
        keras_sw = sw if ignore_class is None or sw is None else np.broadcast_to(sw, (N, T))
        want = keras_loss(y, keras.ops.matmul(h, w) + b, sample_weight=keras_sw)
        _assert_close(to_numpy(got), to_numpy(want))
    if reduction in (None, "none"):
        return

    def fused(x):
        hh, ww, bb = _unpack(x, h, w, b)
        return ours(y, (hh, ww, bb), sample_weight=weights)

    def naive(x):
        hh, ww, bb = _unpack(x, h, w, b)
        return keras_loss(y, keras.ops.matmul(hh, ww) + bb, sample_weight=weights)

    x = _pack(h, w, b)
    (v1, g1), (v2, g2) = value_and_grad(fused, x), value_and_grad(naive, x)
    _assert_close(v1, v2)
    _assert_close(g1, g2)


def test_keras_mask_on_hidden_is_honoured(rng):
    y, h, w, b = _inputs(rng)
    mask = rng.uniform(size=(N, T)) > 0.3
    for reduction in ("sum_over_batch_size", "sum", "mean_with_sample_weight"):
        got = LinearCrossEntropy(reduction=reduction)(y, (with_mask(h, mask), w, b))
        want = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=reduction)(
            y, with_mask(to_numpy(keras.ops.matmul(h, w) + b), mask))
        _assert_close(to_numpy(got), to_numpy(want))


@pytest.mark.parametrize("chunk_size", [1, 3, 8, 15, 64, None])
def test_every_chunking_gives_the_same_value_and_gradient(chunk_size, rng):
    y, h, w, b = _inputs(rng)
    x = _pack(h, w, b)

    def fused(x, chunk):
        hh, ww, bb = _unpack(x, h, w, b)
        return LinearCrossEntropy(chunk_size=chunk, z_loss=1e-3)(y, (hh, ww, bb))

    v1, g1 = value_and_grad(lambda x: fused(x, chunk_size), x)
    v2, g2 = value_and_grad(lambda x: fused(x, N * T), x)
    _assert_close(v1, v2, rtol=1e-6)
    _assert_close(g1, g2, rtol=1e-6, atol=1e-7)


def test_without_bias_and_with_a_dict(rng):
    y, h, w, _ = _inputs(rng)
    want = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(y, keras.ops.matmul(h, w))
    _assert_close(to_numpy(LinearCrossEntropy()(y, (h, w))), to_numpy(want))
    _assert_close(to_numpy(LinearCrossEntropy()(y, {"hidden": h, "kernel": w})), to_numpy(want))
    tied = LinearCrossEntropy(transpose_kernel=True)(y, (h, np.ascontiguousarray(w.T)))
    _assert_close(to_numpy(tied), to_numpy(want))


def test_gradient_matches_float64_differences(rng):
    """Central differences of the float64 naive loss, at soft cap and z-loss on."""
    y, h, w, b = _inputs(rng)
    options = {"logit_soft_cap": 2.0, "z_loss": 1e-2, "label_smoothing": 0.1}

    def ours(x):
        hh, ww, bb = _unpack(x, h, w, b)
        return LinearCrossEntropy(chunk_size=4, **options)(y, (hh, ww, bb))

    x = _pack(h, w, b)
    _, grad = value_and_grad(ours, x)
    y64, x64 = y, x.astype("float64")

    def reference(x):
        hh, ww, bb = (v.astype("float64") for v in _split(x, h, w, b))
        z = hh @ ww + bb
        s = 2.0 * np.tanh(z / 2.0)
        lse = np.log(np.exp(s - s.max(-1, keepdims=True)).sum(-1)) + s.max(-1)
        picked = np.take_along_axis(s, y64[..., None], -1)[..., 0]
        return np.mean(lse - 0.9 * picked - 0.1 / V * s.sum(-1) + 1e-2 * lse**2)

    step = 1e-6
    picks = rng.choice(x.size, size=40, replace=False)
    for i in picks:
        e = np.zeros_like(x64)
        e[i] = step
        numeric = (reference(x64 + e) - reference(x64 - e)) / (2 * step)
        assert abs(grad[i] - numeric) <= 1e-5 + 1e-4 * abs(numeric), (i, grad[i], numeric)


@pytest.mark.skipif(BACKEND not in XLA_BACKENDS, reason="XLA compilation is for JAX and TensorFlow")
def test_compiles_with_xla(rng):
    y, h, w, b = _inputs(rng)
    loss = LinearCrossEntropy(ignore_class=0, chunk_size=4, logit_soft_cap=5.0)
    sw = rng.uniform(size=(N, T)).astype("float32")
    compiled = xla_compile(lambda yt, hh, ww, bb, s: loss(yt, (hh, ww, bb), sample_weight=s))
    _assert_close(to_numpy(compiled(y, h, w, b, sw)), to_numpy(loss(y, (h, w, b), sample_weight=sw)))
    per_token = xla_compile(lambda yt, hh, ww: linear_cross_entropy(yt, hh, ww, chunk_size=4))
    _assert_close(to_numpy(per_token(y, h, w)), to_numpy(linear_cross_entropy(y, h, w)))


# ------------------------------------------------------------------ numerics at the edges


@pytest.mark.parametrize("edge", ["logits_1e4", "all_ignored", "zero_weights", "equal_logits"])
def test_finite_value_and_gradient_at_edges(edge, rng):
    y, h, w, b = _inputs(rng)
    sw = np.ones((N, T), "float32")
    if edge == "logits_1e4":
        h = h * 1e4
    elif edge == "all_ignored":
        y[:] = -1
    elif edge == "zero_weights":
        sw[:] = 0.0
    else:
        h[:] = 0.0
        b[:] = 0.0
    x = _pack(h, w, b)
    loss = LinearCrossEntropy(ignore_class=-1, z_loss=1e-4, chunk_size=4)

    def f(x):
        hh, ww, bb = _unpack(x, h, w, b)
        return loss(y, (hh, ww, bb), sample_weight=sw)

    value, grad = value_and_grad(f, x)
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    if edge in ("all_ignored", "zero_weights"):
        assert value == 0.0 and not grad.any()
    if edge == "equal_logits":
        _assert_close(value, np.log(V) + 1e-4 * np.log(V) ** 2)


@pytest.mark.parametrize("half", ["float16", "bfloat16"])
def test_half_precision_inputs_accumulate_in_float32(half, rng):
    y, h, w, b = _inputs(rng)
    h16, w16 = keras.ops.cast(h, half), keras.ops.cast(w, half)
    h32, w32 = to_numpy(keras.ops.cast(h16, "float32")), to_numpy(keras.ops.cast(w16, "float32"))
    got = linear_cross_entropy(y, h16, w16)
    assert keras.backend.standardize_dtype(got.dtype) == "float32"
    want = to_numpy(_naive_per_token(y, h32, w32, None))
    # the logits' matmul runs in the inputs' dtype (as the naive half-precision path's does)
    _assert_close(to_numpy(got), want, rtol=2e-2, atol=2e-2)
    value = LinearCrossEntropy()(y, (h16, w16))
    assert keras.backend.standardize_dtype(value.dtype) == "float32"
    assert keras.backend.standardize_dtype(LinearCrossEntropy(dtype="mixed_float16")(y, (h16, w16)).dtype) == "float16"


# ------------------------------------------------------------------ argmax, config, errors


def test_linear_argmax_is_the_argmax_of_the_logits(rng):
    y, h, w, b = _inputs(rng)
    want = np.argmax(to_numpy(keras.ops.matmul(h, w) + b), axis=-1)
    np.testing.assert_array_equal(to_numpy(linear_argmax(h, w, b, chunk_size=4)), want)
    np.testing.assert_array_equal(to_numpy(linear_argmax(h, np.ascontiguousarray(w.T), b, transpose_kernel=True)),
                                  want)


def test_config_round_trip(rng):
    loss = LinearCrossEntropy(ignore_class=0, label_smoothing=0.1, z_loss=1e-4, logit_soft_cap=30.0, chunk_size=16,
                              transpose_kernel=True, reduction="sum", name="lm")
    config = loss.get_config()
    json.dumps(keras.saving.serialize_keras_object(loss))
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(again) is LinearCrossEntropy and again.get_config() == config
    y, h, w, b = _inputs(rng)
    wt = np.ascontiguousarray(w.T)
    _assert_close(to_numpy(again(y, (h, wt))), to_numpy(loss(y, (h, wt))))


@pytest.mark.parametrize(
    "kwargs, argument",
    [({"chunk_size": 0}, "chunk_size"), ({"logit_soft_cap": 0.0}, "logit_soft_cap"),
     ({"logit_soft_cap": -1.0}, "logit_soft_cap"), ({"label_smoothing": 1.5}, "label_smoothing"),
     ({"z_loss": -1.0}, "z_loss"), ({"ignore_class": 1.5}, "ignore_class"),
     ({"transpose_kernel": "yes"}, "transpose_kernel")],
)
def test_bad_options_are_refused_naming_them(kwargs, argument, rng):
    y, h, w, _ = _inputs(rng)
    with pytest.raises((ValueError, TypeError), match=f"`{argument}`"):
        LinearCrossEntropy(**kwargs)
    with pytest.raises((ValueError, TypeError), match=f"`{argument}`"):
        linear_cross_entropy(y, h, w, **kwargs)


def test_bad_inputs_are_refused_naming_them(rng):
    y, h, w, b = _inputs(rng)
    loss = LinearCrossEntropy(ignore_class=-100)
    bad = y.copy()
    bad[0, 0] = V
    with pytest.raises(ValueError, match=r"`y_true` must hold token ids in \[0, 37\)"):
        loss(bad, (h, w))
    bad[0, 0] = -100  # the ignored id is allowed
    loss(bad, (h, w))
    with pytest.raises(ValueError, match="`hidden` and `kernel` must have the same D"):
        loss(y, (h[..., :-1], w))
    with pytest.raises(ValueError, match="`hidden` and `kernel` must have the same D"):
        LinearCrossEntropy(transpose_kernel=True)(y, (h, w))
    with pytest.raises(ValueError, match="`y_true` must hold one token id per row"):
        loss(y[:, :-1], (h, w))
    with pytest.raises(TypeError, match="`y_true` must hold integer token ids"):
        loss(y.astype("float32"), (h, w))
    with pytest.raises(TypeError, match="`hidden` must be a floating-point"):
        loss(y, (h.astype("int32"), w))
    with pytest.raises(ValueError, match="`bias` must have shape"):
        loss(y, (h, w, b[:-1]))
    with pytest.raises(ValueError, match="`y_pred` must be `\\(hidden, kernel\\)`"):
        loss(y, h)


# ------------------------------------------------------------------ peers, side by side


def test_per_token_values_equal_optax(rng):
    """optax's `softmax_cross_entropy_with_integer_labels` on the logits."""
    optax = pytest.importorskip("optax")
    y, h, w, b = _inputs(rng)
    logits = h.astype("float64") @ w.astype("float64") + b
    want = np.asarray(optax.softmax_cross_entropy_with_integer_labels(logits, y))
    _assert_close(to_numpy(linear_cross_entropy(y, h, w, b, chunk_size=4)), want)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_equals_torch_cross_entropy_as_liger_and_cut_cross_entropy_define_it(reduction, label_smoothing, rng):
    """Liger-Kernel's `LigerFusedLinearCrossEntropyLoss` and Apple's Cut
    Cross-Entropy (Triton, GPU only) are defined as
    `torch.nn.functional.cross_entropy(input @ weight.T + bias, target,
    ignore_index=-100, label_smoothing=..., reduction=...)` on a `(V, D)`
    weight: that reference, side by side, with `transpose_kernel=True`,
    `ignore_class=-100`, and torch's "mean" (over the kept tokens) as Keras'
    "sum_over_batch_size"."""
    torch = pytest.importorskip("torch")
    y, h, w, b = _inputs(rng)
    y[0, :2] = -100
    weight = np.ascontiguousarray(w.T)  # (V, D), as Liger / CCE take it
    want = torch.nn.functional.cross_entropy(
        torch.from_numpy(h.reshape(-1, D)).double() @ torch.from_numpy(weight).double().T + torch.from_numpy(b).double(),
        torch.from_numpy(y.reshape(-1)).long(), ignore_index=-100, label_smoothing=label_smoothing,
        reduction=reduction).numpy()
    keras_reduction = {"mean": "sum_over_batch_size", "sum": "sum", "none": "none"}[reduction]
    got = LinearCrossEntropy(ignore_class=-100, label_smoothing=label_smoothing, transpose_kernel=True,
                             reduction=keras_reduction)(y, (h, weight, b))
    _assert_close(np.reshape(to_numpy(got), np.shape(want)), want)


def test_kernel_and_bias_as_keras_variables(rng):
    """Eagerly, the gradient reaches the variables (TensorFlow's custom
    gradient refuses a variable passed as a tensor)."""
    y, h, w, b = _inputs(rng)
    kernel, bias = keras.Variable(w), keras.Variable(b)
    want = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(y, keras.ops.matmul(h, w) + b)
    _assert_close(to_numpy(LinearCrossEntropy()(y, (h, kernel, bias))), to_numpy(want))
    _assert_close(to_numpy(keras.ops.sum(linear_cross_entropy(y, h, kernel, bias))) / (N * T), to_numpy(want))
    if BACKEND == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            value = LinearCrossEntropy()(y, (h, kernel, bias))
        grads = tape.gradient(value, [kernel.value, bias.value])
        assert all(g is not None and np.all(np.isfinite(g)) for g in grads)


@pytest.mark.parametrize("transpose_kernel", [False, True])
def test_kernel_gradient_accumulated_in_vocabulary_blocks(transpose_kernel, rng, monkeypatch):
    """Blocks of 8 of the 37 vocabulary entries (the last one overlapping
    the one before): the same gradients as the naive path."""
    from keras_lossplus.losses.language import chunks

    monkeypatch.setattr(chunks, "KERNEL_BLOCK_ELEMENTS", 8 * D)
    y, h, w, b = _inputs(rng)
    if transpose_kernel:
        w = np.ascontiguousarray(w.T)

    def fused(x):
        hh, ww, bb = _unpack(x, h, w, b)
        return LinearCrossEntropy(chunk_size=7, transpose_kernel=transpose_kernel)(y, (hh, ww, bb))

    def naive(x):
        hh, ww, bb = _unpack(x, h, w, b)
        return keras.ops.mean(_naive_per_token(y, hh, ww, bb, transpose_kernel=transpose_kernel))

    x = _pack(h, w, b)
    (v1, g1), (v2, g2) = value_and_grad(fused, x), value_and_grad(naive, x)
    _assert_close(v1, v2)
    _assert_close(g1, g2)


def test_kernel_gradient_blocks_that_divide_the_vocabulary(rng, monkeypatch):
    """Blocks of 10 of a 40-entry vocabulary (no overlap): the naive gradients."""
    from keras_lossplus.losses.language import chunks

    monkeypatch.setattr(chunks, "KERNEL_BLOCK_ELEMENTS", 11 * D)  # 11 -> the divisor 10
    y, h, _, b = _inputs(rng)
    w = rng.normal(size=(D, 40)).astype("float32")
    b = rng.normal(size=(40,)).astype("float32")

    def fused(x):
        hh, ww, bb = _unpack(x, h, w, b)
        return LinearCrossEntropy(chunk_size=6)(y, (hh, ww, bb))

    def naive(x):
        hh, ww, bb = _unpack(x, h, w, b)
        return keras.ops.mean(_naive_per_token(y, hh, ww, bb))

    x = _pack(h, w, b)
    (v1, g1), (v2, g2) = value_and_grad(fused, x), value_and_grad(naive, x)
    _assert_close(v1, v2)
    _assert_close(g1, g2)
