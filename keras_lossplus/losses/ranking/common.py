"""What every ranking loss shares: the inputs (labels, scores, padding,
per-item weights), the eager check of the labels, the pieces of NDCG, and
`RankingLoss`, the base class that routes a per-item `sample_weight` into
the loss."""

from __future__ import annotations

import functools
import inspect
import math
from typing import Any, Callable, ClassVar, Optional

import numpy as np
from keras import ops

from keras_lossplus import backend as klp_backend
from keras_lossplus.backend import compiled_on_jax
from keras_lossplus.losses.base import LossPlus, prepare_inputs, with_keras_mask
from keras_lossplus.losses.options import choice, flag, number, optional
from keras_lossplus.ops import largest_finite

Tensor = Any

_LN2 = math.log(2.0)

MASK_VALUE = optional(number())
"""The label of padded items (any finite number), or `None`."""

TEMPERATURE = number(low=0.0, low_open=True)
"""`T > 0`: the scores are divided by it."""

PAIR_REDUCTIONS = ("mean", "sum", "per_item")
PAIR_REDUCTION = choice(*PAIR_REDUCTIONS)


# --------------------------------------------------------------------------- the labels, checked eagerly


def check_relevance_labels(y_true: Any, mask_value: Optional[float]) -> None:
    """Raise `ValueError` naming `y_true` when concrete labels hold a NaN or
    an infinity, or a negative label other than `mask_value`; nothing for a
    traced `y_true` (inside `jax.jit` / `tf.function` such items are left
    out of the loss, like padding)."""
    if not isinstance(y_true, (np.ndarray, list, tuple)) and not klp_backend.is_concrete(y_true):
        return
    values = np.asarray(y_true if isinstance(y_true, (list, tuple)) else ops.convert_to_numpy(y_true))
    if not np.issubdtype(values.dtype, np.floating):
        values = values.astype("float64")
    padding = f"`mask_value`={mask_value!r}" if mask_value is not None else "`mask_value`=None: no padding"
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(values)
        kind = "non-finite"
        if not np.any(bad):
            bad = values < 0
            if mask_value is not None:
                bad &= values != mask_value
            kind = "negative"
    if np.any(bad):
        raise ValueError(
            "`y_true` must hold relevance labels >= 0 (0 irrelevant, 1, 2, ... more relevant), the padded "
            f"items labelled `mask_value` ({padding}). Received {int(np.sum(bad))} {kind} value(s) in y_true "
            f"(shape {values.shape}), e.g. {values[bad].ravel()[:5].tolist()}. keras-rs and TF-Ranking treat "
            "every negative label as padding: pass the padding label as `mask_value`. (Under jit such items "
            "are left out of the loss, like padding.)"
        )


def relevance_checked(fn: Callable) -> Callable:
    """Decorate a ranking loss function so that `check_relevance_labels`
    runs first, outside any `compiled_on_jax` compilation below it."""
    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        check_relevance_labels(bound.arguments["y_true"], bound.arguments["mask_value"])
        return fn(*args, **kwargs)

    return wrapper


# --------------------------------------------------------------------------- inputs


def _check_list_shapes(y_true: Tensor, y_pred: Tensor) -> None:
    t, p = tuple(y_true.shape), tuple(y_pred.shape)
    if len(p) == 0:
        raise ValueError(
            "`y_pred` must hold one score per item, shape (batch_size, list_size). "
            f"Received: y_pred.shape={p}"
        )
    same_rank = len(t) == len(p)
    if not same_rank or any(a is not None and b is not None and a != b for a, b in zip(t, p)):
        what = "the list sizes differ" if same_rank and t[-1] != p[-1] else "the shapes differ"
        raise ValueError(
            "Ranking losses take `y_true` (relevance labels) and `y_pred` (scores) of the same shape "
            f"(batch_size, list_size); {what}. Received: y_true.shape={t}, y_pred.shape={p}"
        )


def _drop_unit_item_axis(y_true: Tensor, y_pred: Tensor) -> tuple:
    """One score per item from a `Dense(1)` applied to every item: `(B, L, 1)`
    scores for `(B, L)` labels (or the other way round)."""
    if len(y_pred.shape) == len(y_true.shape) + 1 >= 3 and y_pred.shape[-1] == 1:
        y_pred = ops.squeeze(y_pred, axis=-1)
    elif len(y_true.shape) == len(y_pred.shape) + 1 >= 3 and y_true.shape[-1] == 1:
        y_true = ops.squeeze(y_true, axis=-1)
    return y_true, y_pred


def _static_shape(x: Any) -> tuple:
    return tuple(x.shape) if hasattr(x, "shape") else np.shape(x)


def list_shape(y_true: Any, y_pred: Any) -> tuple:
    """The static shape `(..., list_size)` of the lists (a trailing unit axis
    of `y_true` or `y_pred` dropped)."""
    t, p = _static_shape(y_true), _static_shape(y_pred)
    if len(p) == len(t) + 1 >= 3 and p[-1] == 1:
        return t
    if len(t) == len(p) + 1 >= 3 and t[-1] == 1:
        return p
    return p


def ranking_inputs(
    y_true: Any, y_pred: Any, mask_value: Optional[float], temperature: float = 1.0, sample_weight: Any = None
) -> tuple:
    """`(labels, scores, valid, weights)`: the labels (0 at padding), the
    scores divided by `temperature`, the boolean mask of valid items (not
    `mask_value`, finite and `>= 0`) and the per-item weights (0 at padding;
    `None` when `sample_weight` is `None`)."""
    y_true, y_pred = prepare_inputs(y_true, y_pred)
    y_true, y_pred = _drop_unit_item_axis(y_true, y_pred)
    _check_list_shapes(y_true, y_pred)
    # NaN >= 0 is false; a label of +inf is refused eagerly and left out here
    valid = ops.logical_and(y_true >= 0, y_true < largest_finite(y_true.dtype))
    if mask_value is not None:
        valid = ops.logical_and(valid, ops.not_equal(y_true, ops.cast(mask_value, y_true.dtype)))
    labels = ops.where(valid, y_true, ops.zeros_like(y_true))
    scores = y_pred if temperature == 1.0 else y_pred / ops.cast(temperature, y_pred.dtype)
    weights = None
    if sample_weight is not None:
        weights = ops.cast(ops.convert_to_tensor(sample_weight), y_pred.dtype)
        if len(weights.shape) == len(y_pred.shape) + 1 and weights.shape[-1] == 1:
            weights = ops.squeeze(weights, axis=-1)
        w, p = tuple(weights.shape), tuple(y_pred.shape)
        if len(w) != len(p) or any(a is not None and b is not None and a != b for a, b in zip(w, p)):
            raise ValueError(
                "`sample_weight` of a ranking loss function holds one weight per item, the shape of the lists "
                f"{tuple(y_pred.shape)}; per-query weights go to the loss class (Keras' `sample_weight`). "
                f"Received: sample_weight.shape={w}"
            )
        weights = ops.where(valid, weights, ops.zeros_like(weights))
    return labels, scores, valid, weights


# --------------------------------------------------------------------------- shared pieces


def rows(x: Tensor) -> Tensor:
    return ops.expand_dims(x, -1)


def cols(x: Tensor) -> Tensor:
    return ops.expand_dims(x, -2)


def preferred_pairs(labels: Tensor, valid: Tensor) -> Tensor:
    """`(..., L, L)` mask of the pairs `(i, j)` of valid items with `y_i > y_j`."""
    both = ops.logical_and(rows(valid), cols(valid))
    return ops.logical_and(rows(labels) > cols(labels), both)


def distinct_pairs(valid: Tensor) -> Tensor:
    """`(..., L, L)` mask of the ordered pairs `(i, j)`, `i != j`, of valid items."""
    size = valid.shape[-1]
    both = ops.logical_and(rows(valid), cols(valid))
    return ops.logical_and(both, ops.logical_not(ops.eye(size, dtype="bool")))


def score_differences(scores: Tensor) -> Tensor:
    """`(..., L, L)` matrix of `s_i - s_j`."""
    return rows(scores) - cols(scores)


def masked_sum(x: Tensor, mask: Tensor, axis: Any) -> Tensor:
    return ops.sum(ops.where(mask, x, ops.zeros_like(x)), axis=axis)


def has_relevant(labels: Tensor, valid: Tensor) -> Tensor:
    return ops.any(ops.logical_and(valid, labels > 0), axis=-1)


def weighted(terms: Tensor, weights: Optional[Tensor]) -> Tensor:
    """`terms` times the weights (no-op without weights); `weights` already
    shaped to broadcast."""
    return terms if weights is None else terms * weights


def gains(labels: Tensor, valid: Tensor) -> Tensor:
    """`2^y - 1` at valid items, 0 at padding."""
    g = ops.expm1(labels * _LN2)
    return ops.where(valid, g, ops.zeros_like(g))


def inverse_discount(ranks: Tensor) -> Tensor:
    """`1 / log2(1 + rank)` for ranks `>= 1`."""
    return _LN2 / ops.log1p(ranks)


def inverse_ideal_dcg(gain: Tensor) -> Tensor:
    """`1 / IDCG` per list (0 where IDCG is 0), with
    `IDCG = sum_k G_(k) / log2(1 + k)` over the gains sorted descending."""
    ideal = ops.flip(ops.sort(gain, axis=-1), axis=-1)
    positions = ops.arange(1, ops.shape(gain)[-1] + 1, dtype=gain.dtype)
    idcg = ops.sum(ideal * inverse_discount(positions), axis=-1)
    positive = idcg > 0
    return ops.where(positive, 1.0 / ops.where(positive, idcg, ops.ones_like(idcg)), ops.zeros_like(idcg))


def descending_ranks(scores: Tensor, valid: Tensor) -> Tensor:
    """1-based rank of every item when the valid items are sorted by
    decreasing score (ties in input order), padding after them."""
    key = ops.where(valid, -scores, ops.full_like(scores, largest_finite(scores.dtype)))  # padding sorts last
    order = ops.argsort(key, axis=-1)
    return ops.cast(ops.argsort(order, axis=-1) + 1, scores.dtype)


@compiled_on_jax
def nonempty_lists(y_true: Tensor, y_pred: Tensor, mask_value: Optional[float] = -1.0) -> Tensor:
    """Whether each list has a valid (non-padding) item, `(B,)`."""
    return ops.any(ranking_inputs(y_true, y_pred, mask_value)[2], axis=-1)


# --------------------------------------------------------------------------- the base class


_PACKED = "_keras_lossplus_item_weights"  # the key under which __call__ hands per-item weights to call


def _is_per_item(weights: Tensor, shape: tuple) -> bool:
    w = tuple(weights.shape)
    if len(w) == len(shape) + 1 and w[-1] == 1:
        w = w[:-1]
    return len(shape) >= 2 and shape[-1] != 1 and len(w) == len(shape) and w[-1] in (shape[-1], None)


class RankingLoss(LossPlus):
    """Base of the ranking losses: Keras' reduction over the queries, with

    * a per-item `sample_weight` (the shape of the lists, `(B, list_size)`)
      passed into the loss function, where each loss says what an item's
      weight multiplies; a per-query one (`(B,)`) is Keras' own;
    * `skip_empty_lists=True`: the queries whose items are all padding are
      left out of the batch mean (a Keras mask on the per-query values).
    """

    def __init__(self, *, skip_empty_lists: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.skip_empty_lists = flag("skip_empty_lists", skip_empty_lists)

    @property
    def _per_item_output(self) -> bool:
        return self._options.get("pair_reduction") == "per_item"

    def __call__(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> Tensor:
        if sample_weight is not None:
            sample_weight = ops.convert_to_tensor(sample_weight)
            shape = list_shape(y_true, y_pred)
            if _is_per_item(sample_weight, shape):
                if not self._per_item_output:  # into the loss function
                    packed = {"y_true": ops.convert_to_tensor(y_true), _PACKED: sample_weight}
                    return super().__call__(packed, y_pred)
            elif self._per_item_output:  # one weight per query: the same for each of its items
                if len(sample_weight.shape) < len(shape):
                    sample_weight = ops.expand_dims(sample_weight, -1)
                y_pred = ops.convert_to_tensor(y_pred)
                sample_weight = ops.broadcast_to(sample_weight, ops.shape(y_pred)[: len(shape)])
        return super().__call__(y_true, y_pred, sample_weight=sample_weight)

    def call(self, y_true: Any, y_pred: Tensor) -> Tensor:
        weights = None
        if isinstance(y_true, dict) and _PACKED in y_true:
            y_true, weights = y_true["y_true"], y_true[_PACKED]
        values = self._fn(y_true, y_pred, sample_weight=weights, **self._options)
        if not self.skip_empty_lists:
            return values
        nonempty = nonempty_lists(y_true, y_pred, mask_value=self._options.get("mask_value"))
        if self._per_item_output:
            nonempty = ops.broadcast_to(ops.expand_dims(nonempty, -1), ops.shape(values))
        return with_keras_mask(values, nonempty)

    def get_config(self) -> dict:
        config = super().get_config()
        config["skip_empty_lists"] = self.skip_empty_lists
        return config


# --------------------------------------------------------------------------- the pairwise losses' core


PAIRWISE_OPTIONS = dict(temperature=TEMPERATURE, pair_reduction=PAIR_REDUCTION, mask_value=MASK_VALUE)


def reduce_pairs(terms: Tensor, pairs: Tensor, pair_reduction: str) -> Tensor:
    if pair_reduction == "per_item":
        return masked_sum(terms, pairs, axis=-1)
    total = masked_sum(terms, pairs, axis=(-2, -1))
    if pair_reduction == "sum":
        return total
    count = ops.sum(ops.cast(pairs, terms.dtype), axis=(-2, -1))
    return total / ops.maximum(count, 1.0)


def pairwise_terms(
    term: Callable[[Tensor, Tensor], Tensor],
    y_true: Any,
    y_pred: Any,
    temperature: float,
    pair_reduction: str,
    mask_value: Optional[float],
    sample_weight: Any,
    every_pair: bool = False,
) -> Tensor:
    """`term(d, label_differences)` over the pairs, each pair's term times
    the weight of the item that leads it, reduced by `pair_reduction`."""
    labels, scores, valid, weights = ranking_inputs(y_true, y_pred, mask_value, temperature, sample_weight)
    pairs = distinct_pairs(valid) if every_pair else preferred_pairs(labels, valid)
    terms = term(score_differences(scores), rows(labels) - cols(labels))
    return reduce_pairs(weighted(terms, None if weights is None else rows(weights)), pairs, pair_reduction)


class PairwiseRankingLoss(RankingLoss):
    """The constructor the pairwise losses without options of their own share."""

    default_name: ClassVar[str]

    def __init__(
        self,
        mask_value: Optional[float] = -1.0,
        temperature: float = 1.0,
        pair_reduction: str = "mean",
        skip_empty_lists: bool = False,
        reduction: Optional[str] = "sum_over_batch_size",
        name: Optional[str] = None,
        dtype: Any = None,
    ) -> None:
        super().__init__(reduction=reduction, name=name or self.default_name, dtype=dtype,
                         skip_empty_lists=skip_empty_lists, temperature=temperature, pair_reduction=pair_reduction,
                         mask_value=mask_value)
