"""Eager PyTorch kernels of the built-in triplet miners (semi-hard, batch-all).

The backend-neutral miners (`losses/metric_learning/miners.py`) loop over the
anchors' k-th positives, with a dozen `B x B` passes per step; eager torch
pays for each pass, for the Python around it and, on the CPU, for the fresh
memory of every temporary (page faults cost more than the arithmetic). These
kernels give the same `(value, count, coef)` from a few passes in all:

* the positives' columns come from one `nonzero` of the positive mask, as a
  `(c, g)` slot matrix (`g` the most positives an anchor has; in a P x K
  batch the `nonzero` columns are that matrix already);
* a comparison of the `(c, B)` distances with the `(c, g)` thresholds (each
  anchor's positive distances) is one broadcast `(c, g, B)` tensor of 0 / 1,
  summed over the slots into a per-entry rank: how many of the anchor's
  thresholds lie at or above it (the slots go in groups when `c * g * B` is
  large);
* semi-hard: each entry falls in the bucket of its rank; one
  `scatter_reduce("amin")` of an int64 key (the distance as float64, whose
  29 low bits are free for the column; the non-negatives' keys lifted by
  2^1000 above every negative's) gives every bucket's closest negative and
  its first column at once, and a prefix minimum over the buckets gives,
  for each positive, the closest negative farther than it (tensorflow-addons'
  rule, ties to the first column, as the neutral miner);
* batch-all (hinge): the comparison counts are the coefficients themselves.

Masks and comparisons in the large passes are float32 0 / 1 tensors, never
`bool` ones (`torch_scratch.py` says why).

The large temporaries live in a per-thread CPU scratch space reused from
call to call (`torch_scratch.py`). `torch_triplet.py` runs a whole block of
the mined loss around these miners.

A kernel returns `None` when it does not apply (inside `torch.compile`, or a
distance that is not float32); the caller then runs the neutral code.
"""

from __future__ import annotations

import functools
from typing import Any, Optional

import torch
import torch.nn.functional as F

from keras_lossplus.backend.torch_eager import is_compiling
from keras_lossplus.backend.torch_scratch import SCRATCH, as_float, greater

Tensor = Any

_GROUP_ELEMENTS = 1 << 21
"""The largest `(rows, g, B)` comparison built at once (8 MiB of float32)."""
_NONE = torch.iinfo(torch.int64).max
_COLUMNS = (1 << 29) - 1
"""The keys' column bits: a float32 value as a float64 leaves the 29 low bits of its mantissa 0."""
_LIFT = 2.0**1000
"""Added to the non-negatives' keys (as float64): above every float32 distance."""
_LIFTED = int(torch.tensor(_LIFT, dtype=torch.float64).view(torch.int64))


def applies(d: Tensor) -> bool:
    return d.dtype == torch.float32 and d.shape[-1] <= _COLUMNS + 1 and not is_compiling()


def positive_slots(pos: Tensor, valid: Tensor) -> tuple:
    """`(columns (c, g) int64, used (c, g) bool, counts (c,) int64)`: each
    anchor's positive columns in order, padded; `used` is False on the
    padding and on invalid anchors; `counts`: the anchor's positives."""
    rows, cols = pos.nonzero(as_tuple=True)
    counts = torch.bincount(rows, minlength=pos.shape[0])
    least, most = (int(x) for x in torch.aminmax(counts)) if counts.numel() else (0, 0)
    g = max(most, 1)
    if least == most > 0:  # every anchor has g positives (a P x K batch): the columns in rows of g
        return cols.view(-1, g), valid[:, None].expand(-1, g), counts
    starts = torch.cumsum(counts, 0) - counts
    slot = torch.arange(rows.numel(), device=pos.device) - starts[rows]
    columns = torch.zeros((pos.shape[0], g), dtype=torch.int64, device=pos.device)
    columns[rows, slot] = cols
    used = torch.arange(g, device=pos.device)[None, :] < counts[:, None]
    return columns, used & valid[:, None], counts


def _groups(c: int, g: int, n: int) -> list:
    """Slot ranges `[start, stop)` so that each `(c, size, n)` comparison
    stays under `_GROUP_ELEMENTS` entries."""
    size = max(1, min(g, _GROUP_ELEMENTS // max(c * n, 1)))
    return [(s, min(s + size, g)) for s in range(0, g, size)]


def _ordered_keys(d: Tensor, not_negative: Tensor, bounded: bool) -> Tensor:
    """int64 keys ordered as `(d, column)` on the negatives, every
    non-negative's at or above `_LIFTED` (scratch): `d` as float64 (its low
    29 bits 0) plus `_LIFT` on the non-negatives (which also turns -0 into
    +0), as integers (made monotone when some `d` is below 0; `bounded`: none
    is), the column in the low bits."""
    keys = SCRATCH.get("keys", d.shape, torch.int64, d.device)
    keys.view(torch.float64).copy_(d).add_(not_negative, alpha=_LIFT)
    if not bounded and bool((d < 0).any()):  # negative floats order backwards as integers
        keys ^= (keys >> 63) & (torch.iinfo(torch.int64).max ^ _COLUMNS)
    keys |= SCRATCH.arange(d.shape[1], d.device)
    return keys


def _hinge_or_softplus(t: Tensor, soft: bool) -> tuple:
    """`(f(t), f'(t))`, 0 at `t = -inf` (an unused slot)."""
    if soft:
        return F.softplus(t), torch.sigmoid(t)
    loss = t.clamp_min_(0.0)
    return loss, torch.sign(loss)


def accumulate(total: Optional[Tensor], term: Tensor) -> Tensor:
    return term if total is None else total + term


def _miner(fn: Any) -> Any:
    """A kernel's shared frame: `None` where it does not apply (`applies`),
    else `fn` under `torch.no_grad` on the detached distances."""

    @functools.wraps(fn)
    def kernel(pos: Tensor, neg: Tensor, valid: Tensor, d: Tensor, *args: Any, **kwargs: Any) -> Optional[tuple]:
        if not applies(d):
            return None
        with torch.no_grad():
            return fn(pos, neg, valid, d.detach(), *args, **kwargs)

    return kernel


def semihard_choices(pos: Tensor, neg: Tensor, valid: Tensor, d: Tensor, margin: float, soft: bool,
                      nonzero: bool, slots: Optional[tuple], bounded: bool) -> tuple:
    """The semi-hard miner slot by slot: `(value, count, columns, negatives,
    slope, d_ap, d_an)`, the last five `(c, g)`: each anchor-positive pair's
    positive and chosen negative column, the slope of its loss (0 on unused
    slots) and the two distances; the pair's coefficients on `d` are
    `+slope` at the positive, `-slope` at the negative. `bounded`: every
    `d` lies in `[0, FLT_MAX / 2)` (`torch_triplet`'s distances)."""
    c, n = d.shape
    columns, used, positives = positive_slots(pos, valid) if slots is None else slots
    value = count = None
    not_negative = torch.eq(neg.view(torch.uint8), 0, out=SCRATCH.get("not_negative", d.shape, d.dtype, d.device))
    keys = _ordered_keys(d, not_negative, bounded)
    ranks = SCRATCH.get("ranks", d.shape, d.dtype, d.device)
    bucket = SCRATCH.get("bucket", d.shape, torch.int64, d.device)
    parts = []
    groups = _groups(c, columns.shape[1], n)
    for start, stop in groups:
        cols, on = (columns, used) if len(groups) == 1 else (columns[:, start:stop], used[:, start:stop])
        size = stop - start
        # the thresholds: each slot's positive distance, -inf on unused slots (never at or above an entry)
        d_ap = torch.where(on, d.gather(1, cols), -torch.inf)
        # each entry's bucket: how many thresholds lie at or above it
        torch.sum(greater(d_ap[:, :, None], d[:, None, :], "above", or_equal=True), 1, out=ranks)
        bucket.copy_(ranks)
        least = torch.full((c, size + 1), _NONE, dtype=torch.int64, device=d.device)
        least.scatter_reduce_(1, bucket, keys, "amin")
        prefix = least.cummin(1).values  # the closest negative of the buckets 0 .. j
        # farther than the positive: fewer thresholds at or above it than at or above the positive
        best = prefix.gather(1, bucket.gather(1, cols).sub_(1).clamp_min_(0))
        negative = best & _COLUMNS
        missing = best >= _LIFTED  # no negative farther than the positive: the farthest one
        if bool(missing.any()):
            farthest = _farthest(d, neg, missing.any(1), not_negative if bounded else None)
            negative = torch.where(missing, farthest[:, None], negative)
        d_an = d.gather(1, negative)
        loss, slope = _hinge_or_softplus(torch.sub(d_ap, d_an).add_(margin), soft)  # -inf on unused slots
        value = accumulate(value, loss.sum(1))
        if nonzero:
            count = accumulate(count, (loss > 0).sum(1).to(d.dtype))
        parts.append((negative, slope, d_ap, d_an))
    if not nonzero:
        count = positives.to(d.dtype)
    joined = (items[0] if len(items) == 1 else torch.cat(items, 1) for items in zip(*parts))
    return (value, count, columns, *joined)


@_miner
def semihard_triplets(pos: Tensor, neg: Tensor, valid: Tensor, d: Tensor, margin: float, soft: bool,
                      nonzero: bool, slots: Optional[tuple] = None) -> Optional[tuple]:
    """The semi-hard miner's `(value, count, coef)` (see
    `keras_lossplus.losses.metric_learning.miners.semihard_triplets`);
    `slots`: `positive_slots(pos, valid)` if known."""
    value, count, columns, negatives, slope = semihard_choices(pos, neg, valid, d, margin, soft, nonzero,
                                                                slots, False)[:5]
    coef = torch.zeros_like(d)
    coef.scatter_add_(1, columns, slope)
    coef.scatter_add_(1, negatives, -slope)
    return value, count, coef


def _farthest(d: Tensor, neg: Tensor, rows: Tensor, not_negative: Optional[Tensor] = None) -> Tensor:
    """`(c,)` each anchor's farthest negative (the first column of the
    largest distance), computed on the `rows` that need it only (0 elsewhere).
    `not_negative`: `neg`'s complement as float 0 / 1, when every `d` lies in
    `[0, FLT_MAX / 2)`: then `d - FLT_MAX * not_negative` keeps the order."""
    index = rows.nonzero(as_tuple=True)[0]
    if not_negative is None:
        scores = torch.where(neg[index], d[index], -torch.finfo(d.dtype).max)
    else:
        scores = torch.add(d[index], not_negative[index], alpha=-torch.finfo(d.dtype).max)
    return torch.zeros(d.shape[0], dtype=torch.int64, device=d.device).index_copy_(0, index, scores.max(1).indices)


@_miner
def all_triplets(pos: Tensor, neg: Tensor, valid: Tensor, d: Tensor, margin: float, soft: bool,
                 nonzero: Any, slots: Optional[tuple] = None, out: Optional[Tensor] = None) -> Optional[tuple]:
    """The batch-all miner's `(value, count, coef)` (see
    `keras_lossplus.losses.metric_learning.miners.all_triplets`; `nonzero=None`
    counts the triplets with a positive loss for the hinge, all of them for
    the soft margin; `slots` as for `semihard_triplets`;
    `out`: a tensor shaped like `d` to hold `coef`)."""
    c, n = d.shape
    columns, used = (positive_slots(pos, valid) if slots is None else slots)[:2]
    value, count = d.new_zeros(c), d.new_zeros(c)
    coef = torch.zeros_like(d) if out is None else out.zero_()
    nonzero = (not soft) if nonzero is None else bool(nonzero)
    is_negative = as_float(neg, "is_negative", d.dtype)
    if soft:
        negatives = torch.where(neg, d, torch.inf)
    for start, stop in _groups(c, columns.shape[1], n):
        cols, on = columns[:, start:stop], used[:, start:stop]
        shifted = torch.where(on, d.gather(1, cols) + margin, -torch.inf)  # d_ap + margin
        if soft:
            t = shifted[:, :, None] - negatives[:, None, :]
            terms, slope = F.softplus(t), torch.sigmoid(t)
            value += terms.sum((1, 2))
            if nonzero:
                count += (terms > 0).sum((1, 2))
            coef.scatter_add_(1, cols, slope.sum(2))
            coef -= slope.sum(1)
        else:  # the slope of every kept term is 1: the counts are the coefficients
            below = greater(shifted[:, :, None], d[:, None, :], "above")  # d_an < d_ap + m, every column
            per_negative = torch.sum(below, 1, out=SCRATCH.get("per_negative", d.shape, d.dtype, d.device))
            per_negative.mul_(is_negative)
            coef.scatter_add_(1, cols, torch.bmm(below, is_negative[:, :, None])[:, :, 0])
            coef -= per_negative
            count += per_negative.sum(1)
    if not soft:  # every kept hinge term is d_ap - d_an + margin
        value = (coef * d).sum(1) + margin * count
        if not nonzero:
            count = torch.zeros_like(count)
    if not nonzero:
        count += used.sum(1).to(d.dtype) * is_negative.sum(1)
    return value, count, coef
