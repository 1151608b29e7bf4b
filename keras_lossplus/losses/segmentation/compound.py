"""Weighted sums of Dice with (focal or class-balanced) cross-entropy: Dice +
cross-entropy, Dice + focal, and the Combo loss."""

from __future__ import annotations

from typing import Any, Optional, Sequence, Union

from keras import ops

from keras_lossplus.backend import compiled_on_jax
from keras_lossplus.losses.base import register
from keras_lossplus.losses.options import Options, number, number_or_list, optional
from keras_lossplus.losses.segmentation.base import (
    COMMON,
    EPS,
    OverlapLoss,
    confusion_counts,
    dice_score,
    document,
    pixel_crossentropy,
    run,
    weighted_mean,
)

Tensor = Any
Alpha = Union[None, float, Sequence[float]]

# --------------------------------------------------------------------------- Dice + cross-entropy


def _balanced_crossentropy(raw, target, mode, from_logits, beta):
    """`-[beta y log p + (1 - beta)(1 - y) log(1 - p)]` per entry (summed over
    the classes for `"multiclass"`), as in Taghanaki et al.'s Combo loss."""
    if mode != "multiclass" and from_logits:
        log_p, log_not_p = ops.log_sigmoid(raw), ops.log_sigmoid(-raw)
    else:
        p = ops.softmax(raw, axis=-1) if from_logits else raw
        p = ops.clip(p, EPS, 1.0 - EPS)
        log_p, log_not_p = ops.log(p), ops.log(1.0 - p)
    terms = -(beta * target * log_p + (1.0 - beta) * (1.0 - target) * log_not_p)
    return ops.sum(terms, axis=-1, keepdims=True) if mode == "multiclass" else terms


@compiled_on_jax
def _compound_core(y_true, y_pred, mode, from_logits, ignore_index, per_image, data_format, smooth, dice_weight,
                   ce_weight, gamma, alpha, beta, sample_weight=None):
    (tp, fp, fn, support), (raw, target, weights, axes) = confusion_counts(
        y_true, y_pred, mode, from_logits, ignore_index, per_image, data_format, sample_weight)
    if beta is None:
        alpha = None if alpha is None else ops.convert_to_tensor(alpha, dtype=raw.dtype)
        ce = pixel_crossentropy(raw, target, mode, from_logits, gamma, alpha)
    else:
        ce = _balanced_crossentropy(raw, target, mode, from_logits, beta)
    return dice_weight * dice_score(tp, fp, fn, support, smooth) + ce_weight * weighted_mean(ce, weights, axes)


def _compound(y_true, y_pred, sample_weight, *, dice_weight, ce_weight, gamma=0.0, alpha=None, beta=None, **common):
    alpha = tuple(alpha) if isinstance(alpha, list) else alpha  # hashable: one cached compilation on JAX
    return run(_compound_core, y_true, y_pred, sample_weight, dice_weight=dice_weight, ce_weight=ce_weight,
               gamma=gamma, alpha=alpha, beta=beta, **common)


_weight = number(low=0.0)
"""A term's weight, `>= 0`."""


@Options(dice_weight=_weight, crossentropy_weight=_weight, **COMMON)
def dice_crossentropy_loss(y_true: Tensor, y_pred: Tensor, dice_weight: float = 1.0,
                           crossentropy_weight: float = 1.0, mode: str = "multiclass", from_logits: bool = False,
                           ignore_index: Optional[int] = None, per_image: bool = False, smooth: float = 0.0,
                           data_format: str = "channels_last", sample_weight: Optional[Tensor] = None) -> Tensor:
    r"""Weighted sum of the Dice loss and the pixel-wise cross-entropy.

    $$\ell = \lambda_{dice}\,\ell_{Dice} + \lambda_{ce}\,\operatorname{mean}_{pixels} \mathrm{CE}$$

    The cross-entropy is categorical for `"multiclass"` and binary (mean
    over the channels too) otherwise, averaged over the counted pixels, as
    MONAI's `DiceCELoss(lambda_dice, lambda_ce)`.

    Args:
        y_true: Targets.
        y_pred: Probabilities, or logits with `from_logits=True`.
        dice_weight: Weight of the Dice term, `>= 0`.
        crossentropy_weight: Weight of the cross-entropy term, `>= 0`.
{common}
        sample_weight: Per-image (or per-pixel) weights, `per_image=False` only.

    Returns:
        `(B,)` with `per_image=True`, else a scalar.

    Reference:
        Isensee et al., "nnU-Net", Nature Methods 2021 (Dice + CE),
        https://arxiv.org/abs/1809.10486

    Examples:
        >>> y_true = [[[0], [1]], [[1], [1]]]
        >>> y_pred = [[[0.8, 0.2], [0.4, 0.6]], [[0.3, 0.7], [0.1, 0.9]]]
        >>> round(float(dice_crossentropy_loss(y_true, y_pred)), 4)
        0.5839
    """
    return _compound(y_true, y_pred, sample_weight, dice_weight=dice_weight, ce_weight=crossentropy_weight, mode=mode,
                     from_logits=from_logits, ignore_index=ignore_index, per_image=per_image,
                     data_format=data_format, smooth=smooth)


@Options(gamma=number(low=0.0), alpha=optional(number_or_list(low=0.0)), dice_weight=_weight,
         focal_weight=_weight, **COMMON)
def dice_focal_loss(y_true: Tensor, y_pred: Tensor, gamma: float = 2.0, alpha: Alpha = None,
                    dice_weight: float = 1.0, focal_weight: float = 1.0, mode: str = "multiclass",
                    from_logits: bool = False, ignore_index: Optional[int] = None, per_image: bool = False,
                    smooth: float = 0.0, data_format: str = "channels_last",
                    sample_weight: Optional[Tensor] = None) -> Tensor:
    r"""Weighted sum of the Dice loss and the pixel-wise focal loss.

    $$\ell = \lambda_{dice}\,\ell_{Dice} + \lambda_{focal}\,\operatorname{mean}_{pixels}
      \bigl(-\alpha_t (1 - p_t)^{\gamma} \log p_t\bigr)$$

    The focal term is `keras_lossplus.losses.focal_loss` per pixel
    (categorical for `"multiclass"`, summed over the classes; binary per
    channel otherwise), averaged over the counted pixels, as MONAI's
    `DiceFocalLoss(lambda_dice, lambda_focal)`.

    Args:
        y_true: Targets.
        y_pred: Probabilities, or logits with `from_logits=True`.
        gamma: Focusing parameter, `>= 0`.
        alpha: `None`, a number (sigmoid modes: the positives' weight, in
            `[0, 1]`) or one weight per class.
        dice_weight: Weight of the Dice term, `>= 0`.
        focal_weight: Weight of the focal term, `>= 0`.
{common}
        sample_weight: Per-image (or per-pixel) weights, `per_image=False` only.

    Returns:
        `(B,)` with `per_image=True`, else a scalar.

    Reference:
        Zhu et al., "AnatomyNet", Medical Physics 2019 (Dice + focal),
        https://arxiv.org/abs/1808.05238; Lin et al., "Focal Loss for Dense
        Object Detection", ICCV 2017.

    Examples:
        >>> y_true = [[[0], [1]], [[1], [1]]]
        >>> y_pred = [[[0.8, 0.2], [0.4, 0.6]], [[0.3, 0.7], [0.1, 0.9]]]
        >>> round(float(dice_focal_loss(y_true, y_pred)), 4)
        0.3159
    """
    return _compound(y_true, y_pred, sample_weight, dice_weight=dice_weight, ce_weight=focal_weight, gamma=gamma,
                     alpha=alpha, mode=mode, from_logits=from_logits, ignore_index=ignore_index, per_image=per_image,
                     data_format=data_format, smooth=smooth)


@Options(alpha=number(low=0.0, high=1.0), beta=number(low=0.0, high=1.0), **COMMON)
def combo_loss(y_true: Tensor, y_pred: Tensor, alpha: float = 0.5, beta: float = 0.5, mode: str = "multiclass",
               from_logits: bool = False, ignore_index: Optional[int] = None, per_image: bool = False,
               smooth: float = 1.0, data_format: str = "channels_last",
               sample_weight: Optional[Tensor] = None) -> Tensor:
    r"""Combo loss: a class-balanced cross-entropy plus the Dice loss.

    $$\ell = \alpha\,\operatorname{mean}_{pixels}
      -\bigl[\beta\,y\log p + (1-\beta)(1-y)\log(1-p)\bigr] + (1-\alpha)\,\ell_{Dice}$$

    `beta > 0.5` penalises false negatives more than false positives. The
    paper subtracts the Dice coefficient; the Dice loss `1 - Dice` used here
    differs by the constant `1 - alpha`, so the gradients are the same. For
    `"multiclass"` the bracket is summed over the classes.

    Args:
        y_true: Targets.
        y_pred: Probabilities, or logits with `from_logits=True`.
        alpha: Weight of the cross-entropy term, in `[0, 1]`.
        beta: Weight of the positive term of the cross-entropy, in `[0, 1]`.
{common}
        sample_weight: Per-image (or per-pixel) weights, `per_image=False` only.

    Returns:
        `(B,)` with `per_image=True`, else a scalar.

    Reference:
        Taghanaki et al., "Combo loss: Handling input and output imbalance in
        multi-organ segmentation", CMIG 2019, https://arxiv.org/abs/1805.02798

    Examples:
        >>> y_true = [[[0], [1]], [[1], [1]]]
        >>> y_pred = [[[0.8, 0.2], [0.4, 0.6]], [[0.3, 0.7], [0.1, 0.9]]]
        >>> round(float(combo_loss(y_true, y_pred)), 4)
        0.258
    """
    return _compound(y_true, y_pred, sample_weight, dice_weight=1.0 - alpha, ce_weight=alpha, beta=beta, mode=mode,
                     from_logits=from_logits, ignore_index=ignore_index, per_image=per_image,
                     data_format=data_format, smooth=smooth)


@register
class DiceCrossentropyLoss(OverlapLoss):
    """Dice plus cross-entropy. See `dice_crossentropy_loss`.

    Args:
        dice_weight: Weight of the Dice term.
        crossentropy_weight: Weight of the cross-entropy term.
{args}

    Reference:
        Isensee et al., "nnU-Net", Nature Methods 2021.

    Examples:
        >>> loss = DiceCrossentropyLoss(dice_weight=1.0, crossentropy_weight=1.0)
        >>> round(float(loss([[[0], [1]], [[1], [1]]], [[[0.8, 0.2], [0.4, 0.6]], [[0.3, 0.7], [0.1, 0.9]]])), 4)
        0.5839
    """

    fn = staticmethod(dice_crossentropy_loss)

    def __init__(self, dice_weight=1.0, crossentropy_weight=1.0, mode="multiclass", from_logits=False,
                 ignore_index=None, per_image=False, smooth=0.0, data_format="channels_last",
                 reduction="sum_over_batch_size", name="dice_crossentropy_loss", dtype=None,
                 cross_replica="gather"):
        super().__init__(mode, from_logits, ignore_index, per_image, smooth, data_format, reduction, name, dtype,
                         cross_replica=cross_replica, dice_weight=dice_weight, crossentropy_weight=crossentropy_weight)


@register
class DiceFocalLoss(OverlapLoss):
    """Dice plus focal loss. See `dice_focal_loss`.

    Args:
        gamma: Focusing parameter.
        alpha: `None`, a number or one weight per class.
        dice_weight: Weight of the Dice term.
        focal_weight: Weight of the focal term.
{args}

    Reference:
        Zhu et al., "AnatomyNet", Medical Physics 2019; Lin et al., "Focal
        Loss for Dense Object Detection", ICCV 2017.

    Examples:
        >>> loss = DiceFocalLoss(gamma=2.0)
        >>> round(float(loss([[[0], [1]], [[1], [1]]], [[[0.8, 0.2], [0.4, 0.6]], [[0.3, 0.7], [0.1, 0.9]]])), 4)
        0.3159
    """

    fn = staticmethod(dice_focal_loss)

    def __init__(self, gamma=2.0, alpha=None, dice_weight=1.0, focal_weight=1.0, mode="multiclass",
                 from_logits=False, ignore_index=None, per_image=False, smooth=0.0, data_format="channels_last",
                 reduction="sum_over_batch_size", name="dice_focal_loss", dtype=None,
                 cross_replica="gather"):
        super().__init__(mode, from_logits, ignore_index, per_image, smooth, data_format, reduction, name, dtype,
                         cross_replica=cross_replica, gamma=gamma, alpha=alpha, dice_weight=dice_weight,
                         focal_weight=focal_weight)


@register
class ComboLoss(OverlapLoss):
    """Combo loss: class-balanced cross-entropy plus Dice. See `combo_loss`.

    Args:
        alpha: Weight of the cross-entropy term, in `[0, 1]`.
        beta: Weight of the positives in the cross-entropy, in `[0, 1]`.
{args}

    Reference:
        Taghanaki et al., "Combo loss: Handling input and output imbalance in
        multi-organ segmentation", CMIG 2019.

    Examples:
        >>> loss = ComboLoss(alpha=0.5, beta=0.5)
        >>> round(float(loss([[[0], [1]], [[1], [1]]], [[[0.8, 0.2], [0.4, 0.6]], [[0.3, 0.7], [0.1, 0.9]]])), 4)
        0.258
    """

    fn = staticmethod(combo_loss)

    def __init__(self, alpha=0.5, beta=0.5, mode="multiclass", from_logits=False, ignore_index=None, per_image=False,
                 smooth=1.0, data_format="channels_last", reduction="sum_over_batch_size", name="combo_loss",
                 dtype=None,
                 cross_replica="gather"):
        super().__init__(mode, from_logits, ignore_index, per_image, smooth, data_format, reduction, name, dtype,
                         cross_replica=cross_replica, alpha=alpha, beta=beta)


document(dice_crossentropy_loss, dice_focal_loss, combo_loss, DiceCrossentropyLoss, DiceFocalLoss, ComboLoss)
