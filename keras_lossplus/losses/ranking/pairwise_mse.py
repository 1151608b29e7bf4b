r"""The pairwise mean squared error: score differences regressed on label
differences over every pair of a query's items (keras-rs' and TF-Ranking's
`PairwiseMeanSquaredError`)."""

from __future__ import annotations

from typing import Any, Optional

import keras  # noqa: F401  (the docstring examples use it)
from keras import ops

from keras_lossplus.backend import compiled_on_jax
from keras_lossplus.losses.base import register
from keras_lossplus.losses.magnitude import magnitude_checked
from keras_lossplus.losses.options import Options
from keras_lossplus.losses.ranking.common import (
    PAIRWISE_OPTIONS,
    PairwiseRankingLoss,
    pairwise_terms,
    relevance_checked,
)

Tensor = Any

__all__ = ["PairwiseMeanSquaredError", "pairwise_mean_squared_error"]


@Options(**PAIRWISE_OPTIONS)
@relevance_checked
@magnitude_checked("y_true", "y_pred", hint="Rescale the scores (or the labels).")
@compiled_on_jax
def pairwise_mean_squared_error(
    y_true: Tensor,
    y_pred: Tensor,
    mask_value: Optional[float] = -1.0,
    temperature: float = 1.0,
    pair_reduction: str = "mean",
    sample_weight: Optional[Tensor] = None,
) -> Tensor:
    r"""Pairwise mean squared error per query: the score differences
    regressed on the label differences.

    Over **every** ordered pair `(i, j)`, `i != j`, of valid items (equal
    labels included), with `d_ij = (s_i - s_j) / T`:

    $$\ell = \frac{1}{|P|} \sum_{i \ne j} w_i \bigl((y_i - y_j) - d_{ij}\bigr)^2$$

    Unlike the other pairwise losses it fixes the scale of the scores (a
    difference of one label is one unit of score), and is 0 only when the
    scores are the labels up to a constant. 0 for a query with fewer than
    two valid items. Scores (or labels) beyond `1.7e13` in float32 are
    refused by name (their squares overflow); under jit they are clipped to
    that bound with the gradient passed through.

    Args:
        y_true: Relevance labels `(B, list_size)`, `>= 0`; `mask_value` marks padding.
        y_pred: Scores `(B, list_size)`.
        mask_value, temperature, pair_reduction: As for `pairwise_logistic_loss`.
        sample_weight: Optional per-item weights `(B, list_size)`: `w_i`
            multiplies the pairs `(i, j)` (each unordered pair counts
            twice, once led by each of its items).

    Returns:
        The loss per query, `(B,)` (`(B, list_size)` for `"per_item"`).

    Reference:
        Pasumarthi et al., "TF-Ranking: Scalable TensorFlow Library for
        Learning-to-Rank", KDD 2019 (its `PairwiseMeanSquaredError`, which
        keras-rs carries over).

    Examples:
        >>> y_true = [[2.0, 0.0, 1.0, -1.0]]
        >>> y_pred = [[1.0, 0.5, 0.0, 3.0]]
        >>> print(keras.ops.convert_to_numpy(pairwise_mean_squared_error(y_true, y_pred)).round(4))
        [1.5]
    """
    return pairwise_terms(lambda d, label_gap: ops.square(label_gap - d), y_true, y_pred, temperature, pair_reduction,
                     mask_value, sample_weight, every_pair=True)


@register
class PairwiseMeanSquaredError(PairwiseRankingLoss):
    r"""Pairwise mean squared error: the mean over every pair `i != j` of a
    query's valid items of `((y_i - y_j) - (s_i - s_j) / T)^2`.

    See `pairwise_mean_squared_error` and `PairwiseLogisticLoss` (per-item
    weights, `pair_reduction`). keras-rs' `PairwiseMeanSquaredError` is
    `pair_reduction="per_item"` (it accepts a `temperature` and ignores
    it: its value is ours at `temperature=1`).

    Args:
        mask_value, temperature, pair_reduction, skip_empty_lists: As for
            `PairwiseLogisticLoss`.
        reduction, name, dtype: As for every `keras.losses.Loss`.

    Reference:
        Pasumarthi et al., "TF-Ranking", KDD 2019; keras-rs
        `PairwiseMeanSquaredError`.

    Examples:
        >>> loss = PairwiseMeanSquaredError()
        >>> round(float(loss([[2.0, 0.0, 1.0, -1.0]], [[1.0, 0.5, 0.0, 3.0]])), 4)
        1.5
    """

    fn = staticmethod(pairwise_mean_squared_error)
    default_name = "pairwise_mean_squared_error"
