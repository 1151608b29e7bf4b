"""Weighted sums of Dice with (focal or class-balanced) cross-entropy: Dice +
cross-entropy, Dice + focal, and the Combo loss."""

from __future__ import annotations

from typing import Any, Optional, Sequence, Union

from keras import ops

from keras_lossplus.backend import compiled_on_jax
from keras_lossplus.losses.base import register
from keras_lossplus.losses.options import Options, number, number_or_list, optional
from keras_lossplus.losses.segmentation import monai_terms
from keras_lossplus.losses.segmentation.base import (
    COMMON,
    OverlapLoss,
    arguments,
    confusion_counts,
    document,
    is_label_map,
    pixel_crossentropy,
    run,
    weighted_mean,
)
from keras_lossplus.losses.segmentation.overlap import OVERLAP
from keras_lossplus.losses.segmentation.scores import EPS, Scoring, joint_rules

Tensor = Any
Alpha = Union[None, float, Sequence[float]]

# --------------------------------------------------------------------------- Dice + cross-entropy


def _balanced_crossentropy(raw, target, mode, from_logits, beta):
    """`-[beta y log p + (1 - beta)(1 - y) log(1 - p)]` per entry (summed over
    the classes for `"multiclass"`), as in Taghanaki et al.'s Combo loss."""
    if mode != "multiclass":
        log_p, log_not_p = monai_terms.sigmoid_logs(raw, from_logits)
    else:
        p = ops.clip(ops.softmax(raw, axis=-1) if from_logits else raw, EPS, 1.0 - EPS)
        log_p, log_not_p = ops.log(p), ops.log(1.0 - p)
    terms = -(beta * target * log_p + (1.0 - beta) * (1.0 - target) * log_not_p)
    return ops.sum(terms, axis=-1, keepdims=True) if mode == "multiclass" else terms


def _check_alpha(alpha, channels):
    if isinstance(alpha, tuple) and len(alpha) != channels:
        raise ValueError(
            f"Argument `alpha` must be a number or hold one weight per channel of `y_pred` ({channels}). "
            f"Received: alpha={list(alpha)!r}"
        )


@compiled_on_jax
def _compound_core(y_true, y_pred, mode, from_logits, ignore_index, per_image, data_format, scoring, term,
                   dice_weight, ce_weight, gamma=0.0, alpha=None, beta=None, sample_weight=None):
    counts, (raw, target, weights, axes) = confusion_counts(
        y_true, y_pred, mode, from_logits, ignore_index, per_image, data_format, sample_weight,
        squared=scoring.squared, soft_labels=scoring.soft_labels)
    _check_alpha(alpha, raw.shape[-1])
    monai = scoring.convention == "monai"
    if term == "balanced":
        ce = weighted_mean(_balanced_crossentropy(raw, target, mode, from_logits, beta), weights, axes)
    elif monai and term == "focal":
        ce = monai_terms.focal(raw, target, weights, axes, from_logits, scoring, gamma, alpha)
    elif monai:
        label_map = is_label_map(y_true, y_pred, mode, data_format)
        ce = monai_terms.crossentropy(raw, target, weights, axes, label_map, from_logits, scoring)
    else:
        alpha = None if alpha is None else ops.convert_to_tensor(alpha, dtype=raw.dtype)
        ce = weighted_mean(pixel_crossentropy(raw, target, mode, from_logits, gamma, alpha), weights, axes)
    return dice_weight * scoring.dice(counts) + ce_weight * ce


def _compound(y_true, y_pred, sample_weight, arguments, **terms):
    """Call `_compound_core` with the common options of `arguments` (a
    function's `locals()`) and its own `terms`."""
    alpha = terms.get("alpha")
    terms["alpha"] = tuple(alpha) if isinstance(alpha, list) else alpha  # hashable: one compilation on JAX
    common = {k: arguments[k] for k in ("mode", "from_logits", "ignore_index", "per_image", "data_format")}
    return run(_compound_core, y_true, y_pred, sample_weight, scoring=Scoring.of(arguments), **common, **terms)


_weight = number(low=0.0)
"""A term's weight, `>= 0`."""

CONVENTION_TERMS = """
    With `convention="monai"` the Dice term follows MONAI's rule (every
    class scored, `class_weights` as MONAI's `weight`) and so does the
    pixel term: {monai}
    MONAI reads its input as logits there, so the numbers are MONAI's with
    `from_logits=True`. In the default convention `class_weights`,
    `classes` and `include_background` shape the Dice term only."""


@Options(joint=joint_rules, dice_weight=_weight, crossentropy_weight=_weight, **OVERLAP)
def dice_crossentropy_loss(y_true: Tensor, y_pred: Tensor, dice_weight: float = 1.0,
                           crossentropy_weight: float = 1.0, mode: str = "multiclass", from_logits: bool = False,
                           ignore_index: Optional[int] = None, per_image: bool = False, smooth: Any = 0.0,
                           data_format: str = "channels_last", sample_weight: Optional[Tensor] = None, *,
                           class_weights: Optional[Sequence[float]] = None, classes: Optional[Sequence[int]] = None,
                           include_background: bool = True, log_loss: bool = False, squared: bool = False,
                           soft_labels: bool = False, eps: float = EPS, convention: str = "smp") -> Tensor:
    r"""Weighted sum of the Dice loss and the pixel-wise cross-entropy.

    $$\ell = \lambda_{dice}\,\ell_{Dice} + \lambda_{ce}\,\operatorname{mean}_{pixels} \mathrm{CE}$$

    The Dice term is `dice_loss` with the same options. The cross-entropy is
    categorical for `"multiclass"` and binary (mean over the channels too)
    otherwise, averaged over the counted pixels.
{convention}

    Args:
        y_true: Targets.
        y_pred: Probabilities, or logits with `from_logits=True`.
        dice_weight: Weight of the Dice term, `>= 0` (MONAI's `lambda_dice`).
        crossentropy_weight: Weight of the cross-entropy term, `>= 0`
            (MONAI's `lambda_ce`).
{common}
        sample_weight: Per-image (or per-pixel) weights, `per_image=False` only.
{scoring}

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
    return _compound(y_true, y_pred, sample_weight, locals(), term="crossentropy", dice_weight=dice_weight,
                     ce_weight=crossentropy_weight)


@Options(joint=joint_rules, gamma=number(low=0.0), alpha=optional(number_or_list(low=0.0)), dice_weight=_weight,
         focal_weight=_weight, **OVERLAP)
def dice_focal_loss(y_true: Tensor, y_pred: Tensor, gamma: float = 2.0, alpha: Alpha = None,
                    dice_weight: float = 1.0, focal_weight: float = 1.0, mode: str = "multiclass",
                    from_logits: bool = False, ignore_index: Optional[int] = None, per_image: bool = False,
                    smooth: Any = 0.0, data_format: str = "channels_last", sample_weight: Optional[Tensor] = None, *,
                    class_weights: Optional[Sequence[float]] = None, classes: Optional[Sequence[int]] = None,
                    include_background: bool = True, log_loss: bool = False, squared: bool = False,
                    soft_labels: bool = False, eps: float = EPS, convention: str = "smp") -> Tensor:
    r"""Weighted sum of the Dice loss and the pixel-wise focal loss.

    $$\ell = \lambda_{dice}\,\ell_{Dice} + \lambda_{focal}\,\operatorname{mean}_{pixels}
      \bigl(-\alpha_t (1 - p_t)^{\gamma} \log p_t\bigr)$$

    The Dice term is `dice_loss` with the same options. The focal term is
    `keras_lossplus.losses.focal_loss` per pixel (categorical for
    `"multiclass"`, summed over the classes; binary per channel otherwise),
    averaged over the counted pixels.
{convention}

    Args:
        y_true: Targets.
        y_pred: Probabilities, or logits with `from_logits=True`.
        gamma: Focusing parameter, `>= 0`.
        alpha: `None`, a number (sigmoid terms: the positives' weight, in
            `[0, 1]`) or one weight per channel (sigmoid terms: `alpha_c`
            for positives and `1 - alpha_c` for negatives; with
            `convention="monai"` `alpha_c` for positives and 1 for
            negatives, as MONAI).
        dice_weight: Weight of the Dice term, `>= 0` (MONAI's `lambda_dice`).
        focal_weight: Weight of the focal term, `>= 0` (MONAI's
            `lambda_focal`).
{common}
        sample_weight: Per-image (or per-pixel) weights, `per_image=False` only.
{scoring}

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
    return _compound(y_true, y_pred, sample_weight, locals(), term="focal", dice_weight=dice_weight,
                     ce_weight=focal_weight, gamma=gamma, alpha=alpha)


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
    return _compound(y_true, y_pred, sample_weight, locals(), term="balanced", dice_weight=1.0 - alpha,
                     ce_weight=alpha, beta=beta)


@register
class DiceCrossentropyLoss(OverlapLoss):
    """Dice plus cross-entropy. See `dice_crossentropy_loss`; with
    `convention="monai"`, MONAI's `DiceCELoss`.

    Args:
        dice_weight: Weight of the Dice term.
        crossentropy_weight: Weight of the cross-entropy term.
{args}
{scoring}

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
                 reduction="sum_over_batch_size", name="dice_crossentropy_loss", dtype=None, cross_replica="gather",
                 *, class_weights=None, classes=None, include_background=True, log_loss=False, squared=False,
                 soft_labels=False, eps=EPS, convention="smp"):
        super().__init__(**arguments(locals()))


@register
class DiceFocalLoss(OverlapLoss):
    """Dice plus focal loss. See `dice_focal_loss`; with
    `convention="monai"`, MONAI's `DiceFocalLoss`.

    Args:
        gamma: Focusing parameter.
        alpha: `None`, a number or one weight per channel.
        dice_weight: Weight of the Dice term.
        focal_weight: Weight of the focal term.
{args}
{scoring}

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
                 reduction="sum_over_batch_size", name="dice_focal_loss", dtype=None, cross_replica="gather", *,
                 class_weights=None, classes=None, include_background=True, log_loss=False, squared=False,
                 soft_labels=False, eps=EPS, convention="smp"):
        super().__init__(**arguments(locals()))


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
                 dtype=None, cross_replica="gather"):
        super().__init__(**arguments(locals()))


_MONAI_CROSSENTROPY = """a softmax cross-entropy over the channels whenever there are several
    (MONAI's `DiceCELoss(sigmoid=True)` included; with `class_weights` and a
    label map divided by the pixels' class weights, as torch's
    `CrossEntropyLoss`), a binary cross-entropy with
    `pos_weight=class_weights[0]` for one channel."""
_MONAI_FOCAL = """a sigmoid focal term per channel whatever `mode` (MONAI's
    `DiceFocalLoss(softmax=True)` included), averaged over `B x C x spatial`
    (the chosen channels), each channel scaled by its class weight."""
dice_crossentropy_loss.__doc__ = dice_crossentropy_loss.__doc__.replace(
    "{convention}", CONVENTION_TERMS.format(monai=_MONAI_CROSSENTROPY))
dice_focal_loss.__doc__ = dice_focal_loss.__doc__.replace("{convention}", CONVENTION_TERMS.format(monai=_MONAI_FOCAL))
document(dice_crossentropy_loss, dice_focal_loss, combo_loss, DiceCrossentropyLoss, DiceFocalLoss, ComboLoss)
