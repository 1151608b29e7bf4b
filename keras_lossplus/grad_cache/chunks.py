"""Cutting a batch of items into equal chunks and putting the chunks' outputs
back together, in `keras.ops` (shapes static under `jit`; the batch size may
be known only when the step runs on TensorFlow)."""

from __future__ import annotations

from typing import Any, Tuple

from keras import ops


def effective_chunk_size(total: Any, chunk_size: int) -> int:
    """`chunk_size`, or the batch size when that is known and smaller (one
    chunk then holds the whole batch: no padding, same memory)."""
    return min(chunk_size, total) if isinstance(total, int) and total > 0 else chunk_size


def to_chunks(items: Any, chunk_size: int) -> Tuple[Any, Any]:
    """`(chunks, total)`: `items` `(T, *item)` zero-padded to `K * c` rows
    (`K = ceil(T / c)`, `c = effective_chunk_size(T, chunk_size)`) and
    reshaped to `(K, c, *item)`; `total` is `T`.

    Examples:
        >>> chunks, total = to_chunks(ops.reshape(ops.arange(5.0), (5, 1)), 2)
        >>> tuple(chunks.shape), total
        ((3, 2, 1), 5)
        >>> ops.convert_to_numpy(chunks[2, :, 0]).tolist()  # the last row is padding
        [4.0, 0.0]
    """
    total = ops.shape(items)[0]
    size = effective_chunk_size(total, chunk_size)
    item_shape = tuple(items.shape[1:])
    missing = (-total) % size
    if not isinstance(missing, int) or missing:
        items = ops.pad(items, [[0, missing]] + [[0, 0]] * len(item_shape))
    return ops.reshape(items, (-1, size) + item_shape), total


def from_chunks(outputs: Any, total: Any) -> Any:
    """The first `total` rows of the chunks' outputs `(K, c, *out)`, as
    `(total, *out)` (the padding dropped)."""
    flat = ops.reshape(outputs, (-1,) + tuple(outputs.shape[2:]))
    return flat if isinstance(total, int) and flat.shape[0] == total else flat[:total]


def num_chunks_weight(chunks: Any) -> Any:
    """`1 / K` for `K` chunks (a float when `K` is static)."""
    count = ops.shape(chunks)[0]
    return 1.0 / count if isinstance(count, int) else ops.divide(1.0, ops.cast(count, "float32"))
