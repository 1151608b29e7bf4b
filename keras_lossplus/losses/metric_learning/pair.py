"""Contrastive losses of pairs: of given pair distances, and over every pair in the batch."""

from __future__ import annotations

from typing import Any, Optional

import keras  # noqa: F401  (the docstring examples use it)
from keras import ops

from keras_lossplus.backend import compiled_on_jax
from keras_lossplus.losses.base import BatchLoss, LossPlus, prepare_inputs, register
from keras_lossplus.losses.labels import label_checked
from keras_lossplus.losses.magnitude import magnitude_checked
from keras_lossplus.losses.metric_learning.distances import distance, resolve_distance
from keras_lossplus.losses.metric_learning.inputs import embedding_inputs
from keras_lossplus.losses.metric_learning.reducers import anchor_mean
from keras_lossplus.losses.metric_learning.rows import per_anchor
from keras_lossplus.losses.options import Options, chunk_size, flag, number

Tensor = Any


# --------------------------------------------------------------------------- contrastive


@Options(margin=number(low=0.0))
@magnitude_checked("y_pred", hint="Distances this large come from embeddings that are not normalized.")
def contrastive_loss(y_true: Tensor, y_pred: Tensor, margin: float = 1.0) -> Tensor:
    r"""Contrastive loss of pairs given their distance (tensorflow-addons).

    $$\ell = y\, d^2 + (1 - y) \max(m - d, 0)^2$$

    Inputs of magnitude beyond `magnitude.squares_bound` (1.7e13 in float32)
    overflow its squares: eagerly they raise a `ValueError` naming the
    argument; under jit they are clipped to the bound, with the gradient
    passed through (see `keras_lossplus.losses.magnitude`).

    Args:
        y_true: 1 for a similar pair, 0 for a dissimilar one.
        y_pred: The pairs' distances, `>= 0`, same shape as `y_true`.
        margin: Margin `m >= 0`.

    Returns:
        The loss per pair (element-wise).

    Reference:
        Hadsell, Chopra & LeCun, "Dimensionality Reduction by Learning an
        Invariant Mapping", CVPR 2006; tensorflow-addons `contrastive_loss`.

    Examples:
        >>> keras.ops.convert_to_numpy(contrastive_loss([1.0, 0.0], [0.5, 0.25])).tolist()
        [0.25, 0.5625]
    """
    y_true, y_pred = prepare_inputs(y_true, y_pred)
    if len(y_true.shape) == len(y_pred.shape) + 1 and y_true.shape[-1] == 1:
        y_true = ops.squeeze(y_true, -1)
    elif len(y_pred.shape) == len(y_true.shape) + 1 and y_pred.shape[-1] == 1:
        y_pred = ops.squeeze(y_pred, -1)
    return y_true * ops.square(y_pred) + (1.0 - y_true) * ops.square(ops.relu(margin - y_pred))


@register
class ContrastiveLoss(LossPlus):
    """Contrastive loss of pairs given their distance.

    See `contrastive_loss`; the same as tensorflow-addons' `ContrastiveLoss`.

    Args:
        margin: Margin `>= 0`.
        reduction, name, dtype: As for every `keras.losses.Loss`.

    Reference:
        Hadsell, Chopra & LeCun, CVPR 2006.

    Examples:
        >>> round(float(ContrastiveLoss(margin=1.0)([1.0, 0.0], [0.5, 0.25])), 4)
        0.4062
    """

    fn = staticmethod(contrastive_loss)

    def __init__(
        self,
        margin: float = 1.0,
        reduction: Optional[str] = "sum_over_batch_size",
        name: Optional[str] = "contrastive_loss",
        dtype: Any = None,
    ) -> None:
        super().__init__(reduction=reduction, name=name, dtype=dtype, margin=margin)


@Options(distance=distance, pos_margin=number(low=0.0), neg_margin=number(low=0.0), normalize=flag,
         chunk_size=chunk_size)
@label_checked
@compiled_on_jax
def batch_contrastive_loss(
    y_true: Tensor,
    y_pred: Tensor,
    pos_margin: float = 0.0,
    neg_margin: float = 1.0,
    distance: Any = "euclidean",
    normalize: bool = False,
    chunk_size: Optional[int] = None,
    sample_weight: Optional[Tensor] = None,
) -> Tensor:
    r"""Contrastive loss over every pair of the batch, pairs defined by labels.

    $$\ell = \operatorname{mean}_{(a,p):\, d_{ap} > m_+} (d_{ap} - m_+)
      + \operatorname{mean}_{(a,n):\, d_{an} < m_-} (m_- - d_{an})$$

    Each mean runs over the pairs with a non-zero term (pytorch-metric-learning's
    `ContrastiveLoss` with its default reducer), pairs weighted by their
    anchor's weight, anchors without a positive or a negative left out.

    Args:
        y_true: Integer labels `(B,)` or `(B, 1)`.
        y_pred: Embeddings `(B, D)`.
        pos_margin: Positive pairs closer than this cost nothing.
        neg_margin: Negative pairs farther than this cost nothing.
        distance: `"euclidean"`, `"squared_euclidean"`, `"cosine"` or a
            `Distance` (`keras_lossplus.distances`).
        normalize: L2-normalize the embeddings first.
        chunk_size: Compute the `B x B` work in blocks of this many anchors.
        sample_weight: Optional `(B,)` weights of the anchors.

    Returns:
        A scalar.

    Reference:
        Hadsell, Chopra & LeCun, CVPR 2006; pytorch-metric-learning
        `ContrastiveLoss`.

    Examples:
        >>> labels = [0, 0, 1, 1]
        >>> emb = [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [3.0, 0.0]]
        >>> round(float(batch_contrastive_loss(labels, emb)), 4)
        1.5
    """
    distance = resolve_distance(distance)
    labels, embeddings = embedding_inputs(y_true, y_pred, normalize)

    def block(rows):
        d = rows.distances(distance)
        zeros = ops.zeros_like(d)
        pos_t, neg_t = d - pos_margin, neg_margin - d
        pos_on = ops.logical_and(rows.pos, pos_t > 0)
        neg_on = ops.logical_and(rows.neg, neg_t > 0)
        return (
            ops.sum(ops.where(pos_on, pos_t, zeros), axis=1), ops.sum(ops.cast(pos_on, d.dtype), axis=1),
            ops.sum(ops.where(neg_on, neg_t, zeros), axis=1), ops.sum(ops.cast(neg_on, d.dtype), axis=1),
            rows.valid,
        )

    pos_sum, pos_n, neg_sum, neg_n, valid = per_anchor(embeddings, labels, chunk_size, block)
    return anchor_mean(pos_sum, pos_n, valid, sample_weight) + anchor_mean(neg_sum, neg_n, valid, sample_weight)


@register
class BatchContrastiveLoss(BatchLoss):
    """Contrastive loss over all in-batch pairs, positives and negatives from
    the labels.

    See `batch_contrastive_loss`; pytorch-metric-learning's
    `ContrastiveLoss(pos_margin, neg_margin)` on un-normalized L2 distances.

    Args:
        pos_margin, neg_margin, distance, normalize, chunk_size: See
            `batch_contrastive_loss`.
        cross_replica: `"gather"` (default): under `tf.distribute`, the loss of
            the global batch, all-gathered from the replicas; `"local"`: each
            replica's own slice (see `keras_lossplus.losses.BatchLoss`).
        reduction, name, dtype: As for every `keras.losses.Loss`.

    Reference:
        Hadsell, Chopra & LeCun, CVPR 2006.

    Examples:
        >>> loss = BatchContrastiveLoss(pos_margin=0.0, neg_margin=1.0)
        >>> round(float(loss([0, 0, 1, 1], [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [3.0, 0.0]])), 4)
        1.5
    """

    fn = staticmethod(batch_contrastive_loss)

    class_labels = True

    def __init__(
        self,
        pos_margin: float = 0.0,
        neg_margin: float = 1.0,
        distance: Any = "euclidean",
        normalize: bool = False,
        chunk_size: Optional[int] = None,
        cross_replica: str = "gather",
        reduction: Optional[str] = "sum_over_batch_size",
        name: Optional[str] = "batch_contrastive_loss",
        dtype: Any = None,
    ) -> None:
        super().__init__(
            reduction=reduction, cross_replica=cross_replica, name=name, dtype=dtype, pos_margin=pos_margin,
            neg_margin=neg_margin, distance=distance, normalize=normalize, chunk_size=chunk_size,
        )
