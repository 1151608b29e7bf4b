"""The retrieval metrics as `keras.metrics.Metric` classes, for
`model.compile(metrics=[...])` of an embedding model.

Each batch is scored **in-batch**: every sample is a query retrieved among
the other samples of the batch (never itself), exactly as the functions of
`keras_lossplus.metrics.retrieval` without references. The metric keeps
two variables, the (sample-weighted) sum of the per-query values and the
sum of the weights of the queries that have a same-label sample in their
batch; `result()` is their ratio (0 before any query counted), so queries
without a positive are left out of the mean, as in pytorch-metric-learning.

`sample_weight` weights each query in the mean; a sample of weight 0 (e.g.
padding) is also left out of the references of the other queries.

Held-out retrieval (queries against a fixed gallery) is not a per-batch
state: call the functions (`recall_at_k(q_labels, q_emb, ref_labels,
ref_emb)`) on `model.predict` of both sets. A gallery stored in the
metric would make its size part of the saved model's config and be
scored again at every batch; the functions score the whole query set once.
"""

from __future__ import annotations

from typing import Any, Optional

import keras
from keras import ops

from keras_lossplus.losses.metric_learning.inputs import embedding_inputs
from keras_lossplus.metrics import retrieval

Tensor = Any


def register(cls: type) -> type:
    """Register a metric class for saving under the `keras_lossplus` package."""
    return keras.saving.register_keras_serializable(package="keras_lossplus")(cls)


class _RetrievalMetric(keras.metrics.Metric):
    """In-batch retrieval metric: the weighted mean of a per-query value
    over the queries with a positive, accumulated across batches."""

    def __init__(self, distance: str = "cosine", name: Optional[str] = None, dtype: Any = None) -> None:
        super().__init__(name=name, dtype=dtype)
        self.distance = retrieval.distance_check("distance", distance)
        self.total = self.add_variable(shape=(), initializer="zeros", dtype=self.dtype, name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", dtype=self.dtype, name="count")

    def _values(self, key: Tensor, relevant: Tensor, valid: Tensor) -> Tensor:
        raise NotImplementedError

    def update_state(self, y_true: Tensor, y_pred: Tensor, sample_weight: Optional[Tensor] = None) -> None:
        """Score the batch: integer labels `y_true` `(B,)` or `(B, 1)`,
        embeddings `y_pred` `(B, D)`, optional per-sample weights `(B,)`."""
        labels, embeddings = embedding_inputs(y_true, y_pred)
        weights = ops.ones_like(embeddings[:, 0])
        if sample_weight is not None:
            weights = weights * ops.reshape(ops.cast(sample_weight, weights.dtype), (-1,))
        key, relevant, valid = retrieval._ranking(labels, embeddings, None, None, self.distance,
                                                  reference_mask=weights > 0)
        counted = weights * ops.cast(ops.any(relevant, axis=1), weights.dtype)
        values = self._values(key, relevant, valid)
        self.total.assign_add(ops.cast(ops.sum(values * counted), self.dtype))
        self.count.assign_add(ops.cast(ops.sum(counted), self.dtype))

    def result(self) -> Tensor:
        """The weighted mean over the queries counted so far; 0 before any."""
        return ops.divide_no_nan(self.total, self.count)

    def get_config(self) -> dict:
        """Every constructor argument."""
        return {**super().get_config(), "distance": self.distance}


class _AtK(_RetrievalMetric):
    def __init__(self, k: int, distance: str, name: Optional[str], dtype: Any, prefix: str) -> None:
        k = retrieval.k_check("k", k)
        super().__init__(distance=distance, name=name or f"{prefix}_{k}", dtype=dtype)
        self.k = k

    def get_config(self) -> dict:
        """Every constructor argument."""
        return {**super().get_config(), "k": self.k}


@register
class RecallAtK(_AtK):
    """Recall@K of in-batch retrieval: the fraction of queries with at least
    one same-label sample among their `k` nearest (the metric-learning
    papers' Recall@K: Song et al. 2016, "Deep Metric Learning via Lifted
    Structured Feature Embedding").

    Function: `keras_lossplus.metrics.recall_at_k` (which also scores
    held-out queries against a reference set).

    Args:
        k: How many nearest samples count, an integer `>= 1`.
        distance: `"cosine"` (default), `"dot"`, `"euclidean"` or
            `"squared_euclidean"`.
        name: The metric's name; default `"recall_at_<k>"`.
        dtype: The dtype of the metric's variables and result.

    Examples:
        >>> import keras_lossplus as klp
        >>> metric = klp.metrics.RecallAtK(k=1)
        >>> labels = keras.ops.convert_to_tensor([0, 0, 1, 1])
        >>> x = keras.ops.convert_to_tensor([[1.0, 0.0], [0.9, 0.1], [0.8, 0.3], [0.0, 1.0]])
        >>> metric.update_state(labels, x)
        >>> float(metric.result())
        0.75

        In `compile`: `model.compile(optimizer, loss=klp.losses.SupConLoss(),
        metrics=[klp.metrics.RecallAtK(k=1), klp.metrics.MAPAtR()])`.
    """

    def __init__(self, k: int = 1, distance: str = "cosine", name: Optional[str] = None, dtype: Any = None) -> None:
        super().__init__(k, distance, name, dtype, prefix="recall_at")

    def _values(self, key, relevant, valid):
        return retrieval.recall_from_ranking(key, relevant, valid, self.k)


@register
class PrecisionAtOne(_RetrievalMetric):
    """Precision@1 of in-batch retrieval: the fraction of queries whose
    nearest other sample has their label (pytorch-metric-learning's
    `precision_at_1`; Musgrave et al. 2020, "A Metric Learning Reality
    Check"). The same value as `RecallAtK(k=1)`.

    Function: `keras_lossplus.metrics.precision_at_one`.

    Args:
        distance: `"cosine"` (default), `"dot"`, `"euclidean"` or
            `"squared_euclidean"`.
        name: The metric's name; default `"precision_at_1"`.
        dtype: The dtype of the metric's variables and result.

    Examples:
        >>> import keras_lossplus as klp
        >>> metric = klp.metrics.PrecisionAtOne()
        >>> labels = keras.ops.convert_to_tensor([0, 0, 1, 1])
        >>> metric.update_state(labels, keras.ops.convert_to_tensor([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.1, 1.0]]))
        >>> float(metric.result())
        1.0
    """

    def __init__(self, distance: str = "cosine", name: Optional[str] = None, dtype: Any = None) -> None:
        super().__init__(distance=distance, name=name or "precision_at_1", dtype=dtype)

    def _values(self, key, relevant, valid):
        return retrieval.recall_from_ranking(key, relevant, valid, 1)


@register
class MAPAtR(_RetrievalMetric):
    r"""Mean average precision at R of in-batch retrieval (Musgrave et al.
    2020, "A Metric Learning Reality Check"; pytorch-metric-learning's
    `mean_average_precision_at_r`), R being the number of other samples of
    the query's label in the batch:
    $\frac{1}{R}\sum_{i=1}^{R} \mathrm{rel}(i)\, P(i)$.

    Function: `keras_lossplus.metrics.map_at_r`. Each batch sorts its
    `(B, B)` similarity matrix row by row.

    Args:
        distance: `"cosine"` (default), `"dot"`, `"euclidean"` or
            `"squared_euclidean"`.
        name: The metric's name; default `"map_at_r"`.
        dtype: The dtype of the metric's variables and result.

    Examples:
        >>> import keras_lossplus as klp
        >>> metric = klp.metrics.MAPAtR()
        >>> labels = keras.ops.convert_to_tensor([0, 0, 0, 1])
        >>> metric.update_state(labels, keras.ops.convert_to_tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.8, 0.2]]))
        >>> round(float(metric.result()), 4)
        0.4167
    """

    def __init__(self, distance: str = "cosine", name: Optional[str] = None, dtype: Any = None) -> None:
        super().__init__(distance=distance, name=name or "map_at_r", dtype=dtype)

    def _values(self, key, relevant, valid):
        return retrieval.map_at_r_from_ranking(key, relevant, valid)


@register
class RPrecision(_RetrievalMetric):
    """R-precision of in-batch retrieval: per query, the fraction of its
    label among its `R` nearest other samples, R being the number of other
    samples of its label in the batch (pytorch-metric-learning's
    `r_precision`; Musgrave et al. 2020, "A Metric Learning Reality Check").

    Function: `keras_lossplus.metrics.r_precision`. Each batch sorts its
    `(B, B)` similarity matrix row by row.

    Args:
        distance: `"cosine"` (default), `"dot"`, `"euclidean"` or
            `"squared_euclidean"`.
        name: The metric's name; default `"r_precision"`.
        dtype: The dtype of the metric's variables and result.

    Examples:
        >>> import keras_lossplus as klp
        >>> metric = klp.metrics.RPrecision()
        >>> labels = keras.ops.convert_to_tensor([0, 0, 0, 1])
        >>> metric.update_state(labels, keras.ops.convert_to_tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.8, 0.2]]))
        >>> float(metric.result())
        0.5
    """

    def __init__(self, distance: str = "cosine", name: Optional[str] = None, dtype: Any = None) -> None:
        super().__init__(distance=distance, name=name or "r_precision", dtype=dtype)

    def _values(self, key, relevant, valid):
        return retrieval.r_precision_from_ranking(key, relevant, valid)


@register
class NDCGAtK(_AtK):
    r"""NDCG@K of in-batch retrieval with binary relevance (same label)
    (Järvelin & Kekäläinen 2002; `sklearn.metrics.ndcg_score` on 0/1
    relevances), the ideal ranking having `min(k, R)` relevant samples first.

    Function: `keras_lossplus.metrics.ndcg_at_k`. Each batch sorts its
    `(B, B)` similarity matrix row by row.

    Args:
        k: The cut-off, an integer `>= 1`.
        distance: `"cosine"` (default), `"dot"`, `"euclidean"` or
            `"squared_euclidean"`.
        name: The metric's name; default `"ndcg_at_<k>"`.
        dtype: The dtype of the metric's variables and result.

    Examples:
        >>> import keras_lossplus as klp
        >>> metric = klp.metrics.NDCGAtK(k=2)
        >>> labels = keras.ops.convert_to_tensor([0, 0, 1, 1])
        >>> metric.update_state(labels, keras.ops.convert_to_tensor([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.1, 1.0]]))
        >>> float(metric.result())
        1.0
    """

    def __init__(self, k: int = 10, distance: str = "cosine", name: Optional[str] = None, dtype: Any = None) -> None:
        super().__init__(k, distance, name, dtype, prefix="ndcg_at")

    def _values(self, key, relevant, valid):
        return retrieval.ndcg_from_ranking(key, relevant, valid, self.k)
