"""Overlap losses over all the classes at once: generalized Dice and the
Matthews correlation coefficient."""

from __future__ import annotations

from typing import Any, Optional, Sequence

from keras import ops

from keras_lossplus.backend import compiled_on_jax
from keras_lossplus.losses.base import register
from keras_lossplus.losses.options import Options, choice
from keras_lossplus.losses.segmentation.base import (
    COMMON,
    OverlapLoss,
    arguments,
    confusion_counts,
    document,
    probabilities,
    run,
    safe_ratio,
    weighted,
)
from keras_lossplus.losses.segmentation.overlap import counts_of
from keras_lossplus.losses.segmentation.scores import EPS, SCORING, Scoring, joint_rules, overlap_ratio
from keras_lossplus.ops import safe_sqrt

Tensor = Any

WEIGHT_TYPES = ("square", "simple", "uniform")
GENERALIZED = ("smooth", "classes", "include_background", "soft_labels")
"""The scoring options generalized Dice takes (its class weights are its own)."""


@compiled_on_jax
def _generalized_dice_core(y_true, y_pred, mode, from_logits, ignore_index, per_image, data_format, scoring,
                           weight_type, sample_weight=None):
    tp, fp, fn, support = counts_of(y_true, y_pred, mode, from_logits, ignore_index, per_image, data_format, scoring,
                                    sample_weight)
    chosen = ops.convert_to_tensor(scoring.selected(support.shape[-1]), dtype=support.dtype) > 0
    present = ops.logical_and(support > 0, chosen)
    if weight_type == "uniform":
        w = ops.cast(chosen, support.dtype) * ops.ones_like(support)
    else:
        safe = ops.where(present, support, ops.ones_like(support))
        w = 1.0 / (safe * safe if weight_type == "square" else safe)
        w = ops.where(present, w, ops.zeros_like(w))
        # MONAI: a (chosen) class absent from the target gets the largest weight of the present ones
        absent = ops.logical_and(chosen, ops.logical_not(present))
        w = w + ops.cast(absent, w.dtype) * ops.max(w, axis=-1, keepdims=True)
    numerator = 2.0 * ops.sum(w * tp, axis=-1) + scoring.smooth[0]
    denominator = ops.sum(w * (2.0 * tp + fp + fn), axis=-1) + scoring.smooth[1]
    # 1 where nothing is counted (every pixel ignored or of weight 0, no class present) and smooth is 0
    return 1.0 - overlap_ratio(numerator, denominator, EPS)


@Options(joint=joint_rules, weight_type=choice(*WEIGHT_TYPES), **{**COMMON, **{k: SCORING[k] for k in GENERALIZED}})
def generalized_dice_loss(y_true: Tensor, y_pred: Tensor, weight_type: str = "square", mode: str = "multiclass",
                          from_logits: bool = False, ignore_index: Optional[int] = None, per_image: bool = False,
                          smooth: Any = 1e-5, data_format: str = "channels_last",
                          sample_weight: Optional[Tensor] = None, *, classes: Optional[Sequence[int]] = None,
                          include_background: bool = True, soft_labels: bool = False) -> Tensor:
    r"""Generalized Dice loss: one Dice over the classes, each weighted by
    the inverse (squared) size of its target.

    $$w_c = 1 / (\textstyle\sum_i y_{ic})^2,\qquad
      \ell = 1 - \frac{2 \sum_c w_c TP_c + s}{\sum_c w_c (2 TP_c + FP_c + FN_c) + s}$$

    MONAI's `GeneralizedDiceLoss(w_type=weight_type, smooth_nr=a,
    smooth_dr=b, batch=not per_image, include_background, soft_label)` with
    `smooth=(a, b)`: a class absent from the target gets the largest weight
    of the present classes (`"uniform"`: weight 1). Where nothing is counted
    (every pixel ignored or of weight 0, or no class in the target) with
    `smooth=0`, the loss is 0 with gradient 0 (MONAI: NaN).

    Args:
        y_true: Targets.
        y_pred: Probabilities, or logits with `from_logits=True`.
        weight_type: `"square"` (`1/n^2`), `"simple"` (`1/n`) or `"uniform"`.
{common}
        sample_weight: Per-image (or per-pixel) weights, `per_image=False` only.
        classes: `None` (every class), or the indices of the classes scored.
        include_background: `False` leaves class 0 out (MONAI's
            `include_background`; not with `mode="binary"`).
        soft_labels: The soft-label counts `TP = sum min(p, y)` (MONAI's
            `soft_label`; the same for 0/1 targets).

    Returns:
        `(B,)` with `per_image=True`, else a scalar.

    Reference:
        Sudre et al., "Generalised Dice overlap as a deep learning loss
        function for highly unbalanced segmentations", DLMIA 2017,
        https://arxiv.org/abs/1707.03237

    Examples:
        >>> y_true = [[[0], [1]], [[1], [1]]]
        >>> y_pred = [[[0.8, 0.2], [0.4, 0.6]], [[0.3, 0.7], [0.1, 0.9]]]
        >>> round(float(generalized_dice_loss(y_true, y_pred)), 4)
        0.3472
    """
    return run(_generalized_dice_core, y_true, y_pred, sample_weight, mode=mode, from_logits=from_logits,
               ignore_index=ignore_index, per_image=per_image, data_format=data_format, scoring=Scoring.of(locals()),
               weight_type=weight_type)


@compiled_on_jax
def _mcc_core(y_true, y_pred, mode, from_logits, ignore_index, per_image, data_format, smooth, sample_weight=None):
    (tp, fp, fn, _), (raw, target, weights, axes) = confusion_counts(y_true, y_pred, mode, from_logits, ignore_index,
                                                                     per_image, data_format, sample_weight)
    negatives = weighted(1.0 - target, weights)
    tn = ops.sum(negatives * (1.0 - probabilities(raw, mode, from_logits)), axis=axes) + smooth
    tp, fp, fn = tp + smooth, fp + smooth, fn + smooth
    denominator = safe_sqrt((tp + fp) * (tp + fn)) * safe_sqrt((tn + fp) * (tn + fn))
    per_class = 1.0 - safe_ratio(tp * tn - fp * fn, denominator)
    if weights is not None:  # nothing scored (every pixel ignored or of weight 0): 0, as Dice
        scored = ops.sum(ops.broadcast_to(weights, ops.shape(target)), axis=axes) > 0
        per_class = ops.where(scored, per_class, ops.zeros_like(per_class))
    return ops.mean(per_class, axis=-1)


@Options(**COMMON)
def mcc_loss(y_true: Tensor, y_pred: Tensor, mode: str = "binary", from_logits: bool = False,
             ignore_index: Optional[int] = None, per_image: bool = False, smooth: float = 1e-5,
             data_format: str = "channels_last", sample_weight: Optional[Tensor] = None) -> Tensor:
    r"""Matthews correlation coefficient loss, mean over the classes.

    $$\ell = 1 - \frac{TP\,TN - FP\,FN}{\sqrt{(TP+FP)(TP+FN)(TN+FP)(TN+FN)}}$$

    with `smooth` added to each soft count (segmentation_models_pytorch's
    `MCCLoss(eps=1e-5)` for `mode="binary"`, which it alone supports).
    Unlike Dice, true negatives count: useful when the background matters.
    With nothing to score (every pixel ignored or of weight 0) the loss is
    0 with gradient 0, as for Dice.

    Args:
        y_true: Targets.
        y_pred: Probabilities, or logits with `from_logits=True`.
{common}
        sample_weight: Per-image (or per-pixel) weights, `per_image=False` only.

    Returns:
        `(B,)` with `per_image=True`, else a scalar.

    Reference:
        Abhishek & Hamarneh, "Matthews Correlation Coefficient Loss for Deep
        Convolutional Networks: Application to Skin Lesion Segmentation",
        ISBI 2021, https://arxiv.org/abs/2010.13454

    Examples:
        >>> y_true = [[[0.0], [1.0]], [[1.0], [1.0]]]
        >>> y_pred = [[[0.2], [0.6]], [[0.7], [0.9]]]
        >>> round(float(mcc_loss(y_true, y_pred, mode="binary")), 4)
        0.5286
    """
    return run(_mcc_core, y_true, y_pred, sample_weight, mode=mode, from_logits=from_logits,
               ignore_index=ignore_index, per_image=per_image, data_format=data_format, smooth=smooth)


@register
class GeneralizedDiceLoss(OverlapLoss):
    """Generalized Dice loss. See `generalized_dice_loss`.

    Args:
        weight_type: `"square"`, `"simple"` or `"uniform"` class weights.
{args}
        classes: `None` (every class), or the indices of the classes scored.
        include_background: `False` leaves class 0 out (MONAI).
        soft_labels: The soft-label counts (MONAI's `soft_label`).

    Reference:
        Sudre et al., "Generalised Dice overlap as a deep learning loss
        function for highly unbalanced segmentations", DLMIA 2017.

    Examples:
        >>> loss = GeneralizedDiceLoss()
        >>> round(float(loss([[[0], [1]], [[1], [1]]], [[[0.8, 0.2], [0.4, 0.6]], [[0.3, 0.7], [0.1, 0.9]]])), 4)
        0.3472
    """

    fn = staticmethod(generalized_dice_loss)

    def __init__(self, weight_type="square", mode="multiclass", from_logits=False, ignore_index=None,
                 per_image=False, smooth=1e-5, data_format="channels_last", reduction="sum_over_batch_size",
                 name="generalized_dice_loss", dtype=None, cross_replica="gather", *, classes=None,
                 include_background=True, soft_labels=False):
        super().__init__(**arguments(locals()))


@register
class MCCLoss(OverlapLoss):
    """Matthews correlation coefficient loss. See `mcc_loss`.

    Args:
{args}

    Reference:
        Abhishek & Hamarneh, "Matthews Correlation Coefficient Loss for Deep
        Convolutional Networks", ISBI 2021.

    Examples:
        >>> loss = MCCLoss(mode="binary")
        >>> round(float(loss([[[0.0], [1.0]], [[1.0], [1.0]]], [[[0.2], [0.6]], [[0.7], [0.9]]])), 4)
        0.5286
    """

    fn = staticmethod(mcc_loss)

    def __init__(self, mode="binary", from_logits=False, ignore_index=None, per_image=False, smooth=1e-5,
                 data_format="channels_last", reduction="sum_over_batch_size", name="mcc_loss", dtype=None,
                 cross_replica="gather"):
        super().__init__(**arguments(locals()))


document(generalized_dice_loss, mcc_loss, GeneralizedDiceLoss, MCCLoss)
