"""Triplet and quadruplet losses with in-batch mining or explicit tuples."""

from __future__ import annotations

from typing import Any, Optional

from keras import ops

from keras_lossplus.backend import compiled_on_jax
from keras_lossplus.losses.base import BatchLoss, LossPlus, register
from keras_lossplus.losses.labels import label_checked
from keras_lossplus.losses.metric_learning.distances import distance, resolve_distance
from keras_lossplus.losses.metric_learning.inputs import embedding_inputs, split_columns
from keras_lossplus.losses.metric_learning.miners import hardest, hinge_or_softplus, mined_loss
from keras_lossplus.losses.metric_learning.mining import mining_option, resolve_miner
from keras_lossplus.losses.metric_learning.reducers import anchor_mean, reducer_option, resolve_reducer
from keras_lossplus.losses.metric_learning.rows import per_anchor
from keras_lossplus.losses.options import Options, choice, chunk_size, flag, number
from keras_lossplus.ops import l2_normalize, largest_finite, masked_min

Tensor = Any


TRIPLET_MINING = ("semihard", "hard", "all", "none")
QUADRUPLET_MINING = ("hard", "none")


class _EmbeddingLoss(BatchLoss):
    """A batch-level loss whose `mining="none"` form is an ordinary per-sample
    loss: Keras' own reduction, `sample_weight` and mask rules apply to it."""

    class_labels = True

    def __call__(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> Tensor:
        if self._options.get("mining") == "none":
            return LossPlus.__call__(self, y_true, y_pred, sample_weight=sample_weight)
        return super().__call__(y_true, y_pred, sample_weight=sample_weight)


def _explicit(y_pred: Any, parts: int, layout: str, normalize: bool) -> list:
    columns = split_columns(y_pred, parts, layout)
    return [l2_normalize(c) for c in columns] if normalize else columns


def _weighted(loss: Tensor, sample_weight: Any) -> Tensor:
    if sample_weight is None:
        return loss
    return loss * ops.reshape(ops.cast(sample_weight, loss.dtype), ops.shape(loss))


# --------------------------------------------------------------------------- triplet


@Options(mining=mining_option(*TRIPLET_MINING), distance=distance, margin=number(low=0.0), soft=flag,
         normalize=flag, chunk_size=chunk_size, reducer=reducer_option)
@label_checked
@compiled_on_jax
def triplet_loss(
    y_true: Tensor,
    y_pred: Tensor,
    margin: float = 1.0,
    mining: Any = "semihard",
    distance: Any = "euclidean",
    soft: bool = False,
    normalize: bool = False,
    chunk_size: Optional[int] = None,
    reducer: Any = None,
    sample_weight: Optional[Tensor] = None,
) -> Tensor:
    r"""Triplet loss with in-batch mining.

    $$\ell(a, p, n) = \max(d_{ap} - d_{an} + m,\ 0) \quad\text{or, with }
      \texttt{soft=True},\quad \log(1 + e^{d_{ap} - d_{an}})$$

    * `"semihard"` (FaceNet; tensorflow-addons `TripletSemiHardLoss`): every
      anchor-positive pair with its semi-hard negative (the closest negative
      farther than the positive, else the farthest negative); the mean over
      the pairs.
    * `"hard"` (batch-hard; tensorflow-addons `TripletHardLoss`): each
      anchor's farthest positive and closest negative; the mean over anchors.
    * `"all"` (batch-all; pytorch-metric-learning `TripletMarginLoss` with an
      un-normalized L2 distance): every valid triplet; the mean over the
      triplets with a positive loss (over all of them with `soft=True`).
    * `"none"`: `y_pred` holds explicit triplets `[anchor | positive |
      negative]` concatenated on the last axis, `y_true` is ignored, and the
      result is one value per triplet.
    * a `Miner` object (`keras_lossplus.miners`): the three above as
      `SemiHardMiner()`, `HardMiner()`, `AllTripletsMiner()` (the same
      numbers), `BatchEasyHardMiner`, `DistanceWeightedMiner` or your own.

    Anchors without a positive or without a negative in the batch are left
    out; a batch without any valid anchor gives 0 (tensorflow-addons gives
    NaN, or a positive loss for a batch of one class). No `B x B x B` tensor
    is built: the memory is `O(B^2)`, or `O(chunk_size * B)`.

    Args:
        y_true: Integer labels `(B,)` or `(B, 1)`.
        y_pred: Embeddings `(B, D)` (`(B, 3 D)` with `mining="none"`).
        margin: Margin `m >= 0` (not used with `soft=True`, as in
            tensorflow-addons).
        mining: `"semihard"`, `"hard"`, `"all"`, `"none"` or a `Miner`.
        distance: `"euclidean"`, `"squared_euclidean"`, `"cosine"` or a
            `Distance` (`keras_lossplus.distances`, not a similarity).
        soft: Use the soft margin `softplus(d_ap - d_an)` (Hermans et al.).
        normalize: L2-normalize the embeddings first.
        chunk_size: Compute the `B x B` work in blocks of this many anchors.
        reducer: How the mined triplets' losses become the loss: `None` (the
            miner's own, as described above), `"mean"` (over every mined
            triplet), `"avg_nonzero"` (over those with a positive loss),
            `"sum"`, or a `Reducer` (`keras_lossplus.reducers`). Not used
            with `mining="none"`.
        sample_weight: Optional `(B,)` weights of the anchors (of the
            triplets with `mining="none"`).

    Returns:
        A scalar (one value per triplet with `mining="none"`).

    Reference:
        Schroff et al., "FaceNet: A Unified Embedding for Face Recognition and
        Clustering", CVPR 2015; Hermans et al., "In Defense of the Triplet Loss
        for Person Re-Identification", 2017.

    Examples:
        >>> labels = [0, 0, 1, 1]
        >>> emb = [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [2.0, 0.0]]
        >>> round(float(triplet_loss(labels, emb, margin=1.0, mining="hard")), 4)
        0.6464
    """
    shift = 0.0 if soft else margin
    distance = resolve_distance(distance)
    if isinstance(mining, str) and mining == "none":
        a, p, n = _explicit(y_pred, 3, "[anchor | positive | negative]", normalize)
        t = distance.pair(a, p) - distance.pair(a, n) + shift
        return _weighted(hinge_or_softplus(t, soft)[0], sample_weight)
    labels, embeddings = embedding_inputs(y_true, y_pred, normalize)
    miner = resolve_miner(mining)
    reducer = resolve_reducer(reducer, miner.default_reducer(soft))

    def block(rows):
        return mined_loss(rows, labels, miner, distance, shift, soft, reducer.nonzero)

    return reducer.reduce(*per_anchor(embeddings, labels, chunk_size, block, sample_weight))


@register
class TripletLoss(_EmbeddingLoss):
    """Triplet loss with semi-hard, hard, all or explicit triplets.

    See `triplet_loss`. `TripletLoss(margin=1.0)` is tensorflow-addons'
    `TripletSemiHardLoss()`, `TripletLoss(mining="hard", soft=True)` its
    `TripletHardLoss(soft=True)`, `TripletLoss(margin=0.05, mining="all")`
    pytorch-metric-learning's `TripletMarginLoss()` on un-normalized L2
    distances (add `normalize=True` for its default `LpDistance`).

    Args:
        margin, mining, distance, soft, normalize, chunk_size, reducer: See
            `triplet_loss`; `mining`, `distance` and `reducer` take a name or
            an object (`keras_lossplus.miners`, `.distances`, `.reducers`),
            saved with the loss's config.
        cross_replica: `"gather"` (default): under `tf.distribute`, the loss of
            the global batch, all-gathered from the replicas; `"local"`: each
            replica's own slice (see `keras_lossplus.losses.BatchLoss`).
        reduction, name, dtype: As for every `keras.losses.Loss` (the in-batch
            forms return one scalar for every reduction).

    Reference:
        Schroff et al., "FaceNet", CVPR 2015; Hermans et al., "In Defense of
        the Triplet Loss for Person Re-Identification", 2017.

    Examples:
        >>> loss = TripletLoss(margin=1.0, mining="semihard")
        >>> labels = [0, 0, 1, 1]
        >>> emb = [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [2.0, 0.0]]
        >>> round(float(loss(labels, emb)), 4)
        0.2929
    """

    fn = staticmethod(triplet_loss)

    def __init__(
        self,
        margin: float = 1.0,
        mining: Any = "semihard",
        distance: Any = "euclidean",
        soft: bool = False,
        normalize: bool = False,
        chunk_size: Optional[int] = None,
        reducer: Any = None,
        cross_replica: str = "gather",
        reduction: Optional[str] = "sum_over_batch_size",
        name: Optional[str] = "triplet_loss",
        dtype: Any = None,
    ) -> None:
        super().__init__(
            reduction=reduction,
            cross_replica=cross_replica,
            name=name,
            dtype=dtype,
            margin=margin,
            mining=mining,
            distance=distance,
            soft=soft,
            normalize=normalize,
            chunk_size=chunk_size,
            reducer=reducer,
        )


# --------------------------------------------------------------------------- quadruplet


def _nearest_other_classes(labels: Tensor, distance: str) -> Any:
    """Per row `k`: the closest sample of another class (`m1`, its label
    `c1`) and the closest of a third class (`m2`), with whether they exist."""

    def block(rows):
        d = rows.distances(distance)
        filled = ops.where(rows.neg, ops.stop_gradient(d), ops.full_like(d, largest_finite(d.dtype)))
        c1 = ops.take(labels, ops.argmin(filled, axis=1))
        third = ops.logical_and(rows.neg, ops.not_equal(ops.expand_dims(labels, 0), ops.expand_dims(c1, 1)))
        return (
            masked_min(d, rows.neg, axis=1),
            c1,
            masked_min(d, third, axis=1),
            ops.any(rows.neg, axis=1),
            ops.any(third, axis=1),
        )

    return block


@Options(mining=choice(*QUADRUPLET_MINING), distance=distance, margin1=number(low=0.0), margin2=number(low=0.0),
         normalize=flag, chunk_size=chunk_size)
@label_checked
@compiled_on_jax
def quadruplet_loss(
    y_true: Tensor,
    y_pred: Tensor,
    margin1: float = 1.0,
    margin2: float = 0.5,
    mining: str = "hard",
    distance: Any = "euclidean",
    normalize: bool = False,
    chunk_size: Optional[int] = None,
    sample_weight: Optional[Tensor] = None,
) -> Tensor:
    r"""Quadruplet loss (Chen et al. 2017) with batch-hard mining.

    $$\ell = [d_{ap} - d_{an} + m_1]_+ + [d_{ap} - d_{kl} + m_2]_+$$

    where `(k, l)` is a negative pair whose labels differ from each other and
    from the anchor's. With `mining="hard"`, per anchor: its farthest
    positive, its closest negative and the closest such pair in the batch
    (found in `O(B^2)`: each sample's nearest sample of another class and of
    a third class); the mean over the valid anchors. The second term is 0 for
    an anchor when the batch has fewer than three classes. With
    `mining="none"`, `y_pred` holds `[anchor | positive | negative1 |
    negative2]` and `(k, l) = (negative1, negative2)`, one value per
    quadruplet.

    Args:
        y_true: Integer labels `(B,)` or `(B, 1)`.
        y_pred: Embeddings `(B, D)` (`(B, 4 D)` with `mining="none"`).
        margin1: Margin of the anchor-negative term, `>= 0`.
        margin2: Margin of the negative-pair term, `>= 0`.
        mining: `"hard"` or `"none"`.
        distance: `"euclidean"`, `"squared_euclidean"`, `"cosine"` or a
            `Distance` (`keras_lossplus.distances`).
        normalize: L2-normalize the embeddings first.
        chunk_size: Compute the `B x B` work in blocks of this many anchors.
        sample_weight: Optional `(B,)` weights of the anchors.

    Returns:
        A scalar (one value per quadruplet with `mining="none"`).

    Reference:
        Chen et al., "Beyond triplet loss: a deep quadruplet network for
        person re-identification", CVPR 2017.

    Examples:
        >>> labels = [0, 0, 1, 2]
        >>> emb = [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [3.0, 0.0]]
        >>> round(float(quadruplet_loss(labels, emb, mining="hard")), 4)
        0.7929
    """
    distance = resolve_distance(distance)
    if mining == "none":
        a, p, n1, n2 = _explicit(y_pred, 4, "[anchor | positive | negative1 | negative2]", normalize)
        d_ap = distance.pair(a, p)
        loss = ops.relu(d_ap - distance.pair(a, n1) + margin1)
        loss = loss + ops.relu(d_ap - distance.pair(n1, n2) + margin2)
        return _weighted(loss, sample_weight)
    labels, embeddings = embedding_inputs(y_true, y_pred, normalize)
    stats = _nearest_other_classes(labels, distance)
    m1, c1, m2, has1, has2 = per_anchor(embeddings, labels, chunk_size, stats)

    def block(rows):
        d = rows.distances(distance)
        d_ap, d_an = hardest(rows, d)
        own = ops.expand_dims(rows.row(labels), 1)
        first_ok = ops.not_equal(ops.expand_dims(c1, 0), own)
        pair = ops.where(first_ok, ops.expand_dims(m1, 0), ops.expand_dims(m2, 0))
        exists = ops.where(first_ok, ops.expand_dims(has1, 0), ops.expand_dims(has2, 0))
        allowed = ops.logical_and(rows.neg, exists)
        d_kl = masked_min(pair + ops.zeros_like(d), allowed, axis=1)
        second = ops.where(ops.any(allowed, axis=1), ops.relu(d_ap - d_kl + margin2), ops.zeros_like(d_ap))
        return ops.relu(d_ap - d_an + margin1) + second, ops.ones_like(d_ap), rows.valid

    return anchor_mean(*per_anchor(embeddings, labels, chunk_size, block), sample_weight)


@register
class QuadrupletLoss(_EmbeddingLoss):
    """Quadruplet loss: a triplet term plus a term pushing apart negative
    pairs that do not involve the anchor.

    See `quadruplet_loss`.

    Args:
        margin1, margin2, mining, distance, normalize, chunk_size: See
            `quadruplet_loss`.
        cross_replica: `"gather"` (default): under `tf.distribute`, the loss of
            the global batch, all-gathered from the replicas; `"local"`: each
            replica's own slice (see `keras_lossplus.losses.BatchLoss`).
        reduction, name, dtype: As for every `keras.losses.Loss`.

    Reference:
        Chen et al., "Beyond triplet loss: a deep quadruplet network for
        person re-identification", CVPR 2017.

    Examples:
        >>> loss = QuadrupletLoss(margin1=1.0, margin2=0.5)
        >>> round(float(loss([0, 0, 1, 2], [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [3.0, 0.0]])), 4)
        0.7929
    """

    fn = staticmethod(quadruplet_loss)

    def __init__(
        self,
        margin1: float = 1.0,
        margin2: float = 0.5,
        mining: str = "hard",
        distance: Any = "euclidean",
        normalize: bool = False,
        chunk_size: Optional[int] = None,
        cross_replica: str = "gather",
        reduction: Optional[str] = "sum_over_batch_size",
        name: Optional[str] = "quadruplet_loss",
        dtype: Any = None,
    ) -> None:
        super().__init__(
            reduction=reduction,
            cross_replica=cross_replica,
            name=name,
            dtype=dtype,
            margin1=margin1,
            margin2=margin2,
            mining=mining,
            distance=distance,
            normalize=normalize,
            chunk_size=chunk_size,
        )
