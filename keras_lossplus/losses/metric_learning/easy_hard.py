"""Easy / semi-hard / hard positive and negative mining (Xuan et al. 2020),
as pytorch-metric-learning's `BatchEasyHardMiner`."""

from __future__ import annotations

from typing import Any, Optional, Sequence

from keras import ops

from keras_lossplus.losses.metric_learning.miners import all_triplets, hinge_or_softplus
from keras_lossplus.losses.metric_learning.mining import Miner, register_miner
from keras_lossplus.losses.metric_learning.reducers import AvgNonZeroReducer, Reducer
from keras_lossplus.losses.options import check_choice, check_number
from keras_lossplus.ops import largest_finite

Tensor = Any

STRATEGIES = ("easy", "semihard", "hard", "all")


def _range(name: str, value: Any) -> Optional[list]:
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ValueError(f"Argument `{name}` must be None or a pair (low, high). Received: {name}={value!r}")
    low, high = (check_number(name, v, allow_inf=True) for v in value)
    if low > high:
        raise ValueError(f"Argument `{name}` must have low <= high. Received: {name}={value!r}")
    return [low, high]


def _within(mask: Tensor, d: Tensor, bounds: Optional[Sequence[float]]) -> Tensor:
    if bounds is None:
        return mask
    return ops.logical_and(mask, ops.logical_and(d >= bounds[0], d <= bounds[1]))


def _extreme(d: Tensor, mask: Tensor, largest: bool) -> tuple:
    """Per row: a one-hot `(c, B)` of the first column holding the largest
    (or smallest) `d` within `mask`, its value, and whether the row has one."""
    big = largest_finite(d.dtype)
    filled = ops.where(mask, d if largest else -d, ops.full_like(d, -big))
    top = ops.max(filled, axis=1, keepdims=True)
    columns = ops.expand_dims(ops.arange(ops.shape(d)[1], dtype="int32"), 0)
    first = ops.min(ops.where(ops.equal(filled, top), columns, ops.shape(d)[1]), axis=1, keepdims=True)
    has = ops.any(mask, axis=1)
    onehot = ops.logical_and(ops.equal(columns, first), ops.expand_dims(has, 1))
    return onehot, ops.sum(ops.where(onehot, d, ops.zeros_like(d)), axis=1), has


@register_miner
class BatchEasyHardMiner(Miner):
    r"""Each anchor's easy, semi-hard, hard or all positives and negatives
    (Xuan et al. 2020), as pytorch-metric-learning's `BatchEasyHardMiner`.

    Per anchor: positives `"easy"` (the closest), `"hard"` (the farthest),
    `"semihard"` (the farthest closer than the chosen negative) or `"all"`;
    negatives `"easy"` (the farthest), `"hard"` (the closest),
    `"semihard"` (the closest farther than the chosen positive) or `"all"`.
    The triplets are every chosen positive with every chosen negative; an
    anchor lacking either has none. `allowed_pos_range` / `allowed_neg_range`
    `(low, high)` restrict the pairs a strategy other than `"all"` chooses
    from to those whose distance is in the range (the peer ignores them for
    `"all"`, and so does this miner). By
    default the triplets' losses are averaged over those with a positive
    loss (`AvgNonZeroReducer`, as pytorch-metric-learning's
    `TripletMarginLoss`). `O(B^2)` work, a loop over positives only for
    `"all"` x `"all"`.

    Args:
        pos_strategy: `"easy"`, `"semihard"`, `"hard"` or `"all"`.
        neg_strategy: `"easy"`, `"semihard"`, `"hard"` or `"all"` (not both
            `"semihard"`, and `"semihard"` not with `"all"`).
        allowed_pos_range: `None` or `(low, high)`.
        allowed_neg_range: `None` or `(low, high)`.

    Reference:
        Xuan, Stylianou, Liu & Pless, "Hard Negative Examples are Hard, but
        Useful", ECCV 2020; pytorch-metric-learning `BatchEasyHardMiner`.

    Examples:
        >>> import keras_lossplus as klp
        >>> miner = BatchEasyHardMiner(pos_strategy="easy", neg_strategy="hard")
        >>> loss = klp.losses.TripletLoss(margin=1.0, mining=miner)
        >>> round(float(loss([0, 0, 1, 1], [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [2.0, 0.0]])), 4)
        0.8619
    """

    def __init__(self, pos_strategy: str = "easy", neg_strategy: str = "semihard",
                 allowed_pos_range: Optional[Sequence[float]] = None,
                 allowed_neg_range: Optional[Sequence[float]] = None) -> None:
        check_choice("pos_strategy", pos_strategy, STRATEGIES)
        check_choice("neg_strategy", neg_strategy, STRATEGIES)
        pair = {pos_strategy, neg_strategy}
        if pos_strategy == neg_strategy == "semihard" or pair == {"semihard", "all"}:
            raise ValueError(
                "Arguments `pos_strategy` and `neg_strategy` cannot both be \"semihard\", and \"semihard\" "
                f"cannot be used with \"all\". Received: pos_strategy={pos_strategy!r}, "
                f"neg_strategy={neg_strategy!r}"
            )
        self.pos_strategy = pos_strategy
        self.neg_strategy = neg_strategy
        self.allowed_pos_range = _range("allowed_pos_range", allowed_pos_range)
        self.allowed_neg_range = _range("allowed_neg_range", allowed_neg_range)

    def get_config(self) -> dict:
        return {
            "pos_strategy": self.pos_strategy,
            "neg_strategy": self.neg_strategy,
            "allowed_pos_range": self.allowed_pos_range,
            "allowed_neg_range": self.allowed_neg_range,
        }

    def default_reducer(self, soft: bool) -> Reducer:
        return AvgNonZeroReducer()

    def _positives(self, d: Tensor, pos: Tensor, d_an: Any = None) -> tuple:
        if d_an is not None:  # semi-hard: the farthest positive closer than the negative
            pos = ops.logical_and(pos, d < ops.expand_dims(d_an, 1))
        return _extreme(d, pos, largest=self.pos_strategy != "easy")

    def _negatives(self, d: Tensor, neg: Tensor, d_ap: Any = None) -> tuple:
        if d_ap is not None:  # semi-hard: the closest negative farther than the positive
            neg = ops.logical_and(neg, d > ops.expand_dims(d_ap, 1))
        return _extreme(d, neg, largest=self.neg_strategy == "easy")

    def mine(self, rows, labels, d, margin, soft, nonzero):
        d = ops.stop_gradient(d)
        ps, ns = self.pos_strategy, self.neg_strategy
        if ps == ns == "all":
            return all_triplets(rows, labels, d, margin, soft, nonzero)
        # as the peer, the ranges filter the pairs a strategy chooses from, not "all"
        pos = rows.pos if ps == "all" else _within(rows.pos, d, self.allowed_pos_range)
        neg = rows.neg if ns == "all" else _within(rows.neg, d, self.allowed_neg_range)
        if ps == "semihard":
            n_hot, d_an, has_n = self._negatives(d, neg)
            p_hot, d_ap, has_p = self._positives(d, pos, d_an)
        elif ns == "semihard":
            p_hot, d_ap, has_p = self._positives(d, pos)
            n_hot, d_an, has_n = self._negatives(d, neg, d_ap)
        else:
            p_hot, d_ap, has_p = self._positives(d, pos) if ps != "all" else (pos, None, ops.any(pos, axis=1))
            n_hot, d_an, has_n = self._negatives(d, neg) if ns != "all" else (neg, None, ops.any(neg, axis=1))
        both = ops.expand_dims(ops.logical_and(has_p, has_n), 1)
        if ps == "all":  # every kept positive with the one negative
            on = ops.logical_and(p_hot, both)
            t = d - ops.expand_dims(d_an, 1) + margin
        else:  # the one positive with every kept negative (one of them unless ns == "all")
            on = ops.logical_and(n_hot, both)
            t = ops.expand_dims(d_ap, 1) - d + margin
        zeros = ops.zeros_like(d)
        loss, slope = hinge_or_softplus(t, soft)
        loss, slope = ops.where(on, loss, zeros), ops.where(on, slope, zeros)
        value = ops.sum(loss, axis=1)
        count = ops.sum(ops.cast(ops.logical_and(on, loss > 0) if nonzero else on, d.dtype), axis=1)
        total = ops.sum(slope, axis=1, keepdims=True)
        if ps == "all":
            coef = slope - ops.cast(n_hot, d.dtype) * total
        else:
            coef = ops.cast(p_hot, d.dtype) * total - slope
        return value, count, coef
