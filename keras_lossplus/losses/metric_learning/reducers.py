"""From per-anchor numerators and counts to the loss: the weighted mean over the
valid anchors, 0 with gradient 0 when there is none; and the `Reducer`
objects the mined triplet losses take as `reducer=`."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from keras_lossplus.losses.options import Component, component_or_choice, optional

Tensor = Any


def safe_ratio(total: Tensor, weight: Tensor) -> Tensor:
    """`total / weight`, or 0 (with gradient 0) where `weight` is 0."""
    has = weight > 0
    return ops.where(has, total / ops.where(has, weight, ops.ones_like(weight)), ops.zeros_like(total))


def anchor_mean(numerator: Tensor, count: Tensor, valid: Tensor, sample_weight: Any = None) -> Tensor:
    """`sum_a w_a num_a / sum_a w_a cnt_a` over the valid anchors; 0 (with
    gradient 0) when that denominator is 0."""
    valid = ops.cast(valid, numerator.dtype)
    if sample_weight is not None:
        valid = valid * ops.reshape(ops.cast(sample_weight, numerator.dtype), (-1,))
    total = ops.sum(ops.where(valid != 0, numerator, ops.zeros_like(numerator)) * valid)
    return safe_ratio(total, ops.sum(ops.cast(count, numerator.dtype) * valid))


# --------------------------------------------------------------------------- reducer objects


def _register(cls: type) -> type:
    return keras.saving.register_keras_serializable(package="keras_lossplus")(cls)


class Reducer(Component):
    """Base of the reducers of the mined triplet losses: from the batch's
    `total = sum_a w_a value_a` (the anchors' summed triplet losses, weighted
    by `sample_weight`) and `count = sum_a w_a count_a` to the loss.

    Attributes:
        nonzero: Whether `count` counts only the triplets with a positive
            loss (`True`) or all mined triplets (`False`); the miner counts
            what the reducer asks for.
    """

    nonzero = False

    def reduce(self, total: Tensor, count: Tensor) -> Tensor:
        """The loss: `total / count`, 0 (with gradient 0) when `count` is 0."""
        return safe_ratio(total, count)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


@_register
class MeanReducer(Reducer):
    """The mean over every mined triplet, each weighted by its anchor's
    `sample_weight` (the default of `TripletLoss`'s semi-hard and hard mining);
    pytorch-metric-learning's `MeanReducer`.

    Examples:
        >>> MeanReducer().nonzero
        False
    """


@_register
class AvgNonZeroReducer(Reducer):
    """The mean over the triplets with a positive loss (the default of
    `mining="all"` with the hinge, and of the `BatchEasyHardMiner` and
    `DistanceWeightedMiner`); pytorch-metric-learning's `AvgNonZeroReducer`,
    the default reducer of its `TripletMarginLoss`.

    Examples:
        >>> AvgNonZeroReducer().nonzero
        True
    """

    nonzero = True


@_register
class SumReducer(Reducer):
    """The weighted sum of the mined triplets' losses; pytorch-metric-learning's
    `SumReducer`.

    Examples:
        >>> float(SumReducer().reduce(keras.ops.convert_to_tensor(3.0), keras.ops.convert_to_tensor(2.0)))
        3.0
    """

    def reduce(self, total: Tensor, count: Tensor) -> Tensor:
        return total


REDUCERS = {"mean": MeanReducer, "avg_nonzero": AvgNonZeroReducer, "sum": SumReducer}

reducer_option = optional(component_or_choice(Reducer, tuple(REDUCERS)))
"""The check of a `reducer=` option: `None` (the miner's own), a name of
`REDUCERS`, a `Reducer` or its saved config."""


def resolve_reducer(value: Any, default: Reducer) -> Reducer:
    """The `Reducer` a `reducer=` option stands for (`default` for `None`)."""
    if value is None:
        return default
    return REDUCERS[value]() if isinstance(value, str) else value
