"""The token-chunk kernels of the linear cross-entropy: one pass over the
tokens in chunks of `chunk` rows, each chunk's `(chunk, V)` logits built,
used and dropped before the next, so that no `(tokens, V)` tensor is alive.

Per chunk, in the compute dtype (float32 for float16 / bfloat16 inputs):

    z = h @ W + b                       (chunk, V)
    s = cap * tanh(z / cap)             (the soft cap; s = z without one)
    lse = logsumexp(s)
    loss = lse - (1 - ls) s_y - (ls / V) sum_j s_j + z_loss * lse^2
    dloss/ds = softmax(s) (1 + 2 z_loss lse) - (1 - ls) onehot(y) - ls / V
    dloss/dz = dloss/ds * (1 - tanh^2(z / cap))

and with `G = coef * dloss/dz` (`coef` the token's weight or upstream
gradient, 0 at ignored and padding tokens) the gradients are
`dh = G W^T`, `dW += h^T G`, `db += sum(G)`: three matmuls per chunk, as
many as the naive path's forward and backward.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple, Optional

from keras import ops

from keras_lossplus import backend as klp_backend
from keras_lossplus.ops import compute_dtype

Tensor = Any

# the kernel gradient is accumulated this many entries at a time (16 MiB in
# float32): a chunk's `h^T G` is never built whole (D x V, 2.3 GiB for
# Gemma-2-2B's head)
KERNEL_BLOCK_ELEMENTS = 2**22

# the default chunk holds about this many logits (128 MiB in float32): a
# chunk of 1024 tokens at V = 32k, 256 at 128k, 128 at Gemma's 256k
DEFAULT_CHUNK_ELEMENTS = 2**25


class Head(NamedTuple):
    """The static options of one call."""

    ignore_class: Optional[int]
    label_smoothing: float
    z_loss: float
    logit_soft_cap: Optional[float]
    transpose_kernel: bool


def chunk_rows(num_tokens: Any, vocabulary: int, chunk_size: Optional[int]) -> int:
    """The number of tokens per chunk: `chunk_size`, or the power of two
    holding about `DEFAULT_CHUNK_ELEMENTS` logits; never more than the
    tokens (rounded up to a multiple of 8) when their number is static."""
    if chunk_size is None:
        chunk_size = 2 ** max(3, int(math.log2(max(1, DEFAULT_CHUNK_ELEMENTS // max(1, vocabulary)))))
    if isinstance(num_tokens, int):
        chunk_size = min(chunk_size, max(8, -(-num_tokens // 8) * 8))
    return int(chunk_size)


def _kernel_dims(kernel: Tensor, transpose: bool) -> tuple:
    """`(D, V)` of a `(D, V)` kernel, or of a `(V, D)` one with `transpose`."""
    d, v = kernel.shape
    return (v, d) if transpose else (d, v)


def _matmul_kernel(x: Tensor, kernel: Tensor, transpose: bool) -> Tensor:
    """`x @ W`, `W` the `(D, V)` kernel (`x @ kernel^T` for a `(V, D)` one)."""
    return ops.matmul(x, ops.transpose(kernel) if transpose else kernel)


def _matmul_kernel_t(g: Tensor, kernel: Tensor, transpose: bool) -> Tensor:
    """`g @ W^T`: the gradient with respect to the hidden states."""
    return ops.matmul(g, kernel if transpose else ops.transpose(kernel))


def _capped(z: Tensor, cap: Optional[float]) -> tuple:
    """The soft-capped logits and `ds/dz` (`None` without a cap)."""
    if cap is None:
        return z, None
    t = ops.tanh(z / cap)
    return cap * t, 1.0 - ops.square(t)


def _chunk_logits(h: Tensor, kernel: Tensor, bias: Tensor, head: Head, dtype: str) -> tuple:
    z = ops.cast(_matmul_kernel(h, kernel, head.transpose_kernel), dtype) + bias
    return _capped(z, head.logit_soft_cap)


def loss_terms(s: Tensor, labels: Tensor, head: Head) -> tuple:
    """Per-token loss and `(lse, onehot)` for its gradient."""
    vocabulary = s.shape[-1]
    lse = ops.logsumexp(s, axis=-1)
    onehot = ops.one_hot(labels, vocabulary, dtype=s.dtype)
    picked = ops.sum(s * onehot, axis=-1)
    loss = lse - (1.0 - head.label_smoothing) * picked
    if head.label_smoothing:
        loss = loss - head.label_smoothing / vocabulary * ops.sum(s, axis=-1)
    if head.z_loss:
        loss = loss + head.z_loss * ops.square(lse)
    return loss, lse, onehot


def _dlogits(s: Tensor, lse: Tensor, onehot: Tensor, slope: Optional[Tensor], coef: Tensor, head: Head) -> Tensor:
    """`coef * dloss/dz` for one chunk, `(chunk, V)`."""
    vocabulary = s.shape[-1]
    scale = coef if not head.z_loss else coef * (1.0 + 2.0 * head.z_loss * lse)
    g = ops.exp(s - ops.expand_dims(lse, -1)) * ops.expand_dims(scale, -1)
    g = g - ops.expand_dims(coef * (1.0 - head.label_smoothing), -1) * onehot
    if head.label_smoothing:
        g = g - ops.expand_dims(coef * (head.label_smoothing / vocabulary), -1)
    return g if slope is None else g * slope


class Prepared(NamedTuple):
    """The padded inputs of the chunk loop, laid out `(chunk, steps, ...)`:
    chunk `i` holds the rows `a * steps + i` (`a < chunk`), a stride
    through the whole batch rather than a block of it, so that when the
    batch axis is sharded (data parallelism) every chunk spans every shard
    and XLA need not gather the hidden states onto each device."""

    hidden: Tensor  # (chunk, steps, D)
    labels: Tensor  # (chunk, steps) int32, ignored / padding tokens 0
    valid: Tensor  # (chunk, steps) compute dtype, 0 at ignored and padding tokens
    steps: Any
    chunk: int
    dtype: str
    count: Any  # the number of tokens, before padding


def _laid_out(x: Tensor, pad: Any, chunk: int, steps: Any) -> Tensor:
    """A flat `(n, ...)` tensor padded to `chunk * steps` rows, as `(chunk, steps, ...)`."""
    if not isinstance(pad, int) or pad:
        x = ops.pad(x, [[0, pad]] + [[0, 0]] * (len(x.shape) - 1))
    return ops.reshape(x, (chunk, steps) + tuple(x.shape[1:]))


def prepare(y_true: Tensor, hidden: Tensor, kernel: Tensor, head: Head, chunk_size: Optional[int]) -> Prepared:
    """Flatten the tokens, pad them to whole chunks, mask the ignored ones."""
    dim, vocabulary = _kernel_dims(kernel, head.transpose_kernel)
    h = ops.reshape(hidden, (-1, dim))
    labels = ops.reshape(ops.cast(y_true, "int32"), (-1,))
    n = ops.shape(h)[0]
    chunk = chunk_rows(n, vocabulary, chunk_size)
    steps = (n + chunk - 1) // chunk
    pad = steps * chunk - n
    dtype = compute_dtype(hidden.dtype)
    valid = ops.ones_like(labels, dtype=dtype)
    if head.ignore_class is not None:
        valid = ops.cast(ops.not_equal(labels, head.ignore_class), dtype)
        labels = ops.where(ops.not_equal(labels, head.ignore_class), labels, 0)
    return Prepared(_laid_out(h, pad, chunk, steps), _laid_out(labels, pad, chunk, steps),
                    _laid_out(valid, pad, chunk, steps), steps, chunk, dtype, n)


def per_chunk(p: Prepared, values: Tensor) -> Tensor:
    """Per-token values `(n,)` in the loop's layout `(chunk, steps)` (0 at padding)."""
    return _laid_out(ops.cast(values, p.dtype), p.steps * p.chunk - p.count, p.chunk, p.steps)


def per_token(p: Prepared, stacked: Tensor) -> Tensor:
    """The loop's stacked outputs `(steps, chunk, ...)` back in token order, `(n, ...)`."""
    rest = tuple(stacked.shape[2:])
    order = (1, 0) + tuple(range(2, 2 + len(rest)))
    return ops.reshape(ops.transpose(stacked, order), (-1,) + rest)[: p.count]


def _rows(x: Tensor, i: Any, chunk: int) -> Tensor:
    """Chunk `i` of a `(chunk, steps, ...)` tensor: `(chunk, ...)`."""
    start = [0, i] + [0] * (len(x.shape) - 2)
    return ops.squeeze(ops.slice(x, start, [chunk, 1] + list(x.shape[2:])), 1)


def token_losses(p: Prepared, kernel: Tensor, bias: Tensor, head: Head) -> Tensor:
    """Per-token losses `(n,)`, 0 at ignored tokens (forward only)."""

    def body(i: Any, acc: Any) -> tuple:
        s, _ = _chunk_logits(_rows(p.hidden, i, p.chunk), kernel, bias, head, p.dtype)
        loss, _, _ = loss_terms(s, _rows(p.labels, i, p.chunk), head)
        return acc, (loss * _rows(p.valid, i, p.chunk),)

    _, (losses,) = klp_backend.map_chunks(body, p.steps, (), (ops.zeros((p.steps, p.chunk), p.dtype),))
    return per_token(p, losses)


def losses_and_gradients(p: Prepared, kernel: Tensor, bias: Tensor, coef: Tensor, head: Head) -> tuple:
    """One pass: per-token losses `(n,)` and the gradients of
    `sum(coef * losses)` (`coef` in the loop's layout, `per_chunk`) with
    respect to the hidden states `(n, D)`, the kernel and the bias (`dh` in
    the compute dtype, `dW` and `db` accumulated in it)."""
    dim, vocabulary = _kernel_dims(kernel, head.transpose_kernel)
    dtype = p.dtype
    mm = kernel.dtype
    block = max(1, KERNEL_BLOCK_ELEMENTS // max(1, dim))

    def body(i: Any, acc: tuple) -> tuple:
        d_kernel, d_bias = acc
        h = _rows(p.hidden, i, p.chunk)
        labels, valid = _rows(p.labels, i, p.chunk), _rows(p.valid, i, p.chunk)
        weights = _rows(coef, i, p.chunk) * valid
        own = klp_backend.chunk_loss_and_logit_grad(h, kernel, bias, labels, weights, head.transpose_kernel,
                                                    head.label_smoothing, head.z_loss, head.logit_soft_cap, dtype)
        if own is not None:
            loss, g = own
        else:
            s, slope = _chunk_logits(h, kernel, bias, head, dtype)
            loss, lse, onehot = loss_terms(s, labels, head)
            g = _dlogits(s, lse, onehot, slope, weights, head)
        d_hidden = _matmul_kernel_t(ops.cast(g, mm), kernel, head.transpose_kernel)
        h32 = ops.cast(h, dtype)
        if head.transpose_kernel:
            d_kernel = klp_backend.add_matmul(d_kernel, ops.transpose(g), h32, 0, block)
        else:
            d_kernel = klp_backend.add_matmul(d_kernel, ops.transpose(h32), g, 1, block)
        return (d_kernel, d_bias + ops.sum(g, axis=0)), (loss * valid, d_hidden)

    kernel_shape = (vocabulary, dim) if head.transpose_kernel else (dim, vocabulary)
    init = (ops.zeros(kernel_shape, dtype), ops.zeros((vocabulary,), dtype))
    buffers = (ops.zeros((p.steps, p.chunk), dtype), ops.zeros((p.steps, p.chunk, dim), dtype))
    (d_kernel, d_bias), (losses, d_hidden) = klp_backend.map_chunks(body, p.steps, init, buffers)
    return per_token(p, losses), per_token(p, d_hidden), d_kernel, d_bias


def argmax_ids(p: Prepared, kernel: Tensor, bias: Tensor, head: Head) -> Tensor:
    """The highest-scoring token of each row `(n,)`, int32."""

    def body(i: Any, acc: Any) -> tuple:
        z = _matmul_kernel(_rows(p.hidden, i, p.chunk), kernel, head.transpose_kernel)
        return acc, (ops.argmax(ops.cast(z, p.dtype) + bias, axis=-1),)

    _, (ids,) = klp_backend.map_chunks(body, p.steps, (), (ops.zeros((p.steps, p.chunk), "int32"),))
    return per_token(p, ids)
