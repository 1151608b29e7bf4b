r"""Learning-to-rank losses: pairwise (RankNet logistic, hinge, LambdaLoss),
listwise (ListNet, ListMLE, softmax) and a smooth NDCG (ApproxNDCG).

Calling convention, shared by every loss here:

* `y_pred`: the model's scores, shape `(B, list_size)` (one list of items per
  query; more leading axes are allowed, the last one is the list).
* `y_true`: graded relevance labels (`0` irrelevant, `1`, `2`, ... more
  relevant) of the same shape (a trailing axis of size 1 on either,
  `(B, list_size, 1)`, is dropped). Labels must be `>= 0`; items whose label
  equals `mask_value` (default `-1.0`; `None` turns padding off) are
  **padding**: they take no part in the loss, wherever they sit in the list.
  A `y_true` whose list size differs from `y_pred`'s raises `ValueError`.
* The result is **one value per query**, shape `(B,)`; Keras applies the
  `reduction`, `sample_weight` (one weight per query) and masks.
* A query without a valid pair (pairwise losses and `LambdaLoss`) or
  without a relevant item (a valid label `> 0`: the listwise losses and
  `ApproxNDCGLoss`), including a list that is all padding, gives loss 0 and
  gradient 0. Scores of any size (logits of +-100) give finite values and
  gradients: every log-sum-exp is masked and shifted, pairwise logistic
  terms are `softplus`.

Memory: the pairwise losses, `ApproxNDCGLoss` and `LambdaLoss` build
`(B, list_size, list_size)` tensors; `ListNetLoss`, `ListMLELoss` and
`SoftmaxRankingLoss` are `O(B * list_size)` (ListMLE sorts each list and runs
a `log2(list_size)`-step cumulative log-sum-exp).
"""

from __future__ import annotations

import math
from typing import Any, Optional

import keras  # noqa: F401  (the docstring examples use it)
from keras import ops

from keras_lossplus.backend import compiled_on_jax
from keras_lossplus.losses.base import LossPlus, prepare_inputs, register
from keras_lossplus.losses.options import Options, choice, number, optional
from keras_lossplus.ops import largest_finite, masked_logsumexp

Tensor = Any

__all__ = [
    "ApproxNDCGLoss",
    "LambdaLoss",
    "ListMLELoss",
    "ListNetLoss",
    "PairwiseHingeLoss",
    "PairwiseLogisticLoss",
    "SoftmaxRankingLoss",
    "approx_ndcg_loss",
    "lambda_loss",
    "listmle_loss",
    "listnet_loss",
    "pairwise_hinge_loss",
    "pairwise_logistic_loss",
    "softmax_ranking_loss",
]

LAMBDA_WEIGHTINGS = ("ndcg_loss2", "lambdarank")
_LN2 = math.log(2.0)
# Fill value for padded scores in ListMLE's cumulative log-sum-exp: exp(fill - s)
# is exactly 0 for any score, and logaddexp(fill, fill) stays finite.
_FILL = -1.0e30


# --------------------------------------------------------------------------- shared pieces


_MASK_VALUE = optional(number())
"""The label of padded items (any finite number), or `None`."""


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


def _ranking_inputs(y_true: Any, y_pred: Any, mask_value: Optional[float]) -> tuple:
    """Labels (0 at padding), scores and the boolean mask of valid items."""
    y_true, y_pred = prepare_inputs(y_true, y_pred)
    # one score per item from a Dense(1) applied to every item: (B, L, 1) scores for (B, L) labels
    if len(y_pred.shape) == len(y_true.shape) + 1 >= 3 and y_pred.shape[-1] == 1:
        y_pred = ops.squeeze(y_pred, axis=-1)
    elif len(y_true.shape) == len(y_pred.shape) + 1 >= 3 and y_true.shape[-1] == 1:
        y_true = ops.squeeze(y_true, axis=-1)
    _check_list_shapes(y_true, y_pred)
    if mask_value is None:
        valid = ops.ones_like(y_pred, dtype="bool")
    else:
        valid = ops.not_equal(y_true, ops.cast(mask_value, y_true.dtype))
    labels = ops.where(valid, y_true, ops.zeros_like(y_true))
    return labels, y_pred, valid


def _has_relevant(labels: Tensor, valid: Tensor) -> Tensor:
    return ops.any(ops.logical_and(valid, labels > 0), axis=-1)


def _rows(x: Tensor) -> Tensor:
    return ops.expand_dims(x, -1)


def _cols(x: Tensor) -> Tensor:
    return ops.expand_dims(x, -2)


def _preferred_pairs(labels: Tensor, valid: Tensor) -> Tensor:
    """`(..., L, L)` mask of the pairs `(i, j)` of valid items with `y_i > y_j`."""
    both = ops.logical_and(_rows(valid), _cols(valid))
    return ops.logical_and(_rows(labels) > _cols(labels), both)


def _score_differences(scores: Tensor) -> Tensor:
    """`(..., L, L)` matrix of `s_i - s_j`."""
    return _rows(scores) - _cols(scores)


def _masked_sum(x: Tensor, mask: Tensor, axis: Any) -> Tensor:
    return ops.sum(ops.where(mask, x, ops.zeros_like(x)), axis=axis)


def _gains(labels: Tensor, valid: Tensor) -> Tensor:
    """`2^y - 1` at valid items, 0 at padding."""
    gains = ops.expm1(labels * _LN2)
    return ops.where(valid, gains, ops.zeros_like(gains))


def _inverse_discount(ranks: Tensor) -> Tensor:
    """`1 / log2(1 + rank)` for ranks `>= 1`."""
    return _LN2 / ops.log1p(ranks)


def _inverse_ideal_dcg(gains: Tensor) -> Tensor:
    """`1 / IDCG` per list (0 where IDCG is 0), with
    `IDCG = sum_k G_(k) / log2(1 + k)` over the gains sorted descending."""
    ideal = ops.flip(ops.sort(gains, axis=-1), axis=-1)
    positions = ops.arange(1, ops.shape(gains)[-1] + 1, dtype=gains.dtype)
    idcg = ops.sum(ideal * _inverse_discount(positions), axis=-1)
    positive = idcg > 0
    return ops.where(positive, 1.0 / ops.where(positive, idcg, ops.ones_like(idcg)), ops.zeros_like(idcg))


def _mean_over_pairs(terms: Tensor, pairs: Tensor) -> Tensor:
    total = _masked_sum(terms, pairs, axis=(-2, -1))
    count = ops.sum(ops.cast(pairs, terms.dtype), axis=(-2, -1))
    return total / ops.maximum(count, 1.0)


def _descending_ranks(scores: Tensor, valid: Tensor) -> Tensor:
    """1-based rank of every item when the valid items are sorted by
    decreasing score (ties in input order), padding after them."""
    key = ops.where(valid, -scores, ops.full_like(scores, largest_finite(scores.dtype)))  # padding sorts last
    order = ops.argsort(key, axis=-1)
    return ops.cast(ops.argsort(order, axis=-1) + 1, scores.dtype)


def _reverse_cumulative_logsumexp(x: Tensor) -> Tensor:
    """`out_i = log(sum_{j >= i} exp(x_j))` along the last axis, exactly and
    stably: a parallel (Hillis-Steele) scan of `logaddexp` in
    `ceil(log2(n))` steps over the static length `n`."""
    n = x.shape[-1]
    if n is None:
        raise ValueError("ListMLELoss needs a known list size (the last axis of `y_pred`).")
    shift = 1
    while shift < n:
        fill = ops.full_like(x[..., :shift], _FILL)
        x = ops.logaddexp(x, ops.concatenate([x[..., shift:], fill], axis=-1))
        shift *= 2
    return x


# --------------------------------------------------------------------------- pairwise


@Options(mask_value=_MASK_VALUE)
@compiled_on_jax
def pairwise_logistic_loss(y_true: Tensor, y_pred: Tensor, mask_value: Optional[float] = -1.0) -> Tensor:
    r"""Pairwise logistic (RankNet) loss per query.

    Over the pairs of valid items with `y_i > y_j`:

    $$\ell = \frac{1}{|P|} \sum_{(i, j) \in P} \log\bigl(1 + e^{-(s_i - s_j)}\bigr)$$

    computed as `softplus(s_j - s_i)`; 0 for a query without such a pair.

    Args:
        y_true: Relevance labels `(B, list_size)`, `>= 0`; `mask_value` marks padding.
        y_pred: Scores `(B, list_size)`.
        mask_value: Label of padded items, or `None` for no padding.

    Returns:
        The loss per query, `(B,)`.

    Reference:
        Burges et al., "Learning to Rank using Gradient Descent", ICML 2005.

    Examples:
        >>> y_true = [[2.0, 0.0, 1.0, -1.0]]
        >>> y_pred = [[1.0, 0.5, 0.0, 3.0]]
        >>> print(keras.ops.convert_to_numpy(pairwise_logistic_loss(y_true, y_pred)).round(4))
        [0.5871]
    """
    labels, scores, valid = _ranking_inputs(y_true, y_pred, mask_value)
    terms = ops.softplus(-_score_differences(scores))
    return _mean_over_pairs(terms, _preferred_pairs(labels, valid))


@register
class PairwiseLogisticLoss(LossPlus):
    r"""Pairwise logistic (RankNet) loss: the mean over a query's pairs
    `y_i > y_j` of `log(1 + exp(-(s_i - s_j)))`.

    See `pairwise_logistic_loss` for the inputs (`(B, list_size)` scores and
    labels, `mask_value` for padding). TF-Ranking's `PairwiseLogisticLoss`
    sums the pairs and normalises over the batch instead of per query.

    Args:
        mask_value: Label of padded items, or `None` for no padding.
        reduction, name, dtype: As for every `keras.losses.Loss`.

    Reference:
        Burges et al., "Learning to Rank using Gradient Descent", ICML 2005.

    Examples:
        >>> loss = PairwiseLogisticLoss()
        >>> round(float(loss([[2.0, 0.0, 1.0, -1.0]], [[1.0, 0.5, 0.0, 3.0]])), 4)
        0.5871
    """

    fn = staticmethod(pairwise_logistic_loss)

    def __init__(
        self,
        mask_value: Optional[float] = -1.0,
        reduction: Optional[str] = "sum_over_batch_size",
        name: Optional[str] = "pairwise_logistic_loss",
        dtype: Any = None,
    ) -> None:
        super().__init__(reduction=reduction, name=name, dtype=dtype, mask_value=mask_value)


@Options(margin=number(low=0.0), mask_value=_MASK_VALUE)
@compiled_on_jax
def pairwise_hinge_loss(
    y_true: Tensor, y_pred: Tensor, margin: float = 1.0, mask_value: Optional[float] = -1.0
) -> Tensor:
    r"""Pairwise hinge loss per query.

    Over the pairs of valid items with `y_i > y_j`:

    $$\ell = \frac{1}{|P|} \sum_{(i, j) \in P} \max\bigl(0, m - (s_i - s_j)\bigr)$$

    0 for a query without such a pair.

    Args:
        y_true: Relevance labels `(B, list_size)`, `>= 0`; `mask_value` marks padding.
        y_pred: Scores `(B, list_size)`.
        margin: The margin `m >= 0`.
        mask_value: Label of padded items, or `None` for no padding.

    Returns:
        The loss per query, `(B,)`.

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
    labels, scores, valid = _ranking_inputs(y_true, y_pred, mask_value)
    terms = ops.relu(margin - _score_differences(scores))
    return _mean_over_pairs(terms, _preferred_pairs(labels, valid))


@register
class PairwiseHingeLoss(LossPlus):
    r"""Pairwise hinge loss: the mean over a query's pairs `y_i > y_j` of
    `max(0, margin - (s_i - s_j))`.

    See `pairwise_hinge_loss`.

    Args:
        margin: The margin, `>= 0`.
        mask_value: Label of padded items, or `None` for no padding.
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
        reduction: Optional[str] = "sum_over_batch_size",
        name: Optional[str] = "pairwise_hinge_loss",
        dtype: Any = None,
    ) -> None:
        super().__init__(reduction=reduction, name=name, dtype=dtype, margin=margin, mask_value=mask_value)


# --------------------------------------------------------------------------- listwise


@Options(mask_value=_MASK_VALUE)
@compiled_on_jax
def listnet_loss(y_true: Tensor, y_pred: Tensor, mask_value: Optional[float] = -1.0) -> Tensor:
    r"""ListNet loss (top-one probabilities) per query.

    The cross entropy between the softmax of the labels and the softmax of
    the scores, both over the query's valid items:

    $$\ell = -\sum_i \operatorname{softmax}(y)_i \log \operatorname{softmax}(s)_i$$

    0 for a query without a relevant item (no valid label `> 0`).
    TF-Ranking's `ListNetLoss` uses `y / sum(y)` as the target instead of
    the paper's `softmax(y)`; that target is `SoftmaxRankingLoss` up to the
    factor `sum(y)`.

    Args:
        y_true: Relevance labels `(B, list_size)`, `>= 0`; `mask_value` marks padding.
        y_pred: Scores `(B, list_size)`.
        mask_value: Label of padded items, or `None` for no padding.

    Returns:
        The loss per query, `(B,)`.

    Reference:
        Cao et al., "Learning to Rank: From Pairwise Approach to Listwise
        Approach", ICML 2007.

    Examples:
        >>> y_true = [[2.0, 0.0, 1.0, -1.0]]
        >>> y_pred = [[1.0, 0.5, 0.0, 3.0]]
        >>> print(keras.ops.convert_to_numpy(listnet_loss(y_true, y_pred)).round(4))
        [0.97]
    """
    labels, scores, valid = _ranking_inputs(y_true, y_pred, mask_value)
    log_p = scores - masked_logsumexp(scores, valid, axis=-1, keepdims=True)
    log_target = labels - masked_logsumexp(labels, valid, axis=-1, keepdims=True)
    target = ops.exp(ops.where(valid, log_target, ops.zeros_like(log_target)))
    loss = -_masked_sum(target * log_p, valid, axis=-1)
    return ops.where(_has_relevant(labels, valid), loss, ops.zeros_like(loss))


@register
class ListNetLoss(LossPlus):
    r"""ListNet loss: cross entropy between the top-one probabilities
    `softmax(y_true)` and `softmax(y_pred)` over each query's valid items.

    See `listnet_loss`.

    Args:
        mask_value: Label of padded items, or `None` for no padding.
        reduction, name, dtype: As for every `keras.losses.Loss`.

    Reference:
        Cao et al., "Learning to Rank: From Pairwise Approach to Listwise
        Approach", ICML 2007.

    Examples:
        >>> loss = ListNetLoss()
        >>> round(float(loss([[2.0, 0.0, 1.0, -1.0]], [[1.0, 0.5, 0.0, 3.0]])), 4)
        0.97
    """

    fn = staticmethod(listnet_loss)

    def __init__(
        self,
        mask_value: Optional[float] = -1.0,
        reduction: Optional[str] = "sum_over_batch_size",
        name: Optional[str] = "listnet_loss",
        dtype: Any = None,
    ) -> None:
        super().__init__(reduction=reduction, name=name, dtype=dtype, mask_value=mask_value)


@Options(mask_value=_MASK_VALUE)
@compiled_on_jax
def listmle_loss(y_true: Tensor, y_pred: Tensor, mask_value: Optional[float] = -1.0) -> Tensor:
    r"""ListMLE loss per query: the negative log-likelihood of the ideal
    permutation under the Plackett-Luce model of the scores.

    With `pi` the valid items sorted by decreasing label:

    $$\ell = \sum_{i} \Bigl[\log \sum_{j \ge i} e^{s_{\pi(j)}} - s_{\pi(i)}\Bigr]$$

    Items with equal labels keep their input order (a stable sort; the
    result is deterministic). TF-Ranking's `ListMLELoss` shuffles tied
    items at random instead, so its value on lists with ties varies from
    call to call around this one. The inner sums are a stable reverse
    cumulative log-sum-exp (no underflow, any score range). 0 for a query
    without a relevant item (no valid label `> 0`).

    Args:
        y_true: Relevance labels `(B, list_size)`, `>= 0`; `mask_value` marks padding.
        y_pred: Scores `(B, list_size)`.
        mask_value: Label of padded items, or `None` for no padding.

    Returns:
        The loss per query, `(B,)`.

    Reference:
        Xia et al., "Listwise Approach to Learning to Rank: Theory and
        Algorithm", ICML 2008.

    Examples:
        >>> y_true = [[2.0, 0.0, 1.0, -1.0]]
        >>> y_pred = [[1.0, 0.5, 0.0, 3.0]]
        >>> print(keras.ops.convert_to_numpy(listmle_loss(y_true, y_pred)).round(4))
        [1.6543]
    """
    labels, scores, valid = _ranking_inputs(y_true, y_pred, mask_value)
    key = ops.where(valid, -labels, ops.full_like(labels, largest_finite(labels.dtype)))  # padding sorts last
    order = ops.argsort(key, axis=-1)
    sorted_scores = ops.take_along_axis(scores, order, axis=-1)
    # padding sorts last: position k is valid iff k < the number of valid items
    count = ops.sum(ops.cast(valid, "int32"), axis=-1, keepdims=True)
    sorted_valid = ops.arange(ops.shape(scores)[-1], dtype="int32") < count
    filled = ops.where(sorted_valid, sorted_scores, ops.full_like(sorted_scores, _FILL))
    terms = _reverse_cumulative_logsumexp(filled) - filled
    loss = _masked_sum(terms, sorted_valid, axis=-1)
    return ops.where(_has_relevant(labels, valid), loss, ops.zeros_like(loss))


@register
class ListMLELoss(LossPlus):
    r"""ListMLE loss: the Plackett-Luce negative log-likelihood of the
    permutation `pi` that sorts each query's items by decreasing label (ties
    in input order), `sum_i [log sum_{j >= i} exp(s_pi(j)) - s_pi(i)]`.

    See `listmle_loss`.

    Args:
        mask_value: Label of padded items, or `None` for no padding.
        reduction, name, dtype: As for every `keras.losses.Loss`.

    Reference:
        Xia et al., "Listwise Approach to Learning to Rank: Theory and
        Algorithm", ICML 2008.

    Examples:
        >>> loss = ListMLELoss()
        >>> round(float(loss([[2.0, 0.0, 1.0, -1.0]], [[1.0, 0.5, 0.0, 3.0]])), 4)
        1.6543
    """

    fn = staticmethod(listmle_loss)

    def __init__(
        self,
        mask_value: Optional[float] = -1.0,
        reduction: Optional[str] = "sum_over_batch_size",
        name: Optional[str] = "listmle_loss",
        dtype: Any = None,
    ) -> None:
        super().__init__(reduction=reduction, name=name, dtype=dtype, mask_value=mask_value)


@Options(mask_value=_MASK_VALUE)
@compiled_on_jax
def softmax_ranking_loss(y_true: Tensor, y_pred: Tensor, mask_value: Optional[float] = -1.0) -> Tensor:
    r"""Softmax ranking loss per query.

    $$\ell = -\sum_i y_i \log \frac{e^{s_i}}{\sum_j e^{s_j}}$$

    over the query's valid items, the labels used as they are (not
    normalised): exactly `optax.losses.ranking_softmax_loss(y_pred, y_true,
    where=valid, reduce_fn=None)`. A query whose labels sum to 0 (no
    relevant item) or that is all padding gives 0.

    Args:
        y_true: Relevance labels `(B, list_size)`, `>= 0`; `mask_value` marks padding.
        y_pred: Scores `(B, list_size)`.
        mask_value: Label of padded items, or `None` for no padding.

    Returns:
        The loss per query, `(B,)`.

    Reference:
        Bruch et al., "An Analysis of the Softmax Cross Entropy Loss for
        Learning-to-Rank with Binary Relevance", ICTIR 2019; optax
        `ranking_softmax_loss`.

    Examples:
        >>> y_true = [[2.0, 0.0, 1.0, -1.0]]
        >>> y_pred = [[1.0, 0.5, 0.0, 3.0]]
        >>> print(keras.ops.convert_to_numpy(softmax_ranking_loss(y_true, y_pred)).round(4))
        [3.0408]
    """
    labels, scores, valid = _ranking_inputs(y_true, y_pred, mask_value)
    log_p = scores - masked_logsumexp(scores, valid, axis=-1, keepdims=True)
    return -_masked_sum(labels * log_p, valid, axis=-1)


@register
class SoftmaxRankingLoss(LossPlus):
    r"""Softmax ranking loss `-sum_i y_i log softmax(s)_i` over each query's
    valid items; equal to optax's `ranking_softmax_loss`.

    See `softmax_ranking_loss`.

    Args:
        mask_value: Label of padded items, or `None` for no padding.
        reduction, name, dtype: As for every `keras.losses.Loss`.

    Reference:
        Bruch et al., ICTIR 2019; optax `ranking_softmax_loss`.

    Examples:
        >>> loss = SoftmaxRankingLoss()
        >>> round(float(loss([[2.0, 0.0, 1.0, -1.0]], [[1.0, 0.5, 0.0, 3.0]])), 4)
        3.0408
    """

    fn = staticmethod(softmax_ranking_loss)

    def __init__(
        self,
        mask_value: Optional[float] = -1.0,
        reduction: Optional[str] = "sum_over_batch_size",
        name: Optional[str] = "softmax_ranking_loss",
        dtype: Any = None,
    ) -> None:
        super().__init__(reduction=reduction, name=name, dtype=dtype, mask_value=mask_value)


# --------------------------------------------------------------------------- metric-driven


@Options(temperature=number(low=0.0, low_open=True), mask_value=_MASK_VALUE)
@compiled_on_jax
def approx_ndcg_loss(
    y_true: Tensor, y_pred: Tensor, temperature: float = 0.1, mask_value: Optional[float] = -1.0
) -> Tensor:
    r"""ApproxNDCG loss per query: one minus a smooth NDCG.

    Each valid item's rank is replaced by a smooth approximation

    $$\hat r_i = 1 + \sum_{j \ne i} \sigma\Bigl(\frac{s_j - s_i}{T}\Bigr)$$

    (over valid `j`), and with gains `G = 2^y - 1` and `D(r) = log2(1 + r)`

    $$\ell = 1 - \frac{1}{\mathrm{IDCG}} \sum_i \frac{G_i}{D(\hat r_i)}$$

    where `IDCG` is the DCG of the ideal ordering. 0 when `IDCG = 0` (no
    relevant item). TF-Ranking's `ApproxNDCGLoss(alpha=1/T)` returns
    `-NDCG` instead of `1 - NDCG`: the same gradient.

    Args:
        y_true: Relevance labels `(B, list_size)`, `>= 0`; `mask_value` marks padding.
        y_pred: Scores `(B, list_size)`.
        temperature: `T > 0`; smaller is closer to the true (step) ranks.
        mask_value: Label of padded items, or `None` for no padding.

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
    labels, scores, valid = _ranking_inputs(y_true, y_pred, mask_value)
    size = ops.shape(scores)[-1]
    others = ops.logical_and(
        ops.logical_and(_rows(valid), _cols(valid)), ops.logical_not(ops.eye(size, dtype="bool"))
    )
    beaten = ops.sigmoid(-_score_differences(scores) / temperature)  # sigma((s_j - s_i) / T)
    ranks = 1.0 + _masked_sum(beaten, others, axis=-1)
    gains = _gains(labels, valid)
    dcg = ops.sum(gains * _inverse_discount(ranks), axis=-1)
    inverse_idcg = _inverse_ideal_dcg(gains)
    return ops.where(inverse_idcg > 0, 1.0 - dcg * inverse_idcg, ops.zeros_like(dcg))


@register
class ApproxNDCGLoss(LossPlus):
    r"""ApproxNDCG loss: `1 - NDCG` with each rank replaced by a sum of
    sigmoids of score differences at temperature `T`:
    `1 - sum_i (2^y_i - 1) / log2(1 + r_i) / IDCG` with
    `r_i = 1 + sum_{j != i} sigmoid((s_j - s_i) / T)`.

    See `approx_ndcg_loss`. `ApproxNDCGLoss(temperature=0.1)` has the
    gradient of TF-Ranking's `ApproxNDCGLoss(alpha=10)`.

    Args:
        temperature: `T > 0` of the sigmoid rank approximation.
        mask_value: Label of padded items, or `None` for no padding.
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
        reduction: Optional[str] = "sum_over_batch_size",
        name: Optional[str] = "approx_ndcg_loss",
        dtype: Any = None,
    ) -> None:
        super().__init__(reduction=reduction, name=name, dtype=dtype, temperature=temperature, mask_value=mask_value)


@Options(weighting=choice(*LAMBDA_WEIGHTINGS), mask_value=_MASK_VALUE)
@compiled_on_jax
def lambda_loss(
    y_true: Tensor, y_pred: Tensor, weighting: str = "ndcg_loss2", mask_value: Optional[float] = -1.0
) -> Tensor:
    r"""LambdaLoss per query: pairwise logistic terms weighted by how much
    each pair matters to NDCG.

    $$\ell = \sum_{y_i > y_j} \delta_{ij} \log\bigl(1 + e^{-(s_i - s_j)}\bigr)$$

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
    labels, scores, valid = _ranking_inputs(y_true, y_pred, mask_value)
    pairs = _preferred_pairs(labels, valid)
    ranks = _descending_ranks(ops.stop_gradient(scores), valid)
    gains = _gains(labels, valid)
    gain_gap = ops.abs(_rows(gains) - _cols(gains))
    if weighting == "ndcg_loss2":
        gap = ops.maximum(ops.abs(_rows(ranks) - _cols(ranks)), 1.0)  # >= 1 off the diagonal
        discount_gap = ops.abs(_inverse_discount(gap) - _inverse_discount(gap + 1.0))
    else:
        inverse = _inverse_discount(ranks)
        discount_gap = ops.abs(_rows(inverse) - _cols(inverse))
    inverse_idcg = ops.expand_dims(ops.expand_dims(_inverse_ideal_dcg(gains), -1), -1)
    weights = ops.stop_gradient(discount_gap * gain_gap * inverse_idcg)
    terms = weights * ops.softplus(-_score_differences(scores))
    return _masked_sum(terms, pairs, axis=(-2, -1))


@register
class LambdaLoss(LossPlus):
    r"""LambdaLoss: pairwise logistic loss weighted by NDCG-Loss2
    (`weighting="ndcg_loss2"`) or LambdaRank's `|Delta NDCG|`
    (`weighting="lambdarank"`), summed over each query's pairs:
    `sum_{y_i > y_j} delta_ij log(1 + exp(-(s_i - s_j)))`, with `delta_ij`
    computed from the ranks of the current scores (no gradient).

    See `lambda_loss`.

    Args:
        weighting: `"ndcg_loss2"` or `"lambdarank"`.
        mask_value: Label of padded items, or `None` for no padding.
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
        reduction: Optional[str] = "sum_over_batch_size",
        name: Optional[str] = "lambda_loss",
        dtype: Any = None,
    ) -> None:
        super().__init__(reduction=reduction, name=name, dtype=dtype, weighting=weighting, mask_value=mask_value)
