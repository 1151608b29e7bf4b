"""Soft overlap losses: Dice, Jaccard and focal Tversky, with the scoring
options of `keras_lossplus.losses.segmentation.scores`."""

from __future__ import annotations

from typing import Any, Optional, Sequence

from keras_lossplus.backend import compiled_on_jax
from keras_lossplus.losses.base import register
from keras_lossplus.losses.options import Options, number
from keras_lossplus.losses.segmentation.base import (
    COMMON,
    OverlapLoss,
    arguments,
    confusion_counts,
    document,
    run,
)
from keras_lossplus.losses.segmentation.scores import EPS, SCORING, Scoring, joint_rules

Tensor = Any
Smooth = Any  # a number, or a pair (numerator, denominator)

OVERLAP = {**COMMON, **SCORING}
"""The options of the Dice, Jaccard and Tversky losses (and of the Dice term
of the compound losses)."""


def counts_of(y_true, y_pred, mode, from_logits, ignore_index, per_image, data_format, scoring, sample_weight):
    """The soft confusion counts `(TP, FP, FN, support)` per class, by the
    backend's own kernel where it applies."""
    counts, _ = confusion_counts(y_true, y_pred, mode, from_logits, ignore_index, per_image, data_format,
                                 sample_weight, keep_target=False, squared=scoring.squared,
                                 soft_labels=scoring.soft_labels)
    return counts


# --------------------------------------------------------------------------- Dice and Jaccard


@compiled_on_jax
def _dice_core(y_true, y_pred, mode, from_logits, ignore_index, per_image, data_format, scoring, sample_weight=None):
    counts = counts_of(y_true, y_pred, mode, from_logits, ignore_index, per_image, data_format, scoring, sample_weight)
    return scoring.dice(counts)


@Options(joint=joint_rules, **OVERLAP)
def dice_loss(y_true: Tensor, y_pred: Tensor, mode: str = "multiclass", from_logits: bool = False,
              ignore_index: Optional[int] = None, per_image: bool = False, smooth: Smooth = 0.0,
              data_format: str = "channels_last", sample_weight: Optional[Tensor] = None, *,
              class_weights: Optional[Sequence[float]] = None, classes: Optional[Sequence[int]] = None,
              include_background: bool = True, log_loss: bool = False, squared: bool = False,
              soft_labels: bool = False, eps: float = EPS, convention: str = "smp") -> Tensor:
    r"""Soft Dice loss, mean over the classes.

    $$\ell = \operatorname{mean}_c\, \Bigl(1 - \frac{2\,TP_c + s}{2\,TP_c + FP_c + FN_c + s}\Bigr),\quad
      TP_c = \textstyle\sum_i p_{ic}\, y_{ic}$$

    with soft counts summed over the pixels of each image (`per_image`) or
    of the batch. segmentation_models_pytorch (>= 0.4) computes Dice as the
    Tversky score with `alpha = beta = 1/2`, `(TP + s) / (TP + (FP + FN) / 2 + s)`,
    that is `(2 TP + 2 s) / (2 TP + FP + FN + 2 s)`: its `DiceLoss(smooth=s)`
    is `DiceLoss(smooth=2 * s)` here (every other option by its name).
    MONAI's `DiceLoss(smooth_nr=a, smooth_dr=b)` is `smooth=(a, b)` with
    `convention="monai"`. For one channel without `smooth`, Keras' `dice`
    over the whole batch.

    Args:
        y_true: Targets (see the module docstring for the layouts).
        y_pred: Probabilities, or logits with `from_logits=True`.
{common}
        sample_weight: Per-image (or per-pixel) weights, `per_image=False` only.
{scoring}

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
               ignore_index=ignore_index, per_image=per_image, data_format=data_format, scoring=Scoring.of(locals()))


@compiled_on_jax
def _jaccard_core(y_true, y_pred, mode, from_logits, ignore_index, per_image, data_format, scoring,
                  sample_weight=None):
    counts = counts_of(y_true, y_pred, mode, from_logits, ignore_index, per_image, data_format, scoring, sample_weight)
    return scoring.tversky(counts, 1.0, 1.0)


@Options(joint=joint_rules, **OVERLAP)
def jaccard_loss(y_true: Tensor, y_pred: Tensor, mode: str = "multiclass", from_logits: bool = False,
                 ignore_index: Optional[int] = None, per_image: bool = False, smooth: Smooth = 0.0,
                 data_format: str = "channels_last", sample_weight: Optional[Tensor] = None, *,
                 class_weights: Optional[Sequence[float]] = None, classes: Optional[Sequence[int]] = None,
                 include_background: bool = True, log_loss: bool = False, squared: bool = False,
                 soft_labels: bool = False, eps: float = EPS, convention: str = "smp") -> Tensor:
    r"""Soft Jaccard (intersection over union) loss, mean over the classes.

    $$\ell = \operatorname{mean}_c\, \Bigl(1 - \frac{TP_c + s}{TP_c + FP_c + FN_c + s}\Bigr)$$

    segmentation_models_pytorch's `JaccardLoss` with the same options.
    MONAI's `DiceLoss(jaccard=True, smooth_nr=a, smooth_dr=b)` computes
    `(2 TP + a) / (2 (TP + FP + FN) + b)`: `smooth=(a / 2, b / 2)` with
    `convention="monai"` here.

    Args:
        y_true: Targets.
        y_pred: Probabilities, or logits with `from_logits=True`.
{common}
        sample_weight: Per-image (or per-pixel) weights, `per_image=False` only.
{scoring}

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
               ignore_index=ignore_index, per_image=per_image, data_format=data_format, scoring=Scoring.of(locals()))


# --------------------------------------------------------------------------- focal Tversky


@compiled_on_jax
def _focal_tversky_core(y_true, y_pred, mode, from_logits, ignore_index, per_image, data_format, scoring, alpha,
                        beta, gamma, sample_weight=None):
    counts = counts_of(y_true, y_pred, mode, from_logits, ignore_index, per_image, data_format, scoring, sample_weight)
    return scoring.tversky(counts, alpha, beta, gamma)


@Options(joint=joint_rules, alpha=number(low=0.0), beta=number(low=0.0), gamma=number(low=0.0, low_open=True),
         **OVERLAP)
def focal_tversky_loss(y_true: Tensor, y_pred: Tensor, alpha: float = 0.3, beta: float = 0.7, gamma: float = 0.75,
                       mode: str = "multiclass", from_logits: bool = False, ignore_index: Optional[int] = None,
                       per_image: bool = False, smooth: Smooth = 1.0, data_format: str = "channels_last",
                       sample_weight: Optional[Tensor] = None, *, class_weights: Optional[Sequence[float]] = None,
                       classes: Optional[Sequence[int]] = None, include_background: bool = True,
                       log_loss: bool = False, squared: bool = False, soft_labels: bool = False, eps: float = EPS,
                       convention: str = "smp") -> Tensor:
    r"""Focal Tversky loss, mean over the classes.

    $$TI_c = \frac{TP_c + s}{TP_c + \alpha FP_c + \beta FN_c + s},\qquad
      \ell = \operatorname{mean}_c (1 - TI_c)^{\gamma}$$

    `alpha` weighs false positives and `beta` false negatives (Keras'
    `Tversky` convention); `alpha = beta = 0.5, gamma = 1` is the Dice loss
    with `smooth` doubled. The defaults are the paper's (false negatives
    weighed 0.7, exponent `1/(4/3)`). The gradient stays finite where
    `TI = 1`. With `gamma=1`: segmentation_models_pytorch's `TverskyLoss`
    (same `smooth`), and with `convention="monai"` and
    `smooth=(smooth_nr, smooth_dr)` MONAI's `TverskyLoss`.
    segmentation_models_pytorch's `TverskyLoss(gamma=g)` raises the class
    mean to `g` instead (the same for one class). With `log_loss`, each
    class's `-log(TI_c)` is raised to `gamma`.

    Args:
        y_true: Targets.
        y_pred: Probabilities, or logits with `from_logits=True`.
        alpha: Weight of the false positives, `>= 0`.
        beta: Weight of the false negatives, `>= 0`.
        gamma: Focal exponent, `> 0`.
{common}
        sample_weight: Per-image (or per-pixel) weights, `per_image=False` only.
{scoring}

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
               ignore_index=ignore_index, per_image=per_image, data_format=data_format, scoring=Scoring.of(locals()),
               alpha=alpha, beta=beta, gamma=gamma)


# --------------------------------------------------------------------------- classes


@register
class DiceLoss(OverlapLoss):
    """Soft Dice loss for binary, multi-class and multi-label segmentation.

    See `dice_loss` (segmentation_models_pytorch's `DiceLoss(smooth=s)` is
    `DiceLoss(smooth=2 * s)` here). Unlike `keras.losses.Dice` it takes
    label maps, logits, `ignore_index`, per-image averaging, channels-first
    inputs, and averages the Dice of each class rather than pooling the
    channels.

    Args:
{args}
{scoring}

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
                 cross_replica="gather", *, class_weights=None, classes=None, include_background=True,
                 log_loss=False, squared=False, soft_labels=False, eps=EPS, convention="smp"):
        super().__init__(**arguments(locals()))


@register
class JaccardLoss(OverlapLoss):
    """Soft Jaccard (IoU) loss. See `jaccard_loss`.

    Args:
{args}
{scoring}

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
                 cross_replica="gather", *, class_weights=None, classes=None, include_background=True,
                 log_loss=False, squared=False, soft_labels=False, eps=EPS, convention="smp"):
        super().__init__(**arguments(locals()))


@register
class FocalTverskyLoss(OverlapLoss):
    """Focal Tversky loss. See `focal_tversky_loss`.

    Args:
        alpha: Weight of the false positives.
        beta: Weight of the false negatives.
        gamma: Focal exponent, `> 0`.
{args}
{scoring}

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
                 name="focal_tversky_loss", dtype=None, cross_replica="gather", *, class_weights=None, classes=None,
                 include_background=True, log_loss=False, squared=False, soft_labels=False, eps=EPS,
                 convention="smp"):
        super().__init__(**arguments(locals()))


document(dice_loss, jaccard_loss, focal_tversky_loss, DiceLoss, JaccardLoss, FocalTverskyLoss)
