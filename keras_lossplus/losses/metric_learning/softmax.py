"""Metric-learning losses built on log-sum-exp over the batch: multi-similarity,
lifted structure, N-pair, supervised contrastive (SupCon), NT-Xent / InfoNCE
and soft nearest neighbour.

Same calling convention and anchor rule as the triplet losses (`keras_lossplus.losses.metric_learning`):
integer labels `(B,)` or `(B, 1)`, embeddings `(B, D)`, one scalar per batch,
the mean over the anchors that have a positive and a negative in the batch,
anchors weighted by `sample_weight`, `O(B^2)` memory (`chunk_size` rows at a
time when given). Every log-sum-exp is masked and stable, so logits of any
size and batches with empty positive or negative sets stay finite.

`distance` is `"cosine"` (cosine similarity) or `"dot"` (inner product) for
the similarity-based losses, and `"euclidean"`, `"squared_euclidean"` or
`"cosine"` (1 - cosine similarity) for the distance-based ones.
"""

from __future__ import annotations

from typing import Any, Optional

from keras import ops

from keras_lossplus.backend import compiled_on_jax
from keras_lossplus.losses.base import BatchLoss, register
from keras_lossplus.losses.labels import label_checked
from keras_lossplus.losses.magnitude import magnitude_checked
from keras_lossplus.losses.metric_learning.distances import (
    CosineDistance,
    CosineSimilarity,
    distance,
    resolve_distance,
    similarity,
)
from keras_lossplus.losses.metric_learning.inputs import embedding_inputs
from keras_lossplus.losses.metric_learning.miners import positive_count
from keras_lossplus.losses.metric_learning.reducers import anchor_mean
from keras_lossplus.losses.metric_learning.rows import per_anchor
from keras_lossplus.losses.options import Options, chunk_size, flag, number
from keras_lossplus.ops import masked_logsumexp, masked_max, masked_min

Tensor = Any


def _cosine(distance: Any, similarity: bool) -> bool:
    """Whether a `distance=` option (name or object) is the cosine one."""
    return isinstance(resolve_distance(distance, similarity), (CosineSimilarity, CosineDistance))


_positive = number(low=0.0, low_open=True)
"""The check of the scales and temperatures, `> 0`."""


def _ratio_loss(y_true, y_pred, sample_weight, chunk_size, normalize, term) -> Tensor:
    """The anchor mean of `term(rows) -> (numerator, count)`."""
    labels, embeddings = embedding_inputs(y_true, y_pred, normalize)

    def block(rows):
        return tuple(term(rows)) + (rows.valid,)

    return anchor_mean(*per_anchor(embeddings, labels, chunk_size, block), sample_weight)


def _pair_softmax(rows, logits: Tensor) -> tuple:
    """Per anchor: `sum_p log(1 + sum_n exp(s_an - s_ap))` over its positives
    and their number (the N-pair / NT-Xent term)."""
    lse_neg = masked_logsumexp(logits, rows.neg, axis=1, keepdims=True)
    terms = ops.softplus(lse_neg - logits)
    total = ops.sum(ops.where(rows.pos, terms, ops.zeros_like(terms)), axis=1)
    return total, positive_count(rows, logits.dtype)


# --------------------------------------------------------------------------- multi-similarity


@Options(distance=similarity, epsilon=number(low=0.0), alpha=_positive, beta=_positive, base=number(),
         chunk_size=chunk_size)
@label_checked
@compiled_on_jax
def multi_similarity_loss(
    y_true: Tensor,
    y_pred: Tensor,
    alpha: float = 2.0,
    beta: float = 50.0,
    base: float = 0.5,
    epsilon: float = 0.1,
    distance: Any = "cosine",
    chunk_size: Optional[int] = None,
    sample_weight: Optional[Tensor] = None,
) -> Tensor:
    r"""Multi-similarity loss with its pair miner (Wang et al. 2019).

    Pairs are mined per anchor: a negative is kept when
    `S_an + epsilon > min_p S_ap`, a positive when `S_ap - epsilon < max_n S_an`;
    then

    $$\ell_a = \tfrac{1}{\alpha}\log\Big(1 + \sum_{p} e^{-\alpha (S_{ap} - \lambda)}\Big)
      + \tfrac{1}{\beta}\log\Big(1 + \sum_{n} e^{\beta (S_{an} - \lambda)}\Big)$$

    averaged over the anchors (pytorch-metric-learning's
    `MultiSimilarityLoss` with `MultiSimilarityMiner`).

    Args:
        y_true: Integer labels `(B,)` or `(B, 1)`.
        y_pred: Embeddings `(B, D)`.
        alpha: Scale of the positive term, `> 0`.
        beta: Scale of the negative term, `> 0`.
        base: The similarity offset `lambda`.
        epsilon: The miner's margin, `>= 0`.
        distance: Similarity: `"cosine"`, `"dot"` or a `Distance` with
            `is_similarity=True` (`keras_lossplus.distances`).
        chunk_size: Compute the `B x B` work in blocks of this many anchors.
        sample_weight: Optional `(B,)` weights of the anchors.

    Returns:
        A scalar.

    Reference:
        Wang et al., "Multi-Similarity Loss with General Pair Weighting for
        Deep Metric Learning", CVPR 2019.

    Examples:
        >>> labels = [0, 0, 1, 1]
        >>> emb = [[1.0, 0.0], [0.8, 0.6], [0.6, 0.8], [0.0, 1.0]]
        >>> round(float(multi_similarity_loss(labels, emb)), 4)
        0.3394
    """
    distance = resolve_distance(distance, similarity=True)

    def term(rows):
        s = rows.similarities(distance)
        sg = ops.stop_gradient(s)
        hardest_pos = ops.expand_dims(masked_min(sg, rows.pos, axis=1), 1)
        hardest_neg = ops.expand_dims(masked_max(sg, rows.neg, axis=1), 1)
        pos = ops.logical_and(rows.pos, sg - epsilon < hardest_neg)
        neg = ops.logical_and(rows.neg, sg + epsilon > hardest_pos)
        pos_term = _log1p_sum_exp(-alpha * (s - base), pos) / alpha
        neg_term = _log1p_sum_exp(beta * (s - base), neg) / beta
        return pos_term + neg_term, ops.ones_like(pos_term)

    return _ratio_loss(y_true, y_pred, sample_weight, chunk_size, False, term)


def _log1p_sum_exp(x: Tensor, mask: Tensor) -> Tensor:
    """`log(1 + sum_mask exp(x))` per row, 0 for an empty row."""
    lse = masked_logsumexp(x, mask, axis=1)
    return ops.where(ops.any(mask, axis=1), ops.softplus(lse), ops.zeros_like(lse))


@register
class MultiSimilarityLoss(BatchLoss):
    """Multi-similarity loss with its pair miner.

    See `multi_similarity_loss`.

    Args:
        alpha, beta, base, epsilon, distance, chunk_size: See
            `multi_similarity_loss`.
        cross_replica: `"gather"` (default): under `tf.distribute`, the loss of
            the global batch, all-gathered from the replicas; `"local"`: each
            replica's own slice (see `keras_lossplus.losses.BatchLoss`).
        reduction, name, dtype: As for every `keras.losses.Loss`.

    Reference:
        Wang et al., "Multi-Similarity Loss with General Pair Weighting for
        Deep Metric Learning", CVPR 2019.

    Examples:
        >>> loss = MultiSimilarityLoss()
        >>> round(float(loss([0, 0, 1, 1], [[1.0, 0.0], [0.8, 0.6], [0.6, 0.8], [0.0, 1.0]])), 4)
        0.3394
    """

    fn = staticmethod(multi_similarity_loss)

    class_labels = True

    def __init__(
        self,
        alpha: float = 2.0,
        beta: float = 50.0,
        base: float = 0.5,
        epsilon: float = 0.1,
        distance: Any = "cosine",
        chunk_size: Optional[int] = None,
        cross_replica: str = "gather",
        reduction: Optional[str] = "sum_over_batch_size",
        name: Optional[str] = "multi_similarity_loss",
        dtype: Any = None,
    ) -> None:
        super().__init__(
            reduction=reduction, cross_replica=cross_replica, name=name, dtype=dtype, alpha=alpha, beta=beta,
            base=base, epsilon=epsilon, distance=distance, chunk_size=chunk_size,
        )


# --------------------------------------------------------------------------- lifted structure


@Options(distance=distance, margin=number(low=0.0), normalize=flag, chunk_size=chunk_size)
@label_checked
@compiled_on_jax
def lifted_structure_loss(
    y_true: Tensor,
    y_pred: Tensor,
    margin: float = 1.0,
    distance: Any = "euclidean",
    normalize: bool = False,
    chunk_size: Optional[int] = None,
    sample_weight: Optional[Tensor] = None,
) -> Tensor:
    r"""Lifted structured loss, smooth form (Song et al. 2016).

    $$J_{ap} = \log\Big(\sum_{k \in N(a)} e^{m - d_{ak}} + \sum_{l \in N(p)} e^{m - d_{pl}}\Big) + d_{ap},
      \quad \ell = \frac{1}{2 |P|} \sum_{(a, p) \in P} [J_{ap}]_+^2$$

    over the ordered positive pairs `P` (the paper's `1 / (2|P|)` over
    unordered pairs is the same number), pairs weighted by their anchor's
    weight. Two `O(B^2)` passes: every sample's negative log-sum-exp, then
    the pairs.

    Args:
        y_true: Integer labels `(B,)` or `(B, 1)`.
        y_pred: Embeddings `(B, D)`.
        margin: Margin `m >= 0`.
        distance: `"euclidean"`, `"squared_euclidean"`, `"cosine"` or a
            `Distance` (`keras_lossplus.distances`).
        normalize: L2-normalize the embeddings first.
        chunk_size: Compute the `B x B` work in blocks of this many anchors.
        sample_weight: Optional `(B,)` weights of the anchors.

    Returns:
        A scalar.

    Reference:
        Oh Song et al., "Deep Metric Learning via Lifted Structured Feature
        Embedding", CVPR 2016.

    Examples:
        >>> labels = [0, 0, 1, 1]
        >>> emb = [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [3.0, 0.0]]
        >>> round(float(lifted_structure_loss(labels, emb)), 4)
        2.4314
    """
    distance = resolve_distance(distance)
    labels, embeddings = embedding_inputs(y_true, y_pred, normalize)

    def negatives(rows):
        return (masked_logsumexp(margin - rows.distances(distance), rows.neg, axis=1),)

    (lse,) = per_anchor(embeddings, labels, chunk_size, negatives)

    def pairs(rows):
        d = rows.distances(distance)
        j = ops.logaddexp(ops.expand_dims(rows.row(lse), 1), ops.expand_dims(lse, 0)) + d
        terms = 0.5 * ops.square(ops.relu(j))
        total = ops.sum(ops.where(rows.pos, terms, ops.zeros_like(terms)), axis=1)
        return total, positive_count(rows, d.dtype), rows.valid

    return anchor_mean(*per_anchor(embeddings, labels, chunk_size, pairs), sample_weight)


@register
class LiftedStructureLoss(BatchLoss):
    """Lifted structured loss (smooth form) over all in-batch pairs.

    See `lifted_structure_loss`.

    Args:
        margin, distance, normalize, chunk_size: See `lifted_structure_loss`.
        cross_replica: `"gather"` (default): under `tf.distribute`, the loss of
            the global batch, all-gathered from the replicas; `"local"`: each
            replica's own slice (see `keras_lossplus.losses.BatchLoss`).
        reduction, name, dtype: As for every `keras.losses.Loss`.

    Reference:
        Oh Song et al., "Deep Metric Learning via Lifted Structured Feature
        Embedding", CVPR 2016.

    Examples:
        >>> loss = LiftedStructureLoss(margin=1.0)
        >>> round(float(loss([0, 0, 1, 1], [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [3.0, 0.0]])), 4)
        2.4314
    """

    fn = staticmethod(lifted_structure_loss)

    class_labels = True

    def __init__(
        self,
        margin: float = 1.0,
        distance: Any = "euclidean",
        normalize: bool = False,
        chunk_size: Optional[int] = None,
        cross_replica: str = "gather",
        reduction: Optional[str] = "sum_over_batch_size",
        name: Optional[str] = "lifted_structure_loss",
        dtype: Any = None,
    ) -> None:
        super().__init__(
            reduction=reduction, cross_replica=cross_replica, name=name, dtype=dtype, margin=margin, distance=distance,
            normalize=normalize, chunk_size=chunk_size,
        )


# --------------------------------------------------------------------------- N-pair / NT-Xent


@Options(distance=similarity, normalize=flag, chunk_size=chunk_size)
@magnitude_checked("y_pred", when=lambda a: not _cosine(a["distance"], True) and not a["normalize"],
                   hint="Normalize the embeddings (`normalize=True`) or use `distance='cosine'`.")
@label_checked
@compiled_on_jax
def npair_loss(
    y_true: Tensor,
    y_pred: Tensor,
    distance: Any = "dot",
    normalize: bool = False,
    chunk_size: Optional[int] = None,
    sample_weight: Optional[Tensor] = None,
) -> Tensor:
    r"""Multi-class N-pair loss, in-batch form (Sohn 2016).

    $$\ell_{ap} = \log\Big(1 + \sum_{n \in N(a)} e^{S_{an} - S_{ap}}\Big)$$

    averaged over the anchor-positive pairs; every other-class sample of the
    batch is a negative. Sohn's L2 penalty on the embeddings is not included
    (add `keras_lossplus.layers.L2Penalty` for it).

    With the dot product and no normalization, inputs of magnitude beyond
    `magnitude.squares_bound` (1.7e13 in float32) overflow its products:
    eagerly they raise a `ValueError` naming the argument; under jit they
    are clipped to the bound, with the gradient passed through (see
    `keras_lossplus.losses.magnitude`).

    Args:
        y_true: Integer labels `(B,)` or `(B, 1)`.
        y_pred: Embeddings `(B, D)`.
        distance: Similarity: `"dot"` (the paper's), `"cosine"` or a
            `Distance` with `is_similarity=True`.
        normalize: L2-normalize the embeddings first.
        chunk_size: Compute the `B x B` work in blocks of this many anchors.
        sample_weight: Optional `(B,)` weights of the anchors.

    Returns:
        A scalar.

    Reference:
        Sohn, "Improved Deep Metric Learning with Multi-class N-pair Loss
        Objective", NeurIPS 2016.

    Examples:
        >>> labels = [0, 0, 1, 1]
        >>> emb = [[1.0, 0.0], [0.8, 0.6], [0.6, 0.8], [0.0, 1.0]]
        >>> round(float(npair_loss(labels, emb)), 4)
        0.9575
    """
    distance = resolve_distance(distance, similarity=True)
    def term(rows):
        return _pair_softmax(rows, rows.similarities(distance))

    return _ratio_loss(y_true, y_pred, sample_weight, chunk_size, normalize, term)


@register
class NPairLoss(BatchLoss):
    """Multi-class N-pair loss over the batch's anchor-positive pairs.

    See `npair_loss`.

    Args:
        distance, normalize, chunk_size: See `npair_loss`.
        cross_replica: `"gather"` (default): under `tf.distribute`, the loss of
            the global batch, all-gathered from the replicas; `"local"`: each
            replica's own slice (see `keras_lossplus.losses.BatchLoss`).
        reduction, name, dtype: As for every `keras.losses.Loss`.

    Reference:
        Sohn, "Improved Deep Metric Learning with Multi-class N-pair Loss
        Objective", NeurIPS 2016.

    Examples:
        >>> loss = NPairLoss()
        >>> round(float(loss([0, 0, 1, 1], [[1.0, 0.0], [0.8, 0.6], [0.6, 0.8], [0.0, 1.0]])), 4)
        0.9575
    """

    fn = staticmethod(npair_loss)

    class_labels = True

    def __init__(
        self,
        distance: Any = "dot",
        normalize: bool = False,
        chunk_size: Optional[int] = None,
        cross_replica: str = "gather",
        reduction: Optional[str] = "sum_over_batch_size",
        name: Optional[str] = "npair_loss",
        dtype: Any = None,
    ) -> None:
        super().__init__(
            reduction=reduction, cross_replica=cross_replica, name=name, dtype=dtype, distance=distance, normalize=normalize,
            chunk_size=chunk_size,
        )


@Options(distance=similarity, temperature=_positive, chunk_size=chunk_size)
@label_checked
@compiled_on_jax
def nt_xent_loss(
    y_true: Tensor,
    y_pred: Tensor,
    temperature: float = 0.07,
    distance: Any = "cosine",
    chunk_size: Optional[int] = None,
    sample_weight: Optional[Tensor] = None,
) -> Tensor:
    r"""NT-Xent / InfoNCE with labels defining the positives (Chen et al. 2020).

    $$\ell_{ap} = -\log \frac{e^{S_{ap}/T}}{e^{S_{ap}/T} + \sum_{n \in N(a)} e^{S_{an}/T}}$$

    averaged over the anchor-positive pairs (pytorch-metric-learning's
    `NTXentLoss`). For SimCLR, give the two views of each image the same
    label.

    Args:
        y_true: Integer labels `(B,)` or `(B, 1)`.
        y_pred: Embeddings `(B, D)`.
        temperature: `T > 0`.
        distance: Similarity: `"cosine"`, `"dot"` or a `Distance` with
            `is_similarity=True` (`keras_lossplus.distances`).
        chunk_size: Compute the `B x B` work in blocks of this many anchors.
        sample_weight: Optional `(B,)` weights of the anchors.

    Returns:
        A scalar.

    Reference:
        Chen et al., "A Simple Framework for Contrastive Learning of Visual
        Representations", ICML 2020; van den Oord et al., "Representation
        Learning with Contrastive Predictive Coding", 2018.

    Examples:
        >>> labels = [0, 0, 1, 1]
        >>> emb = [[1.0, 0.0], [0.8, 0.6], [0.6, 0.8], [0.0, 1.0]]
        >>> round(float(nt_xent_loss(labels, emb, temperature=0.5)), 4)
        0.8707
    """
    distance = resolve_distance(distance, similarity=True)
    def term(rows):
        return _pair_softmax(rows, rows.similarities(distance) / temperature)

    return _ratio_loss(y_true, y_pred, sample_weight, chunk_size, False, term)


@register
class NTXentLoss(BatchLoss):
    """NT-Xent (normalized temperature-scaled cross-entropy) / InfoNCE.

    See `nt_xent_loss`.

    Args:
        temperature, distance, chunk_size: See `nt_xent_loss`.
        cross_replica: `"gather"` (default): under `tf.distribute`, the loss of
            the global batch, all-gathered from the replicas; `"local"`: each
            replica's own slice (see `keras_lossplus.losses.BatchLoss`).
        reduction, name, dtype: As for every `keras.losses.Loss`.

    Reference:
        Chen et al., "A Simple Framework for Contrastive Learning of Visual
        Representations", ICML 2020.

    Examples:
        >>> loss = NTXentLoss(temperature=0.5)
        >>> round(float(loss([0, 0, 1, 1], [[1.0, 0.0], [0.8, 0.6], [0.6, 0.8], [0.0, 1.0]])), 4)
        0.8707
    """

    fn = staticmethod(nt_xent_loss)

    class_labels = True

    def __init__(
        self,
        temperature: float = 0.07,
        distance: Any = "cosine",
        chunk_size: Optional[int] = None,
        cross_replica: str = "gather",
        reduction: Optional[str] = "sum_over_batch_size",
        name: Optional[str] = "nt_xent_loss",
        dtype: Any = None,
    ) -> None:
        super().__init__(
            reduction=reduction, cross_replica=cross_replica, name=name, dtype=dtype, temperature=temperature,
            distance=distance, chunk_size=chunk_size,
        )


# --------------------------------------------------------------------------- SupCon / soft nearest neighbour


@Options(distance=similarity, temperature=_positive, chunk_size=chunk_size)
@label_checked
@compiled_on_jax
def supcon_loss(
    y_true: Tensor,
    y_pred: Tensor,
    temperature: float = 0.1,
    distance: Any = "cosine",
    chunk_size: Optional[int] = None,
    sample_weight: Optional[Tensor] = None,
) -> Tensor:
    r"""Supervised contrastive loss (Khosla et al. 2020, the "L_out" form).

    $$\ell_a = -\frac{1}{|P(a)|} \sum_{p \in P(a)}
      \log \frac{e^{S_{ap}/T}}{\sum_{k \ne a} e^{S_{ak}/T}}$$

    averaged over the anchors that have a positive and a negative.

    Args:
        y_true: Integer labels `(B,)` or `(B, 1)`.
        y_pred: Embeddings `(B, D)`.
        temperature: `T > 0`.
        distance: Similarity: `"cosine"`, `"dot"` or a `Distance` with
            `is_similarity=True` (`keras_lossplus.distances`).
        chunk_size: Compute the `B x B` work in blocks of this many anchors.
        sample_weight: Optional `(B,)` weights of the anchors.

    Returns:
        A scalar.

    Reference:
        Khosla et al., "Supervised Contrastive Learning", NeurIPS 2020.

    Examples:
        >>> labels = [0, 0, 1, 1]
        >>> emb = [[1.0, 0.0], [0.8, 0.6], [0.6, 0.8], [0.0, 1.0]]
        >>> round(float(supcon_loss(labels, emb, temperature=0.5)), 4)
        0.8707
    """
    distance = resolve_distance(distance, similarity=True)
    def term(rows):
        logits = rows.similarities(distance) / temperature
        log_prob = logits - masked_logsumexp(logits, rows.not_self, axis=1, keepdims=True)
        total = ops.sum(ops.where(rows.pos, log_prob, ops.zeros_like(log_prob)), axis=1)
        count = positive_count(rows, logits.dtype)
        return -total / ops.maximum(count, 1.0), ops.ones_like(count)

    return _ratio_loss(y_true, y_pred, sample_weight, chunk_size, False, term)


@register
class SupConLoss(BatchLoss):
    """Supervised contrastive loss.

    See `supcon_loss`.

    Args:
        temperature, distance, chunk_size: See `supcon_loss`.
        cross_replica: `"gather"` (default): under `tf.distribute`, the loss of
            the global batch, all-gathered from the replicas; `"local"`: each
            replica's own slice (see `keras_lossplus.losses.BatchLoss`).
        reduction, name, dtype: As for every `keras.losses.Loss`.

    Reference:
        Khosla et al., "Supervised Contrastive Learning", NeurIPS 2020.

    Examples:
        >>> loss = SupConLoss(temperature=0.5)
        >>> round(float(loss([0, 0, 1, 1], [[1.0, 0.0], [0.8, 0.6], [0.6, 0.8], [0.0, 1.0]])), 4)
        0.8707
    """

    fn = staticmethod(supcon_loss)

    class_labels = True

    def __init__(
        self,
        temperature: float = 0.1,
        distance: Any = "cosine",
        chunk_size: Optional[int] = None,
        cross_replica: str = "gather",
        reduction: Optional[str] = "sum_over_batch_size",
        name: Optional[str] = "supcon_loss",
        dtype: Any = None,
    ) -> None:
        super().__init__(
            reduction=reduction, cross_replica=cross_replica, name=name, dtype=dtype, temperature=temperature,
            distance=distance, chunk_size=chunk_size,
        )


@Options(distance=distance, temperature=_positive, normalize=flag, chunk_size=chunk_size)
@magnitude_checked("y_pred", when=lambda a: not _cosine(a["distance"], False) and not a["normalize"],
                   hint="Normalize the embeddings (`normalize=True`) or use `distance='cosine'`.")
@label_checked
@compiled_on_jax
def soft_nearest_neighbor_loss(
    y_true: Tensor,
    y_pred: Tensor,
    temperature: float = 1.0,
    distance: Any = "squared_euclidean",
    normalize: bool = False,
    chunk_size: Optional[int] = None,
    sample_weight: Optional[Tensor] = None,
) -> Tensor:
    r"""Soft nearest neighbour loss (Frosst et al. 2019).

    $$\ell_a = -\log \frac{\sum_{p \in P(a)} e^{-d_{ap}/T}}{\sum_{k \ne a} e^{-d_{ak}/T}}$$

    averaged over the anchors that have a positive and a negative: low when
    each sample's neighbourhood is dominated by its own class.

    Without normalization or the cosine distance, inputs of magnitude beyond
    `magnitude.squares_bound` (1.7e13 in float32) overflow its squares:
    eagerly they raise a `ValueError` naming the argument; under jit they
    are clipped to the bound, with the gradient passed through (see
    `keras_lossplus.losses.magnitude`).

    Args:
        y_true: Integer labels `(B,)` or `(B, 1)`.
        y_pred: Embeddings `(B, D)`.
        temperature: `T > 0`.
        distance: `"squared_euclidean"` (the paper's), `"euclidean"`,
            `"cosine"` or a `Distance` (`keras_lossplus.distances`).
        normalize: L2-normalize the embeddings first.
        chunk_size: Compute the `B x B` work in blocks of this many anchors.
        sample_weight: Optional `(B,)` weights of the anchors.

    Returns:
        A scalar.

    Reference:
        Frosst, Papernot & Hinton, "Analyzing and Improving Representations
        with the Soft Nearest Neighbor Loss", ICML 2019.

    Examples:
        >>> labels = [0, 0, 1, 1]
        >>> emb = [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [3.0, 0.0]]
        >>> round(float(soft_nearest_neighbor_loss(labels, emb)), 4)
        1.0912
    """
    distance = resolve_distance(distance)
    def term(rows):
        logits = -rows.distances(distance) / temperature
        value = masked_logsumexp(logits, rows.not_self, axis=1) - masked_logsumexp(logits, rows.pos, axis=1)
        return value, ops.ones_like(value)

    return _ratio_loss(y_true, y_pred, sample_weight, chunk_size, normalize, term)


@register
class SoftNearestNeighborLoss(BatchLoss):
    """Soft nearest neighbour loss: how much each sample's soft neighbourhood
    belongs to its own class.

    See `soft_nearest_neighbor_loss`.

    Args:
        temperature, distance, normalize, chunk_size: See
            `soft_nearest_neighbor_loss`.
        cross_replica: `"gather"` (default): under `tf.distribute`, the loss of
            the global batch, all-gathered from the replicas; `"local"`: each
            replica's own slice (see `keras_lossplus.losses.BatchLoss`).
        reduction, name, dtype: As for every `keras.losses.Loss`.

    Reference:
        Frosst, Papernot & Hinton, ICML 2019.

    Examples:
        >>> loss = SoftNearestNeighborLoss(temperature=1.0)
        >>> round(float(loss([0, 0, 1, 1], [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [3.0, 0.0]])), 4)
        1.0912
    """

    fn = staticmethod(soft_nearest_neighbor_loss)

    class_labels = True

    def __init__(
        self,
        temperature: float = 1.0,
        distance: Any = "squared_euclidean",
        normalize: bool = False,
        chunk_size: Optional[int] = None,
        cross_replica: str = "gather",
        reduction: Optional[str] = "sum_over_batch_size",
        name: Optional[str] = "soft_nearest_neighbor_loss",
        dtype: Any = None,
    ) -> None:
        super().__init__(
            reduction=reduction, cross_replica=cross_replica, name=name, dtype=dtype, temperature=temperature,
            distance=distance, normalize=normalize, chunk_size=chunk_size,
        )
