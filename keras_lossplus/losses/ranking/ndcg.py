r"""The NDCG-driven ranking losses: ApproxNDCG (a smooth NDCG) and
LambdaLoss (pairwise logistic terms weighted by what a swap costs NDCG).

Notation: `G = 2^y - 1` the gain, `D(r) = log2(1 + r)` the discount at rank
`r`, `IDCG` the DCG of the ideal order.
"""

from __future__ import annotations

from typing import Any, Optional

import keras  # noqa: F401  (the docstring examples use it)
from keras import ops

from keras_lossplus.backend import compiled_on_jax
from keras_lossplus.losses.base import register
from keras_lossplus.losses.options import Options, choice
from keras_lossplus.losses.ranking.common import (
    MASK_VALUE,
    TEMPERATURE,
    RankingLoss,
    cols,
    descending_ranks,
    distinct_pairs,
    gains,
    inverse_discount,
    inverse_ideal_dcg,
    masked_sum,
    preferred_pairs,
    ranking_inputs,
    relevance_checked,
    rows,
    score_differences,
    weighted,
)

Tensor = Any

__all__ = ["ApproxNDCGLoss", "LambdaLoss", "approx_ndcg_loss", "lambda_loss"]

LAMBDA_WEIGHTINGS = ("ndcg_loss2", "lambdarank")


# --------------------------------------------------------------------------- ApproxNDCG


@Options(temperature=TEMPERATURE, mask_value=MASK_VALUE)
@relevance_checked
@compiled_on_jax
def approx_ndcg_loss(
    y_true: Tensor,
    y_pred: Tensor,
    temperature: float = 0.1,
    mask_value: Optional[float] = -1.0,
    sample_weight: Optional[Tensor] = None,
) -> Tensor:
    r"""ApproxNDCG loss per query: one minus a smooth NDCG.

    Each valid item's rank is replaced by a smooth approximation

    $$\hat r_i = 1 + \sum_{j \ne i} \sigma\Bigl(\frac{s_j - s_i}{T}\Bigr)$$

    (over valid `j`), and with gains `G = 2^y - 1` (times the item's
    weight `w_i` when given) and `D(r) = log2(1 + r)`

    $$\ell = 1 - \frac{1}{\mathrm{IDCG}} \sum_i \frac{w_i G_i}{D(\hat r_i)}$$

    where `IDCG` is the DCG of the ideal ordering of the (weighted) gains,
    as keras-rs' and rax's weighted NDCG. 0 when `IDCG = 0` (no relevant
    item). TF-Ranking's `ApproxNDCGLoss(alpha=1/T)` returns `-NDCG` instead
    of `1 - NDCG`: the same gradient.

    Args:
        y_true: Relevance labels `(B, list_size)`, `>= 0`; `mask_value` marks padding.
        y_pred: Scores `(B, list_size)`.
        temperature: `T > 0`; smaller is closer to the true (step) ranks.
        mask_value: Label of padded items, or `None` for no padding.
        sample_weight: Optional per-item weights `w` `(B, list_size)`
            multiplying the gains (1 without).

    Returns:
        The loss per query, `(B,)`.

    Reference:
        Qin, Liu & Li, "A General Approximation Framework for Direct
        Optimization of Information Retrieval Measures", Information
        Retrieval 2010; Bruch et al., "Revisiting Approximate Metric
        Optimization in the Age of Deep Neural Networks", SIGIR 2019.

    Examples:
        >>> y_true = [[2.0, 0.0, 1.0, -1.0]]
        >>> y_pred = [[1.0, 0.5, 0.0, 3.0]]
        >>> print(keras.ops.convert_to_numpy(approx_ndcg_loss(y_true, y_pred)).round(4))
        [0.0399]
    """
    labels, scores, valid, weights = ranking_inputs(y_true, y_pred, mask_value, temperature, sample_weight)
    beaten = ops.sigmoid(-score_differences(scores))  # sigma((s_j - s_i) / T)
    ranks = 1.0 + masked_sum(beaten, distinct_pairs(valid), axis=-1)
    gain = weighted(gains(labels, valid), weights)
    dcg = ops.sum(gain * inverse_discount(ranks), axis=-1)
    inverse_idcg = inverse_ideal_dcg(gain)
    return ops.where(inverse_idcg > 0, 1.0 - dcg * inverse_idcg, ops.zeros_like(dcg))


@register
class ApproxNDCGLoss(RankingLoss):
    r"""ApproxNDCG loss: `1 - NDCG` with each rank replaced by a sum of
    sigmoids of score differences at temperature `T`:
    `1 - sum_i (2^y_i - 1) / log2(1 + r_i) / IDCG` with
    `r_i = 1 + sum_{j != i} sigmoid((s_j - s_i) / T)`.

    See `approx_ndcg_loss`. `ApproxNDCGLoss(temperature=0.1)` has the
    gradient of TF-Ranking's `ApproxNDCGLoss(alpha=10)`. `sample_weight`:
    one weight per query `(B,)`, or one per item `(B, list_size)`
    multiplying its gain.

    Args:
        temperature: `T > 0` of the sigmoid rank approximation.
        mask_value: Label of padded items, or `None` for no padding.
        skip_empty_lists: Leave the all-padding lists out of the batch mean.
        reduction, name, dtype: As for every `keras.losses.Loss`.

    Reference:
        Qin, Liu & Li, Information Retrieval 2010; Bruch et al., SIGIR 2019.

    Examples:
        >>> loss = ApproxNDCGLoss(temperature=0.1)
        >>> round(float(loss([[2.0, 0.0, 1.0, -1.0]], [[1.0, 0.5, 0.0, 3.0]])), 4)
        0.0399
    """

    fn = staticmethod(approx_ndcg_loss)

    def __init__(
        self,
        temperature: float = 0.1,
        mask_value: Optional[float] = -1.0,
        skip_empty_lists: bool = False,
        reduction: Optional[str] = "sum_over_batch_size",
        name: Optional[str] = "approx_ndcg_loss",
        dtype: Any = None,
    ) -> None:
        super().__init__(reduction=reduction, name=name, dtype=dtype, skip_empty_lists=skip_empty_lists,
                         temperature=temperature, mask_value=mask_value)


# --------------------------------------------------------------------------- LambdaLoss


@Options(weighting=choice(*LAMBDA_WEIGHTINGS), temperature=TEMPERATURE, mask_value=MASK_VALUE)
@relevance_checked
@compiled_on_jax
def lambda_loss(
    y_true: Tensor,
    y_pred: Tensor,
    weighting: str = "ndcg_loss2",
    mask_value: Optional[float] = -1.0,
    temperature: float = 1.0,
    sample_weight: Optional[Tensor] = None,
) -> Tensor:
    r"""LambdaLoss per query: pairwise logistic terms weighted by how much
    each pair matters to NDCG.

    $$\ell = \sum_{y_i > y_j} w_i \, \delta_{ij} \log\bigl(1 + e^{-(s_i - s_j) / T}\bigr)$$

    over the pairs of valid items, with `r` the ranks of the items sorted by
    the current scores (ties in input order; no gradient flows through the
    ranks or weights), `G = 2^y - 1`, `D(r) = log2(1 + r)` and

    * `weighting="ndcg_loss2"` (the paper's NDCG-Loss2, a bound on NDCG):
      $\delta_{ij} = \bigl|\frac{1}{D(|r_i - r_j|)} - \frac{1}{D(|r_i - r_j| + 1)}\bigr|
      \frac{|G_i - G_j|}{\mathrm{IDCG}}$;
    * `weighting="lambdarank"` (LambdaRank's `|Delta NDCG|`):
      $\delta_{ij} = |G_i - G_j| \, \bigl|\frac{1}{D(r_i)} - \frac{1}{D(r_j)}\bigr| / \mathrm{IDCG}$.

    The paper writes the logistic term with `log2`; this uses the natural
    log (TF-Ranking's choice), a constant factor `ln 2`. 0 for a query
    without a valid pair.

    Args:
        y_true: Relevance labels `(B, list_size)`, `>= 0`; `mask_value` marks padding.
        y_pred: Scores `(B, list_size)`.
        weighting: `"ndcg_loss2"` or `"lambdarank"`.
        mask_value: Label of padded items, or `None` for no padding.
        temperature: `T > 0`, divides the score differences.
        sample_weight: Optional per-item weights `w` `(B, list_size)`: `w_i`
            multiplies the pairs item `i` leads, as in the pairwise losses.

    Returns:
        The loss per query, `(B,)`.

    Reference:
        Wang et al., "The LambdaLoss Framework for Ranking Metric
        Optimization", CIKM 2018; Burges, "From RankNet to LambdaRank to
        LambdaMART: An Overview", 2010.

    Examples:
        >>> y_true = [[2.0, 0.0, 1.0, -1.0]]
        >>> y_pred = [[1.0, 0.5, 0.0, 3.0]]
        >>> print(keras.ops.convert_to_numpy(lambda_loss(y_true, y_pred)).round(4))
        [0.2662]
    """
    labels, scores, valid, weights = ranking_inputs(y_true, y_pred, mask_value, temperature, sample_weight)
    pairs = preferred_pairs(labels, valid)
    ranks = descending_ranks(ops.stop_gradient(scores), valid)
    gain = gains(labels, valid)
    gain_gap = ops.abs(rows(gain) - cols(gain))
    if weighting == "ndcg_loss2":
        gap = ops.maximum(ops.abs(rows(ranks) - cols(ranks)), 1.0)  # >= 1 off the diagonal
        discount_gap = ops.abs(inverse_discount(gap) - inverse_discount(gap + 1.0))
    else:
        inverse = inverse_discount(ranks)
        discount_gap = ops.abs(rows(inverse) - cols(inverse))
    inverse_idcg = ops.expand_dims(ops.expand_dims(inverse_ideal_dcg(gain), -1), -1)
    deltas = ops.stop_gradient(discount_gap * gain_gap * inverse_idcg)
    terms = weighted(deltas * ops.softplus(-score_differences(scores)), None if weights is None else rows(weights))
    return masked_sum(terms, pairs, axis=(-2, -1))


@register
class LambdaLoss(RankingLoss):
    r"""LambdaLoss: pairwise logistic loss weighted by NDCG-Loss2
    (`weighting="ndcg_loss2"`) or LambdaRank's `|Delta NDCG|`
    (`weighting="lambdarank"`), summed over each query's pairs:
    `sum_{y_i > y_j} delta_ij log(1 + exp(-(s_i - s_j) / T))`, with `delta_ij`
    computed from the ranks of the current scores (no gradient).

    See `lambda_loss`. `sample_weight`: one weight per query `(B,)`, or
    one per item `(B, list_size)` multiplying the pairs the item leads.

    Args:
        weighting: `"ndcg_loss2"` or `"lambdarank"`.
        mask_value: Label of padded items, or `None` for no padding.
        temperature: `T > 0`, divides the score differences.
        skip_empty_lists: Leave the all-padding lists out of the batch mean.
        reduction, name, dtype: As for every `keras.losses.Loss`.

    Reference:
        Wang et al., "The LambdaLoss Framework for Ranking Metric
        Optimization", CIKM 2018.

    Examples:
        >>> loss = LambdaLoss(weighting="lambdarank")
        >>> round(float(loss([[2.0, 0.0, 1.0, -1.0]], [[1.0, 0.5, 0.0, 3.0]])), 4)
        0.266
    """

    fn = staticmethod(lambda_loss)

    def __init__(
        self,
        weighting: str = "ndcg_loss2",
        mask_value: Optional[float] = -1.0,
        temperature: float = 1.0,
        skip_empty_lists: bool = False,
        reduction: Optional[str] = "sum_over_batch_size",
        name: Optional[str] = "lambda_loss",
        dtype: Any = None,
    ) -> None:
        super().__init__(reduction=reduction, name=name, dtype=dtype, skip_empty_lists=skip_empty_lists,
                         weighting=weighting, temperature=temperature, mask_value=mask_value)
