"""Eager PyTorch kernels of the built-in triplet miners (semi-hard, batch-all).

The backend-neutral miners (`losses/metric_learning/miners.py`) loop over the
anchors' k-th positives, with a dozen `B x B` passes per step; eager torch
pays for each pass, for the Python around it and, on the CPU, for the fresh
memory of every temporary (page faults cost more than the arithmetic). These
kernels give the same `(value, count, coef)` from a few passes in all:

* the positives' columns come from one `nonzero` of the positive mask, as a
  `(c, g)` slot matrix (`g` the most positives an anchor has);
* a comparison of the `(c, B)` distances with the `(c, g)` thresholds (each
  anchor's positive distances) is one broadcast `(c, g, B)` byte tensor,
  summed over the slots into a per-entry rank: how many of the anchor's
  thresholds lie below it (the slots go in groups when `c * g * B` is large);
* semi-hard: each negative falls in the bucket of its rank; one
  `scatter_reduce("amin")` of a key that packs the distance's bits with the
  column gives every bucket's closest negative and its first column at once,
  and a suffix minimum over the buckets gives, for each positive, the closest
  negative farther than it (tensorflow-addons' rule, ties to the first
  column, as the neutral miner);
* batch-all (hinge): the comparison counts are the coefficients themselves.

`triplet_block` runs a whole block of the mined loss (distances, mining and a
written-out backward pass) in row blocks of at most `_BLOCK_ELEMENTS`
entries, whose large temporaries live in a per-thread CPU scratch space
reused from call to call (`_Scratch`, about 10 MiB).

A kernel returns `None` when it does not apply (inside `torch.compile`, or a
distance that is not float32); the caller then runs the neutral code.
"""

from __future__ import annotations

import functools
import threading
from typing import Any, Optional

import torch
import torch.nn.functional as F

from keras_lossplus.backend.torch_eager import is_compiling

Tensor = Any

_BLOCK_ELEMENTS = 1 << 18
"""Anchors per row block: `rows x B` at most this many entries."""
_GROUP_BYTES = 1 << 21
"""The largest `(rows, g, B)` comparison built at once (2 MiB of bytes)."""
_SCRATCH_ELEMENTS = max(_BLOCK_ELEMENTS, _GROUP_BYTES)
"""The largest buffer `_Scratch` keeps."""
_NONE = torch.iinfo(torch.int64).max
_MACHINE_EPS = 1.2e-7  # float32, as keras_lossplus.ops._MACHINE_EPS
_CANCELLATION_ULPS = 8.0  # as keras_lossplus.ops.pairwise_distances


class _Scratch(threading.local):
    """Per-thread CPU buffers, one per name, grown to the largest request up
    to `_SCRATCH_ELEMENTS` entries and reused (a view of the front; about
    10 MiB in all); larger requests (a miner called on a whole large batch)
    and other devices (whose allocators cache already) get fresh tensors.
    Only temporaries of one kernel call come from here, never a tensor that
    outlives the call."""

    def __init__(self) -> None:
        self.buffers: dict = {}

    def get(self, name: str, shape: tuple, dtype: Any, device: Any) -> Tensor:
        numel = 1
        for size in shape:
            numel *= int(size)
        if torch.device(device).type != "cpu" or numel > _SCRATCH_ELEMENTS:
            return torch.empty(shape, dtype=dtype, device=device)
        buffer = self.buffers.get((name, dtype))
        if buffer is None or buffer.numel() < numel:
            buffer = self.buffers[(name, dtype)] = torch.empty(numel, dtype=dtype)
        return buffer[:numel].view(shape)


_SCRATCH = _Scratch()


def _applies(d: Tensor) -> bool:
    return d.dtype == torch.float32 and not is_compiling()


def _counts(mask: Tensor) -> Tensor:
    """`(c,)` int32 number of True entries per row (a byte sum: no int64 copy)."""
    return mask.view(torch.uint8).sum(1, dtype=torch.int32)


def _slots(pos: Tensor, valid: Tensor) -> tuple:
    """`(columns (c, g) int64, used (c, g) bool)`: each anchor's positive
    columns in order, padded; `used` is False on the padding and on invalid
    anchors."""
    counts = _counts(pos)
    g = max(int(counts.max()) if counts.numel() else 0, 1)
    rows, cols = pos.nonzero(as_tuple=True)
    starts = (torch.cumsum(counts, 0) - counts).to(torch.int64)
    slot = torch.arange(rows.numel(), device=pos.device) - starts[rows]
    columns = torch.zeros((pos.shape[0], g), dtype=torch.int64, device=pos.device)
    columns[rows, slot] = cols
    used = torch.arange(g, device=pos.device)[None, :] < counts[:, None]
    return columns, used & valid[:, None]


def _groups(c: int, g: int, n: int) -> list:
    """Slot ranges `[start, stop)` so that each `(c, size, n)` comparison
    stays under `_GROUP_BYTES` (and a byte counts every rank: size <= 255)."""
    size = max(1, min(g, 255, _GROUP_BYTES // max(c * n, 1)))
    return [(s, min(s + size, g)) for s in range(0, g, size)]


def _greater(left: Tensor, right: Tensor, name: str) -> Tensor:
    """`left > right` (broadcast to `(c, s, n)`) as bytes, in scratch space."""
    shape = torch.broadcast_shapes(left.shape, right.shape)
    out = _SCRATCH.get(name, shape, torch.bool, left.device)
    return torch.gt(left, right, out=out).view(torch.uint8)


def _ordered_keys(d: Tensor, nonnegative: bool) -> Tensor:
    """int64 keys ordered as `(d, column)`: the float's bits made monotone in
    the high word, the column in the low one (scratch)."""
    bits = (d + 0.0).view(torch.int32)  # + 0.0: -0 -> +0
    if not nonnegative and bool((d < 0).any()):  # negative floats order backwards as integers
        bits = bits ^ ((bits >> 31) & 0x7FFFFFFF)
    keys = _SCRATCH.get("keys", d.shape, torch.int64, d.device)
    keys.copy_(bits)
    keys <<= 32
    keys |= torch.arange(d.shape[1], device=d.device, dtype=torch.int64)[None, :]
    return keys


def _hinge_or_softplus(t: Tensor, soft: bool) -> tuple:
    if soft:
        return F.softplus(t), torch.sigmoid(t)
    active = (t > 0).to(t.dtype)
    return t * active, active


def _start(pos: Tensor, valid: Tensor, d: Tensor, slots: Optional[tuple], out: Optional[Tensor]) -> tuple:
    """What both miners begin with: `(slot columns, used, value, count,
    coef)`, the last three zeros to accumulate into (`coef` in `out` if given)."""
    columns, used = _slots(pos, valid) if slots is None else slots
    value = d.new_zeros(d.shape[0])
    coef = torch.zeros_like(d) if out is None else out.zero_()
    return columns, used, value, torch.zeros_like(value), coef


def _miner(fn: Any) -> Any:
    """A kernel's shared frame: `None` where it does not apply (`_applies`),
    else `fn` under `torch.no_grad` on the detached distances."""

    @functools.wraps(fn)
    def kernel(pos: Tensor, neg: Tensor, valid: Tensor, d: Tensor, *args: Any, **kwargs: Any) -> Optional[tuple]:
        if not _applies(d):
            return None
        with torch.no_grad():
            return fn(pos, neg, valid, d.detach(), *args, **kwargs)

    return kernel


@_miner
def semihard_triplets(pos: Tensor, neg: Tensor, valid: Tensor, d: Tensor, margin: float, soft: bool,
                      nonzero: bool, slots: Optional[tuple] = None, nonnegative: bool = False,
                      out: Optional[Tensor] = None) -> Optional[tuple]:
    """The semi-hard miner's `(value, count, coef)` (see
    `keras_lossplus.losses.metric_learning.miners.semihard_triplets`);
    `slots`: `_slots(pos, valid)` if known, `nonnegative`: no `d` is below 0,
    `out`: a tensor shaped like `d` to hold `coef`."""
    c, n = d.shape
    columns, used, value, count, coef = _start(pos, valid, d, slots, out)
    keys = _ordered_keys(d, nonnegative)
    not_negative = ~neg
    for start, stop in _groups(c, columns.shape[1], n):
        cols, on = columns[:, start:stop], used[:, start:stop]
        size = stop - start
        d_ap = d.gather(1, cols)
        thresholds = torch.where(on, d_ap, torch.inf).sort(1).values
        # each negative's bucket: how many thresholds lie below it; the others in bucket size + 1
        ranks = _greater(d[:, None, :], thresholds[:, :, None], "above").sum(1, dtype=torch.uint8)
        ranks.masked_fill_(not_negative, size + 1)
        bucket = _SCRATCH.get("bucket", d.shape, torch.int64, d.device)
        bucket.copy_(ranks)
        least = torch.full((c, size + 2), _NONE, dtype=torch.int64, device=d.device)
        least.scatter_reduce_(1, bucket, keys, "amin")
        suffix = least[:, : size + 1].flip(1).cummin(1).values.flip(1)  # min over the buckets >= j
        rank = (thresholds[:, None, :] < d_ap[:, :, None]).sum(2)  # the slot's own bucket (< size)
        best = suffix.gather(1, rank.clamp(max=size - 1) + 1)
        negative = best & 0xFFFFFFFF
        missing = (best == _NONE) & on  # no negative farther than the positive: the farthest one
        if bool(missing.any()):
            negative = torch.where(missing, _farthest(d, neg, missing.any(1))[:, None], negative)
        off = ~on
        negative = negative.masked_fill_(off, 0)
        loss, slope = _hinge_or_softplus(d_ap - d.gather(1, negative) + margin, soft)
        loss, slope = loss.masked_fill_(off, 0.0), slope.masked_fill_(off, 0.0)
        value += loss.sum(1)
        if nonzero:
            count += (loss > 0).sum(1)
        coef.scatter_add_(1, cols, slope)
        coef.scatter_add_(1, negative, -slope)
    if not nonzero:
        count = _counts(pos).to(d.dtype)
    return value, count, coef


def _farthest(d: Tensor, neg: Tensor, rows: Tensor) -> Tensor:
    """`(c,)` each anchor's farthest negative (the first column of the
    largest distance), computed on the `rows` that need it only (0 elsewhere)."""
    index = rows.nonzero(as_tuple=True)[0]
    picked = torch.where(neg[index], d[index], -torch.finfo(d.dtype).max).max(1).indices
    return torch.zeros(d.shape[0], dtype=torch.int64, device=d.device).index_copy_(0, index, picked)


@_miner
def all_triplets(pos: Tensor, neg: Tensor, valid: Tensor, d: Tensor, margin: float, soft: bool,
                 nonzero: Any, slots: Optional[tuple] = None, nonnegative: bool = False,
                 out: Optional[Tensor] = None) -> Optional[tuple]:
    """The batch-all miner's `(value, count, coef)` (see
    `keras_lossplus.losses.metric_learning.miners.all_triplets`; `nonzero=None`
    counts the triplets with a positive loss for the hinge, all of them for
    the soft margin; `slots`, `nonnegative`, `out` as for `semihard_triplets`)."""
    c, n = d.shape
    columns, used, value, count, coef = _start(pos, valid, d, slots, out)
    nonzero = (not soft) if nonzero is None else bool(nonzero)
    negatives = _SCRATCH.get("negatives", d.shape, d.dtype, d.device).copy_(d).masked_fill_(~neg, torch.inf)
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
            below = _greater(shifted[:, :, None], negatives[:, None, :], "above")  # d_an < d_ap + m
            per_negative = below.sum(1, dtype=torch.uint8).to(d.dtype)
            coef.scatter_add_(1, cols, below.sum(2, dtype=torch.int32).to(d.dtype))
            coef -= per_negative
            count += per_negative.sum(1)
    if not soft:  # every kept hinge term is d_ap - d_an + margin
        value = (coef * d).sum(1) + margin * count
        if not nonzero:
            count = torch.zeros_like(count)
    if not nonzero:
        count += used.sum(1).to(d.dtype) * _counts(neg).to(d.dtype)
    return value, count, coef


# --------------------------------------------------------------------------- a whole block


_MINERS = {"semihard": semihard_triplets, "all": all_triplets}


def _distances(anchors: Tensor, others: Tensor, metric: str) -> Tensor:
    """`keras_lossplus.ops.pairwise_distances(anchors, others, metric)` (no
    gradient; in scratch space), with the same roundings. The entries of an anchor with itself (and with
    an empty memory slot) are not zeroed as in `Rows.distances`: no mask the
    miners read holds them."""
    d = torch.mm(anchors, others.t(), out=_SCRATCH.get("d", (len(anchors), len(others)), anchors.dtype,
                                                      anchors.device))
    if metric == "cosine":  # the rows are unit vectors already
        return d.neg_().add_(1.0).clamp_min_(0.0)
    sq_a, sq_o = (anchors * anchors).sum(1, keepdim=True), (others * others).sum(1, keepdim=True)
    scale = torch.add(sq_a, sq_o.t(), out=_SCRATCH.get("scale", (len(anchors), len(others)), anchors.dtype,
                                                        anchors.device))
    d.mul_(-2.0).add_(scale)  # the rounding of `scale - 2 a.b`, as the neutral
    resolved = torch.gt(d, scale.mul_(_CANCELLATION_ULPS * _MACHINE_EPS),
                        out=_SCRATCH.get("resolved", d.shape, torch.bool, d.device))
    d.masked_fill_(resolved.logical_not_(), 0.0)  # NaN (overflowed squares) too, as safe_sqrt
    if metric == "euclidean":
        d.sqrt_()
    return d


class _TripletBlock(torch.autograd.Function):
    """`(sum_a w_a value_a, sum_a w_a count_a)` of a block; the backward pass
    is the two matmuls of `sum(coef * d)`'s gradient."""

    @staticmethod
    def forward(ctx, anchors, others, pos, neg, valid, weights, options):
        kind, metric, margin, soft, nonzero = options
        a, o = anchors.detach(), others.detach()
        value, count = a.new_zeros(()), a.new_zeros(())
        w = torch.empty((a.shape[0], o.shape[0]), dtype=a.dtype, device=a.device)  # kept for the backward pass
        columns, used = _slots(pos, valid)
        rows = max(1, _BLOCK_ELEMENTS // max(o.shape[0], 1))
        for s in range(0, a.shape[0], rows):
            b = slice(s, s + rows)
            d = _distances(a[b], o, metric)
            slots = (columns[b], used[b])
            v, n, coef = _MINERS[kind](pos[b], neg[b], valid[b], d, margin, soft, nonzero, slots, True, w[b])
            value += (weights[b] * v).sum()
            count += (weights[b] * n).sum()
            at_zero = torch.le(d, 0.0, out=_SCRATCH.get("at_zero", d.shape, torch.bool, d.device))
            coef.mul_(weights[b, None]).masked_fill_(at_zero, 0.0)  # the distances' subgradient 0 at 0
            if metric == "euclidean":  # d(d_ab)/d(e_a) = (e_a - e_b) / d_ab
                coef.div_(d.masked_fill_(at_zero, 1.0))
            elif metric == "squared_euclidean":
                coef.mul_(2.0)
        ctx.metric = metric
        ctx.save_for_backward(w, anchors, others)
        return value, count

    @staticmethod
    def backward(ctx, grad_value, grad_count):
        w, anchors, others = ctx.saved_tensors
        if ctx.metric == "cosine":  # d = 1 - <u_a, u_b>
            grad_a, grad_o = -torch.mm(w, others), -torch.mm(w.t(), anchors)
        else:
            grad_a = w.sum(1, keepdim=True) * anchors - torch.mm(w, others)
            grad_o = w.sum(0)[:, None] * others - torch.mm(w.t(), anchors)
        return grad_a * grad_value, grad_o * grad_value, None, None, None, None, None


def triplet_block(kind: str, anchors: Tensor, others: Tensor, pos: Tensor, neg: Tensor, valid: Tensor,
                  weights: Tensor, metric: str, margin: float, soft: bool, nonzero: Any) -> Optional[tuple]:
    """The mined triplet loss of a block of anchors against `others` with a
    built-in miner (`kind`, `"semihard"` or `"all"`) and a named distance
    (`metric`; for `"cosine"`, `anchors` and `others` are already
    L2-normalized): `(sum_a w_a value_a, sum_a w_a count_a)`, the first with
    the gradient of the mined loss (see
    `keras_lossplus.losses.metric_learning.miners.mined_loss`)."""
    if not (_applies(anchors) and anchors.dtype == others.dtype):
        return None
    options = (kind, metric, float(margin), bool(soft), nonzero)
    return _TripletBlock.apply(anchors, others, pos, neg, valid, weights.to(anchors.dtype), options)
