"""The list-wise ranking metrics as `keras.metrics.Metric` classes, for
`model.compile(metrics=[...])` of a ranking model (keras-rs' `NDCG`, `DCG`,
`MeanReciprocalRank`, `MeanAveragePrecision`, `PrecisionAtK`, `RecallAtK`).

`update_state(y_true, y_pred, sample_weight=None)` scores every list of the
batch with the functions of `keras_lossplus.metrics.ranking` and adds to two
variables: the weighted sum of the per-list values and the sum of the list
weights; `result()` is their ratio (0 before any list counted), across every
call since `reset_state()`.

The weight of a list is keras-rs' (and TF-Ranking's): the mean of its item
weights weighted by relevance (the gains for NDCG and DCG, `label >= 1`
for the others), i.e. its own weight for one weight per list, and 0 for a
list that is all padding. A list **without a relevant item** counts as 0,
with `no_relevant="zero"` (default, keras-rs) with the mean weight of the
lists of the same `update_state` call that have one (1 when none has); with
`no_relevant="skip"` it is left out of the mean.
"""

from __future__ import annotations

from typing import Any, Optional

import keras
from keras import ops

from keras_lossplus.losses.options import choice
from keras_lossplus.metrics import ranking
from keras_lossplus.metrics.ranking_lists import (
    Lists, binary_relevance, discount_option, gain_option, list_inputs, list_weights, saved_function,
)

Tensor = Any

NO_RELEVANT = ("zero", "skip")
no_relevant_check = choice(*NO_RELEVANT)
"""The check of `no_relevant=`."""


def register(cls: type) -> type:
    """Register a metric class for saving under the `keras_lossplus` package."""
    return keras.saving.register_keras_serializable(package="keras_lossplus")(cls)


class _ListMetric(keras.metrics.Metric):
    """The weighted mean of a per-list value over the lists, accumulated
    across batches with keras-rs' list weights."""

    base_name = ""
    keras_rs_name = ""

    def __init__(self, k: Optional[int] = None, no_relevant: str = "zero", name: Optional[str] = None,
                 dtype: Any = None) -> None:
        k = ranking.k_option("k", k)
        no_relevant = no_relevant_check("no_relevant", no_relevant)
        super().__init__(name=name or (self.keras_rs_name if k is None else f"{self.base_name}_at_{k}"), dtype=dtype)
        self.k = k
        self.no_relevant = no_relevant
        self.total = self.add_variable(shape=(), initializer="zeros", dtype=self.dtype, name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", dtype=self.dtype, name="count")

    def _values(self, lists: Lists) -> tuple:
        """`(per-list values, relevance of the items)`."""
        raise NotImplementedError

    def _weighted_values(self, lists: Lists) -> tuple:
        values, relevance = self._values(lists)
        weights = list_weights(lists.weights, relevance, self.no_relevant)
        return values * weights, weights

    def update_state(self, y_true: Tensor, y_pred: Tensor, sample_weight: Optional[Tensor] = None) -> None:
        """Score a batch of lists: relevance labels `y_true` (negative =
        padding; or keras-rs' `{"labels": ..., "mask": ...}`), scores
        `y_pred` of the same shape `(batch_size, list_size)`, optional
        weights per list `(batch_size,)` or per item `(batch_size, list_size)`."""
        weighted, weights = self._weighted_values(list_inputs(y_true, y_pred, sample_weight))
        self.total.assign_add(ops.cast(ops.sum(weighted), self.dtype))
        self.count.assign_add(ops.cast(ops.sum(weights), self.dtype))

    def result(self) -> Tensor:
        """The weighted mean over the lists counted so far; 0 before any."""
        return ops.divide_no_nan(self.total, self.count)

    def get_config(self) -> dict:
        """Every constructor argument."""
        return {**super().get_config(), "k": self.k, "no_relevant": self.no_relevant}


class _BinaryMetric(_ListMetric):
    """A metric of the items with a label `>= 1`."""

    def _values(self, lists: Lists) -> tuple:
        return self.fn(lists, self.k), binary_relevance(lists)


class _GainMetric(_ListMetric):
    """DCG and NDCG: the `gain_fn` and `rank_discount_fn` options."""

    def __init__(self, k: Optional[int] = None, gain_fn: Any = "exp2", rank_discount_fn: Any = "log2",
                 no_relevant: str = "zero", name: Optional[str] = None, dtype: Any = None) -> None:
        super().__init__(k=k, no_relevant=no_relevant, name=name, dtype=dtype)
        self.gain_fn = gain_option("gain_fn", gain_fn)
        self.rank_discount_fn = discount_option("rank_discount_fn", rank_discount_fn)
        self._given = {"gain_fn": gain_fn, "rank_discount_fn": rank_discount_fn}

    def _parts(self, lists: Lists) -> tuple:
        return ranking.dcg_parts(lists, self.k, self.gain_fn, self.rank_discount_fn)

    def get_config(self) -> dict:
        """Every constructor argument (a function as its registered name)."""
        return {**super().get_config(), **{key: saved_function(value) for key, value in self._given.items()}}


@register
class NDCG(_GainMetric):
    r"""Normalized discounted cumulative gain of ranked lists, averaged over
    the lists (Järvelin & Kekäläinen 2002; keras-rs' `NDCG`):
    $\mathrm{DCG@k} / \mathrm{IDCG@k}$ per list, with graded relevance
    labels; tied scores are averaged over their orders. Per-list values:
    `keras_lossplus.metrics.ndcg`.

    Args:
        k: The cut-off, an integer `>= 1`; `None` (default) ranks the whole list.
        gain_fn: `"exp2"` (`2^y - 1`, default), `"identity"` (`y`), or a
            callable of the labels; to save the model, a function registered
            with `keras.saving.register_keras_serializable` (or its
            registered name).
        rank_discount_fn: `"log2"` (`1 / log2(1 + rank)`, default) or a
            callable of the 1-based ranks (registered, to save).
        no_relevant: `"zero"` (default, keras-rs): a list without gain counts
            as 0; `"skip"`: it is left out of the mean.
        name: The metric's name; default `"ndcg"`, `"ndcg_at_<k>"` with `k`.
        dtype: The dtype of the metric's variables and result.

    Examples:
        >>> import keras_lossplus as klp
        >>> metric = klp.metrics.NDCG(k=2)
        >>> metric.update_state([[0.0, 1.0, 2.0], [1.0, 0.0, -1.0]], [[0.1, 0.9, 0.5], [0.2, 0.4, 0.0]])
        >>> round(float(metric.result()), 4)
        0.7138

        In `compile`: `model.compile(optimizer, loss=klp.losses.SoftmaxRankingLoss(),
        metrics=[klp.metrics.NDCG(k=5), klp.metrics.MeanReciprocalRank()])`.
    """

    base_name = keras_rs_name = "ndcg"

    def _values(self, lists: Lists) -> tuple:
        dcg, ideal, gains = self._parts(lists)
        return ops.divide_no_nan(dcg, ideal), gains


@register
class DCG(_GainMetric):
    r"""Discounted cumulative gain of ranked lists (Järvelin & Kekäläinen
    2002; keras-rs' `DCG`): $\sum_i w_i\, g(y_i)\, d(\mathrm{rank}_i)$ per
    list (ranks up to `k`); as in keras-rs, the result is the sum over the
    lists divided by the sum of the list weights. Per-list values:
    `keras_lossplus.metrics.dcg`.

    Args:
        k: The cut-off, an integer `>= 1`; `None` (default) ranks the whole list.
        gain_fn: `"exp2"` (`2^y - 1`, default), `"identity"` (`y`), or a
            callable of the labels (registered, to save).
        rank_discount_fn: `"log2"` (`1 / log2(1 + rank)`, default) or a
            callable of the 1-based ranks (registered, to save).
        no_relevant: `"zero"` (default, keras-rs) or `"skip"`, as for `NDCG`.
        name: The metric's name; default `"dcg"`, `"dcg_at_<k>"` with `k`.
        dtype: The dtype of the metric's variables and result.

    Examples:
        >>> import keras_lossplus as klp
        >>> metric = klp.metrics.DCG()
        >>> metric.update_state([[0.0, 1.0, 2.0]], [[0.2, 0.5, 0.9]])
        >>> round(float(metric.result()), 4)
        3.6309
    """

    base_name = keras_rs_name = "dcg"

    def _weighted_values(self, lists: Lists) -> tuple:
        dcg, _, gains = self._parts(lists)
        weights = list_weights(lists.weights, gains, self.no_relevant)
        return ops.divide_no_nan(dcg, weights) * weights, weights


@register
class MeanReciprocalRank(_BinaryMetric):
    r"""Mean reciprocal rank of the first relevant item (label `>= 1`) of
    each list (Voorhees 1999, TREC-8 QA; keras-rs' `MeanReciprocalRank`);
    0 for a list whose first relevant item ranks past `k`. Per-list values:
    `keras_lossplus.metrics.mean_reciprocal_rank`.

    Args:
        k: The cut-off, an integer `>= 1`; `None` (default) ranks the whole list.
        no_relevant: `"zero"` (default, keras-rs): a list without an item of
            label `>= 1` counts as 0; `"skip"`: it is left out of the mean.
        name: The metric's name; default `"mean_reciprocal_rank"`,
            `"mean_reciprocal_rank_at_<k>"` with `k`.
        dtype: The dtype of the metric's variables and result.

    Examples:
        >>> import keras_lossplus as klp
        >>> metric = klp.metrics.MeanReciprocalRank()
        >>> metric.update_state([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]], [[0.9, 0.5, 0.2], [0.9, 0.5, 0.2]])
        >>> float(metric.result())
        0.75
    """

    base_name = keras_rs_name = "mean_reciprocal_rank"
    fn = staticmethod(ranking.reciprocal_rank_values)


@register
class MeanAveragePrecision(_BinaryMetric):
    r"""Mean average precision of ranked lists (Manning, Raghavan & Schütze
    2008, "Introduction to Information Retrieval"; keras-rs'
    `MeanAveragePrecision`): per list,
    $\sum_{\mathrm{rank}_i \le k} w_i\, \mathrm{rel}_i\, P@\mathrm{rank}_i /
    \sum_i w_i\, \mathrm{rel}_i$, relevant meaning label `>= 1`. Per-list
    values: `keras_lossplus.metrics.mean_average_precision`.

    Args:
        k, no_relevant, dtype: As for `MeanReciprocalRank`.
        name: The metric's name; default `"mean_average_precision"`,
            `"mean_average_precision_at_<k>"` with `k`.

    Examples:
        >>> import keras_lossplus as klp
        >>> metric = klp.metrics.MeanAveragePrecision()
        >>> metric.update_state([[1.0, 0.0, 1.0, 0.0]], [[0.9, 0.8, 0.7, 0.1]])
        >>> round(float(metric.result()), 4)
        0.8333
    """

    base_name = keras_rs_name = "mean_average_precision"
    fn = staticmethod(ranking.average_precision_values)


@register
class PrecisionAtK(_BinaryMetric):
    r"""Precision@k of ranked lists (keras-rs' `PrecisionAtK`; Manning,
    Raghavan & Schütze 2008): per list, the fraction of items with a label
    `>= 1` among its top `min(k, n)`, `n` its valid items. Per-list values:
    `keras_lossplus.metrics.precision_at_k`.

    Args:
        k, no_relevant, dtype: As for `MeanReciprocalRank` (`k=None` takes
            the whole list).
        name: Default `"precision_at_k"`; `"precision_at_<k>"` with `k`.

    Examples:
        >>> import keras_lossplus as klp
        >>> metric = klp.metrics.PrecisionAtK(k=2)
        >>> metric.update_state([[1.0, 0.0, 1.0, -1.0], [0.0, 0.0, 1.0, 0.0]], [[0.9, 0.8, 0.7, 0.95], [0.1, 0.3, 0.2, 0.0]])
        >>> float(metric.result())
        0.5

        The first list's item scored 0.95 is padding.
    """

    base_name, keras_rs_name = "precision", "precision_at_k"
    fn = staticmethod(ranking.precision_values)


@register
class RankingRecallAtK(_BinaryMetric):
    r"""Recall@k of ranked lists (keras-rs' `RecallAtK`; Manning, Raghavan &
    Schütze 2008): per list, the fraction of its items with a label `>= 1`
    that rank in its top `k`. (`RecallAtK` is the retrieval metric of
    embeddings.) Per-list values: `keras_lossplus.metrics.ranking_recall_at_k`.

    Args:
        k: The cut-off; `None` (default) takes the whole list (recall 1).
        no_relevant, dtype: As for `MeanReciprocalRank`.
        name: Default `"recall_at_k"`; `"recall_at_<k>"` with `k`.

    Examples:
        >>> import keras_lossplus as klp
        >>> metric = klp.metrics.RankingRecallAtK(k=2)
        >>> metric.update_state([[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 0.0]], [[0.9, 0.8, 0.7, 0.1], [0.9, 0.8, 0.7, 0.1]])
        >>> float(metric.result())
        0.75
    """

    base_name, keras_rs_name = "recall", "recall_at_k"
    fn = staticmethod(ranking.recall_values)
