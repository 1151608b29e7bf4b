"""Triplet miners (semi-hard, all, hard) that never build a `B x B x B` tensor.

Each miner is a function `miner(rows, labels, d, margin, soft, nonzero) ->
(value, count, coef)` of a block of anchors: per anchor, the sum of its
triplets' losses, the number of triplets it averages over (all of them, or
with `nonzero=True` those with a positive loss) and the loss's
(stop-gradient) coefficients on the distances `d`."""

from __future__ import annotations

from typing import Any, Callable

from keras import ops

from keras_lossplus import backend as klp_backend
from keras_lossplus.losses.metric_learning.distances import named_metric, resolve_distance
from keras_lossplus.losses.metric_learning.rows import Rows
from keras_lossplus.ops import l2_normalize, largest_finite, masked_max, masked_min

Tensor = Any


def mined_loss(rows: Rows, labels: Tensor, miner: Callable, distance: Any, margin: float, soft: bool,
               nonzero: bool) -> tuple:
    """A block's `(sum_a w_a value_a, sum_a w_a count_a)` for a miner returning
    stop-gradient `(value, count, coef)`, the first carrying the gradient
    `distance_gradient` gives it."""
    distance = resolve_distance(distance)
    fast = _block_kernel(rows, miner, distance, margin, soft, nonzero)
    if fast is not None:
        return fast
    d = ops.stop_gradient(rows.distances(distance))
    value, count, coef = miner(rows, labels, d, margin, soft, nonzero)
    w = rows.weights
    carrier = distance_gradient(rows, coef * ops.expand_dims(w, 1), d, distance)
    return ops.sum(w * value) + carrier, ops.sum(w * count)


def _block_kernel(rows: Rows, miner: Any, distance: Any, margin: float, soft: bool, nonzero: Any) -> Any:
    """`mined_loss` by the backend's own kernel (`klp_backend.triplet_block`)
    for a built-in miner (its class's `kernel`) and a named distance; `None`
    where there is no such kernel."""
    kind = type(miner).__dict__.get("kernel")
    metric = named_metric(distance)
    if kind is None or metric is None:
        return None
    anchors, others = rows.anchors, rows.embeddings
    if metric == "cosine":  # normalized once when the anchors are the references (the kernel sees it)
        anchors = l2_normalize(anchors)
        others = anchors if rows.anchors is rows.embeddings else l2_normalize(others)
    return klp_backend.triplet_block(kind, anchors, others, rows.pos, rows.neg, rows.valid, rows.weights,
                                     metric, margin, soft, nonzero)


# --------------------------------------------------------------------------- triplet miners


def hinge_or_softplus(t: Tensor, soft: bool) -> tuple:
    """`(f(t), f'(t))` for the hinge `max(t, 0)` or the soft margin `softplus(t)`."""
    if soft:
        return ops.softplus(t), ops.sigmoid(t)
    active = ops.cast(t > 0, t.dtype)
    return t * active, active


def _positive_columns(rows: Rows, labels: Tensor) -> tuple:
    """Where each anchor's positives are, without a `B x B` pass: the batch
    sorted by label puts an anchor's class in one run, so its k-th positive
    (self skipped) is a fixed offset into that run.

    Returns `column(k) -> (c,) int` and the number of loop steps (the largest
    number of positives of an anchor in the block)."""
    batch = ops.shape(labels)[0]
    order = ops.argsort(labels)
    ranks = ops.scatter(ops.expand_dims(order, 1), ops.arange(batch, dtype="int32"), (batch,))
    ordered = ops.take(labels, order)
    own = rows.row(labels)
    left = ops.cast(ops.searchsorted(ordered, own, side="left"), "int32")
    size = ops.cast(ops.searchsorted(ordered, own, side="right"), "int32") - left
    offset = ops.cast(rows.row(ranks), "int32") - left  # the anchor's place in its run

    def column(k):
        q = left + (k - 1) + ops.cast(k - 1 >= offset, "int32")
        return ops.take(order, ops.minimum(q, batch - 1))

    return column, ops.max(size) - 1


def _add_at(matrix: Tensor, cols: Tensor, values: Tensor) -> Tensor:
    """`matrix[i, cols[i]] += values[i]` for every row `i` (O(rows) work)."""
    index = ops.stack([ops.arange(ops.shape(cols)[0], dtype=cols.dtype), cols], axis=1)
    current = ops.take_along_axis(matrix, ops.expand_dims(cols, 1), axis=1)[:, 0]
    return ops.scatter_update(matrix, index, current + values)


def _slot_loop(rows: Rows, labels: Tensor, d: Tensor, step: Callable, extra: tuple) -> tuple:
    """Loop over the anchors' k-th positives (k = 1, 2, ...): `step(p, used,
    d_ap, carry)` sees each anchor's k-th positive column `p` `(c,)`, whether
    the anchor has one (`used`) and its distance `d_ap`, and returns the new
    `carry = (value, pos_coef, neg_coef) + extra`. Runs on `stop_gradient(d)`;
    only the number of steps is data-dependent."""
    d = ops.stop_gradient(d)
    column, steps = _positive_columns(rows, labels)
    zeros_row = ops.zeros_like(d[:, 0])
    carry = (zeros_row, ops.zeros_like(d), ops.zeros_like(d)) + tuple(extra)

    def cond(k, *_):
        return k <= steps

    def body(k, *state):
        p = column(k)
        used = ops.logical_and(rows.positives >= ops.cast(k, rows.positives.dtype), rows.valid)
        d_ap = ops.take_along_axis(d, ops.expand_dims(p, 1), axis=1)[:, 0]
        return (k + 1,) + tuple(step(p, used, d_ap, state))

    out = ops.while_loop(cond, body, (ops.convert_to_tensor(1, "int32"),) + carry)
    return tuple(out[1:])


def distance_gradient(rows: Rows, coef: Tensor, d: Tensor, distance: Any) -> Tensor:
    """A scalar equal to 0 whose gradient with respect to the embeddings is
    that of `sum(coef * d)`, for stop-gradient `coef` and distances `d` of the
    block: the miners' losses are `sum(coef * d)` plus constants near the
    current point, so this carries their exact (first-order) gradient.

    For the named distances (`metric` "euclidean", "squared_euclidean",
    "cosine") the gradient is written out (two `(c, B) x (B, D)` matmuls)
    instead of differentiating through the block, so nothing of size `c x B`
    is kept for the backward pass: the memory is that of one block, whatever
    `B` is. Any other `Distance` is differentiated through its `pairwise`."""
    metric = getattr(distance, "metric", None)
    coef = ops.where(d > 0, coef, ops.zeros_like(coef))  # the distances' subgradient 0 at 0
    if metric is None:
        total = ops.sum(coef * distance.pairwise(rows.anchors, rows.embeddings))
        return total - ops.stop_gradient(total)
    anchors, others = rows.anchors, rows.embeddings
    if metric == "cosine":  # d = 1 - <u_a, u_b>, u = e / |e|; the chain through u is autodiff's
        anchors, others = l2_normalize(anchors), l2_normalize(others)
    sa, so = ops.stop_gradient(anchors), ops.stop_gradient(others)
    if metric == "cosine":
        grad_a, grad_o = -ops.matmul(coef, so), -ops.matmul(ops.transpose(coef), sa)
    else:  # d(d_ab)/d(e_a) = w (e_a - e_b), w = 1 / d_ab (euclidean) or 2 (squared)
        w = coef / ops.where(d > 0, d, ops.ones_like(d)) if metric == "euclidean" else 2.0 * coef
        grad_a = ops.sum(w, axis=1, keepdims=True) * sa - ops.matmul(w, so)
        grad_o = ops.expand_dims(ops.sum(w, axis=0), 1) * so - ops.matmul(ops.transpose(w), sa)
    carrier = ops.sum(anchors * ops.stop_gradient(grad_a)) + ops.sum(others * ops.stop_gradient(grad_o))
    return carrier - ops.stop_gradient(carrier)


def _backend_kernel(name: str, rows: Rows, d: Tensor, margin: float, soft: bool, nonzero: Any) -> Any:
    """The backend's own kernel's `(value, count, coef)` for this block, or
    `None` (no kernel, or it does not apply): `klp_backend.miner_kernel`."""
    kernel = klp_backend.miner_kernel(name)
    return None if kernel is None else kernel(rows.pos, rows.neg, rows.valid, d, margin, soft, nonzero)


def one_negative_per_positive(rows: Rows, labels: Tensor, d: Tensor, margin: float, soft: bool, nonzero: bool,
                              choose: Callable) -> tuple:
    """Per anchor: the sum over its positives `p` of `f(d_ap - d_an + margin)`
    with the negative `n = choose(p, d_ap)` `(c,)` of each, the number of
    positives (of those with a positive loss, `nonzero=True`) and the loss's
    coefficients on `d` (see `_slot_loop`)."""

    def step(p, used, d_ap, state):
        value, pos_coef, neg_coef = state[:3]
        n = choose(p, d_ap)
        d_an = ops.take_along_axis(ops.stop_gradient(d), ops.expand_dims(n, 1), axis=1)[:, 0]
        loss, slope = hinge_or_softplus(d_ap - d_an + margin, soft)
        zero = ops.zeros_like(loss)
        loss, slope = ops.where(used, loss, zero), ops.where(used, slope, zero)
        out = (value + loss, _add_at(pos_coef, p, slope), _add_at(neg_coef, n, slope))
        return out + ((state[3] + ops.cast(loss > 0, loss.dtype),) if nonzero else ())

    extra = (ops.zeros_like(d[:, 0]),) if nonzero else ()
    value, pos_coef, neg_coef, *count = _slot_loop(rows, labels, d, step, extra)
    count = count[0] if nonzero else ops.cast(rows.positives, d.dtype)
    return value, count, pos_coef - neg_coef


def semihard_triplets(rows: Rows, labels: Tensor, d: Tensor, margin: float, soft: bool,
                      nonzero: bool = False) -> tuple:
    """Per anchor: the sum over its positives of `f(d_ap - d_an* + margin)` with
    FaceNet's semi-hard negative `n*`: the closest negative farther than the
    positive, else the farthest negative (tensorflow-addons' rule); the
    number of positives (of those with a positive loss, `nonzero=True`); the
    loss's coefficients on `d` (see `_slot_loop`)."""
    fast = _backend_kernel("semihard", rows, d, margin, soft, nonzero)
    if fast is not None:
        return fast
    sg = ops.stop_gradient(d)
    big = ops.full_like(sg, largest_finite(sg.dtype))
    far_index = ops.cast(ops.argmax(ops.where(rows.neg, sg, -big), axis=1), "int32")
    columns = ops.expand_dims(ops.arange(ops.shape(sg)[1], dtype="int32"), 0)
    last = ops.shape(sg)[1] - 1

    def choose(p, d_ap):
        filled = ops.where(ops.logical_and(rows.neg, sg > ops.expand_dims(d_ap, 1)), sg, big)
        least = ops.min(filled, axis=1, keepdims=True)
        # the first column holding the minimum: two plain reductions are
        # several times faster than one argmin under XLA on CPU
        nearest = ops.min(ops.where(ops.equal(filled, least), columns, last), axis=1)
        has = least[:, 0] < largest_finite(sg.dtype)
        return ops.where(has, nearest, far_index)

    return one_negative_per_positive(rows, labels, d, margin, soft, nonzero, choose)


def all_triplets(rows: Rows, labels: Tensor, d: Tensor, margin: float, soft: bool, nonzero: Any = None) -> tuple:
    """Per anchor: the sum of `f(d_ap - d_an + margin)` over every (positive,
    negative) pair, the number
    of triplets it averages over (with `nonzero=None`, those with a positive
    loss for the hinge and all of them for the soft margin), and the loss's
    coefficients on `d`."""
    fast = _backend_kernel("all", rows, d, margin, soft, nonzero)
    if fast is not None:
        return fast
    sg = ops.stop_gradient(d)
    zeros = ops.zeros_like(sg)
    both = nonzero is not None and nonzero != (not soft)  # a count besides today's

    def step(p, used, d_ap, state):
        value, pos_coef, neg_coef, count = state[:4]
        on = ops.logical_and(rows.neg, ops.expand_dims(used, 1))
        t = ops.expand_dims(d_ap + margin, 1) - sg  # > 0 exactly when d_ap + margin > d_an (torch kernel)
        if soft:
            slope = ops.where(on, ops.sigmoid(t), zeros)
            terms = ops.where(on, ops.softplus(t), zeros)
            value = value + ops.sum(terms, axis=1)
            kept = ops.sum(ops.cast(on, sg.dtype), axis=1)
        else:
            slope = ops.where(ops.logical_and(on, t > 0), ops.ones_like(sg), zeros)
            kept = ops.sum(slope, axis=1)
        out = (value, _add_at(pos_coef, p, ops.sum(slope, axis=1)), neg_coef + slope, count + kept)
        if not both:
            return out
        other = ops.logical_and(on, terms > 0) if soft else on
        return out + (state[4] + ops.sum(ops.cast(other, sg.dtype), axis=1),)

    extra = (ops.zeros_like(d[:, 0]),) * (2 if both else 1)
    value, pos_coef, neg_coef, count, *other = _slot_loop(rows, labels, d, step, extra)
    if not soft:  # every kept hinge term is d_ap - d_an + margin
        value = ops.sum((pos_coef - neg_coef) * sg, axis=1) + margin * count
    return value, other[0] if both else count, pos_coef - neg_coef


def _pick(d: Tensor, mask: Tensor, target: Tensor) -> Tensor:
    """One-hot (shared between ties) of the entries of `mask` equal to `target`."""
    hit = ops.cast(ops.logical_and(mask, ops.equal(d, ops.expand_dims(target, 1))), d.dtype)
    return hit / ops.maximum(ops.sum(hit, axis=1, keepdims=True), 1.0)


def hard_triplets(rows: Rows, labels: Tensor, d: Tensor, margin: float, soft: bool,
                  nonzero: bool = False) -> tuple:
    """Per anchor (batch-hard): `f(max_p d_ap - min_n d_an + margin)`, a count
    of 1 (with `nonzero=True`, 1 if that loss is positive), and the loss's
    coefficients on `d`."""
    d = ops.stop_gradient(d)
    d_ap, d_an = masked_max(d, rows.pos, axis=1), masked_min(d, rows.neg, axis=1)
    value, slope = hinge_or_softplus(d_ap - d_an + margin, soft)
    coef = ops.expand_dims(slope, 1) * (_pick(d, rows.pos, d_ap) - _pick(d, rows.neg, d_an))
    return value, ops.cast(value > 0, value.dtype) if nonzero else ops.ones_like(value), coef


def hardest(rows: Rows, d: Tensor) -> tuple:
    """Per anchor: the farthest positive's and the closest negative's distance."""
    return masked_max(d, rows.pos, axis=1), masked_min(d, rows.neg, axis=1)


def positive_count(rows: Rows, dtype: Any) -> Tensor:
    """Number of positives of each anchor."""
    return ops.cast(rows.positives, dtype)
