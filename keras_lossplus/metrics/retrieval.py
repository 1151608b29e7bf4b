r"""Retrieval metrics of embeddings, as pure functions: Recall@K,
Precision@1, MAP@R and NDCG@K of each query against a set of references.

Every function takes the query labels `(Q,)` or `(Q, 1)` and embeddings
`(Q, D)`, and optionally reference labels `(N,)` and embeddings `(N, D)`.
Without references the scores are **in-batch, leave-one-out**: each query
is retrieved against the other queries, never itself (pytorch-metric-learning's
`AccuracyCalculator.get_accuracy(query, query_labels)`, i.e.
`embeddings_come_from_same_source=True`). With references each query is
retrieved against all of them (a held-out query set against a gallery).

A reference is *relevant* to a query when their labels are equal. Each
function returns one value per query, in `[0, 1]`. A query without any
relevant reference has no defined value: it gets 0 here, and
`has_positive` tells which queries those are, so that the mean over the
others (what pytorch-metric-learning reports, and what the
`keras_lossplus.metrics` classes accumulate) is
`sum(values * mask) / sum(mask)`.

Nearness: `distance="cosine"` (cosine similarity, the default),
`"dot"` (inner product), `"euclidean"` or `"squared_euclidean"` (the
nearest has the smallest distance). A zero vector has cosine similarity 0
with everything; no value is ever NaN.

Ties: references at exactly the same distance from a query are ranked by
their index, the lower index first (a stable sort of the distances), on
every backend. With identical embeddings everything ties, so the rank is
the reference order.

Cost: Recall@K and Precision@1 count, per query, the references nearer
than its nearest relevant one: `O(Q N)` memory and time after the
`(Q, N)` similarity matrix, no sort. R-precision, MAP@R and NDCG@K sort each row of the
similarity matrix (`O(Q N log N)`; XLA's sort is slow on CPU, fast on GPU).
Every shape is static, so the functions compile under `jax.jit` and
`tf.function(jit_compile=True)`.
"""

from __future__ import annotations

from typing import Any, Optional

import keras
from keras import ops

from keras_lossplus.losses.labels import check_integer_labels
from keras_lossplus.losses.options import check_float_predictions, choice, positive_int
from keras_lossplus.ops import compute_dtype, l2_normalize, largest_finite, pairwise_distances, same_label_mask

Tensor = Any

DISTANCES = ("cosine", "dot", "euclidean", "squared_euclidean")
distance_check = choice(*DISTANCES)
"""The check of the `distance=` option of the retrieval metrics."""
k_check = positive_int
"""The check of `k=`: an integer `>= 1`."""


# --------------------------------------------------------------------------- inputs


def _labels(labels: Any, name: str) -> Tensor:
    labels = ops.convert_to_tensor(labels)
    shape = tuple(labels.shape)
    if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
        raise ValueError(
            f"`{name}` must hold one integer class label per sample, shape (n,) or (n, 1). "
            f"Received: {name}.shape={shape}"
        )
    check_integer_labels(labels, name=name)
    return ops.reshape(labels, (-1,))


def _embeddings(embeddings: Any, name: str) -> Tensor:
    try:
        check_float_predictions(embeddings)
    except TypeError:
        raise TypeError(
            f"Argument `{name}` must be floating-point embeddings. Received: {name} with dtype="
            f"{keras.backend.standardize_dtype(getattr(embeddings, 'dtype', None) or 'int32')}"
        ) from None
    embeddings = ops.convert_to_tensor(embeddings)
    if len(embeddings.shape) != 2:
        raise ValueError(
            f"`{name}` must hold one embedding per sample, shape (n, dim). "
            f"Received: {name}.shape={tuple(embeddings.shape)}"
        )
    return ops.cast(embeddings, compute_dtype(embeddings.dtype))


def _same_length(labels: Tensor, embeddings: Tensor, names: tuple) -> None:
    n, m = labels.shape[0], embeddings.shape[0]
    if n is not None and m is not None and n != m:
        raise ValueError(
            f"`{names[0]}` and `{names[1]}` must have the same number of samples. "
            f"Received: {names[0]}.shape[0]={n}, {names[1]}.shape[0]={m}"
        )


def retrieval_inputs(query_labels, query_embeddings, reference_labels=None, reference_embeddings=None) -> tuple:
    """Checked `(query_labels, query_embeddings, reference_labels,
    reference_embeddings, in_batch)`: labels flat, embeddings in their
    compute dtype; without references, the queries themselves and
    `in_batch=True`. Bad shapes raise `ValueError` naming the argument."""
    q_labels = _labels(query_labels, "query_labels")
    q_emb = _embeddings(query_embeddings, "query_embeddings")
    _same_length(q_labels, q_emb, ("query_labels", "query_embeddings"))
    if (reference_labels is None) != (reference_embeddings is None):
        given, missing = (
            ("reference_labels", "reference_embeddings") if reference_embeddings is None
            else ("reference_embeddings", "reference_labels")
        )
        raise ValueError(f"`{given}` was given without `{missing}`: pass both or neither.")
    if reference_labels is None:
        return q_labels, q_emb, q_labels, q_emb, True
    r_labels = _labels(reference_labels, "reference_labels")
    r_emb = ops.cast(_embeddings(reference_embeddings, "reference_embeddings"), q_emb.dtype)
    _same_length(r_labels, r_emb, ("reference_labels", "reference_embeddings"))
    if q_emb.shape[1] is not None and r_emb.shape[1] is not None and q_emb.shape[1] != r_emb.shape[1]:
        raise ValueError(
            "`query_embeddings` and `reference_embeddings` must have the same dimension. "
            f"Received: query_embeddings.shape={tuple(q_emb.shape)}, "
            f"reference_embeddings.shape={tuple(r_emb.shape)}"
        )
    return q_labels, q_emb, r_labels, r_emb, False


# --------------------------------------------------------------------------- the ranking


def similarities(queries: Tensor, references: Tensor, distance: str = "cosine") -> Tensor:
    """`(Q, N)` nearness of every reference to every query, larger = nearer:
    the cosine similarity or inner product, or minus the (squared)
    Euclidean distance. Finite for zero vectors and identical embeddings.

    Examples:
        >>> x = keras.ops.convert_to_tensor([[1.0, 0.0], [0.0, 0.0]])
        >>> keras.ops.convert_to_numpy(similarities(x, x)).tolist()
        [[1.0, 0.0], [0.0, 0.0]]
    """
    if distance == "cosine":
        return ops.matmul(l2_normalize(queries), ops.transpose(l2_normalize(references)))
    if distance == "dot":
        return ops.matmul(queries, ops.transpose(references))
    return -pairwise_distances(queries, references, metric=distance)


def _sort_key(scores: Tensor, valid: Tensor) -> Tensor:
    """The scores, finite, with -0 read as +0 (a sort orders them apart),
    and `-inf` for the references a query may not retrieve (itself)."""
    big = largest_finite(scores.dtype)
    scores = ops.clip(scores, -big, big)
    scores = ops.where(ops.equal(scores, 0.0), ops.zeros_like(scores), scores)
    return ops.where(valid, scores, ops.full_like(scores, float("-inf")))


def _positions(n: Any, dtype: str) -> Tensor:
    return ops.cast(ops.arange(n), dtype)


def rank_of_nearest_positive(key: Tensor, relevant: Tensor, valid: Tensor) -> Tensor:
    """Per query, how many retrievable references rank ahead of its nearest
    relevant one (0 when that one is the nearest); ties by index. No sort:
    `O(Q N)` masked passes."""
    n = ops.shape(key)[1]
    index = _positions(n, key.dtype)[None, :]
    best = ops.max(ops.where(relevant, key, ops.full_like(key, float("-inf"))), axis=1, keepdims=True)
    at_best = ops.logical_and(relevant, ops.equal(key, best))
    first = ops.min(ops.where(at_best, index, ops.full_like(key, float("inf"))), axis=1, keepdims=True)
    ahead = ops.logical_or(key > best, ops.logical_and(ops.equal(key, best), index < first))
    return ops.sum(ops.cast(ops.logical_and(valid, ahead), key.dtype), axis=1)


def relevance_in_rank_order(key: Tensor, relevant: Tensor) -> Tensor:
    """`(Q, N)` 1/0 relevance of each query's references, nearest first
    (a stable sort: ties by index)."""
    order = ops.argsort(-key, axis=1)
    return ops.take_along_axis(ops.cast(relevant, key.dtype), order, axis=1)


def _ranking(query_labels, query_embeddings, reference_labels, reference_embeddings, distance, reference_mask=None):
    """`(key, relevant, valid)` of the queries against the references."""
    q_labels, q_emb, r_labels, r_emb, in_batch = retrieval_inputs(
        query_labels, query_embeddings, reference_labels, reference_embeddings
    )
    scores = similarities(q_emb, r_emb, distance)
    if in_batch:
        valid = ops.logical_not(ops.eye(ops.shape(scores)[0], dtype="bool"))
    else:
        valid = ops.ones_like(scores, dtype="bool")
    if reference_mask is not None:
        valid = ops.logical_and(valid, ops.reshape(ops.cast(reference_mask, "bool"), (1, -1)))
    relevant = ops.logical_and(same_label_mask(q_labels, r_labels), valid)
    return _sort_key(scores, valid), relevant, valid


def _has_any(relevant: Tensor) -> Tensor:
    return ops.any(relevant, axis=1)


# --------------------------------------------------------------------------- per-query values from a ranking


def recall_from_ranking(key, relevant, valid, k: int) -> Tensor:
    rank = rank_of_nearest_positive(key, relevant, valid)
    hit = ops.logical_and(_has_any(relevant), rank < k)
    return ops.cast(hit, key.dtype)


def _first_r(key, relevant) -> tuple:
    """Ranked relevance `rel`, 1-based positions, `R` and the mask of the
    first `R` positions. The references a query may not retrieve have the
    key `-inf`: they rank last and are irrelevant."""
    rel = relevance_in_rank_order(key, relevant)
    r = ops.sum(rel, axis=1, keepdims=True)
    position = _positions(ops.shape(rel)[1], rel.dtype)[None, :] + 1.0
    return rel, position, r, ops.cast(position <= r, rel.dtype)


def map_at_r_from_ranking(key, relevant, valid) -> Tensor:
    del valid
    rel, position, r, within_r = _first_r(key, relevant)
    precision = ops.cumsum(rel, axis=1) / position
    return ops.sum(rel * precision * within_r, axis=1) / ops.maximum(r[:, 0], 1.0)


def r_precision_from_ranking(key, relevant, valid) -> Tensor:
    del valid
    rel, _, r, within_r = _first_r(key, relevant)
    return ops.sum(rel * within_r, axis=1) / ops.maximum(r[:, 0], 1.0)


def ndcg_from_ranking(key, relevant, valid, k: int) -> Tensor:
    del valid
    rel = relevance_in_rank_order(key, relevant)
    r = ops.sum(rel, axis=1, keepdims=True)
    position = _positions(ops.shape(rel)[1], rel.dtype)[None, :] + 1.0
    discount = ops.where(position <= k, 1.0 / ops.log2(position + 1.0), ops.zeros_like(position))
    dcg = ops.sum(rel * discount, axis=1)
    ideal = ops.sum(ops.where(position <= r, discount, ops.zeros_like(rel)), axis=1)
    return ops.where(ideal > 0, dcg / ops.maximum(ideal, 1e-12), ops.zeros_like(dcg))


# --------------------------------------------------------------------------- the public functions


def _checked(distance: str, k: Any = 1) -> int:
    """The checked `k` (1 for the metrics without one), after `distance`."""
    distance_check("distance", distance)
    return k_check("k", k)


def has_positive(query_labels: Tensor, reference_labels: Optional[Tensor] = None) -> Tensor:
    """Which queries have at least one relevant (same-label) reference:
    the queries every retrieval metric averages over.

    Args:
        query_labels: Labels `(Q,)` or `(Q, 1)`.
        reference_labels: Labels `(N,)`; `None` for leave-one-out within the
            queries (a query is not its own positive).

    Returns:
        A boolean `(Q,)` tensor.

    Examples:
        >>> labels = keras.ops.convert_to_tensor([0, 0, 1])
        >>> keras.ops.convert_to_numpy(has_positive(labels)).tolist()
        [True, True, False]
    """
    q = _labels(query_labels, "query_labels")
    if reference_labels is None:
        return _has_any(same_label_mask(q))
    return _has_any(same_label_mask(q, _labels(reference_labels, "reference_labels")))


def recall_at_k(query_labels, query_embeddings, reference_labels=None, reference_embeddings=None, k=1,
                distance="cosine") -> Tensor:
    r"""Recall@K of each query: 1 if at least one of its `k` nearest
    references has its label, else 0.

    This is the "Recall@K" of the metric-learning papers (Song et al. 2016,
    "Deep Metric Learning via Lifted Structured Feature Embedding";
    Musgrave et al. 2020, "A Metric Learning Reality Check"), not the
    fraction of relevant references retrieved. At `k=1` it equals
    Precision@1.

    Args:
        query_labels: Integer labels of the queries, shape `(Q,)` or `(Q, 1)`.
        query_embeddings: Float embeddings of the queries, shape `(Q, D)`.
        reference_labels: Labels of the references, shape `(N,)`; `None`
            (with `reference_embeddings=None`) retrieves each query among
            the other queries (leave-one-out).
        reference_embeddings: Embeddings of the references, shape `(N, D)`.
        k: How many nearest references count, an integer `>= 1`.
        distance: `"cosine"`, `"dot"`, `"euclidean"` or `"squared_euclidean"`.

    Returns:
        `(Q,)` values in `{0, 1}`; 0 for a query without any relevant
        reference (see `has_positive`). Ties in distance: lower reference
        index first.

    Examples:
        >>> labels = keras.ops.convert_to_tensor([0, 0, 1, 1])
        >>> x = keras.ops.convert_to_tensor([[1.0, 0.0], [0.9, 0.1], [0.8, 0.3], [0.0, 1.0]])
        >>> keras.ops.convert_to_numpy(recall_at_k(labels, x, k=1)).tolist()
        [1.0, 1.0, 0.0, 1.0]
        >>> keras.ops.convert_to_numpy(recall_at_k(labels, x, k=3)).tolist()
        [1.0, 1.0, 1.0, 1.0]

        The third query's nearest are the two of label 0, then its positive.
    """
    k = _checked(distance, k)
    return recall_from_ranking(*_ranking(query_labels, query_embeddings, reference_labels, reference_embeddings,
                                         distance), k)


def precision_at_one(query_labels, query_embeddings, reference_labels=None, reference_embeddings=None,
                     distance="cosine") -> Tensor:
    r"""Precision@1 of each query: 1 if its nearest reference has its
    label, else 0 (pytorch-metric-learning's `precision_at_1`; Musgrave et
    al. 2020, "A Metric Learning Reality Check"). Equals `recall_at_k(k=1)`.

    Args:
        query_labels: Integer labels of the queries, shape `(Q,)` or `(Q, 1)`.
        query_embeddings: Float embeddings of the queries, shape `(Q, D)`.
        reference_labels: Labels of the references, shape `(N,)`; `None`
            (with `reference_embeddings=None`) retrieves each query among
            the other queries (leave-one-out).
        reference_embeddings: Embeddings of the references, shape `(N, D)`.
        distance: `"cosine"`, `"dot"`, `"euclidean"` or `"squared_euclidean"`.

    Returns:
        `(Q,)` values in `{0, 1}`; 0 for a query without any relevant reference.

    Examples:
        >>> labels = keras.ops.convert_to_tensor([0, 0, 1, 1])
        >>> x = keras.ops.convert_to_tensor([[1.0, 0.0], [0.9, 0.1], [0.8, 0.3], [0.0, 1.0]])
        >>> keras.ops.convert_to_numpy(precision_at_one(labels, x)).tolist()
        [1.0, 1.0, 0.0, 1.0]
    """
    _checked(distance)
    return recall_from_ranking(*_ranking(query_labels, query_embeddings, reference_labels, reference_embeddings,
                                         distance), 1)


def map_at_r(query_labels, query_embeddings, reference_labels=None, reference_embeddings=None,
             distance="cosine") -> Tensor:
    r"""Mean average precision at R of each query (Musgrave et al. 2020,
    "A Metric Learning Reality Check"; pytorch-metric-learning's
    `mean_average_precision_at_r`).

    With `R` the number of references relevant to the query and `rel(i)`
    whether its `i`-th nearest reference is relevant,

    $$\mathrm{MAP@R} = \frac{1}{R} \sum_{i=1}^{R} \mathrm{rel}(i)\, P(i),
    \qquad P(i) = \frac{1}{i} \sum_{j=1}^{i} \mathrm{rel}(j).$$

    Args:
        query_labels: Integer labels of the queries, shape `(Q,)` or `(Q, 1)`.
        query_embeddings: Float embeddings of the queries, shape `(Q, D)`.
        reference_labels: Labels of the references, shape `(N,)`; `None`
            (with `reference_embeddings=None`) retrieves each query among
            the other queries (leave-one-out).
        reference_embeddings: Embeddings of the references, shape `(N, D)`.
        distance: `"cosine"`, `"dot"`, `"euclidean"` or `"squared_euclidean"`.

    Returns:
        `(Q,)` values in `[0, 1]`; 0 for a query without any relevant reference.

    Examples:
        >>> labels = keras.ops.convert_to_tensor([0, 0, 0, 1])
        >>> x = keras.ops.convert_to_tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.8, 0.2]])
        >>> keras.ops.convert_to_numpy(map_at_r(labels, x)).tolist()
        [0.5, 0.5, 0.25, 0.0]

        The first query ranks its two positives 1st and 3rd: `(1/1 + 0) / 2`
        (the 3rd is beyond `R = 2`); the last query has no positive.
    """
    _checked(distance)
    return map_at_r_from_ranking(*_ranking(query_labels, query_embeddings, reference_labels, reference_embeddings,
                                           distance))


def r_precision(query_labels, query_embeddings, reference_labels=None, reference_embeddings=None,
                distance="cosine") -> Tensor:
    r"""R-precision of each query: the fraction of relevant references among
    its `R` nearest, `R` the number of references relevant to it
    (pytorch-metric-learning's `r_precision`; Musgrave et al. 2020,
    "A Metric Learning Reality Check").

    Args:
        query_labels: Integer labels of the queries, shape `(Q,)` or `(Q, 1)`.
        query_embeddings: Float embeddings of the queries, shape `(Q, D)`.
        reference_labels: Labels of the references, shape `(N,)`; `None`
            (with `reference_embeddings=None`) retrieves each query among
            the other queries (leave-one-out).
        reference_embeddings: Embeddings of the references, shape `(N, D)`.
        distance: `"cosine"`, `"dot"`, `"euclidean"` or `"squared_euclidean"`.

    Returns:
        `(Q,)` values in `[0, 1]`; 0 for a query without any relevant reference.

    Examples:
        >>> labels = keras.ops.convert_to_tensor([0, 0, 0, 1])
        >>> x = keras.ops.convert_to_tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.8, 0.2]])
        >>> keras.ops.convert_to_numpy(r_precision(labels, x)).tolist()
        [0.5, 0.5, 0.5, 0.0]
    """
    _checked(distance)
    return r_precision_from_ranking(*_ranking(query_labels, query_embeddings, reference_labels,
                                              reference_embeddings, distance))


def ndcg_at_k(query_labels, query_embeddings, reference_labels=None, reference_embeddings=None, k=10,
              distance="cosine") -> Tensor:
    r"""Normalized discounted cumulative gain at `k` of each query, with
    binary relevance (same label) (Järvelin & Kekäläinen 2002; as
    `sklearn.metrics.ndcg_score(k=k)` on 0/1 relevances):

    $$\mathrm{NDCG@K} = \frac{\sum_{i=1}^{K} \mathrm{rel}(i) / \log_2(i+1)}
    {\sum_{i=1}^{\min(K, R)} 1 / \log_2(i+1)}.$$

    Args:
        query_labels: Integer labels of the queries, shape `(Q,)` or `(Q, 1)`.
        query_embeddings: Float embeddings of the queries, shape `(Q, D)`.
        reference_labels: Labels of the references, shape `(N,)`; `None`
            (with `reference_embeddings=None`) retrieves each query among
            the other queries (leave-one-out).
        reference_embeddings: Embeddings of the references, shape `(N, D)`.
        k: The cut-off, an integer `>= 1`.
        distance: `"cosine"`, `"dot"`, `"euclidean"` or `"squared_euclidean"`.

    Returns:
        `(Q,)` values in `[0, 1]`; 0 for a query without any relevant reference.

    Examples:
        >>> labels = keras.ops.convert_to_tensor([0, 0, 1, 1])
        >>> x = keras.ops.convert_to_tensor([[1.0, 0.0], [0.9, 0.1], [0.8, 0.3], [0.0, 1.0]])
        >>> keras.ops.convert_to_numpy(ndcg_at_k(labels, x, k=3)).tolist()
        [1.0, 1.0, 0.5, 1.0]

        The third query's one positive is 3rd: `(1 / log2(4)) / (1 / log2(2))`.
    """
    k = _checked(distance, k)
    return ndcg_from_ranking(*_ranking(query_labels, query_embeddings, reference_labels, reference_embeddings,
                                       distance), k)
