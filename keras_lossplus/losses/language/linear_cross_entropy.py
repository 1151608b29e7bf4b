"""Cross-entropy of a linear output layer at large vocabularies, without
the logits: `linear_cross_entropy` and `LinearCrossEntropy`."""

from __future__ import annotations

from typing import Any, Optional

import keras
import numpy as np
from keras import ops

from keras_lossplus import backend as klp_backend
from keras_lossplus import keras_internals
from keras_lossplus.losses.base import REDUCTIONS, LossPlus, register
from keras_lossplus.losses.language import chunks
from keras_lossplus.ops import compute_dtype
from keras_lossplus.losses.options import (
    Options, check_choice, chunk_size as chunk_size_check, flag, number, optional,
)

Tensor = Any


def class_id(name: str, value: Any) -> Optional[int]:
    """An integer token id, or `None` (the check of `ignore_class`)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"Argument `{name}` must be an integer token id or None. Received: {name}={value!r}")
    return int(value)


OPTIONS = Options(
    ignore_class=class_id,
    label_smoothing=number(low=0.0, high=1.0),
    z_loss=number(low=0.0),
    logit_soft_cap=optional(number(low=0.0, low_open=True)),
    chunk_size=chunk_size_check,
    transpose_kernel=flag,
)


def _read(x: Any) -> Tensor:
    """A tensor of `x`; a variable is read (TensorFlow's `convert_to_tensor`
    returns the variable itself, which `tf.custom_gradient` refuses)."""
    x = ops.convert_to_tensor(x)
    return ops.cast(x, keras.backend.standardize_dtype(x.dtype))


def _check_inputs(y_true: Any, hidden: Any, kernel: Any, bias: Any, transpose_kernel: bool,
                  ignore_class: Optional[int]) -> tuple:
    """Tensors of the inputs, their shapes checked; token ids checked eagerly."""
    hidden_dtype = keras.backend.standardize_dtype(hidden.dtype if hasattr(hidden, "dtype") else np.asarray(hidden).dtype)
    if not keras.backend.is_float_dtype(hidden_dtype):
        raise TypeError("Argument `hidden` must be a floating-point tensor (the hidden states). "
                        f"Received: hidden with dtype={hidden_dtype}")
    hidden, kernel = _read(hidden), _read(kernel)
    y_true = ops.convert_to_tensor(y_true)
    if len(kernel.shape) != 2:
        raise ValueError(f"`kernel` must be a matrix, (D, V) (or (V, D) with `transpose_kernel=True`). "
                         f"Received: kernel.shape={tuple(kernel.shape)}")
    dim, vocabulary = chunks._kernel_dims(kernel, transpose_kernel)
    if hidden.shape[-1] is not None and hidden.shape[-1] != dim:
        layout = "(V, D) kernel (transpose_kernel=True)" if transpose_kernel else "(D, V) kernel"
        raise ValueError(f"`hidden` and `kernel` must have the same D: hidden.shape[-1]={hidden.shape[-1]}, and "
                         f"the {layout} has D={dim}. Received: hidden.shape={tuple(hidden.shape)}, "
                         f"kernel.shape={tuple(kernel.shape)}")
    if tuple(y_true.shape) != tuple(hidden.shape[:-1]):
        raise ValueError(f"`y_true` must hold one token id per row of `hidden`: y_true.shape == hidden.shape[:-1]. "
                         f"Received: y_true.shape={tuple(y_true.shape)}, hidden.shape={tuple(hidden.shape)}")
    if "float" in keras.backend.standardize_dtype(y_true.dtype):
        raise TypeError(f"`y_true` must hold integer token ids. Received: y_true.dtype={y_true.dtype}")
    if bias is not None:
        bias = _read(bias)
        if tuple(bias.shape) != (vocabulary,):
            raise ValueError(f"`bias` must have shape (V,) = ({vocabulary},). Received: bias.shape={tuple(bias.shape)}")
    if klp_backend.is_concrete(y_true):
        ids = ops.convert_to_numpy(y_true)
        bad = (ids < 0) | (ids >= vocabulary)
        if ignore_class is not None:
            bad &= ids != ignore_class
        if bad.any():
            raise ValueError(
                f"`y_true` must hold token ids in [0, {vocabulary}) (V={vocabulary})"
                + ("" if ignore_class is None else f" or `ignore_class`={ignore_class}")
                + f". Received {int(bad.sum())} id(s) outside, e.g. {ids[bad][:5].tolist()}."
                + " (Under jit such ids are not checked: they give the loss of the clipped id.)"
            )
    return y_true, hidden, kernel, bias, vocabulary


def _bias_or_zeros(bias: Optional[Tensor], vocabulary: int, dtype: str) -> Tensor:
    return ops.zeros((vocabulary,), dtype) if bias is None else ops.cast(bias, dtype)


def _per_token_op(head: chunks.Head, chunk_size: Optional[int]) -> Any:
    """Per-token losses; the backward pass runs the chunks again with the
    upstream gradients (one more matmul per chunk than the fused sum)."""

    @ops.custom_gradient
    def op(y_true: Tensor, hidden: Tensor, kernel: Tensor, bias: Tensor) -> Any:
        p = chunks.prepare(y_true, hidden, kernel, head, chunk_size)
        losses = ops.reshape(chunks.token_losses(p, kernel, bias, head), ops.shape(y_true))

        def grad(*args: Any, upstream: Any = None) -> tuple:
            g = args[0] if upstream is None else upstream
            coef = chunks.per_chunk(p, ops.reshape(g, (-1,)))
            _, d_hidden, d_kernel, d_bias = chunks.losses_and_gradients(p, kernel, bias, coef, head)
            d_hidden = ops.reshape(d_hidden, ops.shape(hidden))
            return None, ops.cast(d_hidden, hidden.dtype), ops.cast(d_kernel, kernel.dtype), ops.cast(d_bias, bias.dtype)

        return losses, grad

    return op


def _weighted_sum_op(head: chunks.Head, chunk_size: Optional[int]) -> Any:
    """`sum(weights * losses)`, its gradients computed in the same pass as
    the value (no recompute: three matmuls per chunk, like the naive path)."""

    @ops.custom_gradient
    def op(y_true: Tensor, hidden: Tensor, kernel: Tensor, bias: Tensor, weights: Tensor) -> Any:
        p = chunks.prepare(y_true, hidden, kernel, head, chunk_size)
        flat = ops.cast(ops.reshape(weights, (-1,)), p.dtype)
        losses, d_hidden, d_kernel, d_bias = chunks.losses_and_gradients(p, kernel, bias, chunks.per_chunk(p, flat),
                                                                         head)
        total = ops.sum(losses * flat)

        def grad(*args: Any, upstream: Any = None) -> tuple:
            g = ops.cast(args[0] if upstream is None else upstream, p.dtype)
            dh = ops.reshape(d_hidden, ops.shape(hidden)) * g
            dw = ops.reshape(losses, ops.shape(weights)) * g
            return (None, ops.cast(dh, hidden.dtype), ops.cast(d_kernel * g, kernel.dtype),
                    ops.cast(d_bias * g, bias.dtype), ops.cast(dw, weights.dtype))

        return total, grad

    return op


@klp_backend.compiled_on_jax
def _token_values(y_true: Tensor, hidden: Tensor, kernel: Tensor, bias: Tensor, head: chunks.Head,
                  chunk_size: Optional[int]) -> Tensor:
    return _per_token_op(head, chunk_size)(y_true, hidden, kernel, bias)


@klp_backend.compiled_on_jax
def _weighted_total(y_true: Tensor, hidden: Tensor, kernel: Tensor, bias: Tensor, weights: Tensor,
                    head: chunks.Head, chunk_size: Optional[int]) -> Tensor:
    return _weighted_sum_op(head, chunk_size)(y_true, hidden, kernel, bias, weights)


@OPTIONS
def linear_cross_entropy(
    y_true: Any,
    hidden: Any,
    kernel: Any,
    bias: Any = None,
    *,
    ignore_class: Optional[int] = None,
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    logit_soft_cap: Optional[float] = None,
    chunk_size: Optional[int] = None,
    transpose_kernel: bool = False,
) -> Tensor:
    """Per-token cross-entropy of `logits = hidden @ kernel (+ bias)`,
    computed over token chunks so that the `(tokens, V)` logits are never
    built.

    The value is Keras'
    `sparse_categorical_crossentropy(y_true, hidden @ kernel + bias,
    from_logits=True)` with

        loss = lse(s) - (1 - ls) s_y - (ls / V) sum_j s_j + z_loss * lse(s)^2
        s = logit_soft_cap * tanh(logits / logit_soft_cap)   (s = logits without a cap)

    where `lse` is the log-sum-exp over the vocabulary and `ls` the label
    smoothing (Keras' categorical cross-entropy's: the one-hot target
    becomes `(1 - ls) onehot + ls / V`). Working memory is
    `O(chunk_size * V)`: each chunk's logits are built, used and dropped;
    the gradient (a written-out backward pass over the same chunks) never
    builds more.

    Examples:
        >>> import numpy as np
        >>> h = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], "float32")
        >>> w = np.array([[1.0, -1.0, 0.0], [0.0, 1.0, 2.0]], "float32")  # (D, V) = (2, 3)
        >>> losses = linear_cross_entropy(np.array([0, 2, 1]), h, w)
        >>> [round(float(v), 4) for v in keras.ops.convert_to_numpy(losses)]
        [0.4076, 0.4076, 2.4076]

    Args:
        y_true: Integer token ids `(...)`, in `[0, V)` or `ignore_class`.
        hidden: Hidden states `(..., D)` (the inputs of the output layer).
        kernel: The output layer's `(D, V)` kernel (a `Dense` kernel), or a
            `(V, D)` matrix (a tied embedding) with `transpose_kernel=True`.
        bias: Optional `(V,)` bias.
        ignore_class: A token id whose tokens get loss 0 (and gradient 0),
            as in `keras.losses.SparseCategoricalCrossentropy`.
        label_smoothing: In `[0, 1]`.
        z_loss: Factor of `lse(logits)^2` added per token (PaLM), `>= 0`.
        logit_soft_cap: `> 0`, or `None`: logits become
            `cap * tanh(logits / cap)` first (Gemma 2).
        chunk_size: Tokens per chunk, or `None`: about 2^25 logits per
            chunk (1024 tokens at V = 32k, 128 at 256k).
        transpose_kernel: Whether `kernel` is `(V, D)`.

    Returns:
        Per-token losses of the shape of `y_true`, float32 for float16 /
        bfloat16 inputs; 0 at `ignore_class`.

    Reference:
        Wijmans et al., "Cut Your Losses in Large-Vocabulary Language
        Models", 2024 (https://arxiv.org/abs/2411.09009); Hsu et al.,
        "Liger Kernel: Efficient Triton Kernels for LLM Training", 2024.
    """
    y_true, hidden, kernel, bias, vocabulary = _check_inputs(y_true, hidden, kernel, bias, transpose_kernel,
                                                             ignore_class)
    head = chunks.Head(ignore_class, label_smoothing, z_loss, logit_soft_cap, transpose_kernel)
    dtype = compute_dtype(hidden.dtype)
    return _token_values(y_true, hidden, kernel, _bias_or_zeros(bias, vocabulary, dtype), head, chunk_size)


def linear_argmax(hidden: Any, kernel: Any, bias: Any = None, *, chunk_size: Optional[int] = None,
                  transpose_kernel: bool = False) -> Tensor:
    """The highest-scoring token id of `hidden @ kernel (+ bias)` per row,
    `hidden.shape[:-1]`, int32, computed over token chunks (no logits
    tensor; no gradient). A soft cap (monotonic) does not change it.

    Examples:
        >>> import numpy as np
        >>> h = np.array([[1.0, 0.0], [0.0, 1.0]], "float32")
        >>> w = np.array([[1.0, -1.0, 0.0], [0.0, 1.0, 2.0]], "float32")
        >>> keras.ops.convert_to_numpy(linear_argmax(h, w)).tolist()
        [0, 2]
    """
    transpose_kernel = flag("transpose_kernel", transpose_kernel)
    chunk_size = chunk_size_check("chunk_size", chunk_size)
    hidden = ops.convert_to_tensor(hidden)
    ids = ops.zeros(ops.shape(hidden)[:-1], "int32")
    _, hidden, kernel, bias, vocabulary = _check_inputs(ids, hidden, kernel, bias, transpose_kernel, None)
    head = chunks.Head(None, 0.0, 0.0, None, transpose_kernel)
    p = chunks.prepare(ids, ops.stop_gradient(hidden), ops.stop_gradient(kernel), head, chunk_size)
    b = _bias_or_zeros(None if bias is None else ops.stop_gradient(bias), vocabulary, p.dtype)
    return ops.reshape(ops.cast(chunks.argmax_ids(p, ops.stop_gradient(kernel), b, head), "int32"), ops.shape(ids))


def _unpack(y_pred: Any) -> tuple:
    if isinstance(y_pred, dict):
        unknown = set(y_pred) - {"hidden", "kernel", "bias"}
        if unknown or not {"hidden", "kernel"} <= set(y_pred):
            raise ValueError(f"`y_pred` as a dict takes the keys 'hidden', 'kernel' and optionally 'bias'. "
                             f"Received keys: {sorted(y_pred)}")
        return y_pred["hidden"], y_pred["kernel"], y_pred.get("bias")
    if isinstance(y_pred, (tuple, list)) and len(y_pred) in (2, 3):
        return tuple(y_pred) + (None,) * (3 - len(y_pred))
    raise ValueError("`y_pred` must be `(hidden, kernel)` or `(hidden, kernel, bias)` (or a dict with those keys): "
                     f"the loss builds the logits itself. Received: {type(y_pred).__name__}")


def _per_token(sample_weight: Any, rank: int, dtype: str) -> Tensor:
    """`sample_weight` brought to the tokens' rank as Keras does (a trailing
    unit axis dropped, `(B,)` -> `(B, 1)`), not yet broadcast."""
    sw = ops.cast(ops.convert_to_tensor(sample_weight), dtype)
    while len(sw.shape) > rank and sw.shape[-1] == 1:
        sw = ops.squeeze(sw, -1)
    while len(sw.shape) < rank:
        sw = ops.expand_dims(sw, -1)
    return sw


def token_weights(y_true: Any, sample_weight: Any = None, ignore_class: Optional[int] = None,
                  dtype: str = "float32") -> Tensor:
    """Each token's weight, the shape of `y_true`: `sample_weight` (per
    token, or per sequence) times 0 at `ignore_class` (a plain weighted mean
    over tokens; the metrics and `FusedCausalLM`'s perplexity use it).

    Examples:
        >>> import numpy as np
        >>> w = token_weights(np.array([[1, 0, 2]]), np.array([2.0]), ignore_class=0)
        >>> keras.ops.convert_to_numpy(w).tolist()
        [[2.0, 0.0, 2.0]]
    """
    y_true = ops.convert_to_tensor(y_true)
    w = ops.ones(ops.shape(y_true), dtype)
    if ignore_class is not None:
        w = w * ops.cast(ops.not_equal(y_true, ignore_class), dtype)
    if sample_weight is not None:
        w = w * _per_token(sample_weight, len(y_true.shape), dtype)
    return w


def keras_token_weights(y_true: Tensor, mask: Optional[Tensor], sample_weight: Any, reduction: str,
                        dtype: str) -> tuple:
    """The per-token weights `c` and divisor with which Keras'
    `reduce_weighted_values` reduces per-token values `v` to
    `sum(c * v) / divisor` (`keras/src/losses/loss.py`, Keras 3.10-3.15):
    the mask merged into `sample_weight` (rescaled by all / valid under the
    mean reductions), `sample_weight` broadcast to the tokens. Under
    `tf.distribute` the counts are the global batch's, so that the mean is
    over the global batch's tokens as on one device (Keras' own loss
    averages the replicas' means there, which differs when the replicas
    keep different numbers of tokens)."""
    shape = ops.shape(y_true)
    # the global batch's counts under tf.distribute (each replica's sum is then
    # its share of the global mean: the replicas' gradients add up to it)
    count = klp_backend.replica_sum(ops.cast(ops.prod(ops.convert_to_tensor(shape, "int32")), dtype))
    weights = None
    if mask is not None:
        mask = ops.cast(mask, dtype)
        if reduction in ("mean", "sum_over_batch_size"):
            mask = mask * ops.divide_no_nan(count, klp_backend.replica_sum(ops.sum(mask)))
        weights = mask
    if sample_weight is not None:
        sw = _per_token(sample_weight, len(y_true.shape), dtype)
        weights = sw if weights is None else weights * sw
    full = ops.ones(shape, dtype) if weights is None else ops.broadcast_to(weights, shape)
    if reduction == "sum":
        divisor = ops.ones((), dtype)
    elif reduction == "mean_with_sample_weight" and weights is not None:
        # as Keras: a per-sequence weight (B, 1) counts once per sequence
        divisor = klp_backend.replica_sum(ops.sum(weights))
    else:
        divisor = count
    return full, divisor


def cross_entropy_from_logits(y_true: Any, logits: Any, ignore_class: Optional[int] = None,
                              label_smoothing: float = 0.0, z_loss: float = 0.0) -> Tensor:
    """Per-token losses of `linear_cross_entropy`'s formula on logits that
    exist anyway (evaluation), in float32; 0 at `ignore_class`."""
    s = ops.cast(logits, compute_dtype(logits.dtype))
    y_true = ops.cast(ops.convert_to_tensor(y_true), "int32")
    labels = y_true if ignore_class is None else ops.where(ops.equal(y_true, ignore_class), 0, y_true)
    loss, _, _ = chunks.loss_terms(s, labels, chunks.Head(ignore_class, label_smoothing, z_loss, None, False))
    return loss if ignore_class is None else loss * ops.cast(ops.not_equal(y_true, ignore_class), loss.dtype)


@register
class LinearCrossEntropy(LossPlus):
    """Cross-entropy of a linear output layer without its logits: Keras'
    `SparseCategoricalCrossentropy(from_logits=True)` on
    `hidden @ kernel (+ bias)`, computed over token chunks with the
    gradients written out in the same pass (three matmuls per chunk, as many
    as the naive path), so that no `(tokens, V)` tensor is alive.

    Called as `loss(y_true, (hidden, kernel), sample_weight)` or
    `loss(y_true, (hidden, kernel, bias), ...)`: `y_true` integer token ids
    `(...)`, `hidden` `(..., D)`, `kernel` `(D, V)` (or `(V, D)` with
    `transpose_kernel=True`: a tied embedding matrix). Every `reduction`,
    `sample_weight` (a padding mask is one) and `ignore_class` act as in
    Keras' `SparseCategoricalCrossentropy`: ignored tokens are masked out and
    the mean reductions average over the others. In `fit`, use it through
    `keras_lossplus.layers.LanguageModelHead`, which adds it from its
    kernel; in a custom `compute_loss` or train step, call it directly.

    Examples:
        >>> import numpy as np
        >>> h = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], "float32")
        >>> w = np.array([[1.0, -1.0, 0.0], [0.0, 1.0, 2.0]], "float32")
        >>> loss = LinearCrossEntropy()
        >>> round(float(loss(np.array([0, 2, 1]), (h, w))), 4)
        1.0743

    Args:
        ignore_class: As for `linear_cross_entropy`.
        label_smoothing: As for `linear_cross_entropy`.
        z_loss: As for `linear_cross_entropy`.
        logit_soft_cap: As for `linear_cross_entropy`.
        chunk_size: As for `linear_cross_entropy`.
        transpose_kernel: As for `linear_cross_entropy`.
        reduction: Keras' reduction.
        name: Name of the loss.
        dtype: Keras' loss dtype.

    Reference:
        Wijmans et al., "Cut Your Losses in Large-Vocabulary Language
        Models", 2024 (https://arxiv.org/abs/2411.09009).
    """

    fn = staticmethod(linear_cross_entropy)

    def __init__(
        self,
        ignore_class: Optional[int] = None,
        label_smoothing: float = 0.0,
        z_loss: float = 0.0,
        logit_soft_cap: Optional[float] = None,
        chunk_size: Optional[int] = None,
        transpose_kernel: bool = False,
        reduction: Optional[str] = "sum_over_batch_size",
        name: str = "linear_cross_entropy",
        dtype: Any = None,
    ) -> None:
        check_choice("reduction", reduction, REDUCTIONS)
        super().__init__(reduction=reduction, name=name, dtype=dtype, ignore_class=ignore_class,
                         label_smoothing=label_smoothing, z_loss=z_loss, logit_soft_cap=logit_soft_cap,
                         chunk_size=chunk_size, transpose_kernel=transpose_kernel)

    def __call__(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> Tensor:
        hidden, kernel, bias = _unpack(y_pred)
        in_mask = keras_internals.get_keras_mask(hidden)
        o = self._options
        y_true, hidden, kernel, bias, vocabulary = _check_inputs(
            y_true, hidden, kernel, bias, o["transpose_kernel"], o["ignore_class"])
        compute = compute_dtype(hidden.dtype)
        mask = in_mask
        if o["ignore_class"] is not None:
            valid = ops.not_equal(y_true, o["ignore_class"])
            mask = valid if mask is None else ops.logical_and(ops.cast(mask, "bool"), valid)
        reduction = self.reduction
        head = chunks.Head(o["ignore_class"], o["label_smoothing"], o["z_loss"], o["logit_soft_cap"],
                           o["transpose_kernel"])
        bias = _bias_or_zeros(bias, vocabulary, compute)
        if reduction in (None, "none"):
            values = _token_values(y_true, hidden, kernel, bias, head, o["chunk_size"])
            weights, _ = keras_token_weights(y_true, mask, sample_weight, "sum", compute)
            return ops.cast(values * weights, self.dtype)
        weights, divisor = keras_token_weights(y_true, mask, sample_weight, reduction, compute)
        total = _weighted_total(y_true, hidden, kernel, bias, weights, head, o["chunk_size"])
        if reduction != "sum":
            total = ops.divide_no_nan(total, divisor)
        return ops.cast(total, self.dtype)

    def call(self, y_true: Any, y_pred: Any) -> Tensor:
        hidden, kernel, bias = _unpack(y_pred)
        return self._fn(y_true, hidden, kernel, bias, **self._options)
