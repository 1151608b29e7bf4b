"""The pieces every in-batch metric-learning loss is built from.

A loss over a batch of labelled embeddings is written as one function of a
block of anchors (`Rows`): it reads the block's distances or similarities to
the whole batch, its positive / negative masks, and returns, per anchor, a
numerator and a count. `per_anchor` runs that function over the whole batch,
or over row blocks of `chunk_size` anchors so that the memory is
`chunk_size x B` instead of `B x B`; `anchor_mean` turns numerators and counts
into the loss

    sum_a w_a num_a / sum_a w_a cnt_a      over the valid anchors,

where an anchor is valid when the batch holds at least one positive (same
label, not itself) and one negative (different label) for it, and `w_a` is
its `sample_weight`. A batch without a valid anchor gives 0 with gradient 0.

The miners (`semihard_triplets`, `all_triplets`) never build a `B x B x B`
tensor: they loop over the anchors' positives, one positive per anchor per
step (`B x B` work per step, as many steps as the largest number of
positives of an anchor), and return the triplets' loss and their first-order
coefficients on the distance matrix. The loop carries no gradient; the loss
is rebuilt from the coefficients (`linearized`), which gives the exact value
and the exact gradient.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

from keras import ops

from keras_lossplus.losses.base import check_choice, check_float_predictions, check_number
from keras_lossplus.ops import compute_dtype, l2_normalize, masked_max, masked_min, pairwise_distances

Tensor = Any

DISTANCES = ("euclidean", "squared_euclidean", "cosine")
SIMILARITIES = ("cosine", "dot")
_BIG = 3.0e38


# --------------------------------------------------------------------------- inputs


def check_chunk_size(chunk_size: Any) -> Optional[int]:
    """`None` or a positive int; raise naming `chunk_size` otherwise."""
    if chunk_size is None:
        return None
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(
            f"Argument `chunk_size` must be None or a positive integer. Received: chunk_size={chunk_size!r}"
        )
    return int(chunk_size)


def embedding_inputs(y_true: Any, y_pred: Any, normalize: bool = False) -> tuple:
    """Labels `(B,)` and embeddings `(B, D)` in the loss's compute dtype.

    `y_true` must have shape `(B,)` or `(B, 1)` and `y_pred` shape `(B, D)`;
    anything else raises `ValueError` naming the argument. With
    `normalize=True` the embeddings are L2-normalized.
    """
    check_float_predictions(y_pred)
    y_pred = ops.convert_to_tensor(y_pred)
    y_pred = ops.cast(y_pred, compute_dtype(y_pred.dtype))
    if len(y_pred.shape) != 2:
        raise ValueError(
            "`y_pred` must hold one embedding per sample, shape (batch_size, dim). "
            f"Received: y_pred.shape={tuple(y_pred.shape)}"
        )
    y_true = ops.convert_to_tensor(y_true)
    shape = tuple(y_true.shape)
    if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
        raise ValueError(
            "`y_true` must hold one integer class label per sample, shape (batch_size,) or "
            f"(batch_size, 1). Received: y_true.shape={shape}"
        )
    batch, labels_batch = y_pred.shape[0], shape[0]
    if batch is not None and labels_batch is not None and batch != labels_batch:
        raise ValueError(
            "`y_true` and `y_pred` must have the same batch size. "
            f"Received: y_true.shape={shape}, y_pred.shape={tuple(y_pred.shape)}"
        )
    labels = ops.reshape(y_true, (-1,))
    if normalize:
        y_pred = l2_normalize(y_pred)
    return labels, y_pred


def split_columns(y_pred: Any, parts: int, layout: str) -> list:
    """Split explicit tuples `[a | p | n ...]` concatenated on the last axis."""
    check_float_predictions(y_pred)
    y_pred = ops.convert_to_tensor(y_pred)
    y_pred = ops.cast(y_pred, compute_dtype(y_pred.dtype))
    width = y_pred.shape[-1]
    if len(y_pred.shape) != 2 or width is None or width % parts:
        raise ValueError(
            f"With mining='none', `y_pred` must be explicit tuples {layout} concatenated on "
            f"the last axis: shape (batch_size, {parts} * dim). Received: y_pred.shape={tuple(y_pred.shape)}"
        )
    return ops.split(y_pred, parts, axis=-1)


def check_options(distance: str, allowed: Sequence[str] = DISTANCES, **numbers: Any) -> None:
    """Validate `distance` and the non-negative number options."""
    check_choice("distance", distance, allowed)
    for name, value in numbers.items():
        check_number(name, value, low=0.0)


# --------------------------------------------------------------------------- blocks of anchors


class Rows:
    """A block of anchors (rows `start:stop` of the batch) against the whole batch.

    Attributes:
        embeddings: All embeddings `(B, D)`.
        anchors: The block's embeddings `(c, D)`.
        pos: `(c, B)` same label, not the anchor itself.
        neg: `(c, B)` different label.
        not_self: `(c, B)` every sample but the anchor.
        valid: `(c,)` the anchor has a positive and a negative.
        weights: `(c,)` the anchors' `sample_weight`, 0 for invalid anchors.
    """

    def __init__(
        self, embeddings: Tensor, labels: Tensor, start: Any = 0, stop: Any = None, sample_weight: Any = None
    ) -> None:
        self.embeddings = embeddings
        batch = ops.shape(embeddings)[0]
        self.start = start
        self.stop = batch if stop is None else stop
        whole = start == 0 and stop is None
        self.anchors = embeddings if whole else embeddings[start : self.stop]
        row_labels = labels if whole else labels[start : self.stop]
        rows = ops.arange(start, self.stop)
        self.not_self = ops.not_equal(ops.expand_dims(rows, 1), ops.expand_dims(ops.arange(batch), 0))
        same = ops.equal(ops.expand_dims(row_labels, 1), ops.expand_dims(labels, 0))
        self.pos = ops.logical_and(same, self.not_self)
        self.neg = ops.logical_not(same)
        self.positives = ops.sum(ops.cast(self.pos, "int32"), axis=1)
        self.valid = ops.logical_and(self.positives > 0, ops.any(self.neg, axis=1))
        weights = ops.cast(self.valid, embeddings.dtype)
        if sample_weight is not None:
            weights = weights * ops.cast(self.row(ops.reshape(sample_weight, (-1,))), embeddings.dtype)
        self.weights = weights

    def row(self, values: Tensor) -> Tensor:
        """The block's slice of a per-sample `(B, ...)` tensor."""
        return values[self.start : self.stop]

    def distances(self, metric: str) -> Tensor:
        """`(c, B)` distances from the anchors to every sample (0 to themselves)."""
        d = pairwise_distances(self.anchors, self.embeddings, metric=metric)
        return ops.where(self.not_self, d, ops.zeros_like(d))

    def similarities(self, kind: str) -> Tensor:
        """`(c, B)` cosine similarities or dot products of the anchors with every sample."""
        if kind == "cosine":
            return ops.matmul(l2_normalize(self.anchors), ops.transpose(l2_normalize(self.embeddings)))
        return ops.matmul(self.anchors, ops.transpose(self.embeddings))


def _block_bounds(batch: Optional[int], chunk_size: Optional[int]) -> list:
    if chunk_size is None or batch is None or chunk_size >= batch:
        return [(0, None)]
    return [(s, min(s + chunk_size, batch)) for s in range(0, batch, chunk_size)]


def per_anchor(
    embeddings: Tensor,
    labels: Tensor,
    chunk_size: Optional[int],
    fn: Callable[[Rows], tuple],
    sample_weight: Any = None,
) -> tuple:
    """Run `fn(rows) -> tuple of tensors` over the batch, in blocks of
    `chunk_size` anchors when given (and the batch size is static): `(c,)`
    results are joined into `(B,)` tensors, scalars are summed."""
    bounds = _block_bounds(embeddings.shape[0], chunk_size)
    results = [fn(Rows(embeddings, labels, start, stop, sample_weight)) for start, stop in bounds]
    if len(results) == 1:
        return tuple(results[0])
    joined = []
    for parts in zip(*results):
        if len(parts[0].shape) == 0:
            total = parts[0]
            for part in parts[1:]:
                total = total + part
            joined.append(total)
        else:
            joined.append(ops.concatenate(parts, axis=0))
    return tuple(joined)


def safe_ratio(total: Tensor, weight: Tensor) -> Tensor:
    """`total / weight`, or 0 (with gradient 0) where `weight` is 0."""
    has = weight > 0
    return ops.where(has, total / ops.where(has, weight, ops.ones_like(weight)), ops.zeros_like(total))


def mined_loss(rows: Rows, labels: Tensor, miner: Callable, metric: str, margin: float, soft: bool) -> tuple:
    """A block's `(sum_a w_a value_a, sum_a w_a count_a)` for a miner returning
    stop-gradient `(value, count, coef)`, the first carrying the gradient
    `distance_gradient` gives it."""
    d = ops.stop_gradient(rows.distances(metric))
    value, count, coef = miner(rows, labels, d, margin, soft)
    w = rows.weights
    carrier = distance_gradient(rows, coef * ops.expand_dims(w, 1), d, metric)
    return ops.sum(w * value) + carrier, ops.sum(w * count)


def anchor_mean(numerator: Tensor, count: Tensor, valid: Tensor, sample_weight: Any = None) -> Tensor:
    """`sum_a w_a num_a / sum_a w_a cnt_a` over the valid anchors; 0 (with
    gradient 0) when that denominator is 0."""
    valid = ops.cast(valid, numerator.dtype)
    if sample_weight is not None:
        valid = valid * ops.reshape(ops.cast(sample_weight, numerator.dtype), (-1,))
    total = ops.sum(ops.where(valid != 0, numerator, ops.zeros_like(numerator)) * valid)
    return safe_ratio(total, ops.sum(ops.cast(count, numerator.dtype) * valid))


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


def distance_gradient(rows: Rows, coef: Tensor, d: Tensor, metric: str) -> Tensor:
    """A scalar equal to 0 whose gradient with respect to the embeddings is
    that of `sum(coef * d)`, for stop-gradient `coef` and distances `d` of the
    block: the miners' losses are `sum(coef * d)` plus constants near the
    current point, so this carries their exact (first-order) gradient.

    The gradient is written out (two `(c, B) x (B, D)` matmuls) instead of
    differentiating through the block, so nothing of size `c x B` is kept for
    the backward pass: the memory is that of one block, whatever `B` is."""
    anchors, others = rows.anchors, rows.embeddings
    if metric == "cosine":  # d = 1 - <u_a, u_b>, u = e / |e|; the chain through u is autodiff's
        anchors, others = l2_normalize(anchors), l2_normalize(others)
    sa, so = ops.stop_gradient(anchors), ops.stop_gradient(others)
    coef = ops.where(d > 0, coef, ops.zeros_like(coef))  # the distances' subgradient 0 at 0
    if metric == "cosine":
        grad_a, grad_o = -ops.matmul(coef, so), -ops.matmul(ops.transpose(coef), sa)
    else:  # d(d_ab)/d(e_a) = w (e_a - e_b), w = 1 / d_ab (euclidean) or 2 (squared)
        w = coef / ops.where(d > 0, d, ops.ones_like(d)) if metric == "euclidean" else 2.0 * coef
        grad_a = ops.sum(w, axis=1, keepdims=True) * sa - ops.matmul(w, so)
        grad_o = ops.expand_dims(ops.sum(w, axis=0), 1) * so - ops.matmul(ops.transpose(w), sa)
    carrier = ops.sum(anchors * ops.stop_gradient(grad_a)) + ops.sum(others * ops.stop_gradient(grad_o))
    return carrier - ops.stop_gradient(carrier)


def semihard_triplets(rows: Rows, labels: Tensor, d: Tensor, margin: float, soft: bool) -> tuple:
    """Per anchor: the sum over its positives of `f(d_ap - d_an* + margin)` with
    FaceNet's semi-hard negative `n*`: the closest negative farther than the
    positive, else the farthest negative (tensorflow-addons' rule); the
    number of positives; the loss's coefficients on `d` (see `_slot_loop`)."""
    sg = ops.stop_gradient(d)
    big = ops.full_like(sg, _BIG)
    far_index = ops.cast(ops.argmax(ops.where(rows.neg, sg, -big), axis=1), "int32")
    columns = ops.expand_dims(ops.arange(ops.shape(sg)[1], dtype="int32"), 0)
    last = ops.shape(sg)[1] - 1

    def step(p, used, d_ap, state):
        value, pos_coef, neg_coef = state
        filled = ops.where(ops.logical_and(rows.neg, sg > ops.expand_dims(d_ap, 1)), sg, big)
        least = ops.min(filled, axis=1, keepdims=True)
        # the first column holding the minimum: two plain reductions are
        # several times faster than one argmin under XLA on CPU
        nearest = ops.min(ops.where(ops.equal(filled, least), columns, last), axis=1)
        has = least[:, 0] < _BIG
        n = ops.where(has, nearest, far_index)
        d_an = ops.take_along_axis(sg, ops.expand_dims(n, 1), axis=1)[:, 0]
        loss, slope = hinge_or_softplus(d_ap - d_an + margin, soft)
        zero = ops.zeros_like(loss)
        loss, slope = ops.where(used, loss, zero), ops.where(used, slope, zero)
        return value + loss, _add_at(pos_coef, p, slope), _add_at(neg_coef, n, slope)

    value, pos_coef, neg_coef = _slot_loop(rows, labels, d, step, ())
    return value, ops.cast(rows.positives, d.dtype), pos_coef - neg_coef


def all_triplets(rows: Rows, labels: Tensor, d: Tensor, margin: float, soft: bool) -> tuple:
    """Per anchor: the sum of `f(d_ap - d_an + margin)` over every (positive,
    negative) pair, the number of triplets it averages over (those with a
    positive loss for the hinge, all of them for the soft margin), and the
    loss's coefficients on `d`."""
    sg = ops.stop_gradient(d)
    zeros = ops.zeros_like(sg)

    def step(p, used, d_ap, state):
        value, pos_coef, neg_coef, count = state
        on = ops.logical_and(rows.neg, ops.expand_dims(used, 1))
        t = ops.expand_dims(d_ap, 1) - sg + margin
        if soft:
            slope = ops.where(on, ops.sigmoid(t), zeros)
            value = value + ops.sum(ops.where(on, ops.softplus(t), zeros), axis=1)
            kept = ops.sum(ops.cast(on, sg.dtype), axis=1)
        else:
            slope = ops.where(ops.logical_and(on, t > 0), ops.ones_like(sg), zeros)
            kept = ops.sum(slope, axis=1)
        return value, _add_at(pos_coef, p, ops.sum(slope, axis=1)), neg_coef + slope, count + kept

    value, pos_coef, neg_coef, count = _slot_loop(rows, labels, d, step, (ops.zeros_like(d[:, 0]),))
    if not soft:  # every kept hinge term is d_ap - d_an + margin
        value = ops.sum((pos_coef - neg_coef) * sg, axis=1) + margin * count
    return value, count, pos_coef - neg_coef


def _pick(d: Tensor, mask: Tensor, target: Tensor) -> Tensor:
    """One-hot (shared between ties) of the entries of `mask` equal to `target`."""
    hit = ops.cast(ops.logical_and(mask, ops.equal(d, ops.expand_dims(target, 1))), d.dtype)
    return hit / ops.maximum(ops.sum(hit, axis=1, keepdims=True), 1.0)


def hard_triplets(rows: Rows, labels: Tensor, d: Tensor, margin: float, soft: bool) -> tuple:
    """Per anchor (batch-hard): `f(max_p d_ap - min_n d_an + margin)`, a count
    of 1, and the loss's coefficients on `d`."""
    d = ops.stop_gradient(d)
    d_ap, d_an = masked_max(d, rows.pos, axis=1), masked_min(d, rows.neg, axis=1)
    value, slope = hinge_or_softplus(d_ap - d_an + margin, soft)
    coef = ops.expand_dims(slope, 1) * (_pick(d, rows.pos, d_ap) - _pick(d, rows.neg, d_an))
    return value, ops.ones_like(value), coef


def hardest(rows: Rows, d: Tensor) -> tuple:
    """Per anchor: the farthest positive's and the closest negative's distance."""
    return masked_max(d, rows.pos, axis=1), masked_min(d, rows.neg, axis=1)


def positive_count(rows: Rows, dtype: Any) -> Tensor:
    """Number of positives of each anchor."""
    return ops.cast(rows.positives, dtype)
