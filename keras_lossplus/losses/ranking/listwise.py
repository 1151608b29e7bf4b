r"""Listwise ranking losses: ListNet, ListMLE and the softmax loss, each a
cross entropy or likelihood over a query's whole list of scores `s / T`.

A per-item weight `w_i` multiplies item `i`'s term: its share of the cross
entropy (ListNet, softmax) or the Plackett-Luce step at which it is chosen
(ListMLE).
"""

from __future__ import annotations

from typing import Any, ClassVar, Optional

import keras  # noqa: F401  (the docstring examples use it)
from keras import ops

from keras_lossplus.backend import compiled_on_jax
from keras_lossplus.losses.base import register
from keras_lossplus.losses.options import Options
from keras_lossplus.losses.ranking.common import (
    MASK_VALUE,
    TEMPERATURE,
    RankingLoss,
    has_relevant,
    masked_sum,
    ranking_inputs,
    relevance_checked,
    weighted,
)
from keras_lossplus.ops import largest_finite, masked_logsumexp

Tensor = Any

__all__ = [
    "ListMLELoss",
    "ListNetLoss",
    "SoftmaxRankingLoss",
    "listmle_loss",
    "listnet_loss",
    "softmax_ranking_loss",
]

_LISTWISE_OPTIONS = dict(temperature=TEMPERATURE, mask_value=MASK_VALUE)
# Fill value for padded scores in ListMLE's cumulative log-sum-exp: exp(fill - s)
# is exactly 0 for any score, and a log-sum-exp of two fills stays finite.
_FILL = -1.0e30


def _log_softmax(scores: Tensor, valid: Tensor) -> Tensor:
    return scores - masked_logsumexp(scores, valid, axis=-1, keepdims=True)


class _ListwiseLoss(RankingLoss):
    """The constructor the listwise losses share."""

    default_name: ClassVar[str]

    def __init__(
        self,
        mask_value: Optional[float] = -1.0,
        temperature: float = 1.0,
        skip_empty_lists: bool = False,
        reduction: Optional[str] = "sum_over_batch_size",
        name: Optional[str] = None,
        dtype: Any = None,
    ) -> None:
        super().__init__(reduction=reduction, name=name or self.default_name, dtype=dtype,
                         skip_empty_lists=skip_empty_lists, temperature=temperature, mask_value=mask_value)


# --------------------------------------------------------------------------- ListNet


@Options(**_LISTWISE_OPTIONS)
@relevance_checked
@compiled_on_jax
def listnet_loss(
    y_true: Tensor,
    y_pred: Tensor,
    mask_value: Optional[float] = -1.0,
    temperature: float = 1.0,
    sample_weight: Optional[Tensor] = None,
) -> Tensor:
    r"""ListNet loss (top-one probabilities) per query.

    The cross entropy between the softmax of the labels and the softmax of
    the scores `s / T`, both over the query's valid items:

    $$\ell = -\sum_i w_i \operatorname{softmax}(y)_i \log \operatorname{softmax}(s / T)_i$$

    0 for a query without a relevant item (no valid label `> 0`).
    TF-Ranking's `ListNetLoss` uses `y / sum(y)` as the target instead of
    the paper's `softmax(y)`; that target is `SoftmaxRankingLoss` up to the
    factor `sum(y)`.

    Args:
        y_true: Relevance labels `(B, list_size)`, `>= 0`; `mask_value` marks padding.
        y_pred: Scores `(B, list_size)`.
        mask_value: Label of padded items, or `None` for no padding.
        temperature: `T > 0`, divides the scores.
        sample_weight: Optional per-item weights `w` `(B, list_size)` (1 without).

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
    labels, scores, valid, weights = ranking_inputs(y_true, y_pred, mask_value, temperature, sample_weight)
    target = ops.exp(ops.where(valid, _log_softmax(labels, valid), ops.zeros_like(labels)))
    loss = -masked_sum(weighted(target * _log_softmax(scores, valid), weights), valid, axis=-1)
    return ops.where(has_relevant(labels, valid), loss, ops.zeros_like(loss))


@register
class ListNetLoss(_ListwiseLoss):
    r"""ListNet loss: cross entropy between the top-one probabilities
    `softmax(y_true)` and `softmax(y_pred / T)` over each query's valid items.

    See `listnet_loss`. `sample_weight`: one weight per query `(B,)`, or
    one per item `(B, list_size)` multiplying that item's term.

    Args:
        mask_value: Label of padded items, or `None` for no padding.
        temperature: `T > 0`, divides the scores.
        skip_empty_lists: Leave the all-padding lists out of the batch mean.
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
    default_name = "listnet_loss"


# --------------------------------------------------------------------------- ListMLE


def _logaddexp(a: Tensor, b: Tensor) -> Tensor:
    """`log(exp(a) + exp(b))` shifted by the larger argument held constant,
    so the gradient is the softmax of `(a, b)` on every backend (`(1/2,
    1/2)` at `a == b`, where TensorFlow's `logaddexp` gives `(1, 0)`)."""
    shift = ops.stop_gradient(ops.maximum(a, b))
    return shift + ops.log(ops.exp(a - shift) + ops.exp(b - shift))


def _reverse_cumulative_logsumexp(x: Tensor) -> Tensor:
    """`out_i = log(sum_{j >= i} exp(x_j))` along the last axis, exactly and
    stably: a parallel (Hillis-Steele) scan of `_logaddexp` in
    `ceil(log2(n))` steps over the static length `n`."""
    n = x.shape[-1]
    if n is None:
        raise ValueError("ListMLELoss needs a known list size (the last axis of `y_pred`).")
    shift = 1
    while shift < n:
        fill = ops.full_like(x[..., :shift], _FILL)
        x = _logaddexp(x, ops.concatenate([x[..., shift:], fill], axis=-1))
        shift *= 2
    return x


@Options(**_LISTWISE_OPTIONS)
@relevance_checked
@compiled_on_jax
def listmle_loss(
    y_true: Tensor,
    y_pred: Tensor,
    mask_value: Optional[float] = -1.0,
    temperature: float = 1.0,
    sample_weight: Optional[Tensor] = None,
) -> Tensor:
    r"""ListMLE loss per query: the negative log-likelihood of the ideal
    permutation under the Plackett-Luce model of the scores `s / T`.

    With `pi` the valid items sorted by decreasing label:

    $$\ell = \sum_{k} w_{\pi(k)} \Bigl[\log \sum_{j \ge k} e^{s_{\pi(j)} / T} - s_{\pi(k)} / T\Bigr]$$

    Items with equal labels keep their input order (a stable sort; the
    result is deterministic), as keras-rs' `ListMLELoss`; TF-Ranking's
    shuffles tied items at random, so its value on lists with ties varies
    from call to call around this one. The inner sums are a reverse
    cumulative log-sum-exp, each step shifted by its larger argument (no
    underflow at any score range, and the exact gradient at tied scores on
    every backend). 0 for a query without a relevant item (no valid label
    `> 0`).

    Args:
        y_true: Relevance labels `(B, list_size)`, `>= 0`; `mask_value` marks padding.
        y_pred: Scores `(B, list_size)`.
        mask_value: Label of padded items, or `None` for no padding.
        temperature: `T > 0`, divides the scores.
        sample_weight: Optional per-item weights `w` `(B, list_size)`: an
            item's weight multiplies the step at which it is chosen.

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
    labels, scores, valid, weights = ranking_inputs(y_true, y_pred, mask_value, temperature, sample_weight)
    key = ops.where(valid, -labels, ops.full_like(labels, largest_finite(labels.dtype)))  # padding sorts last
    order = ops.argsort(key, axis=-1)
    sorted_scores = ops.take_along_axis(scores, order, axis=-1)
    # padding sorts last: position k is valid iff k < the number of valid items
    count = ops.sum(ops.cast(valid, "int32"), axis=-1, keepdims=True)
    sorted_valid = ops.arange(ops.shape(scores)[-1], dtype="int32") < count
    filled = ops.where(sorted_valid, sorted_scores, ops.full_like(sorted_scores, _FILL))
    terms = _reverse_cumulative_logsumexp(filled) - filled
    if weights is not None:
        terms = terms * ops.take_along_axis(weights, order, axis=-1)
    loss = masked_sum(terms, sorted_valid, axis=-1)
    return ops.where(has_relevant(labels, valid), loss, ops.zeros_like(loss))


@register
class ListMLELoss(_ListwiseLoss):
    r"""ListMLE loss: the Plackett-Luce negative log-likelihood of the
    permutation `pi` that sorts each query's items by decreasing label (ties
    in input order), `sum_k [log sum_{j >= k} exp(s_pi(j) / T) - s_pi(k) / T]`.

    See `listmle_loss`. `sample_weight`: one weight per query `(B,)`, or
    one per item `(B, list_size)` multiplying the step at which the item
    is chosen.

    Args:
        mask_value: Label of padded items, or `None` for no padding.
        temperature: `T > 0`, divides the scores.
        skip_empty_lists: Leave the all-padding lists out of the batch mean.
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
    default_name = "listmle_loss"


# --------------------------------------------------------------------------- softmax


@Options(**_LISTWISE_OPTIONS)
@relevance_checked
@compiled_on_jax
def softmax_ranking_loss(
    y_true: Tensor,
    y_pred: Tensor,
    mask_value: Optional[float] = -1.0,
    temperature: float = 1.0,
    sample_weight: Optional[Tensor] = None,
) -> Tensor:
    r"""Softmax ranking loss per query.

    $$\ell = -\sum_i w_i y_i \log \frac{e^{s_i / T}}{\sum_j e^{s_j / T}}$$

    over the query's valid items, the labels used as they are (not
    normalised). Per query this is optax's
    `optax.losses.ranking_softmax_loss(y_pred / T, y_true, where=valid,
    weights=w, reduce_fn=None)`, value and gradient. A query whose labels
    sum to 0 (no relevant item) or that is all padding gives 0.

    Over a batch the two differ where a list is all padding: optax's
    default `reduce_fn=jnp.mean` leaves such lists out of the mean, Keras'
    `"sum_over_batch_size"` counts each as a 0, so with `k` all-padding
    lists among `B` the Keras value is optax's times `(B - k) / B`.
    `SoftmaxRankingLoss(skip_empty_lists=True)` gives optax's mean.

    Args:
        y_true: Relevance labels `(B, list_size)`, `>= 0`; `mask_value` marks padding.
        y_pred: Scores `(B, list_size)`.
        mask_value: Label of padded items, or `None` for no padding.
        temperature: `T > 0`, divides the scores.
        sample_weight: Optional per-item weights `w` `(B, list_size)`
            (optax's `weights`; 1 without).

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
    labels, scores, valid, weights = ranking_inputs(y_true, y_pred, mask_value, temperature, sample_weight)
    return -masked_sum(weighted(labels * _log_softmax(scores, valid), weights), valid, axis=-1)


@register
class SoftmaxRankingLoss(_ListwiseLoss):
    r"""Softmax ranking loss `-sum_i y_i log softmax(s / T)_i` over each
    query's valid items.

    Per query it is optax's `ranking_softmax_loss(where=valid,
    reduce_fn=None)` (a per-item `sample_weight` `(B, list_size)` is
    optax's `weights`). The batch mean differs where a list is all padding:
    optax's `reduce_fn=jnp.mean` leaves it out, Keras' reduction counts it
    as 0 (`B / (B - 1)` apart with one such list among `B`);
    `skip_empty_lists=True` gives optax's mean. See `softmax_ranking_loss`.

    Args:
        mask_value: Label of padded items, or `None` for no padding.
        temperature: `T > 0`, divides the scores.
        skip_empty_lists: Leave the all-padding lists out of the batch mean
            (optax's `reduce_fn=jnp.mean`).
        reduction, name, dtype: As for every `keras.losses.Loss`.

    Reference:
        Bruch et al., ICTIR 2019; optax `ranking_softmax_loss`.

    Examples:
        >>> loss = SoftmaxRankingLoss()
        >>> round(float(loss([[2.0, 0.0, 1.0, -1.0]], [[1.0, 0.5, 0.0, 3.0]])), 4)
        3.0408
    """

    fn = staticmethod(softmax_ranking_loss)
    default_name = "softmax_ranking_loss"
