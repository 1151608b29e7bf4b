r"""In-batch losses of sentence (and image-text) embeddings, after
sentence-transformers: multiple negatives ranking (InfoNCE with in-batch
negatives, optionally symmetric), CoSENT and AnglE.

Calling convention: `y_pred` stacks the embeddings of each example on
axis 1, shape `(B, m, D)`: `y_pred[:, 0]` the anchors (queries),
`y_pred[:, 1]` their positives (or the second text of a scored pair),
`y_pred[:, 2:]` optional hard negatives, `m - 2` per anchor. A model
outputs that with, e.g., `keras.ops.stack([encoder(a), encoder(p)], axis=1)`
over a shared encoder. `y_true` has shape `(B,)` or `(B, 1)`: ignored by
`multiple_negatives_ranking_loss` unless `mask_same_label=True` (pass any
array, e.g. `numpy.zeros(B)`, since `fit` needs one), the pairs' similarity
scores for CoSENT and AnglE. Each loss returns one scalar per batch; see
each function for what `sample_weight` means.

Everything is computed in float32 for half-precision inputs, with
stable log-sum-exps: finite values and gradients for identical embeddings,
zero vectors (cosine similarity 0 with every vector) and embeddings of any
size under cosine similarity.
"""

from __future__ import annotations

from typing import Any, Optional

from keras import ops

from keras_lossplus.losses.base import BatchLoss, register
from keras_lossplus.losses.metric_learning.distances import similarity as _similarity
from keras_lossplus.losses.metric_learning.distances import unit_vectors
from keras_lossplus.losses.metric_learning.inputs import anchor_weights, stacked_inputs
from keras_lossplus.losses.metric_learning.reducers import safe_ratio
from keras_lossplus.losses.options import Options, flag, number
from keras_lossplus.ops import largest_finite, masked_logsumexp

Tensor = Any

_scale = number(low=0.0, low_open=True)
"""The check of `scale`, `> 0`."""


def _weighted_mean(values: Tensor, weights: Optional[Tensor]) -> Tensor:
    """`sum_i w_i v_i / sum_i w_i` (the plain mean without weights); 0 with
    gradient 0 when the weights sum to 0."""
    if weights is None:
        return ops.mean(values)
    return safe_ratio(ops.sum(values * weights), ops.sum(weights))


def _scores(x: Tensor, y: Tensor, similarity: Any, scale: float) -> Tensor:
    """`scale * similarity(x_i, y_j)`, shape `(N, M)`; `similarity` a name
    or a similarity object (`keras_lossplus.distances`)."""
    if not isinstance(similarity, str):
        return scale * similarity.pairwise(x, y)
    if similarity == "cosine":
        x, y = unit_vectors(x), unit_vectors(y)
    return scale * ops.matmul(x, ops.transpose(y))


def _cross_entropy(logits: Tensor, keep: Optional[Tensor]) -> Tensor:
    """Per row `i`: `-log softmax(row)[i]` over the columns of `logits`
    `(B, N)`, `N >= B`, where `keep` (a mask of the first `B` columns; the
    diagonal always kept) allows."""
    target = ops.diagonal(logits)
    if keep is None:  # every column: no mask (eager torch pays for each masked B x N pass)
        return ops.logsumexp(logits, axis=1) - target
    rows = ops.arange(ops.shape(logits)[0])
    mask = ops.logical_or(keep, ops.equal(ops.expand_dims(rows, 1), ops.expand_dims(rows, 0)))
    extra = logits[:, ops.shape(logits)[0]:]
    mask = ops.concatenate([mask, ops.ones_like(extra, dtype="bool")], axis=1)
    return masked_logsumexp(logits, mask, axis=1) - target


@Options(scale=_scale, similarity=_similarity, symmetric=flag, mask_same_label=flag)
def multiple_negatives_ranking_loss(
    y_true: Any,
    y_pred: Tensor,
    scale: float = 20.0,
    similarity: str = "cosine",
    symmetric: bool = False,
    mask_same_label: bool = False,
    sample_weight: Optional[Tensor] = None,
) -> Tensor:
    r"""Multiple negatives ranking loss (InfoNCE with in-batch negatives),
    as sentence-transformers' `MultipleNegativesRankingLoss`.

    Each anchor `a_i` is scored against every candidate of the batch: all
    `B` positives `p_j`, then all hard negatives `n_{jk}`; the loss is the
    cross-entropy of picking its own positive,

    $$\ell_i = -\log \frac{e^{s\,\mathrm{sim}(a_i, p_i)}}
        {\sum_j e^{s\,\mathrm{sim}(a_i, p_j)} + \sum_{j,k} e^{s\,\mathrm{sim}(a_i, n_{jk})}}$$

    averaged over the anchors, each weighted by its `sample_weight`:
    `sum_i w_i l_i / sum_i w_i` (0, with gradient 0, when every weight is
    0). With `symmetric=True` the positive-to-anchor direction is added and
    the two are averaged, as `MultipleNegativesSymmetricRankingLoss`:
    `(l + l') / 2` with `l'_i = -log softmax_j(s sim(p_i, a_j))[i]` (over
    the anchors only, hard negatives are not in that direction).

    Args:
        y_true: `(B,)` or `(B, 1)`. Ignored (any values; `None` in a direct
            call) unless `mask_same_label=True`; then integer class labels
            of the examples: another example's positive with the anchor's
            label is not counted as a negative of that anchor (nor, with
            `symmetric`, another anchor with the positive's label). Hard
            negatives are always negatives.
        y_pred: `(B, m, D)`, `m >= 2`: `y_pred[:, 0]` the anchors,
            `y_pred[:, 1]` the positives, `y_pred[:, 2:]` the hard
            negatives.
        scale: `s > 0`, the inverse temperature (20 is a temperature of
            0.05).
        similarity: `"cosine"` (default) or `"dot"` (then a `scale` of
            about 1, as sentence-transformers advises), or a similarity
            object of `keras_lossplus.distances` (`is_similarity=True`).
        symmetric: Also the positive-to-anchor direction.
        mask_same_label: Read `y_true` as labels (see `y_true`).
        sample_weight: Optional `(B,)` weights of the examples (anchors).

    Returns:
        A scalar.

    Reference:
        Henderson et al., "Efficient Natural Language Response Suggestion
        for Smart Reply", 2017, https://arxiv.org/abs/1705.00652; van den
        Oord et al., "Representation Learning with Contrastive Predictive
        Coding", 2018; sentence-transformers'
        `losses.MultipleNegativesRankingLoss` and
        `losses.MultipleNegativesSymmetricRankingLoss`.

    Examples:
        >>> pairs = [[[1.0, 0.0], [0.8, 0.6]], [[0.0, 1.0], [0.6, 0.8]]]
        >>> round(float(multiple_negatives_ranking_loss([0, 0], pairs, scale=5.0)), 4)
        0.3133
    """
    labels, y_pred = stacked_inputs(y_true, y_pred, "tuples", labels=mask_same_label)
    weights = anchor_weights(sample_weight, y_pred.dtype)
    # the candidates: every positive, then every hard negative of the batch column by column
    # (sentence-transformers' order), scored in one matmul
    candidates = y_pred[:, 1] if y_pred.shape[1] == 2 else ops.reshape(
        ops.transpose(y_pred[:, 1:], (1, 0, 2)), (-1, y_pred.shape[-1]))
    scores = _scores(y_pred[:, 0], candidates, similarity, scale)  # (B, (m - 1) B): anchor i x candidate j
    keep = None
    if mask_same_label:
        keep = ops.not_equal(ops.expand_dims(labels, 1), ops.expand_dims(labels, 0))
    loss = _weighted_mean(_cross_entropy(scores, keep), weights)
    if symmetric:
        forward = scores[:, : ops.shape(scores)[0]]  # anchor i x positive j
        loss = (loss + _weighted_mean(_cross_entropy(ops.transpose(forward), keep), weights)) / 2.0
    return loss


@register
class MultipleNegativesRankingLoss(BatchLoss):
    """Multiple negatives ranking loss (InfoNCE with in-batch negatives).

    See `multiple_negatives_ranking_loss`. `y_pred` is `(B, m, D)`: anchors,
    positives, then optional hard negatives on axis 1; `y_true` any `(B,)`
    array (read as labels only with `mask_same_label=True`).

    Args:
        scale, similarity, symmetric, mask_same_label: See
            `multiple_negatives_ranking_loss`.
        cross_replica: `"gather"` (default): under `tf.distribute`, the loss of
            the global batch, all-gathered from the replicas (every replica's
            positives and negatives are candidates of every anchor, like
            sentence-transformers' `gather_across_devices=True`); `"local"`:
            each replica's own slice (see `keras_lossplus.losses.BatchLoss`).
        reduction, name, dtype: As for every `keras.losses.Loss`.

    Reference:
        Henderson et al., "Efficient Natural Language Response Suggestion
        for Smart Reply", 2017, https://arxiv.org/abs/1705.00652.

    Examples:
        >>> loss = MultipleNegativesRankingLoss(scale=5.0, symmetric=True)
        >>> pairs = [[[1.0, 0.0], [0.8, 0.6]], [[0.0, 1.0], [0.6, 0.8]]]
        >>> round(float(loss([0, 0], pairs)), 4)
        0.3133
    """

    fn = staticmethod(multiple_negatives_ranking_loss)

    class_labels = True

    def __init__(
        self,
        scale: float = 20.0,
        similarity: str = "cosine",
        symmetric: bool = False,
        mask_same_label: bool = False,
        cross_replica: str = "gather",
        reduction: Optional[str] = "sum_over_batch_size",
        name: Optional[str] = "multiple_negatives_ranking_loss",
        dtype: Any = None,
    ) -> None:
        super().__init__(
            reduction=reduction, cross_replica=cross_replica, name=name, dtype=dtype, scale=scale,
            similarity=similarity, symmetric=symmetric, mask_same_label=mask_same_label,
        )


# --------------------------------------------------------------------------- CoSENT / AnglE


def _cosine_pairs(u: Tensor, v: Tensor) -> Tensor:
    """Cosine similarity of each pair, `(B,)`."""
    return ops.sum(unit_vectors(u) * unit_vectors(v), axis=-1)


def _angle_pairs(u: Tensor, v: Tensor) -> Tensor:
    """sentence-transformers' `util.pairwise_angle_sim`: each embedding read
    as complex numbers (first half real, second half imaginary parts),
    `|sum_k Re(z_k) + Im(z_k)|` of `z = u conj(v) / (|u| |v|)`."""
    a, b = ops.split(unit_vectors(u), 2, axis=-1)
    c, d = ops.split(unit_vectors(v), 2, axis=-1)
    return ops.abs(ops.sum(a * c + b * d + b * c - a * d, axis=-1))


def _ranked_pairs_loss(y_true, y_pred, scale, sample_weight, pair_similarity, even_dim=False) -> Tensor:
    r"""`log(1 + sum_{y_i > y_j} w_i w_j exp(s (sim_j - sim_i)))`, stably."""
    scores, y_pred = stacked_inputs(y_true, y_pred, "pairs")
    if even_dim and (y_pred.shape[-1] is None or y_pred.shape[-1] % 2):
        raise ValueError(
            "AnglE reads each embedding as complex numbers (first half real, second half imaginary "
            f"parts): the dimension of `y_pred` must be even. Received: y_pred.shape={tuple(y_pred.shape)}"
        )
    scores = ops.cast(scores, y_pred.dtype)
    sim = scale * pair_similarity(y_pred[:, 0], y_pred[:, 1])
    # pair i rated below pair j but scored s_i: the term exp(s_i - s_j)
    logits = ops.expand_dims(sim, 1) - ops.expand_dims(sim, 0)
    valid = ops.less(ops.expand_dims(scores, 1), ops.expand_dims(scores, 0))
    weights = anchor_weights(sample_weight, y_pred.dtype)
    if weights is not None:
        pair_weights = ops.expand_dims(weights, 1) * ops.expand_dims(weights, 0)
        valid = ops.logical_and(valid, pair_weights > 0)
        logits = logits + ops.log(ops.where(valid, pair_weights, ops.ones_like(pair_weights)))
    # log(e^0 + sum exp(logits)), shifted by max(0, max logits) so nothing overflows
    largest = ops.max(ops.where(valid, logits, ops.full_like(logits, -largest_finite(logits.dtype))))
    shift = ops.stop_gradient(ops.maximum(largest, 0.0))
    exps = ops.where(valid, ops.exp(ops.where(valid, logits - shift, ops.zeros_like(logits))), ops.zeros_like(logits))
    return shift + ops.log(ops.exp(-shift) + ops.sum(exps))


@Options(scale=_scale)
def cosent_loss(y_true: Tensor, y_pred: Tensor, scale: float = 20.0, sample_weight: Optional[Tensor] = None) -> Tensor:
    r"""CoSENT (Consistent SENTence embedding) loss, as sentence-transformers'
    `CoSENTLoss`.

    With `c_i` the cosine similarity of pair `i` and `y_i` its target score,
    every two pairs rated in some order whose similarities are in the other
    order are penalized:

    $$\mathcal{L} = \log\Big(1 + \sum_{i, j:\ y_i > y_j} e^{s (c_j - c_i)}\Big)$$

    computed as a stable log-sum-exp. Only the order of the scores matters,
    not their scale. With `sample_weight`, the term of `(i, j)` counts
    `w_i w_j` times (a weight of 0, or a Keras mask, takes the pair out of
    the batch); all weights 0 give 0.

    Args:
        y_true: Target similarity scores of the pairs, `(B,)` or `(B, 1)`.
        y_pred: The pairs' embeddings, `(B, 2, D)`.
        scale: `s > 0` (sentence-transformers' default 20).
        sample_weight: Optional `(B,)` weights of the pairs.

    Returns:
        A scalar.

    Reference:
        Su, "CoSENT: A more efficient sentence vector scheme than
        Sentence-BERT", 2022, https://kexue.fm/archives/8847;
        sentence-transformers' `losses.CoSENTLoss`.

    Examples:
        >>> pairs = [[[1.0, 0.0], [1.0, 0.0]], [[1.0, 0.0], [0.0, 1.0]]]
        >>> round(float(cosent_loss([0.0, 1.0], pairs, scale=1.0)), 4)
        1.3133
    """
    return _ranked_pairs_loss(y_true, y_pred, scale, sample_weight, _cosine_pairs)


@register
class CoSENTLoss(BatchLoss):
    """CoSENT loss: ranks pairs of embeddings by cosine similarity in the
    order of their target scores.

    See `cosent_loss`. `y_pred` is `(B, 2, D)`, `y_true` the `(B,)` scores.

    Args:
        scale: See `cosent_loss`.
        cross_replica: `"gather"` (default): under `tf.distribute`, the loss of
            the global batch (every pair against every pair), all-gathered
            from the replicas; `"local"`: each replica's own slice (see
            `keras_lossplus.losses.BatchLoss`).
        reduction, name, dtype: As for every `keras.losses.Loss`.

    Reference:
        Su, "CoSENT", 2022, https://kexue.fm/archives/8847.

    Examples:
        >>> loss = CoSENTLoss(scale=1.0)
        >>> round(float(loss([0.0, 1.0], [[[1.0, 0.0], [1.0, 0.0]], [[1.0, 0.0], [0.0, 1.0]]])), 4)
        1.3133
    """

    fn = staticmethod(cosent_loss)

    def __init__(
        self,
        scale: float = 20.0,
        cross_replica: str = "gather",
        reduction: Optional[str] = "sum_over_batch_size",
        name: Optional[str] = "cosent_loss",
        dtype: Any = None,
    ) -> None:
        super().__init__(reduction=reduction, cross_replica=cross_replica, name=name, dtype=dtype, scale=scale)


@Options(scale=_scale)
def angle_loss(y_true: Tensor, y_pred: Tensor, scale: float = 20.0, sample_weight: Optional[Tensor] = None) -> Tensor:
    r"""AnglE loss: CoSENT with the angle similarity, as sentence-transformers'
    `AnglELoss`.

    Each embedding is read as `D / 2` complex numbers (first half the real
    parts, second half the imaginary parts); the similarity of a pair
    `(u, v)` is `a_i = |sum_k Re(z_k) + Im(z_k)|` with
    `z = u conj(v) / (|u| |v|)` (`util.pairwise_angle_sim`), and

    $$\mathcal{L} = \log\Big(1 + \sum_{i, j:\ y_i > y_j} e^{s (a_j - a_i)}\Big).$$

    `sample_weight` as for `cosent_loss`. This is the angle term of the
    AnglE paper alone, as in sentence-transformers (the paper adds a cosine
    and an in-batch term: combine with `cosent_loss` and
    `multiple_negatives_ranking_loss`).

    Args:
        y_true: Target similarity scores of the pairs, `(B,)` or `(B, 1)`.
        y_pred: The pairs' embeddings, `(B, 2, D)` with `D` even.
        scale: `s > 0` (sentence-transformers' default 20).
        sample_weight: Optional `(B,)` weights of the pairs.

    Returns:
        A scalar.

    Reference:
        Li and Li, "AnglE-optimized Text Embeddings", 2023,
        https://arxiv.org/abs/2309.12871; sentence-transformers'
        `losses.AnglELoss`.

    Examples:
        >>> pairs = [[[1.0, 0.0], [1.0, 0.0]], [[1.0, 0.0], [0.0, 1.0]]]
        >>> round(float(angle_loss([0.0, 1.0], pairs, scale=1.0)), 4)
        0.6931
    """
    return _ranked_pairs_loss(y_true, y_pred, scale, sample_weight, _angle_pairs, even_dim=True)


@register
class AnglELoss(BatchLoss):
    """AnglE loss: CoSENT with sentence-transformers' angle similarity.

    See `angle_loss`. `y_pred` is `(B, 2, D)` with `D` even, `y_true` the
    `(B,)` scores.

    Args:
        scale: See `angle_loss`.
        cross_replica: `"gather"` (default) or `"local"`, as `CoSENTLoss`.
        reduction, name, dtype: As for every `keras.losses.Loss`.

    Reference:
        Li and Li, "AnglE-optimized Text Embeddings", 2023,
        https://arxiv.org/abs/2309.12871.

    Examples:
        >>> loss = AnglELoss(scale=1.0)
        >>> round(float(loss([0.0, 1.0], [[[1.0, 0.0], [1.0, 0.0]], [[1.0, 0.0], [0.0, 1.0]]])), 4)
        0.6931
    """

    fn = staticmethod(angle_loss)

    def __init__(
        self,
        scale: float = 20.0,
        cross_replica: str = "gather",
        reduction: Optional[str] = "sum_over_batch_size",
        name: Optional[str] = "angle_loss",
        dtype: Any = None,
    ) -> None:
        super().__init__(reduction=reduction, cross_replica=cross_replica, name=name, dtype=dtype, scale=scale)
