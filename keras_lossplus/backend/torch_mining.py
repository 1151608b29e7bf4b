"""Eager PyTorch kernels of the built-in triplet miners (semi-hard, batch-all).

The backend-neutral miners (`losses/metric_learning/miners.py`) loop over the
anchors' k-th positives, with a dozen `B x B` passes per step; eager torch
pays for each pass, for the Python around it and, on the CPU, for the fresh
memory of every temporary (page faults cost more than the arithmetic). These
kernels give the same `(value, count, coef)` from a few passes in all:

* the positives' columns come from one `nonzero` of the positive mask, as a
  `(c, g)` slot matrix (`g` the most positives an anchor has);
* a comparison of the `(c, B)` distances with the `(c, g)` thresholds (each
  anchor's positive distances) is one broadcast `(c, g, B)` tensor of 0 / 1,
  summed over the slots into a per-entry rank: how many of the anchor's
  thresholds lie below it (the slots go in groups when `c * g * B` is large);
* semi-hard: each negative falls in the bucket of its rank; one
  `scatter_reduce("amin")` of a key that packs the distance's bits with the
  column gives every bucket's closest negative and its first column at once,
  and a suffix minimum over the buckets gives, for each positive, the closest
  negative farther than it (tensorflow-addons' rule, ties to the first
  column, as the neutral miner);
* batch-all (hinge): the comparison counts are the coefficients themselves.

Masks and comparisons in the large passes are float32 0 / 1 tensors, never
`bool` ones: on the CPU, torch's comparisons into `bool`, `masked_fill` and
`where` on a `bool` mask run 5-20x slower than float arithmetic of the same
size (measured with torch 2.13).

`triplet_block` runs a whole block of the mined loss (distances, mining and a
written-out backward pass) in row blocks of at most `_BLOCK_ELEMENTS`
entries, whose large temporaries live in a per-thread CPU scratch space
reused from call to call (`_Scratch`, about 20 MiB). Semi-hard mining leaves
two coefficients per anchor-positive pair, which go straight into the
backward pass's weight matrix; when the anchors are the references
themselves (the usual case) that matrix is made symmetric, and the backward
pass is one matmul instead of two.

A kernel returns `None` when it does not apply (inside `torch.compile`, or a
distance that is not float32); the caller then runs the neutral code.
"""

from __future__ import annotations

import functools
import math
import threading
from typing import Any, Optional

import torch
import torch.nn.functional as F

from keras_lossplus.backend.torch_eager import is_compiling

Tensor = Any

_BLOCK_ELEMENTS = 1 << 18
"""Anchors per row block: `rows x B` at most this many entries."""
_GROUP_ELEMENTS = 1 << 21
"""The largest `(rows, g, B)` comparison built at once (8 MiB of float32)."""
_SCRATCH_ELEMENTS = max(_BLOCK_ELEMENTS, _GROUP_ELEMENTS)
"""The largest buffer `_Scratch` keeps."""
_SCRATCH_VIEWS = 256
"""The most views `_Scratch` keeps (one per name, dtype and shape)."""
_NONE = torch.iinfo(torch.int64).max
_FLOAT32_MAX = torch.finfo(torch.float32).max
_MACHINE_EPS = 1.2e-7  # float32, as keras_lossplus.ops._MACHINE_EPS
_CANCELLATION_ULPS = 8.0  # as keras_lossplus.ops.pairwise_distances


class _Scratch(threading.local):
    """Per-thread CPU buffers, one per name, grown to the largest request up
    to `_SCRATCH_ELEMENTS` entries and reused (a view of the front, itself
    kept per shape; about 20 MiB in all); larger requests (a miner called on
    a whole large batch) and other devices (whose allocators cache already)
    get fresh tensors. Only temporaries of one kernel call come from here,
    never a tensor that outlives the call."""

    def __init__(self) -> None:
        self.buffers: dict = {}
        self.views: dict = {}

    def arange(self, n: int, device: Any) -> Tensor:
        """`(1, n)` int64 column indices 0 .. n - 1 (kept)."""
        key = ("arange", torch.int64, (1, n), device)
        view = self.views.get(key)
        if view is None:
            view = self.views[key] = torch.arange(n, device=device, dtype=torch.int64)[None, :]
        return view

    def get(self, name: str, shape: tuple, dtype: Any, device: Any) -> Tensor:
        key = (name, dtype, tuple(shape), device)
        view = self.views.get(key)
        if view is not None:
            return view
        numel = math.prod(int(size) for size in shape)
        if torch.device(device).type != "cpu" or numel > _SCRATCH_ELEMENTS:
            return torch.empty(shape, dtype=dtype, device=device)
        buffer = self.buffers.get((name, dtype))
        if buffer is None or buffer.numel() < numel:
            buffer = self.buffers[(name, dtype)] = torch.empty(numel, dtype=dtype)
            self.views = {k: v for k, v in self.views.items() if k[:2] != (name, dtype)}  # of the old buffer
        if len(self.views) >= _SCRATCH_VIEWS:
            self.views.clear()
        view = self.views[key] = buffer[:numel].view(shape)
        return view


_SCRATCH = _Scratch()


def _applies(d: Tensor) -> bool:
    return d.dtype == torch.float32 and not is_compiling()


def _slots(pos: Tensor, valid: Tensor) -> tuple:
    """`(columns (c, g) int64, used (c, g) bool, counts (c,) int64)`: each
    anchor's positive columns in order, padded; `used` is False on the
    padding and on invalid anchors; `counts`: the anchor's positives."""
    rows, cols = pos.nonzero(as_tuple=True)
    counts = torch.bincount(rows, minlength=pos.shape[0])
    g = max(int(counts.max()) if counts.numel() else 0, 1)
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


def _greater(left: Tensor, right: Any, name: str) -> Tensor:
    """`left > right` as float32 0 / 1, in scratch space; `right` is a number
    or a tensor of `left`'s rank, the two broadcast."""
    shape = left.shape if isinstance(right, float) else tuple(max(x, y) for x, y in zip(left.shape, right.shape))
    return torch.gt(left, right, out=_SCRATCH.get(name, shape, torch.float32, left.device))


def _as_float(mask: Tensor, name: str, dtype: Any) -> Tensor:
    """A `bool` mask as 0 / 1 of `dtype` (scratch space)."""
    return _SCRATCH.get(name, mask.shape, dtype, mask.device).copy_(mask.view(torch.uint8))


def _ordered_keys(d: Tensor, nonnegative: bool) -> Tensor:
    """int64 keys ordered as `(d, column)`: the float's bits made monotone in
    the high word, the column in the low one (scratch)."""
    bits = torch.add(d, 0.0, out=_SCRATCH.get("plus_zero", d.shape, d.dtype, d.device)).view(torch.int32)  # -0 -> +0
    if not nonnegative and bool((d < 0).any()):  # negative floats order backwards as integers
        bits = bits ^ ((bits >> 31) & 0x7FFFFFFF)
    keys = _SCRATCH.get("keys", d.shape, torch.int64, d.device)
    keys.copy_(bits)
    keys <<= 32
    keys |= _SCRATCH.arange(d.shape[1], d.device)
    return keys


def _hinge_or_softplus(t: Tensor, soft: bool) -> tuple:
    if soft:
        return F.softplus(t), torch.sigmoid(t)
    active = (t > 0).to(t.dtype)
    return t * active, active


def _accumulate(total: Optional[Tensor], term: Tensor) -> Tensor:
    return term if total is None else total + term


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


def _semihard_choices(pos: Tensor, neg: Tensor, valid: Tensor, d: Tensor, margin: float, soft: bool,
                      nonzero: bool, slots: Optional[tuple], nonnegative: bool) -> tuple:
    """The semi-hard miner slot by slot: `(value, count, columns, negatives,
    slope, d_ap, d_an)`, the last five `(c, g)`: each anchor-positive pair's
    positive and chosen negative column, the slope of its loss (0 on unused
    slots) and the two distances; the pair's coefficients on `d` are
    `+slope` at the positive, `-slope` at the negative."""
    c, n = d.shape
    columns, used, positives = _slots(pos, valid) if slots is None else slots
    value = count = None
    keys = _ordered_keys(d, nonnegative)
    not_negative = torch.eq(neg.view(torch.uint8), 0, out=_SCRATCH.get("not_negative", d.shape, d.dtype, d.device))
    ranks = _SCRATCH.get("ranks", d.shape, d.dtype, d.device)
    bucket = _SCRATCH.get("bucket", d.shape, torch.int64, d.device)
    negatives, slopes, positive_distances, negative_distances = [], [], [], []
    off_slots = ~used
    for start, stop in _groups(c, columns.shape[1], n):
        cols, on = columns[:, start:stop], used[:, start:stop]
        size = stop - start
        d_ap = d.gather(1, cols)
        thresholds = torch.where(on, d_ap, torch.inf).sort(1).values
        # each negative's bucket: how many thresholds lie below it; the others in buckets above size
        torch.sum(_greater(d[:, None, :], thresholds[:, :, None], "above"), 1, out=ranks)
        bucket.copy_(ranks.add_(not_negative, alpha=size + 1))
        least = torch.full((c, 2 * size + 2), _NONE, dtype=torch.int64, device=d.device)
        least.scatter_reduce_(1, bucket, keys, "amin")
        suffix = least[:, : size + 1].flip(1).cummin(1).values.flip(1)  # min over the buckets >= j
        rank = torch.searchsorted(thresholds, d_ap)  # the slot's own bucket: thresholds below d_ap (< size)
        best = suffix.gather(1, rank.clamp_(max=size - 1).add_(1))
        negative = best & 0xFFFFFFFF
        missing = (best == _NONE) & on  # no negative farther than the positive: the farthest one
        if bool(missing.any()):
            negative = torch.where(missing, _farthest(d, neg, missing.any(1))[:, None], negative)
        off = off_slots[:, start:stop]
        negative = negative.masked_fill_(off, 0)
        d_an = d.gather(1, negative)
        loss, slope = _hinge_or_softplus(d_ap - d_an + margin, soft)
        loss, slope = loss.masked_fill_(off, 0.0), slope.masked_fill_(off, 0.0)
        value = _accumulate(value, loss.sum(1))
        if nonzero:
            count = _accumulate(count, (loss > 0).sum(1).to(d.dtype))
        negatives.append(negative)
        slopes.append(slope)
        positive_distances.append(d_ap)
        negative_distances.append(d_an)
    if not nonzero:
        count = positives.to(d.dtype)
    joined = (parts[0] if len(parts) == 1 else torch.cat(parts, 1)
              for parts in (negatives, slopes, positive_distances, negative_distances))
    return (value, count, columns, *joined)


@_miner
def semihard_triplets(pos: Tensor, neg: Tensor, valid: Tensor, d: Tensor, margin: float, soft: bool,
                      nonzero: bool, slots: Optional[tuple] = None, nonnegative: bool = False) -> Optional[tuple]:
    """The semi-hard miner's `(value, count, coef)` (see
    `keras_lossplus.losses.metric_learning.miners.semihard_triplets`);
    `slots`: `_slots(pos, valid)` if known, `nonnegative`: no `d` is below 0."""
    value, count, columns, negatives, slope = _semihard_choices(pos, neg, valid, d, margin, soft, nonzero,
                                                                slots, nonnegative)[:5]
    coef = torch.zeros_like(d)
    coef.scatter_add_(1, columns, slope)
    coef.scatter_add_(1, negatives, -slope)
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
    the soft margin; `slots`, `nonnegative` as for `semihard_triplets`;
    `out`: a tensor shaped like `d` to hold `coef`)."""
    c, n = d.shape
    columns, used = (_slots(pos, valid) if slots is None else slots)[:2]
    value, count = d.new_zeros(c), d.new_zeros(c)
    coef = torch.zeros_like(d) if out is None else out.zero_()
    nonzero = (not soft) if nonzero is None else bool(nonzero)
    is_negative = _as_float(neg, "is_negative", d.dtype)
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
            below = _greater(shifted[:, :, None], d[:, None, :], "above")  # d_an < d_ap + m, every column
            per_negative = torch.sum(below, 1, out=_SCRATCH.get("per_negative", d.shape, d.dtype, d.device))
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


# --------------------------------------------------------------------------- a whole block


def _squares(anchors: Tensor, others: Tensor, metric: str) -> Optional[tuple]:
    """`(|a|^2 (A, 1), |o|^2 (1, O), finite)` for `_distances` (`None` for
    cosine); `finite`: no square (nor the sum of two) overflows."""
    if metric == "cosine":
        return None
    sq_o = (others * others).sum(1, keepdim=True)
    if anchors is others:
        return sq_o, sq_o.t(), bool(sq_o.max() < _FLOAT32_MAX / 2)  # False for NaN too
    sq_a = (anchors * anchors).sum(1, keepdim=True)
    return sq_a, sq_o.t(), bool(sq_a.max() + sq_o.max() < _FLOAT32_MAX)


def _distances(anchors: Tensor, others: Tensor, metric: str, squares: Optional[tuple]) -> Tensor:
    """`keras_lossplus.ops.pairwise_distances(anchors, others, metric)` (no
    gradient; in scratch space), with the same roundings, given `squares`
    (`_squares`, the anchors' rows of it). The entries of an anchor with
    itself (and with an empty memory slot) are not zeroed as in
    `Rows.distances`: no mask the miners read holds them."""
    shape = (len(anchors), len(others))
    d = torch.mm(anchors, others.t(), out=_SCRATCH.get("d", shape, anchors.dtype, anchors.device))
    if metric == "cosine":  # the rows are unit vectors already
        return d.neg_().add_(1.0).clamp_min_(0.0)
    sq_a, sq_o, finite = squares
    scale = torch.add(sq_a, sq_o, out=_SCRATCH.get("scale", shape, anchors.dtype, anchors.device))
    d.mul_(-2.0).add_(scale)  # the rounding of `scale - 2 a.b`, as the neutral
    threshold = scale.mul_(_CANCELLATION_ULPS * _MACHINE_EPS)
    if finite:  # no NaN in d: a 0 / 1 product zeroes the rest
        d.mul_(_greater(d, threshold, "resolved")).add_(0.0)  # + 0.0: -0 -> +0
    else:  # NaN (overflowed squares) to 0 too, as safe_sqrt
        d.masked_fill_(torch.gt(d, threshold).logical_not_(), 0.0)
    if metric == "euclidean":
        d.sqrt_()
    return d


def _distance_factor(dist: Tensor, metric: str) -> Tensor:
    """d(d_ab) / d(e_a) = factor * (e_a - e_b) (euclidean: 1 / d_ab, squared:
    2; cosine: the coefficient multiplies -u_b), 0 where `d_ab = 0` (the
    distances' subgradient there)."""
    positive = dist > 0
    if metric == "euclidean":
        return torch.where(positive, dist.reciprocal(), 0.0)
    return positive.to(dist.dtype) * (2.0 if metric == "squared_euclidean" else 1.0)


def _scale_dense(coef: Tensor, d: Tensor, weights: Tensor, metric: str) -> None:
    """`coef * w_a * factor(d)` in place (see `_distance_factor`), with float masks."""
    positive = _greater(d, 0.0, "positive")
    coef.mul_(weights[:, None]).mul_(positive)
    if metric == "euclidean":
        coef.div_(positive.neg_().add_(1.0).add_(d))  # d where d > 0, else 1
    elif metric == "squared_euclidean":
        coef.mul_(2.0)


def _add_pairs(w: Tensor, start: int, columns: Tensor, slope: Tensor, dist: Tensor, metric: str,
               symmetric: bool) -> None:
    """`w[start + i, columns[i, j]] += slope[i, j] * factor(dist[i, j])` (and
    the transposed entry when `symmetric`)."""
    rows = torch.arange(start, start + columns.shape[0], device=w.device)[:, None].expand_as(columns)
    values = slope * _distance_factor(dist, metric)
    w.index_put_((rows, columns), values, accumulate=True)
    if symmetric:
        w.index_put_((columns, rows), values, accumulate=True)


class _TripletBlock(torch.autograd.Function):
    """`(sum_a w_a value_a, sum_a w_a count_a)` of a block; the backward pass
    is the matmuls of `sum(coef * d)`'s gradient, one when the anchors are the
    references (`symmetric`: `w` then holds both orientations)."""

    @staticmethod
    def forward(ctx, anchors, others, pos, neg, valid, weights, options):
        kind, metric, margin, soft, nonzero = options
        a = anchors.detach()
        o = a if anchors is others else others.detach()
        symmetric = kind == "semihard" and anchors is others
        squares = _squares(a, o, metric)
        value = count = None
        shape = (a.shape[0], o.shape[0])  # `w`: kept for the backward pass
        w = torch.zeros(shape, dtype=a.dtype, device=a.device) if kind == "semihard" else \
            torch.empty(shape, dtype=a.dtype, device=a.device)
        columns, used, positives = _slots(pos, valid)
        rows = max(1, _BLOCK_ELEMENTS // max(o.shape[0], 1))
        for s in range(0, a.shape[0], rows):
            b = slice(s, s + rows)
            d = _distances(a[b], o, metric, squares and (squares[0][b],) + squares[1:])
            slots = (columns[b], used[b], positives[b])
            if kind == "semihard":
                v, n, cols, negatives, slope, d_ap, d_an = _semihard_choices(
                    pos[b], neg[b], valid[b], d, margin, soft, nonzero, slots, True)
                slope = slope * weights[b, None]
                _add_pairs(w, s, torch.cat([cols, negatives], 1), torch.cat([slope, -slope], 1),
                           torch.cat([d_ap, d_an], 1), metric, symmetric)
            else:
                v, n, coef = all_triplets(pos[b], neg[b], valid[b], d, margin, soft, nonzero, slots, True, w[b])
                _scale_dense(coef, d, weights[b], metric)
            value = _accumulate(value, torch.dot(weights[b], v))
            count = _accumulate(count, torch.dot(weights[b], n))
        ctx.metric, ctx.symmetric = metric, symmetric
        ctx.save_for_backward(w, anchors, others)
        return value, count

    @staticmethod
    def backward(ctx, grad_value, grad_count):
        w, anchors, others = ctx.saved_tensors
        cosine = ctx.metric == "cosine"  # d = 1 - <u_a, u_b>
        if ctx.symmetric:
            grad = torch.mm(w, anchors).neg_() if cosine else torch.addmm(w.sum(1, keepdim=True) * anchors, w,
                                                                          anchors, alpha=-1.0)
            return grad.mul_(grad_value), None, None, None, None, None, None
        if cosine:
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
