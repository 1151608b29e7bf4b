"""A per-thread CPU scratch space for the eager torch kernels' temporaries
(`torch_mining.py`, `torch_triplet.py`), and float 0 / 1 comparisons into it.

On this CPU path page faults on fresh memory cost more than the arithmetic
on it, and torch's comparisons into `bool` tensors (and `masked_fill` /
`where` on them) run 5-20x slower than float arithmetic of the same size
(torch 2.13): the kernels compare into float32 0 / 1 tensors kept here.
"""

from __future__ import annotations

import math
import threading
from typing import Any

import torch

Tensor = Any

SCRATCH_ELEMENTS = 1 << 21
"""The largest buffer `Scratch` keeps (the miners' `(rows, g, B)` comparison: 8 MiB of float32)."""
_SCRATCH_VIEWS = 256
"""The most views `Scratch` keeps (one per name, dtype and shape)."""


class Scratch(threading.local):
    """Per-thread CPU buffers, one per name, grown to the largest request up
    to `SCRATCH_ELEMENTS` entries and reused (a view of the front, itself
    kept per shape; about 20 MiB in all); larger requests (a miner called on
    a whole large batch) and other devices (whose allocators cache already)
    get fresh tensors. Only temporaries of one kernel call come from here,
    never a tensor that outlives the call."""

    def __init__(self) -> None:
        self.buffers: dict = {}
        self.views: dict = {}

    def _kept(self, key: tuple, make: Any) -> Tensor:
        view = self.views.get(key)
        if view is None:
            view = self.views[key] = make()
        return view

    def arange(self, n: int, device: Any) -> Tensor:
        """`(1, n)` int64 column indices 0 .. n - 1 (kept)."""
        return self._kept(("arange", torch.int64, (1, n), device),
                          lambda: torch.arange(n, device=device, dtype=torch.int64)[None, :])

    def zero(self, dtype: Any, device: Any) -> Tensor:
        """A 0-d zero of `dtype` (kept; never written to)."""
        return self._kept(("zero", dtype, (), device), lambda: torch.zeros((), dtype=dtype, device=device))

    def get(self, name: str, shape: tuple, dtype: Any, device: Any) -> Tensor:
        key = (name, dtype, tuple(shape), device)
        view = self.views.get(key)
        if view is not None:
            return view
        numel = math.prod(int(size) for size in shape)
        if torch.device(device).type != "cpu" or numel > SCRATCH_ELEMENTS:
            return torch.empty(shape, dtype=dtype, device=device)
        buffer = self.buffers.get((name, dtype))
        if buffer is None or buffer.numel() < numel:
            buffer = self.buffers[(name, dtype)] = torch.empty(numel, dtype=dtype)
            self.views = {k: v for k, v in self.views.items() if k[:2] != (name, dtype)}  # of the old buffer
        if len(self.views) >= _SCRATCH_VIEWS:
            self.views.clear()
        view = self.views[key] = buffer[:numel].view(shape)
        return view


SCRATCH = Scratch()


def greater(left: Tensor, right: Any, name: str, or_equal: bool = False) -> Tensor:
    """`left > right` (`left >= right` with `or_equal`) as float32 0 / 1, in
    scratch space; `right` is a number or a tensor of `left`'s rank, the two
    broadcast."""
    shape = left.shape if isinstance(right, float) else tuple(max(x, y) for x, y in zip(left.shape, right.shape))
    return (torch.ge if or_equal else torch.gt)(left, right, out=SCRATCH.get(name, shape, torch.float32, left.device))


def as_float(mask: Tensor, name: str, dtype: Any) -> Tensor:
    """A `bool` mask as 0 / 1 of `dtype` (scratch space)."""
    return SCRATCH.get(name, mask.shape, dtype, mask.device).copy_(mask.view(torch.uint8))
