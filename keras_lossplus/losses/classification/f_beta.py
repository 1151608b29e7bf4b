"""Soft F-beta loss over the batch (micro or macro average)."""

from __future__ import annotations

from typing import Any, Optional

from keras import ops

from keras_lossplus.losses.base import BatchLoss, prepare_inputs, register
from keras_lossplus.losses.classification.terms import EPSILON
from keras_lossplus.losses.options import Options, choice, flag, number

Tensor = Any


F_BETA_AVERAGES = ("micro", "macro")


@Options(beta=number(low=0.0, low_open=True), from_logits=flag, average=choice(*F_BETA_AVERAGES))
def f_beta_loss(
    y_true: Tensor,
    y_pred: Tensor,
    beta: float = 1.0,
    from_logits: bool = False,
    average: str = "micro",
    sample_weight: Optional[Tensor] = None,
) -> Tensor:
    r"""`1 - soft F-beta` over the whole batch.

    True positives, false positives and false negatives are counted from
    probabilities (no threshold), so the loss is differentiable:

    $$TP = \sum_i w_i\, y_i p_i,\; FP = \sum_i w_i (1 - y_i) p_i,\;
      FN = \sum_i w_i\, y_i (1 - p_i)$$
    $$F_\beta = \frac{(1 + \beta^2)\,TP}{(1 + \beta^2)\,TP + \beta^2 FN + FP
      + \varepsilon}, \quad \ell = 1 - F_\beta$$

    With `average="micro"` the counts are summed over every class; with
    `"macro"` one F-beta is computed per class (last axis) and averaged.
    `epsilon = 1e-7` keeps an all-negative batch finite (its loss is 1, and
    its gradient finite). With every sample weight 0 (nothing to score) the
    loss is 0 with gradient 0, as for the other batch-level losses.

    Args:
        y_true: Targets in `[0, 1]`, shape `(B, ..., C)` or `(B,)`.
        y_pred: Probabilities, or logits (passed through a sigmoid) with
            `from_logits=True`. For softmax outputs, give probabilities.
        beta: Weight of recall relative to precision, `> 0`.
        from_logits: Whether `y_pred` holds sigmoid logits.
        average: `"micro"` or `"macro"`.
        sample_weight: Optional weights of shape `(B,)` (or `y_pred.shape[:-1]`
            for sequences): each sample's contribution to the three counts is
            multiplied by its weight.

    Returns:
        A scalar: the loss of the batch.

    Reference:
        van Rijsbergen, "Information Retrieval", 1979 (the F-measure);
        the soft (probabilistic) counts follow the common Keras recipe and
        Lipton et al., "Thresholding Classifiers to Maximize F1 Score", 2014.

    Examples:
        >>> y_true = [[1.0], [0.0], [1.0], [0.0]]
        >>> y_pred = [[0.9], [0.2], [0.6], [0.1]]
        >>> round(float(f_beta_loss(y_true, y_pred, beta=1.0)), 4)
        0.2105
    """
    y_true, y_pred = prepare_inputs(y_true, y_pred)
    if from_logits:
        y_pred = ops.sigmoid(y_pred)
    if len(y_pred.shape) < 2:
        y_pred = ops.expand_dims(y_pred, -1)
    if len(y_true.shape) == len(y_pred.shape) - 1:
        y_true = ops.expand_dims(y_true, -1)
    rank = len(y_pred.shape)
    products = y_true * y_pred
    if sample_weight is not None:
        # one weight per sample (or per position of y_pred.shape[:-1])
        w = ops.cast(sample_weight, y_pred.dtype)
        for _ in range(rank - len(w.shape)):
            w = ops.expand_dims(w, -1)
    else:
        w = ops.ones((1,) * rank, dtype=y_pred.dtype)
    axes = tuple(range(rank)) if average == "micro" else tuple(range(rank - 1))
    tp = ops.sum(w * products, axis=axes)
    fp = ops.sum(w * (y_pred - products), axis=axes)
    fn = ops.sum(w * (y_true - products), axis=axes)
    b2 = beta * beta
    f = (1.0 + b2) * tp / ((1.0 + b2) * tp + b2 * fn + fp + EPSILON)
    loss = 1.0 - ops.mean(f)
    if sample_weight is None:
        return loss
    scored = ops.sum(ops.broadcast_to(w, ops.shape(y_pred))) > 0
    return ops.where(scored, loss, ops.zeros_like(loss))


@register
class FBetaLoss(BatchLoss):
    """`1 - soft F-beta` over the batch: trade precision against recall
    directly in training.

    See `f_beta_loss`. A batch-level loss: it returns one value for the
    batch whatever the `reduction`, and `sample_weight` (shape `(B,)`)
    weights each sample's contribution to the true-positive, false-positive
    and false-negative counts. A Keras mask on `y_pred` acts as a 0/1 weight.

    Args:
        beta: Weight of recall relative to precision, `> 0` (2 favours
            recall, 0.5 precision).
        from_logits: Whether `y_pred` holds sigmoid logits.
        average: `"micro"` (one F-beta over every class) or `"macro"`
            (mean of per-class F-beta).
        cross_replica: `"gather"` (default): under `tf.distribute`, the loss of
            the global batch, all-gathered from the replicas; `"local"`: each
            replica's own slice (see `keras_lossplus.losses.BatchLoss`).
        reduction, name, dtype: As for every `keras.losses.Loss`
            (`reduction` has no effect on a batch-level value).

    Reference:
        van Rijsbergen, "Information Retrieval", 1979; Lipton et al.,
        "Thresholding Classifiers to Maximize F1 Score", 2014.

    Examples:
        >>> loss = FBetaLoss(beta=2.0)
        >>> round(float(loss([[1.0], [0.0], [1.0], [0.0]], [[0.9], [0.2], [0.6], [0.1]])), 4)
        0.2347
    """

    fn = staticmethod(f_beta_loss)

    def __init__(
        self,
        beta: float = 1.0,
        from_logits: bool = False,
        average: str = "micro",
        reduction: Optional[str] = "sum_over_batch_size",
        name: Optional[str] = "f_beta_loss",
        dtype: Any = None,
        cross_replica: str = "gather",
    ) -> None:
        super().__init__(
            reduction=reduction, name=name, dtype=dtype, cross_replica=cross_replica, beta=beta,
            from_logits=from_logits, average=average,
        )
