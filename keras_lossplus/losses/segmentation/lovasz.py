"""The Lovasz losses (Berman et al., 2018): the Lovasz hinge for binary and
multi-label masks and the Lovasz-softmax for multi-class masks.

Both sort the pixel errors of every (image, class) row at once with one
`argsort` along the last axis of a `(rows, classes, pixels)` tensor: no
Python loop over images or classes, so the loss compiles to one XLA program.
"""

from __future__ import annotations

from typing import Any, Optional

from keras import ops

from keras_lossplus.backend import compiled_on_jax
from keras_lossplus.losses.base import register
from keras_lossplus.losses.options import Options
from keras_lossplus.losses.segmentation.base import (
    COMMON,
    EPS,
    SegmentationLoss,
    pixel_weights,
    prepare,
    probabilities,
    run,
)

Tensor = Any

__all__ = ["LovaszLoss", "lovasz_loss"]


def lovasz_gradient(target_sorted: Tensor, weights_sorted: Tensor) -> Tensor:
    """The gradient of the Lovasz extension of the (weighted) Jaccard loss
    with respect to errors sorted in decreasing order (Berman et al., Alg. 1),
    along the last axis. A pixel's weight scales its count in the
    intersection and the union; weight 0 removes it."""
    positives = weights_sorted * target_sorted
    total = ops.sum(positives, axis=-1, keepdims=True)
    intersection = total - ops.cumsum(positives, axis=-1)
    union = total + ops.cumsum(weights_sorted * (1.0 - target_sorted), axis=-1)
    jaccard = 1.0 - intersection / ops.maximum(union, EPS)
    previous = ops.concatenate([ops.zeros_like(jaccard[..., :1]), jaccard[..., :-1]], axis=-1)
    return jaccard - previous


def _rows(x: Tensor, per_image: bool) -> Tensor:
    """`(B, *spatial, C)` -> `(rows, C, pixels)`: one row per image, or one
    for the whole batch."""
    channels = x.shape[-1]
    rows = ops.shape(x)[0] if per_image else 1
    return ops.transpose(ops.reshape(x, (rows, -1, channels)), (0, 2, 1))


def _sorted_lovasz(errors: Tensor, target: Tensor, weights: Tensor, hinge: bool) -> Tensor:
    """`sum relu?(sorted errors) * lovasz_gradient` along the last axis;
    entries of weight 0 are sorted last (their errors replaced by a value
    below every real error) and add nothing."""
    counted = weights > 0
    errors = ops.where(counted, errors, ops.full_like(errors, -1e30 if hinge else -1.0))
    order = ops.argsort(-ops.stop_gradient(errors), axis=-1)
    errors_sorted = ops.take_along_axis(errors, order, axis=-1)
    grad = lovasz_gradient(ops.take_along_axis(target, order, axis=-1), ops.take_along_axis(weights, order, axis=-1))
    if hinge:
        errors_sorted = ops.relu(errors_sorted)
    else:
        errors_sorted = ops.where(errors_sorted > 0, errors_sorted, ops.zeros_like(errors_sorted))
    return ops.sum(errors_sorted * ops.stop_gradient(grad), axis=-1)


@compiled_on_jax
def _lovasz_core(y_true, y_pred, mode, from_logits, ignore_index, per_image, data_format, sample_weight=None):
    raw, target, valid = prepare(y_true, y_pred, mode, ignore_index, data_format)
    weights = pixel_weights(valid, sample_weight, raw)
    weights = ops.ones_like(raw) if weights is None else ops.broadcast_to(weights, ops.shape(raw))
    if mode == "multiclass":
        errors = ops.abs(target - probabilities(raw, mode, from_logits))
        target, weights, errors = _rows(target, per_image), _rows(weights, per_image), _rows(errors, per_image)
        per_class = _sorted_lovasz(errors, target, weights, hinge=False)  # (rows, C)
        present = ops.cast(ops.sum(weights * target, axis=-1) > 0, per_class.dtype)
        value = ops.sum(per_class * present, axis=-1) / ops.maximum(ops.sum(present, axis=-1), 1.0)
    else:
        if from_logits:
            logits = raw
        else:
            p = ops.clip(raw, EPS, 1.0 - EPS)
            logits = ops.log(p) - ops.log(1.0 - p)
        errors = 1.0 - logits * (2.0 * target - 1.0)
        # the hinge treats every channel's pixels as one binary problem
        target, weights, errors = (_rows(ops.expand_dims(ops.reshape(x, (ops.shape(x)[0], -1)), -1), per_image)
                                   for x in (target, weights, errors))
        value = _sorted_lovasz(errors, target, weights, hinge=True)[:, 0]
    return value if per_image else value[0]


@Options(**COMMON)
def lovasz_loss(y_true: Tensor, y_pred: Tensor, mode: str = "multiclass", from_logits: bool = False,
                ignore_index: Optional[int] = None, per_image: bool = False, data_format: str = "channels_last",
                sample_weight: Optional[Tensor] = None) -> Tensor:
    r"""Lovasz hinge (binary, multi-label) or Lovasz-softmax (multi-class) loss.

    The Lovasz extension of the Jaccard loss: with the errors `m` sorted in
    decreasing order and `g` the gradient of the Jaccard index along that
    order (Berman et al., Alg. 1),

    $$\ell = \sum_i f(m_{(i)})\, g_i(m),$$

    with hinge errors `m = max(1 - logit * (2y - 1), 0)` for `"binary"` and
    `"multilabel"` (all channels as one binary problem), and `m = |y_c - p_c|`
    per class for `"multiclass"`, averaged over the classes present in the
    target (segmentation_models_pytorch's `LovaszLoss`). The hinge needs
    logits; probabilities are turned into logits. `sample_weight` (with
    `per_image=False`) scales each pixel's count in the Jaccard index.

    Args:
        y_true: Targets (see `keras_lossplus.losses.segmentation`).
        y_pred: Probabilities, or logits with `from_logits=True`.
        mode: `"binary"`, `"multiclass"` or `"multilabel"`.
        from_logits: Whether `y_pred` holds logits.
        ignore_index: Label of pixels that count nowhere, or `None`.
        per_image: One value per image (`True`) or for the whole batch.
        data_format: `"channels_last"` or `"channels_first"`.
        sample_weight: Per-image (or per-pixel) weights, `per_image=False` only.

    Returns:
        `(B,)` with `per_image=True`, else a scalar.

    Reference:
        Berman, Triki & Blaschko, "The Lovasz-Softmax loss: A tractable
        surrogate for the optimization of the intersection-over-union measure
        in neural networks", CVPR 2018, https://arxiv.org/abs/1705.08790

    Examples:
        >>> y_true = [[[0], [1]], [[1], [1]]]
        >>> y_pred = [[[0.8, 0.2], [0.4, 0.6]], [[0.3, 0.7], [0.1, 0.9]]]
        >>> round(float(lovasz_loss(y_true, y_pred, mode="multiclass")), 4)
        0.2958
    """
    return run(_lovasz_core, y_true, y_pred, sample_weight, mode=mode, from_logits=from_logits,
               ignore_index=ignore_index, per_image=per_image, data_format=data_format)


@register
class LovaszLoss(SegmentationLoss):
    """Lovasz hinge / Lovasz-softmax loss, a direct surrogate of the IoU.
    See `lovasz_loss`.

    Args:
        mode, from_logits, ignore_index, per_image, data_format: See
            `keras_lossplus.losses.segmentation`.
        cross_replica: `"gather"` (default): under `tf.distribute`, the loss of
            the global batch, all-gathered from the replicas; `"local"`: each
            replica's own slice (see `keras_lossplus.losses.BatchLoss`).
        reduction, name, dtype: As for every `keras.losses.Loss`.

    Reference:
        Berman, Triki & Blaschko, "The Lovasz-Softmax loss", CVPR 2018.

    Examples:
        >>> loss = LovaszLoss(mode="binary", from_logits=True)
        >>> round(float(loss([[[0.0], [1.0]]], [[[-1.0], [2.0]]])), 4)
        0.0
    """

    fn = staticmethod(lovasz_loss)

    def __init__(self, mode="multiclass", from_logits=False, ignore_index=None, per_image=False,
                 data_format="channels_last", reduction="sum_over_batch_size", name="lovasz_loss", dtype=None,
                 cross_replica="gather"):
        super().__init__(reduction=reduction, name=name, dtype=dtype, cross_replica=cross_replica, mode=mode,
                         from_logits=from_logits, ignore_index=ignore_index, per_image=per_image,
                         data_format=data_format)
