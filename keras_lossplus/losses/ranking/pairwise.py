r"""Pairwise ranking losses: logistic (RankNet), hinge and soft zero-one
over the pairs of a query's items (the squared error: `pairwise_mse.py`).

Every one of them scores the ordered pairs `(i, j)` of a query's valid
items (the pairs with `y_i > y_j`; for the squared error every pair
`i != j`), with `d_ij = (s_i - s_j) / T`, and reduces the terms by
`pair_reduction`:

* `"mean"` (default): one value per query, the mean over its pairs (long
  and short lists weigh the same);
* `"sum"`: one value per query, the sum over its pairs;
* `"per_item"`: one value per item, `(B, list_size)`, the sum over the pairs
  that item leads: keras-rs' values, so that Keras' reduction and a
  `(B, list_size)` `sample_weight` give keras-rs' numbers for every
  `reduction`.

A per-item weight `w_i` multiplies the terms of the pairs that item `i`
leads (keras-rs' and TF-Ranking's convention); the mean still divides by the
number of pairs.
"""

from __future__ import annotations

from typing import Any, Optional

import keras  # noqa: F401  (the docstring examples use it)
from keras import ops

from keras_lossplus.backend import compiled_on_jax
from keras_lossplus.losses.base import register
from keras_lossplus.losses.options import Options, number
from keras_lossplus.losses.ranking.common import (
    PAIRWISE_OPTIONS,
    PairwiseRankingLoss,
    RankingLoss,
    pairwise_terms,
    relevance_checked,
)

Tensor = Any

__all__ = [
    "PairwiseHingeLoss",
    "PairwiseLogisticLoss",
    "PairwiseSoftZeroOneLoss",
    "pairwise_hinge_loss",
    "pairwise_logistic_loss",
    "pairwise_soft_zero_one_loss",
]

# --------------------------------------------------------------------------- logistic


@Options(**PAIRWISE_OPTIONS)
@relevance_checked
@compiled_on_jax
def pairwise_logistic_loss(
    y_true: Tensor,
    y_pred: Tensor,
    mask_value: Optional[float] = -1.0,
    temperature: float = 1.0,
    pair_reduction: str = "mean",
    sample_weight: Optional[Tensor] = None,
) -> Tensor:
    r"""Pairwise logistic (RankNet) loss per query.

    Over the pairs `P` of valid items with `y_i > y_j`, with
    `d_ij = (s_i - s_j) / T`:

    $$\ell = \frac{1}{|P|} \sum_{(i, j) \in P} w_i \log\bigl(1 + e^{-d_{ij}}\bigr)$$

    computed as `softplus(-d_ij)`; 0 for a query without such a pair.

    Args:
        y_true: Relevance labels `(B, list_size)`, `>= 0`; `mask_value` marks padding.
        y_pred: Scores `(B, list_size)`.
        mask_value: Label of padded items, or `None` for no padding.
        temperature: `T > 0`, divides the score differences.
        pair_reduction: `"mean"` or `"sum"` over a query's pairs (shape
            `(B,)`), or `"per_item"` (`(B, list_size)`, keras-rs' values).
        sample_weight: Optional per-item weights `(B, list_size)`: `w_i`
            multiplies the pairs item `i` leads (1 without).

    Returns:
        The loss per query, `(B,)` (`(B, list_size)` for `"per_item"`).

    Reference:
        Burges et al., "Learning to Rank using Gradient Descent", ICML 2005.

    Examples:
        >>> y_true = [[2.0, 0.0, 1.0, -1.0]]
        >>> y_pred = [[1.0, 0.5, 0.0, 3.0]]
        >>> print(keras.ops.convert_to_numpy(pairwise_logistic_loss(y_true, y_pred)).round(4))
        [0.5871]
    """
    return pairwise_terms(lambda d, _: ops.softplus(-d), y_true, y_pred, temperature, pair_reduction, mask_value,
                     sample_weight)


@register
class PairwiseLogisticLoss(PairwiseRankingLoss):
    r"""Pairwise logistic (RankNet) loss: the mean over a query's pairs
    `y_i > y_j` of `log(1 + exp(-(s_i - s_j) / T))`.

    See `pairwise_logistic_loss` for the inputs (`(B, list_size)` scores and
    labels, `mask_value` for padding). `sample_weight` is one weight per
    query `(B,)`, or one per item `(B, list_size)`: an item's weight
    multiplies the pairs it leads. `PairwiseLogisticLoss(pair_reduction="per_item")`
    is keras-rs' `PairwiseLogisticLoss` for every `reduction` and weight.

    Args:
        mask_value: Label of padded items, or `None` for no padding.
        temperature: `T > 0`, divides the score differences.
        pair_reduction: `"mean"` (default) or `"sum"` over each query's
            pairs, or `"per_item"` (keras-rs' per-item sums).
        skip_empty_lists: Leave the all-padding lists out of the batch mean.
        reduction, name, dtype: As for every `keras.losses.Loss`.

    Reference:
        Burges et al., "Learning to Rank using Gradient Descent", ICML 2005.

    Examples:
        >>> loss = PairwiseLogisticLoss()
        >>> round(float(loss([[2.0, 0.0, 1.0, -1.0]], [[1.0, 0.5, 0.0, 3.0]])), 4)
        0.5871
    """

    fn = staticmethod(pairwise_logistic_loss)
    default_name = "pairwise_logistic_loss"


# --------------------------------------------------------------------------- hinge


@Options(margin=number(low=0.0), **PAIRWISE_OPTIONS)
@relevance_checked
@compiled_on_jax
def pairwise_hinge_loss(
    y_true: Tensor,
    y_pred: Tensor,
    margin: float = 1.0,
    mask_value: Optional[float] = -1.0,
    temperature: float = 1.0,
    pair_reduction: str = "mean",
    sample_weight: Optional[Tensor] = None,
) -> Tensor:
    r"""Pairwise hinge loss per query.

    Over the pairs `P` of valid items with `y_i > y_j`, with
    `d_ij = (s_i - s_j) / T`:

    $$\ell = \frac{1}{|P|} \sum_{(i, j) \in P} w_i \max\bigl(0, m - d_{ij}\bigr)$$

    0 for a query without such a pair.

    Args:
        y_true: Relevance labels `(B, list_size)`, `>= 0`; `mask_value` marks padding.
        y_pred: Scores `(B, list_size)`.
        margin: The margin `m >= 0`.
        mask_value, temperature, pair_reduction, sample_weight: As for
            `pairwise_logistic_loss`.

    Returns:
        The loss per query, `(B,)` (`(B, list_size)` for `"per_item"`).

    Reference:
        Herbrich, Graepel & Obermayer, "Large Margin Rank Boundaries for
        Ordinal Regression", 2000; Joachims, "Optimizing Search Engines
        using Clickthrough Data" (RankSVM), KDD 2002.

    Examples:
        >>> y_true = [[2.0, 0.0, 1.0, -1.0]]
        >>> y_pred = [[1.0, 0.5, 0.0, 3.0]]
        >>> print(keras.ops.convert_to_numpy(pairwise_hinge_loss(y_true, y_pred)).round(4))
        [0.6667]
    """
    return pairwise_terms(lambda d, _: ops.relu(margin - d), y_true, y_pred, temperature, pair_reduction, mask_value,
                     sample_weight)


@register
class PairwiseHingeLoss(RankingLoss):
    r"""Pairwise hinge loss: the mean over a query's pairs `y_i > y_j` of
    `max(0, margin - (s_i - s_j) / T)`.

    See `pairwise_hinge_loss` and `PairwiseLogisticLoss` (per-item
    weights, `pair_reduction`). keras-rs' `PairwiseHingeLoss` has
    `margin=1` and is `pair_reduction="per_item"`.

    Args:
        margin: The margin, `>= 0`.
        mask_value, temperature, pair_reduction, skip_empty_lists: As for
            `PairwiseLogisticLoss`.
        reduction, name, dtype: As for every `keras.losses.Loss`.

    Reference:
        Herbrich et al. 2000; Joachims, KDD 2002 (RankSVM).

    Examples:
        >>> loss = PairwiseHingeLoss(margin=1.0)
        >>> round(float(loss([[2.0, 0.0, 1.0, -1.0]], [[1.0, 0.5, 0.0, 3.0]])), 4)
        0.6667
    """

    fn = staticmethod(pairwise_hinge_loss)

    def __init__(
        self,
        margin: float = 1.0,
        mask_value: Optional[float] = -1.0,
        temperature: float = 1.0,
        pair_reduction: str = "mean",
        skip_empty_lists: bool = False,
        reduction: Optional[str] = "sum_over_batch_size",
        name: Optional[str] = "pairwise_hinge_loss",
        dtype: Any = None,
    ) -> None:
        super().__init__(reduction=reduction, name=name, dtype=dtype, skip_empty_lists=skip_empty_lists,
                         margin=margin, temperature=temperature, pair_reduction=pair_reduction,
                         mask_value=mask_value)


# --------------------------------------------------------------------------- soft zero-one


@Options(**PAIRWISE_OPTIONS)
@relevance_checked
@compiled_on_jax
def pairwise_soft_zero_one_loss(
    y_true: Tensor,
    y_pred: Tensor,
    mask_value: Optional[float] = -1.0,
    temperature: float = 1.0,
    pair_reduction: str = "mean",
    sample_weight: Optional[Tensor] = None,
) -> Tensor:
    r"""Pairwise soft zero-one loss per query: a sigmoid in place of the
    step "the pair is in the wrong order".

    Over the pairs `P` of valid items with `y_i > y_j`, with
    `d_ij = (s_i - s_j) / T`:

    $$\ell = \frac{1}{|P|} \sum_{(i, j) \in P} w_i \bigl(1 - \sigma(d_{ij})\bigr)$$

    (`1 - sigma(d) = sigma(-d)`); 0 for a query without such a pair.
    Bounded by 1 per pair, so a few badly ordered pairs cannot dominate;
    its gradient vanishes for pairs far in the wrong order.

    Args:
        y_true: Relevance labels `(B, list_size)`, `>= 0`; `mask_value` marks padding.
        y_pred: Scores `(B, list_size)`.
        mask_value, temperature, pair_reduction, sample_weight: As for
            `pairwise_logistic_loss`.

    Returns:
        The loss per query, `(B,)` (`(B, list_size)` for `"per_item"`).

    Reference:
        Pasumarthi et al., "TF-Ranking: Scalable TensorFlow Library for
        Learning-to-Rank", KDD 2019 (its `PairwiseSoftZeroOneLoss`, which
        keras-rs carries over).

    Examples:
        >>> y_true = [[2.0, 0.0, 1.0, -1.0]]
        >>> y_pred = [[1.0, 0.5, 0.0, 3.0]]
        >>> print(keras.ops.convert_to_numpy(pairwise_soft_zero_one_loss(y_true, y_pred)).round(4))
        [0.423]
    """
    return pairwise_terms(lambda d, _: ops.sigmoid(-d), y_true, y_pred, temperature, pair_reduction, mask_value,
                     sample_weight)


@register
class PairwiseSoftZeroOneLoss(PairwiseRankingLoss):
    r"""Pairwise soft zero-one loss: the mean over a query's pairs
    `y_i > y_j` of `1 - sigmoid((s_i - s_j) / T)`.

    See `pairwise_soft_zero_one_loss` and `PairwiseLogisticLoss` (per-item
    weights, `pair_reduction`). keras-rs' `PairwiseSoftZeroOneLoss` is
    `pair_reduction="per_item"`.

    Args:
        mask_value, temperature, pair_reduction, skip_empty_lists: As for
            `PairwiseLogisticLoss`.
        reduction, name, dtype: As for every `keras.losses.Loss`.

    Reference:
        Pasumarthi et al., "TF-Ranking", KDD 2019; keras-rs
        `PairwiseSoftZeroOneLoss`.

    Examples:
        >>> loss = PairwiseSoftZeroOneLoss()
        >>> round(float(loss([[2.0, 0.0, 1.0, -1.0]], [[1.0, 0.5, 0.0, 3.0]])), 4)
        0.423
    """

    fn = staticmethod(pairwise_soft_zero_one_loss)
    default_name = "pairwise_soft_zero_one_loss"
