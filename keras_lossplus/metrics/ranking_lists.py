"""The shared pieces of the list-wise ranking metrics (`ranking.py`):
checked inputs, the gain and discount options, tie-averaged positions and
keras-rs' per-list weights.

Ties are averaged, never broken: for an item tied with `m - 1` others,
below `a` strictly better ones, every position `a + 1 ... a + m` is equally
likely (a uniformly random order of the ties, what keras-rs draws at every
call). A per-position quantity `f` is averaged over those positions by
giving every tied item its *stable* position (ties by index) and taking the
mean of `f` over the tie group: `O(B L^2)` masked passes, no sort, every
shape static (McSherry & Najork 2008, "Computing Information Retrieval
Performance Measures Efficiently in the Presence of Tied Scores").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable, NamedTuple

import keras
from keras import ops

from keras_lossplus.ops import compute_dtype

Tensor = Any


# --------------------------------------------------------------------------- gains and discounts


def exp2_gain(labels: Tensor) -> Tensor:
    """`2^y - 1`: the gain of graded relevance (Burges et al. 2005)."""
    return ops.power(ops.cast(2.0, labels.dtype), labels) - 1.0


def identity_gain(labels: Tensor) -> Tensor:
    """`y`: the label itself (Järvelin & Kekäläinen 2002)."""
    return labels


def log2_discount(rank: Tensor) -> Tensor:
    """`1 / log2(1 + rank)`, ranks from 1."""
    return 1.0 / ops.log2(rank + 1.0)


GAINS = {"exp2": exp2_gain, "identity": identity_gain}
DISCOUNTS = {"log2": log2_discount}


def function_option(builtins: Mapping[str, Callable]) -> Callable[[str, Any], Callable]:
    """The check of `gain_fn` / `rank_discount_fn`: a built-in name, the
    registered name of a function (`keras.saving.register_keras_serializable`),
    the saved config of one, or a callable; returns the callable."""

    def check(name: str, value: Any) -> Callable:
        if isinstance(value, Mapping) and "class_name" in value:
            value = keras.saving.deserialize_keras_object(dict(value))
        if isinstance(value, str):
            fn = builtins.get(value) or keras.saving.get_registered_object(value)
            if fn is None or not callable(fn):
                raise ValueError(
                    f"Invalid value for argument `{name}`. Expected one of {tuple(builtins)}, the registered "
                    f"name of a function (keras.saving.register_keras_serializable) or a callable. "
                    f"Received: {name}={value!r}"
                )
            return fn
        if callable(value):
            return value
        raise TypeError(
            f"Argument `{name}` must be one of {tuple(builtins)} or a callable. "
            f"Received: {name}={value!r} of type {type(value).__name__}"
        )

    return check


gain_option = function_option(GAINS)
"""The check of `gain_fn=`: `"exp2"`, `"identity"` or a callable of the labels."""
discount_option = function_option(DISCOUNTS)
"""The check of `rank_discount_fn=`: `"log2"` or a callable of the 1-based ranks."""


def saved_function(value: Any) -> Any:
    """A `gain_fn` / `rank_discount_fn` as a config holds it: a name or a
    saved config unchanged, a callable serialized."""
    if isinstance(value, (str, Mapping)):
        return value
    return keras.saving.serialize_keras_object(value)


# --------------------------------------------------------------------------- inputs


class Lists(NamedTuple):
    """Checked lists: labels (0 at padding), scores, item weights (0 at
    padding) and the valid items, all `(..., list_size)` in the compute dtype."""

    labels: Tensor
    scores: Tensor
    weights: Tensor
    valid: Tensor


def _static_shape(x: Tensor) -> tuple:
    return tuple(x.shape)


def _compatible(a: tuple, b: tuple, broadcast: bool = False) -> bool:
    return len(a) == len(b) and all(
        x is None or y is None or x == y or (broadcast and x == 1) for x, y in zip(a, b)
    )


def _float(x: Any, dtype: Any = None) -> Tensor:
    x = ops.convert_to_tensor(x)
    if dtype is None:
        source = keras.backend.standardize_dtype(x.dtype)
        dtype = compute_dtype(source) if keras.backend.is_float_dtype(source) else keras.backend.floatx()
    return ops.cast(x, dtype)


def list_inputs(y_true: Any, y_pred: Any, sample_weight: Any = None, mask: Any = None) -> Lists:
    """Labels, scores, weights and mask checked and brought to `(..., L)`.

    `y_true` may be keras-rs' `{"labels": ..., "mask": ...}`. An item is
    **valid** when its label is `>= 0` (a negative or NaN label is padding),
    `mask` is true and its weight is `> 0`. `sample_weight`: a scalar, one
    weight per list (`y_true.shape[:-1]`) or per item (`y_true.shape`, or
    broadcastable to it). Scores of shape `(..., L, 1)` (a `Dense(1)` per
    item) are read as `(..., L)`. Bad shapes raise `ValueError` naming the
    argument.
    """
    if isinstance(y_true, Mapping):
        if "labels" not in y_true:
            raise ValueError(
                f'`y_true` given as a dict must hold "labels" (and optionally "mask"). '
                f"Received keys: {sorted(y_true)}"
            )
        if mask is not None and y_true.get("mask") is not None:
            raise ValueError('Pass the mask either as `mask` or as `y_true["mask"]`, not both.')
        y_true, mask = y_true["labels"], y_true.get("mask", mask)
    scores = _float(y_pred)
    labels = _float(y_true, scores.dtype)
    t, p = _static_shape(labels), _static_shape(scores)
    if len(p) == len(t) + 1 >= 2 and p[-1] == 1:
        scores, p = ops.squeeze(scores, axis=-1), p[:-1]
    elif len(t) == len(p) + 1 >= 2 and t[-1] == 1:
        labels, t = ops.squeeze(labels, axis=-1), t[:-1]
    if len(t) == 0 or not _compatible(t, p):
        raise ValueError(
            "List-wise ranking metrics take `y_true` (relevance labels) and `y_pred` (scores) of the same "
            f"shape (batch_size, list_size) or (list_size,). Received: y_true.shape={t}, y_pred.shape={p}"
        )
    valid = ops.greater_equal(labels, 0.0)
    if mask is not None:
        mask = ops.convert_to_tensor(mask)
        if not _compatible(_static_shape(mask), t):
            raise ValueError(
                f"`mask` must have the shape of `y_true`. Received: mask.shape={_static_shape(mask)}, "
                f"y_true.shape={t}"
            )
        valid = ops.logical_and(valid, ops.cast(mask, "bool"))
    weights = ops.ones_like(scores)
    if sample_weight is not None:
        w = _float(sample_weight, scores.dtype)
        s = _static_shape(w)
        if len(s) == len(t) - 1 and _compatible(s, t[:-1], broadcast=True):
            w = ops.expand_dims(w, -1)
        elif not (len(s) == 0 or _compatible(s, t, broadcast=True)):
            raise ValueError(
                "`sample_weight` must be a scalar, one weight per list (shape y_true.shape[:-1]) or one per "
                f"item (shape y_true.shape). Received: sample_weight.shape={s}, y_true.shape={t}"
            )
        weights = weights * w
        valid = ops.logical_and(valid, ops.greater(weights, 0.0))
    zeros = ops.zeros_like(scores)
    return Lists(ops.where(valid, labels, zeros), scores, ops.where(valid, weights, zeros), valid)


def binary_relevance(lists: Lists) -> Tensor:
    """1 at the valid items with a label `>= 1` (keras-rs' and TF-Ranking's
    relevant items), else 0."""
    return ops.cast(ops.logical_and(lists.valid, ops.greater_equal(lists.labels, 1.0)), lists.scores.dtype)


def masked(x: Tensor, keep: Tensor) -> Tensor:
    """`x` where `keep`, else 0 (NaN and inf included)."""
    return ops.where(keep, x, ops.zeros_like(x))


def nan_where_scores_are(values: Tensor, lists: Lists) -> Tensor:
    """A list with a NaN score at a valid item has the value NaN."""
    bad = ops.any(ops.logical_and(lists.valid, ops.isnan(lists.scores)), axis=-1)
    return ops.where(bad, ops.full_like(values, float("nan")), values)


# --------------------------------------------------------------------------- tie-averaged positions


class Ranking(NamedTuple):
    """Where the valid items of each list sit when sorted by decreasing key.

    `ahead[..., i, j]`: valid `j` has a larger key than `i`; `tied`: valid
    `j` has the same key (`i` itself included when valid); `position`: the
    1-based stable position (ties by index), `offset` its place among its
    ties (0-based), `ties` the size of its tie group."""

    ahead: Tensor
    tied: Tensor
    position: Tensor
    offset: Tensor
    ties: Tensor


def rank_items(key: Tensor, valid: Tensor) -> Ranking:
    """The `Ranking` of the valid items by decreasing `key`."""
    row, col = ops.expand_dims(key, -1), ops.expand_dims(key, -2)
    other = ops.expand_dims(valid, -2)
    ahead = ops.logical_and(ops.greater(col, row), other)
    tied = ops.logical_and(ops.equal(col, row), other)
    index = ops.arange(ops.shape(key)[-1])
    earlier = ops.less(ops.expand_dims(index, 0), ops.expand_dims(index, 1))  # [i, j]: j before i

    def count(m: Tensor) -> Tensor:
        return ops.sum(ops.cast(m, key.dtype), axis=-1)

    offset = count(ops.logical_and(tied, earlier))
    return Ranking(ahead, tied, count(ahead) + offset + 1.0, offset, count(tied))


def tie_average(ranking: Ranking, values: Tensor) -> Tensor:
    """Per item, the mean of the per-position `values` (given at each item's
    stable position) over its tie group: the expectation of `values` at the
    item's position under a random order of the ties."""
    total = ops.sum(ops.where(ranking.tied, ops.expand_dims(values, -2), 0.0), axis=-1)
    return total / ops.maximum(ranking.ties, 1.0)


def within(position: Tensor, k: Any) -> Tensor:
    """Positions inside the cut-off (all of them when `k` is None)."""
    return ops.ones_like(position, dtype="bool") if k is None else ops.less_equal(position, float(k))


# --------------------------------------------------------------------------- keras-rs' list weights


def list_weights(weights: Tensor, relevance: Tensor, no_relevant: str) -> Tensor:
    """The weight of each list in the metric's mean (keras-rs'
    `get_list_weights`, TF-Ranking's rule): the relevance-weighted mean of its
    item weights; 0 for a list whose weights are all 0 (all padding). A list
    without relevance gets, with `no_relevant="zero"`, the mean weight of the
    lists of the same call that have some, or 1 when none has; with
    `"skip"`, 0."""
    weight_sum = ops.sum(weights, axis=-1)
    relevance_sum = ops.sum(relevance, axis=-1)
    has_weight, has_relevance = weight_sum > 0, relevance_sum > 0
    per_list = ops.divide_no_nan(ops.sum(weights * relevance, axis=-1), relevance_sum)
    zero = ops.zeros_like(per_list)
    if no_relevant == "skip":
        return ops.where(ops.logical_and(has_weight, has_relevance), per_list, zero)
    counted = ops.sum(ops.cast(ops.logical_and(has_weight, has_relevance), per_list.dtype))
    mean = ops.where(counted > 0, ops.divide_no_nan(ops.sum(per_list), counted), ops.ones_like(counted))
    return ops.where(has_weight, ops.where(has_relevance, per_list, mean * ops.ones_like(per_list)), zero)
