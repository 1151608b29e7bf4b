"""Segmentation losses: soft overlap scores (Dice, Jaccard, focal Tversky,
generalized Dice, Matthews correlation), the Lovasz losses, and weighted sums
of Dice with (focal) cross-entropy.

Every loss takes the same layout and options (`keras_lossplus.losses.
segmentation_base`):

* `y_pred`: `(B, *spatial, C)` (1 to 3 spatial axes), or `(B, C, *spatial)`
  with `data_format="channels_first"`; probabilities, or logits with
  `from_logits=True`.
* `mode="binary"` (one channel, sigmoid), `"multiclass"` (softmax over `C >= 2`
  channels; `y_true` a label map `(B, *spatial)` / `(B, *spatial, 1)` or
  one-hot `(B, *spatial, C)`), `"multilabel"` (one sigmoid per channel,
  `y_true` 0/1 of the shape of `y_pred`).
* `ignore_index`: pixels whose label equals it count nowhere.
* `per_image=False` (default): one value for the whole batch (pixels of all
  images pooled, segmentation_models_pytorch's default); `sample_weight`
  weighs each image's pixels (a `(B, *spatial)` weight or Keras mask weighs
  each pixel). `per_image=True`: one value per image, averaged by Keras'
  `reduction` with `sample_weight` as for any per-sample loss.
* `smooth`: added to the numerator and denominator of the overlap scores.

As in segmentation_models_pytorch, a class with no target pixel contributes
0 to the overlap losses (its score is undefined) and the loss is the mean
over the `C` classes.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Union

from keras import ops

from keras_lossplus.backend import compiled_on_jax
from keras_lossplus.losses.base import check_choice, check_number, register, to_float_list
from keras_lossplus.losses.lovasz import LovaszLoss, lovasz_loss
from keras_lossplus.losses.segmentation_base import (
    EPS,
    SegmentationLoss,
    common_options,
    pixel_crossentropy,
    pixel_weights,
    prepare,
    present_mean,
    probabilities,
    reduce_axes,
    run,
    safe_ratio,
    soft_counts,
    weighted,
    weighted_mean,
)
from keras_lossplus.ops import safe_pow, safe_sqrt

Tensor = Any
Alpha = Union[None, float, Sequence[float]]
WEIGHT_TYPES = ("square", "simple", "uniform")

__all__ = [
    "ComboLoss",
    "DiceCrossentropyLoss",
    "DiceFocalLoss",
    "DiceLoss",
    "FocalTverskyLoss",
    "GeneralizedDiceLoss",
    "JaccardLoss",
    "LovaszLoss",
    "MCCLoss",
    "combo_loss",
    "dice_crossentropy_loss",
    "dice_focal_loss",
    "dice_loss",
    "focal_tversky_loss",
    "generalized_dice_loss",
    "jaccard_loss",
    "lovasz_loss",
    "mcc_loss",
]

_COMMON_ARGS = """        mode: `"binary"`, `"multiclass"` or `"multilabel"`.
        from_logits: Whether `y_pred` holds logits.
        ignore_index: Label of pixels that count nowhere, or `None`.
        per_image: One value per image (`True`) or for the whole batch.
        smooth: Added to numerator and denominator, `>= 0`.
        data_format: `"channels_last"` or `"channels_first"`."""


def _counts(y_true, y_pred, mode, from_logits, ignore_index, per_image, data_format, sample_weight):
    """Soft confusion counts per class (and the pieces the compound losses reuse)."""
    raw, target, valid = prepare(y_true, y_pred, mode, ignore_index, data_format)
    weights = pixel_weights(valid, sample_weight, raw)
    axes = reduce_axes(len(raw.shape), per_image)
    counts = soft_counts(target, probabilities(raw, mode, from_logits), weights, axes)
    return counts, (raw, target, weights, axes)


def _dice(tp, fp, fn, support, smooth):
    return present_mean(1.0 - safe_ratio(2.0 * tp + smooth, 2.0 * tp + fp + fn + smooth), support)


# --------------------------------------------------------------------------- Dice and Jaccard


@compiled_on_jax
def _dice_core(y_true, y_pred, mode, from_logits, ignore_index, per_image, data_format, smooth, sample_weight=None):
    (tp, fp, fn, support), _ = _counts(y_true, y_pred, mode, from_logits, ignore_index, per_image, data_format,
                                       sample_weight)
    return _dice(tp, fp, fn, support, smooth)


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
    (tp, fp, fn, support), _ = _counts(y_true, y_pred, mode, from_logits, ignore_index, per_image, data_format,
                                       sample_weight)
    return present_mean(1.0 - safe_ratio(tp + smooth, tp + fp + fn + smooth), support)


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
    (tp, fp, fn, support), _ = _counts(y_true, y_pred, mode, from_logits, ignore_index, per_image, data_format,
                                       sample_weight)
    index = safe_ratio(tp + smooth, tp + alpha * fp + beta * fn + smooth)
    return present_mean(safe_pow(ops.maximum(1.0 - index, 0.0), gamma), support)


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
    alpha = check_number("alpha", alpha, low=0.0)
    beta = check_number("beta", beta, low=0.0)
    gamma = check_number("gamma", gamma, low=0.0, low_open=True)
    return run(_focal_tversky_core, y_true, y_pred, sample_weight, mode=mode, from_logits=from_logits,
               ignore_index=ignore_index, per_image=per_image, data_format=data_format, smooth=smooth,
               alpha=alpha, beta=beta, gamma=gamma)


@compiled_on_jax
def _generalized_dice_core(y_true, y_pred, mode, from_logits, ignore_index, per_image, data_format, smooth,
                           weight_type, sample_weight=None):
    (tp, fp, fn, support), _ = _counts(y_true, y_pred, mode, from_logits, ignore_index, per_image, data_format,
                                       sample_weight)
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
    check_choice("weight_type", weight_type, WEIGHT_TYPES)
    return run(_generalized_dice_core, y_true, y_pred, sample_weight, mode=mode, from_logits=from_logits,
               ignore_index=ignore_index, per_image=per_image, data_format=data_format, smooth=smooth,
               weight_type=weight_type)


@compiled_on_jax
def _mcc_core(y_true, y_pred, mode, from_logits, ignore_index, per_image, data_format, smooth, sample_weight=None):
    (tp, fp, fn, _), (raw, target, weights, axes) = _counts(y_true, y_pred, mode, from_logits, ignore_index,
                                                            per_image, data_format, sample_weight)
    negatives = weighted(1.0 - target, weights)
    tn = ops.sum(negatives * (1.0 - probabilities(raw, mode, from_logits)), axis=axes) + smooth
    tp, fp, fn = tp + smooth, fp + smooth, fn + smooth
    denominator = safe_sqrt((tp + fp) * (tp + fn)) * safe_sqrt((tn + fp) * (tn + fn))
    return ops.mean(1.0 - safe_ratio(tp * tn - fp * fn, denominator), axis=-1)


def mcc_loss(y_true: Tensor, y_pred: Tensor, mode: str = "binary", from_logits: bool = False,
             ignore_index: Optional[int] = None, per_image: bool = False, smooth: float = 1e-5,
             data_format: str = "channels_last", sample_weight: Optional[Tensor] = None) -> Tensor:
    r"""Matthews correlation coefficient loss, mean over the classes.

    $$\ell = 1 - \frac{TP\,TN - FP\,FN}{\sqrt{(TP+FP)(TP+FN)(TN+FP)(TN+FN)}}$$

    with `smooth` added to each soft count (segmentation_models_pytorch's
    `MCCLoss(eps=1e-5)` for `mode="binary"`, which it alone supports).
    Unlike Dice, true negatives count: useful when the background matters.

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
    (tp, fp, fn, support), (raw, target, weights, axes) = _counts(
        y_true, y_pred, mode, from_logits, ignore_index, per_image, data_format, sample_weight)
    if beta is None:
        alpha = None if alpha is None else ops.convert_to_tensor(alpha, dtype=raw.dtype)
        ce = pixel_crossentropy(raw, target, mode, from_logits, gamma, alpha)
    else:
        ce = _balanced_crossentropy(raw, target, mode, from_logits, beta)
    return dice_weight * _dice(tp, fp, fn, support, smooth) + ce_weight * weighted_mean(ce, weights, axes)


def _compound(y_true, y_pred, sample_weight, *, dice_weight, ce_weight, gamma=0.0, alpha=None, beta=None, **common):
    return run(_compound_core, y_true, y_pred, sample_weight, dice_weight=dice_weight, ce_weight=ce_weight,
               gamma=gamma, alpha=alpha, beta=beta, **common)


def _check_weight(name: str, value: Any) -> float:
    return check_number(name, value, low=0.0)


def _check_focal_alpha(alpha: Alpha) -> Any:
    if alpha is None:
        return None
    if isinstance(alpha, (list, tuple)) or hasattr(alpha, "__array__"):
        return tuple(check_number("alpha", a, low=0.0) for a in to_float_list("alpha", alpha))
    return check_number("alpha", alpha, low=0.0)


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
    return _compound(y_true, y_pred, sample_weight, dice_weight=_check_weight("dice_weight", dice_weight),
                     ce_weight=_check_weight("crossentropy_weight", crossentropy_weight), mode=mode,
                     from_logits=from_logits, ignore_index=ignore_index, per_image=per_image,
                     data_format=data_format, smooth=smooth)


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
    return _compound(y_true, y_pred, sample_weight, dice_weight=_check_weight("dice_weight", dice_weight),
                     ce_weight=_check_weight("focal_weight", focal_weight),
                     gamma=check_number("gamma", gamma, low=0.0), alpha=_check_focal_alpha(alpha), mode=mode,
                     from_logits=from_logits, ignore_index=ignore_index, per_image=per_image,
                     data_format=data_format, smooth=smooth)


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
    alpha = check_number("alpha", alpha, low=0.0, high=1.0)
    beta = check_number("beta", beta, low=0.0, high=1.0)
    return _compound(y_true, y_pred, sample_weight, dice_weight=1.0 - alpha, ce_weight=alpha, beta=beta, mode=mode,
                     from_logits=from_logits, ignore_index=ignore_index, per_image=per_image,
                     data_format=data_format, smooth=smooth)


for _fn in (dice_loss, jaccard_loss, focal_tversky_loss, generalized_dice_loss, mcc_loss, dice_crossentropy_loss,
            dice_focal_loss, combo_loss):
    _fn.__doc__ = _fn.__doc__.replace("{common}", _COMMON_ARGS)


# --------------------------------------------------------------------------- classes


class _OverlapLoss(SegmentationLoss):
    """Shared constructor: the common options, then the loss's own."""

    def __init__(self, mode, from_logits, ignore_index, per_image, smooth, data_format, reduction, name, dtype,
                 cross_replica: str = "gather", **own: Any) -> None:
        options = common_options(mode, from_logits, ignore_index, per_image, data_format)
        options["smooth"] = check_number("smooth", smooth, low=0.0)
        super().__init__(reduction=reduction, name=name, dtype=dtype, cross_replica=cross_replica, **own, **options)


_CLASS_ARGS = """        mode, from_logits, ignore_index, per_image, smooth, data_format: See
            `keras_lossplus.losses.segmentation`.
        cross_replica: With `per_image=False`, `"gather"` (default): under
            `tf.distribute`, the loss of the global batch, all-gathered from the
            replicas; `"local"`: each replica's own slice (see
            `keras_lossplus.losses.BatchLoss`).
        reduction, name, dtype: As for every `keras.losses.Loss` (with
            `per_image=False` the loss is one value per batch: every
            reduction returns it)."""


@register
class DiceLoss(_OverlapLoss):
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
class JaccardLoss(_OverlapLoss):
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
class FocalTverskyLoss(_OverlapLoss):
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
        super().__init__(mode, from_logits, ignore_index, per_image, smooth, data_format, reduction, name, dtype, cross_replica=cross_replica,
                         alpha=check_number("alpha", alpha, low=0.0), beta=check_number("beta", beta, low=0.0),
                         gamma=check_number("gamma", gamma, low=0.0, low_open=True))


@register
class GeneralizedDiceLoss(_OverlapLoss):
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
        check_choice("weight_type", weight_type, WEIGHT_TYPES)
        super().__init__(mode, from_logits, ignore_index, per_image, smooth, data_format, reduction, name, dtype, cross_replica=cross_replica,
                         weight_type=weight_type)


@register
class MCCLoss(_OverlapLoss):
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


@register
class DiceCrossentropyLoss(_OverlapLoss):
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
        super().__init__(mode, from_logits, ignore_index, per_image, smooth, data_format, reduction, name, dtype, cross_replica=cross_replica,
                         dice_weight=_check_weight("dice_weight", dice_weight),
                         crossentropy_weight=_check_weight("crossentropy_weight", crossentropy_weight))


@register
class DiceFocalLoss(_OverlapLoss):
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
        alpha = _check_focal_alpha(alpha)
        super().__init__(mode, from_logits, ignore_index, per_image, smooth, data_format, reduction, name, dtype, cross_replica=cross_replica,
                         gamma=check_number("gamma", gamma, low=0.0),
                         alpha=list(alpha) if isinstance(alpha, tuple) else alpha,
                         dice_weight=_check_weight("dice_weight", dice_weight),
                         focal_weight=_check_weight("focal_weight", focal_weight))


@register
class ComboLoss(_OverlapLoss):
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
        super().__init__(mode, from_logits, ignore_index, per_image, smooth, data_format, reduction, name, dtype, cross_replica=cross_replica,
                         alpha=check_number("alpha", alpha, low=0.0, high=1.0),
                         beta=check_number("beta", beta, low=0.0, high=1.0))


for _cls in (DiceLoss, JaccardLoss, FocalTverskyLoss, GeneralizedDiceLoss, MCCLoss, DiceCrossentropyLoss,
             DiceFocalLoss, ComboLoss):
    _cls.__doc__ = _cls.__doc__.replace("{args}", _CLASS_ARGS)
