r"""List-wise ranking metrics as pure functions: NDCG, DCG, mean reciprocal
rank, average precision, Precision@k and Recall@k of each list of scored
items against graded relevance labels (the metrics of keras-rs and
TF-Ranking).

Every function takes `y_true`, relevance labels of shape
`(batch_size, list_size)` (or `(list_size,)` for one list; more leading axes
are allowed), and `y_pred`, the scores of the same shape (a trailing axis of
size 1, `(batch_size, list_size, 1)`, is dropped), and returns **one value
per list**, shape `y_true.shape[:-1]`.

* **Padding**: an item is left out when its label is negative (or NaN), when
  `mask` (same shape, or `y_true={"labels": ..., "mask": ...}`) is false, or
  when its `sample_weight` is 0.
* **Relevance**: graded labels `0, 1, 2, ...` (any non-negative number).
  NDCG and DCG use the gain of every label; MRR, MAP, Precision@k and
  Recall@k count an item as relevant when its label is `>= 1`.
* **`k`**: the cut-off; `None` (default) ranks the whole list.
* **`sample_weight`**: a scalar, one weight per list or one per item. Item
  weights multiply the gains in DCG and NDCG (the ideal ranking then orders
  the weighted gains) and the relevant items of average precision; MRR,
  Precision@k and Recall@k use them only as a mask. (How the classes weight
  the lists: `ranking_classes.py`.)
* **Ties** in the scores are averaged: the value is the mean over every
  order of the tied items (McSherry & Najork 2008), the expectation of
  keras-rs' randomly broken ties; without ties, the plain value.
* A list without a relevant item (or all padding) gives 0; a NaN score at a
  valid item gives NaN for its list.

Cost: `O(B L^2)` time and memory (pairwise comparisons within each list,
no sort); every shape is static, so the functions compile under `jax.jit`
and `tf.function(jit_compile=True)`.
"""

from __future__ import annotations

from typing import Any, Optional

import keras  # noqa: F401  (the docstring examples use it)
from keras import ops

from keras_lossplus.losses.options import Options, optional, positive_int
from keras_lossplus.metrics.ranking_lists import (
    Lists, binary_relevance, discount_option, gain_option, list_inputs, masked, nan_where_scores_are,
    rank_items, tie_average, within,
)

Tensor = Any

k_option = optional(positive_int)
"""The check of `k=`: `None` or an integer `>= 1`."""


# --------------------------------------------------------------------------- from checked lists


def _discounts(position: Tensor, valid: Tensor, rank_discount_fn: Any, k: Optional[int]) -> Tensor:
    return masked(rank_discount_fn(position), ops.logical_and(valid, within(position, k)))


def dcg_parts(lists: Lists, k, gain_fn, rank_discount_fn) -> tuple:
    """`(dcg, ideal_dcg, gains)` per list; `gains` 0 at padding."""
    gains = masked(gain_fn(lists.labels), lists.valid)
    weighted = gains * lists.weights
    ranking = rank_items(lists.scores, lists.valid)
    expected = tie_average(ranking, _discounts(ranking.position, lists.valid, rank_discount_fn, k))
    dcg = ops.sum(masked(weighted * expected, lists.valid), axis=-1)
    # the ideal ranking orders the weighted gains: tied items have equal gains, so no average is needed
    ideal_position = rank_items(masked(weighted, lists.valid), lists.valid).position
    ideal = ops.sum(masked(weighted * _discounts(ideal_position, lists.valid, rank_discount_fn, k), lists.valid),
                    axis=-1)
    return nan_where_scores_are(dcg, lists), ideal, gains


def reciprocal_rank_values(lists: Lists, k) -> Tensor:
    """The expected reciprocal rank of the first relevant item (0 past `k`)."""
    relevant = ops.cast(binary_relevance(lists), "bool")
    scores, dtype = lists.scores, lists.scores.dtype
    top = ops.max(ops.where(relevant, scores, float("-inf")), axis=-1, keepdims=True)

    def count(m: Tensor) -> Tensor:
        return ops.sum(ops.cast(m, dtype), axis=-1, keepdims=True)

    ahead = count(ops.logical_and(lists.valid, scores > top))
    group = count(ops.logical_and(lists.valid, ops.equal(scores, top)))
    hits = count(ops.logical_and(relevant, ops.equal(scores, top)))
    # the top group's order is random: the first relevant one is at offset j with
    # probability C(m - j, r - 1) / C(m, r) = S(j - 1) r / (m - j + 1), S(j) = C(m - j, r) / C(m, r)
    j = ops.cast(ops.arange(ops.shape(scores)[-1]), dtype) + 1.0
    misses = group - hits
    factor = ops.where(j - 1.0 < misses, (misses - j + 1.0) / ops.maximum(group - j + 1.0, 1.0), 0.0)
    survive = ops.cumprod(factor, axis=-1)
    before = ops.concatenate([ops.ones_like(survive[..., :1]), survive[..., :-1]], axis=-1)
    first = before * hits / ops.maximum(group - j + 1.0, 1.0)
    position = ahead + j
    values = ops.sum(masked(first / position, within(position, k)), axis=-1)
    return nan_where_scores_are(masked(values, hits[..., 0] > 0), lists)


def average_precision_values(lists: Lists, k) -> Tensor:
    """The expected average precision (at `k`) of each list."""
    relevance = binary_relevance(lists)
    ranking = rank_items(lists.scores, lists.valid)
    inside = ops.logical_and(lists.valid, within(ranking.position, k))
    # an item of tie group size m, with c relevant items ahead and r relevant ones in its
    # group (itself included), at offset t of the group: precision (c + 1 + t (r - 1) / (m - 1)) / position
    # in expectation over the others' order; averaged over its offsets.
    other = ops.expand_dims(relevance, -2)
    relevant_ahead = ops.sum(ops.where(ranking.ahead, other, 0.0), axis=-1)
    relevant_tied = ops.sum(ops.where(ranking.tied, other, 0.0), axis=-1)
    per_position = tie_average(ranking, masked(1.0 / ranking.position, inside))
    per_offset = tie_average(ranking, masked(ranking.offset / ranking.position, inside))
    precision = (relevant_ahead + 1.0) * per_position + (relevant_tied - 1.0) / ops.maximum(
        ranking.ties - 1.0, 1.0) * per_offset
    weighted = lists.weights * relevance
    values = ops.divide_no_nan(ops.sum(masked(weighted * precision, relevance > 0), axis=-1),
                               ops.sum(weighted, axis=-1))
    return nan_where_scores_are(values, lists)


def hits_at_k(lists: Lists, k) -> tuple:
    """`(expected relevant items in the top k, relevant items, valid items)` per list."""
    relevance = binary_relevance(lists)
    ranking = rank_items(lists.scores, lists.valid)
    top = tie_average(ranking, ops.cast(ops.logical_and(lists.valid, within(ranking.position, k)),
                                        relevance.dtype))
    hits = ops.sum(relevance * top, axis=-1)
    return hits, ops.sum(relevance, axis=-1), ops.sum(ops.cast(lists.valid, relevance.dtype), axis=-1)


def precision_values(lists: Lists, k) -> Tensor:
    hits, _, size = hits_at_k(lists, k)
    shown = size if k is None else ops.minimum(size, float(k))
    return nan_where_scores_are(ops.divide_no_nan(hits, shown), lists)


def recall_values(lists: Lists, k) -> Tensor:
    hits, relevant, _ = hits_at_k(lists, k)
    return nan_where_scores_are(ops.divide_no_nan(hits, relevant), lists)


# --------------------------------------------------------------------------- the public functions

_GAIN_OPTIONS = dict(k=k_option, gain_fn=gain_option, rank_discount_fn=discount_option)


@Options(**_GAIN_OPTIONS)
def ndcg(y_true, y_pred, k=None, gain_fn="exp2", rank_discount_fn="log2", sample_weight=None, mask=None) -> Tensor:
    r"""Normalized discounted cumulative gain of each list (Järvelin &
    Kekäläinen 2002; keras-rs' and TF-Ranking's NDCG):

    $$\mathrm{NDCG@k} = \frac{\mathrm{DCG@k}}{\mathrm{IDCG@k}}, \qquad
    \mathrm{DCG@k} = \sum_{i} w_i\, g(y_i)\, d(\mathrm{rank}_i)\,
    [\mathrm{rank}_i \le k],$$

    `rank_i` the 1-based position of item `i` by decreasing score, `g` the
    gain (`2^y - 1` by default), `d` the discount (`1 / log2(1 + rank)` by
    default) and IDCG@k the DCG@k of the items ordered by decreasing
    weighted gain `w_i g(y_i)`. Tied scores: the mean over their orders.

    Args:
        y_true, y_pred, mask: Relevance labels (negative: padding; or
            `{"labels": ..., "mask": ...}`), scores, an optional item mask.
        k: The cut-off, an integer `>= 1`; `None` ranks the whole list.
        gain_fn: `"exp2"` (`2^y - 1`, default), `"identity"` (`y`), or a
            callable of the labels (registered for saving:
            `keras.saving.register_keras_serializable`).
        rank_discount_fn: `"log2"` (`1 / log2(1 + rank)`, default) or a
            callable of the 1-based ranks.
        sample_weight: A scalar, one weight per list, or one per item (item
            weights multiply the gains); 0 marks padding.

    Returns:
        One value per list, in `[0, 1]` for non-negative gains; 0 for a list
        without any positive gain.

    Examples:
        >>> labels, scores = [[0.0, 1.0, 2.0, -1.0]], [[0.9, 0.5, 0.2, 0.7]]
        >>> [round(v, 4) for v in keras.ops.convert_to_numpy(ndcg(labels, scores)).tolist()]
        [0.5869]

        The item of label `-1` is padding; the others rank `0, 1, 2`.
    """
    dcg_value, ideal, _ = dcg_parts(list_inputs(y_true, y_pred, sample_weight, mask), k, gain_fn, rank_discount_fn)
    return ops.divide_no_nan(dcg_value, ideal)


@Options(**_GAIN_OPTIONS)
def dcg(y_true, y_pred, k=None, gain_fn="exp2", rank_discount_fn="log2", sample_weight=None, mask=None) -> Tensor:
    r"""Discounted cumulative gain of each list (Järvelin & Kekäläinen 2002;
    keras-rs' and TF-Ranking's DCG):
    $\mathrm{DCG@k} = \sum_i w_i\, g(y_i)\, d(\mathrm{rank}_i)\, [\mathrm{rank}_i \le k]$,
    with the gain `g` (`2^y - 1` by default) and the discount `d`
    (`1 / log2(1 + rank)` by default). Tied scores: the mean over their orders.

    Args:
        y_true, y_pred, mask: Relevance labels (negative: padding; or
            `{"labels": ..., "mask": ...}`), scores, an optional item mask.
        k: The cut-off, an integer `>= 1`; `None` ranks the whole list.
        gain_fn, rank_discount_fn: The gain and the discount, as for `ndcg`.
        sample_weight: Per list or per item; item weights multiply the gains.

    Returns:
        One value per list (not normalized); 0 for a list without gain.

    Examples:
        >>> labels, scores = [[0.0, 1.0, 2.0]], [[0.2, 0.5, 0.9]]
        >>> [round(v, 4) for v in keras.ops.convert_to_numpy(dcg(labels, scores)).tolist()]
        [3.6309]

        `3 / log2(2) + 1 / log2(3)`.
    """
    return dcg_parts(list_inputs(y_true, y_pred, sample_weight, mask), k, gain_fn, rank_discount_fn)[0]


@Options(k=k_option)
def mean_reciprocal_rank(y_true, y_pred, k=None, sample_weight=None, mask=None) -> Tensor:
    r"""Reciprocal rank of each list, whose mean over lists is the mean
    reciprocal rank (Voorhees 1999, TREC-8 question answering; keras-rs'
    `MeanReciprocalRank`): `1 / rank` of the first item with a label `>= 1`,
    0 when it ranks past `k` or the list has none. Tied scores: the mean
    over their orders.

    Args:
        y_true, y_pred, mask: Relevance labels (negative: padding; or
            `{"labels": ..., "mask": ...}`), scores, an optional item mask.
        k: The cut-off, an integer `>= 1`; `None` ranks the whole list.
        sample_weight: A 0 marks padding; other weights weight the list in
            `MeanReciprocalRank`, not the per-list value.

    Returns:
        One value per list: `1/r` for a first relevant item at rank `r <= k`, else 0.

    Examples:
        >>> labels, scores = [[0.0, 1.0, 0.0], [1.0, 0.0, 1.0]], [[0.9, 0.5, 0.2], [0.1, 0.1, 0.1]]
        >>> [round(v, 4) for v in keras.ops.convert_to_numpy(mean_reciprocal_rank(labels, scores)).tolist()]
        [0.5, 0.8333]

        In the second list all three tie: the first relevant item is first
        with probability 2/3, second with 1/3.
    """
    return reciprocal_rank_values(list_inputs(y_true, y_pred, sample_weight, mask), k)


@Options(k=k_option)
def mean_average_precision(y_true, y_pred, k=None, sample_weight=None, mask=None) -> Tensor:
    r"""Average precision (at `k`) of each list, whose mean over lists is
    the MAP (Manning, Raghavan & Schütze 2008, "Introduction to Information
    Retrieval", 8.4; keras-rs' and TF-Ranking's definition):

    $$\mathrm{AP@k} = \frac{\sum_{i:\,\mathrm{rank}_i \le k} w_i\, \mathrm{rel}_i\,
    P@\mathrm{rank}_i}{\sum_i w_i\, \mathrm{rel}_i},$$

    `rel_i = [y_i >= 1]` and `P@j` the fraction of relevant items among the
    top `j`. The denominator counts every relevant item, also those past
    `k`. Tied scores: the mean over their orders.

    Args:
        y_true, y_pred, mask: Relevance labels (negative: padding; or
            `{"labels": ..., "mask": ...}`), scores, an optional item mask.
        k: The cut-off, an integer `>= 1`; `None` ranks the whole list.
        sample_weight: A scalar, one weight per list, or one per item (item
            weights weight the relevant items); 0 marks padding.

    Returns:
        One value per list, in `[0, 1]`; 0 for a list without a relevant item.

    Examples:
        >>> labels, scores = [[1.0, 0.0, 1.0, 0.0]], [[0.9, 0.8, 0.7, 0.1]]
        >>> [round(v, 4) for v in keras.ops.convert_to_numpy(mean_average_precision(labels, scores)).tolist()]
        [0.8333]

        `(1/1 + 2/3) / 2`.
    """
    return average_precision_values(list_inputs(y_true, y_pred, sample_weight, mask), k)


@Options(k=k_option)
def precision_at_k(y_true, y_pred, k=None, sample_weight=None, mask=None) -> Tensor:
    r"""Precision@k of each list (keras-rs' `PrecisionAtK`, TF-Ranking's
    `PrecisionMetric`; Manning, Raghavan & Schütze 2008): the fraction of
    items with a label `>= 1` among the top `min(k, n)`, `n` the number of
    valid items of the list. Tied scores: the mean over their orders.

    Args:
        y_true, y_pred, mask: Relevance labels (negative: padding; or
            `{"labels": ..., "mask": ...}`), scores, an optional item mask.
        k: The cut-off, an integer `>= 1`; `None` takes the whole list.
        sample_weight: Per list or per item; only a 0 (padding) matters here.

    Returns:
        One value per list, in `[0, 1]`; 0 for a list that is all padding.

    Examples:
        >>> labels, scores = [[1.0, 0.0, 1.0, -1.0]], [[0.9, 0.8, 0.7, 0.95]]
        >>> keras.ops.convert_to_numpy(precision_at_k(labels, scores, k=2)).tolist()
        [0.5]
    """
    return precision_values(list_inputs(y_true, y_pred, sample_weight, mask), k)


@Options(k=k_option)
def ranking_recall_at_k(y_true, y_pred, k=None, sample_weight=None, mask=None) -> Tensor:
    r"""Recall@k of each list (keras-rs' `RecallAtK`, TF-Ranking's
    `RecallMetric`; Manning, Raghavan & Schütze 2008): the fraction of the
    list's items with a label `>= 1` that rank in the top `k`. (The
    retrieval metric `recall_at_k` is another one: whether *any* of a
    query's `k` nearest embeddings shares its label.) Tied scores: the mean
    over their orders.

    Args:
        y_true, y_pred, mask: Relevance labels (negative: padding; or
            `{"labels": ..., "mask": ...}`), scores, an optional item mask.
        k: The cut-off, an integer `>= 1`; `None`: the whole list (recall 1).
        sample_weight: As for `precision_at_k`: a 0 is padding, nothing else counts.

    Returns:
        One value per list, in `[0, 1]`; 0 for a list without a relevant item.

    Examples:
        >>> labels, scores = [[1.0, 0.0, 1.0, 0.0]], [[0.9, 0.8, 0.7, 0.1]]
        >>> keras.ops.convert_to_numpy(ranking_recall_at_k(labels, scores, k=2)).tolist()
        [0.5]
    """
    return recall_values(list_inputs(y_true, y_pred, sample_weight, mask), k)
