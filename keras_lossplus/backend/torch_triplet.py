"""A whole block of the mined triplet loss on eager PyTorch: `Rows`' masks
(`anchor_masks`), the distances, the built-in miners of `torch_mining.py`
and a written-out backward pass, as one `autograd.Function`.

The anchors go in row blocks of at most `_BLOCK_ELEMENTS` entries. Semi-hard
mining leaves two coefficients per anchor-positive pair, which go straight
into the backward pass's weight matrix; when the anchors are the references
themselves (the usual case) that matrix holds both orientations and the
backward pass is one matmul instead of two. Batch-all's coefficients are a
dense block, scaled in place.
"""

from __future__ import annotations

from typing import Any, Optional

import torch

from keras_lossplus.backend.torch_eager import is_compiling
from keras_lossplus.backend.torch_mining import accumulate, all_triplets, applies, positive_slots, semihard_choices
from keras_lossplus.backend.torch_scratch import SCRATCH, greater

Tensor = Any

_BLOCK_ELEMENTS = 1 << 18
"""Anchors per row block: `rows x B` at most this many entries."""
_FLOAT32_MAX = torch.finfo(torch.float32).max
_MACHINE_EPS = 1.2e-7  # float32, as keras_lossplus.ops._MACHINE_EPS
_CANCELLATION_ULPS = 8.0  # as keras_lossplus.ops.pairwise_distances


def anchor_masks(row_labels: Tensor, labels: Tensor, start: Any) -> Optional[tuple]:
    """`Rows`' masks `(pos, neg, positives, valid)` of the anchors `start,
    start + 1, ...` against the whole batch (no memory references: each
    anchor is one of the columns, the only one it is not compared with), in
    a few torch operations (the comparison into bytes: into `bool` it is
    several times slower)."""
    if is_compiling() or not isinstance(start, int):
        return None
    shape = (row_labels.shape[0], labels.shape[0])
    same = torch.eq(row_labels[:, None], labels[None, :],
                    out=torch.empty(shape, dtype=torch.uint8, device=labels.device)).view(torch.bool)
    pos = same.clone()
    pos.diagonal(start).fill_(False)
    positives = pos.view(torch.uint8).sum(1, dtype=torch.int32)
    return pos, same.logical_not_(), positives, (positives > 0) & (positives < shape[1] - 1)


def _squares(anchors: Tensor, others: Tensor, metric: str) -> Optional[tuple]:
    """`(|a|^2 (A, 1), |o|^2 (1, O), bounded)` for `_distances` (`None` for
    cosine); `bounded`: the squares are small enough that every distance
    (at most `2 (|a|^2 + |o|^2)`) is finite and below `FLT_MAX / 2`."""
    if metric == "cosine":
        return None
    sq_o = (others * others).sum(1, keepdim=True)
    if anchors is others:
        return sq_o, sq_o.t(), float(sq_o.max()) < _FLOAT32_MAX / 8  # False for NaN too
    sq_a = (anchors * anchors).sum(1, keepdim=True)
    return sq_a, sq_o.t(), float(sq_a.max()) + float(sq_o.max()) < _FLOAT32_MAX / 4


def _distances(anchors: Tensor, others: Tensor, metric: str, squares: Optional[tuple]) -> Tensor:
    """`keras_lossplus.ops.pairwise_distances(anchors, others, metric)` (no
    gradient; in scratch space), with the same roundings, given `squares`
    (`_squares`, the anchors' rows of it). The entries of an anchor with
    itself (and with an empty memory slot) are not zeroed as in
    `Rows.distances`: no mask the miners read holds them."""
    shape = (len(anchors), len(others))
    d = torch.mm(anchors, others.t(), out=SCRATCH.get("d", shape, anchors.dtype, anchors.device))
    if metric == "cosine":  # the rows are unit vectors already
        return d.neg_().add_(1.0).clamp_min_(0.0)
    sq_a, sq_o, bounded = squares
    scale = torch.add(sq_a, sq_o, out=SCRATCH.get("scale", shape, anchors.dtype, anchors.device))
    torch.add(scale, d, alpha=-2.0, out=d)  # the rounding of `scale - 2 a.b`, as the neutral
    threshold = scale.mul_(_CANCELLATION_ULPS * _MACHINE_EPS)
    if bounded:  # no NaN in d: 0 + d * (0 / 1) zeroes the rest (and -0 -> +0)
        torch.addcmul(SCRATCH.zero(d.dtype, d.device), d, greater(d, threshold, "resolved"), out=d)
    else:  # NaN (overflowed squares) to 0 too, as safe_sqrt
        d.masked_fill_(torch.gt(d, threshold).logical_not_(), 0.0)
    if metric == "euclidean":
        d.sqrt_()
    return d


def _weighted_slopes(slope: Tensor, dist: Tensor, metric: str) -> Tensor:
    """`slope * factor(dist)`, with d(d_ab) / d(e_a) = factor * (e_a - e_b)
    (euclidean: 1 / d_ab, squared: 2; cosine: the coefficient multiplies
    -u_b), 0 where `d_ab = 0` (the distances' subgradient there)."""
    if metric == "euclidean":  # slope / 0 is +-inf or NaN: 0
        return torch.div(slope, dist).nan_to_num_(0.0, 0.0, 0.0)
    return slope * (dist > 0).to(dist.dtype) * (2.0 if metric == "squared_euclidean" else 1.0)


def _scale_dense(coef: Tensor, d: Tensor, weights: Tensor, metric: str) -> None:
    """`coef * w_a * factor(d)` in place (see `_distance_factor`), with float masks."""
    positive = greater(d, 0.0, "positive")
    coef.mul_(weights[:, None]).mul_(positive)
    if metric == "euclidean":
        coef.div_(positive.neg_().add_(1.0).add_(d))  # d where d > 0, else 1
    elif metric == "squared_euclidean":
        coef.mul_(2.0)


def _add_pairs(w: Tensor, rows: Optional[slice], columns: Tensor, values: Tensor, symmetric: bool) -> None:
    """`w[rows][i, columns[i, j]] += values[i, j]` (and the transposed entry
    when `symmetric`); `rows=None`: all of `w`'s rows."""
    (w if rows is None else w[rows]).scatter_add_(1, columns, values)
    if symmetric:
        (w if rows is None else w[:, rows]).scatter_add_(0, columns.t(), values.t())


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
        bounded = squares is None or squares[2]
        value = count = None
        shape = (a.shape[0], o.shape[0])  # `w`: kept for the backward pass
        w = torch.zeros(shape, dtype=a.dtype, device=a.device) if kind == "semihard" else \
            torch.empty(shape, dtype=a.dtype, device=a.device)
        slots = positive_slots(pos, valid)
        rows = max(1, _BLOCK_ELEMENTS // max(o.shape[0], 1))
        for s in range(0, a.shape[0], rows):
            b = None if rows >= a.shape[0] else slice(s, s + rows)  # None: the whole batch, not sliced
            part = (lambda x: x) if b is None else (lambda x: x[b])
            d = _distances(part(a), o, metric, squares and (part(squares[0]),) + squares[1:])
            block = (part(pos), part(neg), part(valid), d, margin, soft, nonzero, tuple(map(part, slots)))
            weight = part(weights)
            if kind == "semihard":
                v, n, cols, negatives, slope, d_ap, d_an = semihard_choices(*block, bounded)
                slope = torch.cat([slope, slope.neg()], 1).mul_(weight[:, None])
                _add_pairs(w, b, torch.cat([cols, negatives], 1),
                           _weighted_slopes(slope, torch.cat([d_ap, d_an], 1), metric), symmetric)
            else:
                v, n, coef = all_triplets(*block, part(w))
                _scale_dense(coef, d, weight, metric)
            value = accumulate(value, torch.dot(weight, v))
            count = accumulate(count, torch.dot(weight, n))
        ctx.metric, ctx.symmetric = metric, symmetric
        ctx.save_for_backward(w, anchors, others)
        ctx.mark_non_differentiable(count)  # a count: no gradient pass through the reducer's division by it
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
    if not (applies(anchors) and anchors.dtype == others.dtype):
        return None
    options = (kind, metric, float(margin), bool(soft), nonzero)
    return _TripletBlock.apply(anchors, others, pos, neg, valid, weights.to(anchors.dtype), options)
