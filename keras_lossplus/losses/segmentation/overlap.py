"""Soft overlap losses: Dice, Jaccard, focal Tversky, generalized Dice and
Matthews correlation."""

from __future__ import annotations

from typing import Any, Optional

from keras import ops

from keras_lossplus.backend import compiled_on_jax
from keras_lossplus.losses.base import register
from keras_lossplus.losses.options import Options, choice, number
from keras_lossplus.losses.segmentation.base import (
    COMMON,
    OverlapLoss,
    confusion_counts,
    dice_score,
    document,
    present_mean,
    probabilities,
    run,
    safe_ratio,
    weighted,
)
from keras_lossplus.ops import safe_pow, safe_sqrt

Tensor = Any

WEIGHT_TYPES = ("square", "simple", "uniform")


# --------------------------------------------------------------------------- Dice and Jaccard


@compiled_on_jax
def _dice_core(y_true, y_pred, mode, from_logits, ignore_index, per_image, data_format, smooth, sample_weight=None):
    (tp, fp, fn, support), _ = confusion_counts(y_true, y_pred, mode, from_logits, ignore_index, per_image, data_format,
                                                sample_weight, keep_target=False)
    return dice_score(tp, fp, fn, support, smooth)


@Options(**COMMON)
def dice_loss(y_true: Tensor, y_pred: Tensor, mode: str = "multiclass", from_logits: bool = False,
              ignore_index: Optional[int] = None, per_image: bool = False, smooth: float = 0.0,
              data_format: str = "channels_last", sample_weight: Optional[Tensor] = None) -> Tensor:
    r"""Soft Dice loss, mean over the classes.

    $$\ell = \operatorname{mean}_c\, \Bigl(1 - \frac{2\,TP_c + s}{2\,TP_c + FP_c + FN_c + s}\Bigr),\quad
      TP_c = \textstyle\sum_i p_{ic}\, y_{ic}$$

    with soft counts summed over the pixels of each image (`per_image`) or
    of the batch. Equals segmentation_models_pytorch's `DiceLoss` and, for
    one channel without `smooth`, Keras' `dice` over the whole batch.

    Args:
        y_true: Targets (see the module docstring for the layouts).
        y_pred: Probabilities, or logits with `from_logits=True`.
{common}
        sample_weight: Per-image (or per-pixel) weights, `per_image=False` only.

    Returns:
        `(B,)` with `per_image=True`, else a scalar.

    Reference:
        Milletari et al., "V-Net", 3DV 2016, https://arxiv.org/abs/1606.04797

    Examples:
        >>> y_true = [[[0], [1]], [[1], [1]]]  # (B=2, W=2) label maps, 1-D "images"
        >>> y_pred = [[[0.8, 0.2], [0.4, 0.6]], [[0.3, 0.7], [0.1, 0.9]]]
        >>> round(float(dice_loss(y_true, y_pred, mode="multiclass")), 4)
        0.2849
    """
    return run(_dice_core, y_true, y_pred, sample_weight, mode=mode, from_logits=from_logits,
               ignore_index=ignore_index, per_image=per_image, data_format=data_format, smooth=smooth)


@compiled_on_jax
def _jaccard_core(y_true, y_pred, mode, from_logits, ignore_index, per_image, data_format, smooth, sample_weight=None):
    (tp, fp, fn, support), _ = confusion_counts(y_true, y_pred, mode, from_logits, ignore_index, per_image, data_format,
                                                sample_weight, keep_target=False)
    return present_mean(1.0 - safe_ratio(tp + smooth, tp + fp + fn + smooth), support)


@Options(**COMMON)
def jaccard_loss(y_true: Tensor, y_pred: Tensor, mode: str = "multiclass", from_logits: bool = False,
                 ignore_index: Optional[int] = None, per_image: bool = False, smooth: float = 0.0,
                 data_format: str = "channels_last", sample_weight: Optional[Tensor] = None) -> Tensor:
    r"""Soft Jaccard (intersection over union) loss, mean over the classes.

    $$\ell = \operatorname{mean}_c\, \Bigl(1 - \frac{TP_c + s}{TP_c + FP_c + FN_c + s}\Bigr)$$

    Equals segmentation_models_pytorch's `JaccardLoss`.

    Args:
        y_true: Targets.
        y_pred: Probabilities, or logits with `from_logits=True`.
{common}
        sample_weight: Per-image (or per-pixel) weights, `per_image=False` only.

    Returns:
        `(B,)` with `per_image=True`, else a scalar.

    Reference:
        Rahman & Wang, "Optimizing Intersection-Over-Union in Deep Neural
        Networks for Image Segmentation", ISVC 2016.

    Examples:
        >>> y_true = [[[0], [1]], [[1], [1]]]
        >>> y_pred = [[[0.8, 0.2], [0.4, 0.6]], [[0.3, 0.7], [0.1, 0.9]]]
        >>> round(float(jaccard_loss(y_true, y_pred)), 4)
        0.434
    """
    return run(_jaccard_core, y_true, y_pred, sample_weight, mode=mode, from_logits=from_logits,
               ignore_index=ignore_index, per_image=per_image, data_format=data_format, smooth=smooth)


# --------------------------------------------------------------------------- Tversky, generalized Dice, MCC


@compiled_on_jax
def _focal_tversky_core(y_true, y_pred, mode, from_logits, ignore_index, per_image, data_format, smooth, alpha,
                        beta, gamma, sample_weight=None):
    (tp, fp, fn, support), _ = confusion_counts(y_true, y_pred, mode, from_logits, ignore_index, per_image, data_format,
                                                sample_weight, keep_target=False)
    index = safe_ratio(tp + smooth, tp + alpha * fp + beta * fn + smooth)
    return present_mean(safe_pow(ops.maximum(1.0 - index, 0.0), gamma), support)


@Options(alpha=number(low=0.0), beta=number(low=0.0), gamma=number(low=0.0, low_open=True), **COMMON)
def focal_tversky_loss(y_true: Tensor, y_pred: Tensor, alpha: float = 0.3, beta: float = 0.7, gamma: float = 0.75,
                       mode: str = "multiclass", from_logits: bool = False, ignore_index: Optional[int] = None,
                       per_image: bool = False, smooth: float = 1.0, data_format: str = "channels_last",
                       sample_weight: Optional[Tensor] = None) -> Tensor:
    r"""Focal Tversky loss, mean over the classes.

    $$TI_c = \frac{TP_c + s}{TP_c + \alpha FP_c + \beta FN_c + s},\qquad
      \ell = \operatorname{mean}_c (1 - TI_c)^{\gamma}$$

    `alpha` weighs false positives and `beta` false negatives (Keras'
    `Tversky` convention); `alpha = beta = 0.5, gamma = 1` is the Dice loss.
    The defaults are the paper's (false negatives weighed 0.7, exponent
    `1/(4/3)`). The gradient stays finite where `TI = 1`.
    segmentation_models_pytorch's `TverskyLoss(gamma=...)` raises the
    class mean to `gamma` instead (the same for one class).

    Args:
        y_true: Targets.
        y_pred: Probabilities, or logits with `from_logits=True`.
        alpha: Weight of the false positives, `>= 0`.
        beta: Weight of the false negatives, `>= 0`.
        gamma: Focal exponent, `> 0`.
{common}
        sample_weight: Per-image (or per-pixel) weights, `per_image=False` only.

    Returns:
        `(B,)` with `per_image=True`, else a scalar.

    Reference:
        Abraham & Khan, "A Novel Focal Tversky Loss Function with Improved
        Attention U-Net for Lesion Segmentation", ISBI 2019,
        https://arxiv.org/abs/1810.07842

    Examples:
        >>> y_true = [[[0], [1]], [[1], [1]]]
        >>> y_pred = [[[0.8, 0.2], [0.4, 0.6]], [[0.3, 0.7], [0.1, 0.9]]]
        >>> round(float(focal_tversky_loss(y_true, y_pred)), 4)
        0.2627
    """
    return run(_focal_tversky_core, y_true, y_pred, sample_weight, mode=mode, from_logits=from_logits,
               ignore_index=ignore_index, per_image=per_image, data_format=data_format, smooth=smooth,
               alpha=alpha, beta=beta, gamma=gamma)


@compiled_on_jax
def _generalized_dice_core(y_true, y_pred, mode, from_logits, ignore_index, per_image, data_format, smooth,
                           weight_type, sample_weight=None):
    (tp, fp, fn, support), _ = confusion_counts(y_true, y_pred, mode, from_logits, ignore_index, per_image, data_format,
                                                sample_weight, keep_target=False)
    present = support > 0
    if weight_type == "uniform":
        w = ops.ones_like(support)
    else:
        safe = ops.where(present, support, ops.ones_like(support))
        w = 1.0 / (safe * safe if weight_type == "square" else safe)
        w = ops.where(present, w, ops.zeros_like(w))
    # MONAI: an absent class gets the largest weight of the present ones
    w = w + ops.cast(ops.logical_not(present), w.dtype) * ops.max(w, axis=-1, keepdims=True)
    numerator = 2.0 * ops.sum(w * tp, axis=-1) + smooth
    denominator = ops.sum(w * (2.0 * tp + fp + fn), axis=-1) + smooth
    return 1.0 - safe_ratio(numerator, denominator)


@Options(weight_type=choice(*WEIGHT_TYPES), **COMMON)
def generalized_dice_loss(y_true: Tensor, y_pred: Tensor, weight_type: str = "square", mode: str = "multiclass",
                          from_logits: bool = False, ignore_index: Optional[int] = None, per_image: bool = False,
                          smooth: float = 1e-5, data_format: str = "channels_last",
                          sample_weight: Optional[Tensor] = None) -> Tensor:
    r"""Generalized Dice loss: one Dice over the classes, each weighted by
    the inverse (squared) size of its target.

    $$w_c = 1 / (\textstyle\sum_i y_{ic})^2,\qquad
      \ell = 1 - \frac{2 \sum_c w_c TP_c + s}{\sum_c w_c (2 TP_c + FP_c + FN_c) + s}$$

    As MONAI's `GeneralizedDiceLoss` (`w_type="square"`, `smooth_nr =
    smooth_dr = smooth`, `batch = not per_image`): a class absent from the
    target gets the largest weight of the present classes.

    Args:
        y_true: Targets.
        y_pred: Probabilities, or logits with `from_logits=True`.
        weight_type: `"square"` (`1/n^2`), `"simple"` (`1/n`) or `"uniform"`.
{common}
        sample_weight: Per-image (or per-pixel) weights, `per_image=False` only.

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
               ignore_index=ignore_index, per_image=per_image, data_format=data_format, smooth=smooth,
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
class DiceLoss(OverlapLoss):
    """Soft Dice loss for binary, multi-class and multi-label segmentation.

    See `dice_loss`. Unlike `keras.losses.Dice` it takes label maps,
    logits, `ignore_index`, per-image averaging, channels-first inputs, and
    averages the Dice of each class rather than pooling the channels.

    Args:
{args}

    Reference:
        Milletari et al., "V-Net", 3DV 2016.

    Examples:
        >>> loss = DiceLoss(mode="multiclass")
        >>> round(float(loss([[[0], [1]], [[1], [1]]], [[[0.8, 0.2], [0.4, 0.6]], [[0.3, 0.7], [0.1, 0.9]]])), 4)
        0.2849
    """

    fn = staticmethod(dice_loss)

    def __init__(self, mode="multiclass", from_logits=False, ignore_index=None, per_image=False, smooth=0.0,
                 data_format="channels_last", reduction="sum_over_batch_size", name="dice_loss", dtype=None,
                 cross_replica="gather"):
        super().__init__(mode, from_logits, ignore_index, per_image, smooth, data_format, reduction, name, dtype,
                         cross_replica=cross_replica)


@register
class JaccardLoss(OverlapLoss):
    """Soft Jaccard (IoU) loss. See `jaccard_loss`.

    Args:
{args}

    Reference:
        Rahman & Wang, "Optimizing Intersection-Over-Union in Deep Neural
        Networks for Image Segmentation", ISVC 2016.

    Examples:
        >>> loss = JaccardLoss()
        >>> round(float(loss([[[0], [1]], [[1], [1]]], [[[0.8, 0.2], [0.4, 0.6]], [[0.3, 0.7], [0.1, 0.9]]])), 4)
        0.434
    """

    fn = staticmethod(jaccard_loss)

    def __init__(self, mode="multiclass", from_logits=False, ignore_index=None, per_image=False, smooth=0.0,
                 data_format="channels_last", reduction="sum_over_batch_size", name="jaccard_loss", dtype=None,
                 cross_replica="gather"):
        super().__init__(mode, from_logits, ignore_index, per_image, smooth, data_format, reduction, name, dtype,
                         cross_replica=cross_replica)


@register
class FocalTverskyLoss(OverlapLoss):
    """Focal Tversky loss. See `focal_tversky_loss`.

    Args:
        alpha: Weight of the false positives.
        beta: Weight of the false negatives.
        gamma: Focal exponent, `> 0`.
{args}

    Reference:
        Abraham & Khan, "A Novel Focal Tversky Loss Function with Improved
        Attention U-Net for Lesion Segmentation", ISBI 2019.

    Examples:
        >>> loss = FocalTverskyLoss(alpha=0.3, beta=0.7, gamma=0.75)
        >>> round(float(loss([[[0], [1]], [[1], [1]]], [[[0.8, 0.2], [0.4, 0.6]], [[0.3, 0.7], [0.1, 0.9]]])), 4)
        0.2627
    """

    fn = staticmethod(focal_tversky_loss)

    def __init__(self, alpha=0.3, beta=0.7, gamma=0.75, mode="multiclass", from_logits=False, ignore_index=None,
                 per_image=False, smooth=1.0, data_format="channels_last", reduction="sum_over_batch_size",
                 name="focal_tversky_loss", dtype=None,
                 cross_replica="gather"):
        super().__init__(mode, from_logits, ignore_index, per_image, smooth, data_format, reduction, name, dtype,
                         cross_replica=cross_replica, alpha=alpha, beta=beta, gamma=gamma)


@register
class GeneralizedDiceLoss(OverlapLoss):
    """Generalized Dice loss. See `generalized_dice_loss`.

    Args:
        weight_type: `"square"`, `"simple"` or `"uniform"` class weights.
{args}

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
                 name="generalized_dice_loss", dtype=None,
                 cross_replica="gather"):
        super().__init__(mode, from_logits, ignore_index, per_image, smooth, data_format, reduction, name, dtype,
                         cross_replica=cross_replica, weight_type=weight_type)


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
        super().__init__(mode, from_logits, ignore_index, per_image, smooth, data_format, reduction, name, dtype,
                         cross_replica=cross_replica)


document(dice_loss, jaccard_loss, focal_tversky_loss, generalized_dice_loss, mcc_loss,
         DiceLoss, JaccardLoss, FocalTverskyLoss, GeneralizedDiceLoss, MCCLoss)
