"""From per-anchor numerators and counts to the loss: the weighted mean over the
valid anchors, 0 with gradient 0 when there is none."""

from __future__ import annotations

from typing import Any

from keras import ops

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
