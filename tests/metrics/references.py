"""numpy references of the retrieval metrics, written from their published
definitions (Musgrave et al. 2020 for Precision@1, R-precision and MAP@R;
the metric-learning papers' Recall@K; binary-relevance NDCG@K): one query at
a time, a stable sort of the distances (ties: lower reference index first)."""

from __future__ import annotations

import numpy as np

METRICS = ("recall_at_k", "precision_at_one", "r_precision", "map_at_r", "ndcg_at_k")


def similarities(q, r, distance):
    q, r = np.asarray(q, "float64"), np.asarray(r, "float64")
    if distance == "cosine":
        def unit(x):
            norm = np.linalg.norm(x, axis=1, keepdims=True)
            return np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)
        return unit(q) @ unit(r).T
    if distance == "dot":
        return q @ r.T
    sq = np.sum((q[:, None, :] - r[None, :, :]) ** 2, axis=-1)
    return -sq if distance == "squared_euclidean" else -np.sqrt(sq)


def per_query(metric, q_labels, q, r_labels=None, r=None, k=1, distance="cosine"):
    """`(values, has_positive)`, both `(Q,)`; a query without a positive gets 0."""
    in_batch = r is None
    r_labels, r = (q_labels, q) if in_batch else (r_labels, r)
    q_labels, r_labels = np.ravel(q_labels), np.ravel(r_labels)
    s = similarities(q, r, distance)
    values, mask = np.zeros(len(q_labels)), np.zeros(len(q_labels), bool)
    for i in range(len(q_labels)):
        candidates = np.array([j for j in range(len(r_labels)) if not (in_batch and j == i)])
        order = candidates[np.argsort(-s[i, candidates], kind="stable")]
        rel = (r_labels[order] == q_labels[i]).astype("float64")
        big_r = int(rel.sum())
        if big_r == 0:
            continue
        mask[i] = True
        if metric == "recall_at_k":
            values[i] = float(rel[:k].any())
        elif metric == "precision_at_one":
            values[i] = rel[0]
        elif metric == "r_precision":
            values[i] = rel[:big_r].mean()
        elif metric == "map_at_r":
            precision = np.cumsum(rel) / np.arange(1, len(rel) + 1)
            values[i] = np.sum((rel * precision)[:big_r]) / big_r
        elif metric == "ndcg_at_k":
            discount = 1.0 / np.log2(np.arange(2, len(rel) + 2))
            values[i] = np.sum((rel * discount)[:k]) / np.sum(discount[: min(k, big_r)])
        else:  # pragma: no cover
            raise ValueError(metric)
    return values, mask


def batch(rng, classes=4, per_class=5, dim=6, lone=1):
    """Clustered embeddings: `classes` labels of `per_class` samples, plus
    `lone` samples of labels of their own (queries without a positive)."""
    centers = rng.normal(size=(classes, dim))
    labels = np.repeat(np.arange(classes), per_class)
    x = centers[labels] + 0.9 * rng.normal(size=(len(labels), dim))
    labels = np.concatenate([labels, classes + np.arange(lone)])
    x = np.concatenate([x, rng.normal(size=(lone, dim))])
    order = rng.permutation(len(labels))
    return labels[order].astype("int32"), x[order].astype("float32")
