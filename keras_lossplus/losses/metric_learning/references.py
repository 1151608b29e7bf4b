"""Anchors against a larger set of references: the hook of
`keras_lossplus.layers.CrossBatchMemory`.

Inside `memory_references(anchors, valid)` the in-batch losses read their
`(N, D)` embeddings as `anchors` anchors (the first rows: the current batch)
against all `N` rows as references (the batch and the memory), and a
reference column whose `valid` entry is False (an empty memory slot) is
nobody's positive, negative or denominator term. Outside it they run as
usual. `anchors` is a Python int (or a scalar tensor when the batch size is
not static); `valid` is a `(N,)` boolean tensor.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Any, Iterator, Optional

from keras import ops

Tensor = Any

_ACTIVE: contextvars.ContextVar = contextvars.ContextVar("keras_lossplus_references", default=None)


@contextlib.contextmanager
def memory_references(anchors: Any, valid: Tensor) -> Iterator[None]:
    """Run the in-batch losses as `anchors` anchors against every row, the
    rows whose `valid` is False left out as references."""
    token = _ACTIVE.set((anchors, valid))
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def active() -> bool:
    """Whether the losses run inside `memory_references`."""
    return _ACTIVE.get() is not None


def anchor_blocks(chunk_size: Optional[int]) -> Optional[list]:
    """The `(start, stop)` blocks of the anchors inside `memory_references`,
    `chunk_size` anchors each when given; None outside it."""
    active = _ACTIVE.get()
    if active is None:
        return None
    anchors = active[0]
    if chunk_size is None or not isinstance(anchors, int) or chunk_size >= anchors:
        return [(0, anchors)]
    return [(s, min(s + chunk_size, anchors)) for s in range(0, anchors, chunk_size)]


def valid_columns(mask: Tensor) -> Tensor:
    """A `(c, N)` anchor-reference mask with the invalid references removed
    (unchanged outside `memory_references`)."""
    active = _ACTIVE.get()
    return mask if active is None else ops.logical_and(mask, ops.expand_dims(active[1], 0))
