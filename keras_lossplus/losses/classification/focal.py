"""Focal loss (Lin et al. 2017): binary, multi-label and multi-class, with
per-class `alpha`."""

from __future__ import annotations

from typing import Any, Optional, Sequence, Union

import keras  # noqa: F401  (the docstring examples use it)
import numpy as np
from keras import ops

from keras_lossplus import backend as klp_backend
from keras_lossplus.losses.base import LossPlus, prepare_inputs, register, with_keras_mask
from keras_lossplus.losses.classification.terms import (
    sigmoid_terms,
    smooth_labels,
    softmax_terms,
)
from keras_lossplus.losses.options import (
    Options,
    check_number,
    choice,
    flag,
    number,
    optional,
    to_float_list,
)
from keras_lossplus.ops import safe_pow

Tensor = Any
Alpha = Union[None, float, Sequence[float]]

FOCAL_MODES = ("binary", "multiclass", "multilabel")


def _check_alpha(name: str, alpha: Any) -> Alpha:
    """`None`, a number `>= 0` or a non-empty list of them."""
    if alpha is None:
        return None
    if isinstance(alpha, (list, tuple)) or hasattr(alpha, "__array__"):
        return [check_number(name, v, low=0.0) for v in to_float_list(name, alpha)]
    return check_number(name, alpha, low=0.0)


def _label_index(name: str, value: Any) -> int:
    """An integer label (any sign: `-1`, `255`), as the segmentation losses
    take `ignore_index`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"Argument `{name}` must be an integer label or None. Received: {name}={value!r}")
    return int(value)


def _joint(options: dict) -> dict:
    """`alpha` weighs positives by `alpha` and negatives by `1 - alpha` unless
    `mode="multiclass"`: then every value must be at most 1. In the sigmoid
    modes `ignore_index` must not be a target value (0 or 1)."""
    alpha, mode, ignore = options["alpha"], options["mode"], options.get("ignore_index")
    values = alpha if isinstance(alpha, list) else [] if alpha is None else [alpha]
    if mode != "multiclass" and any(v > 1.0 for v in values):
        raise ValueError(
            f"Argument `alpha` must be in [0, 1] for mode={mode!r} (it weighs positives "
            f"by alpha and negatives by 1 - alpha). Received: alpha={alpha!r}"
        )
    if mode != "multiclass" and ignore in (0, 1):
        raise ValueError(
            f"Argument `ignore_index` must not be a target value (0 or 1) for mode={mode!r}; use a "
            f"label such as -1 or 255. Received: ignore_index={ignore!r}"
        )
    return options


def _alpha_tensor(alpha: Alpha, num_classes: int, dtype: Any) -> Optional[Tensor]:
    if alpha is None:
        return None
    if isinstance(alpha, list):
        if len(alpha) not in (1, num_classes):
            raise ValueError(
                f"Argument `alpha` has {len(alpha)} values but the predictions have "
                f"{num_classes} classes on the last axis; pass one value per class or a "
                "single number."
            )
    return ops.convert_to_tensor(alpha, dtype=dtype)


@Options(
    joint=_joint,
    mode=choice(*FOCAL_MODES),
    alpha=_check_alpha,
    gamma=number(low=0.0),
    from_logits=flag,
    label_smoothing=number(low=0.0, high=1.0),
    ignore_index=optional(_label_index),
)
def focal_loss(
    y_true: Tensor,
    y_pred: Tensor,
    gamma: float = 2.0,
    alpha: Alpha = None,
    from_logits: bool = False,
    mode: str = "binary",
    label_smoothing: float = 0.0,
    ignore_index: Optional[int] = None,
) -> Tensor:
    r"""Focal loss (Lin et al., 2017), per sample.

    Binary and multi-label (sigmoid outputs), averaged over the last axis:

    $$\ell = \operatorname{mean}_c\; \alpha_{t,c}\,(1 - p_{t,c})^{\gamma}\,
      \mathrm{BCE}(y_c, p_c), \quad p_t = y p + (1 - y)(1 - p),\;
      \alpha_t = y\alpha + (1 - y)(1 - \alpha)$$

    Multi-class (softmax outputs), summed over the classes:

    $$\ell = -\sum_c \alpha_c\, y_c\, (1 - p_c)^{\gamma} \log p_c$$

    `alpha` may be one number or one value per class, which Keras'
    `BinaryFocalCrossentropy` and `CategoricalFocalCrossentropy` do not
    offer; where the options overlap the values equal theirs
    (`alpha=None` is `apply_class_balancing=False`). From logits the terms
    are computed in logit space (no clipping of sigmoid outputs), with the
    exact gradient at every logit, 0 included.

    `ignore_index` (as in segmentation_models_pytorch's `FocalLoss`): in the
    sigmoid modes, entries of `y_true` equal to it count nowhere (the mean
    over the last axis is over the counted entries); in `"multiclass"` mode
    `y_true` is then a map of class ids (`y_pred.shape[:-1]`), and samples
    whose id equals it count nowhere. A sample with nothing counted has
    loss 0 and gradient 0; the `FocalLoss` class also leaves it out of the
    reduction's count (a Keras mask), so that `"sum_over_batch_size"` is the
    mean over the counted samples.

    Args:
        y_true: Targets in `[0, 1]`, the shape of `y_pred`; for
            `"multiclass"` one-hot (or soft) rows, or class ids of shape
            `y_pred.shape[:-1]` (or with a last axis of 1).
        y_pred: Probabilities, or logits with `from_logits=True`.
        gamma: Focusing parameter, `>= 0`; `0` gives (weighted) cross-entropy.
        alpha: `None`, a number, or one number per class (last axis).
        from_logits: Whether `y_pred` holds logits.
        mode: `"binary"`, `"multilabel"` (sigmoid per entry) or
            `"multiclass"` (softmax over the last axis).
        label_smoothing: Float in `[0, 1]`, applied as in Keras.
        ignore_index: `None`, or the integer label of targets that count
            nowhere (e.g. `-1` or `255`; not 0 or 1 in the sigmoid modes).

    Returns:
        The loss per sample: `y_pred.shape[:-1]`.

    Reference:
        Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017,
        https://arxiv.org/abs/1708.02002

    Examples:
        >>> y_true = [[0.0, 1.0], [1.0, 0.0]]
        >>> y_pred = [[0.3, 0.7], [0.2, 0.8]]
        >>> print(keras.ops.convert_to_numpy(focal_loss(y_true, y_pred, gamma=2.0)).round(4))
        [0.0321 1.03  ]
        >>> y_true = [[0.0, 255.0], [255.0, 255.0]]  # 255: ignored
        >>> print(keras.ops.convert_to_numpy(focal_loss(y_true, y_pred, gamma=2.0, ignore_index=255)).round(4))
        [0.0321 0.    ]
    """
    y_true, y_pred = prepare_inputs(y_true, y_pred)
    return _focal(y_true, y_pred, gamma, alpha, from_logits, mode, label_smoothing, ignore_index)[0]


def _class_ids(y_true: Tensor, y_pred: Tensor) -> Optional[Tensor]:
    """`y_true` as class ids of shape `y_pred.shape[:-1]` when it is a map of
    them (one axis less, or a last axis of 1), else `None` (one-hot rows)."""
    if len(y_true.shape) == len(y_pred.shape) - 1:
        return y_true
    if len(y_true.shape) == len(y_pred.shape) and y_true.shape[-1] == 1:
        return ops.squeeze(y_true, -1)
    return None


def _check_targets(y_true: Tensor, allowed: str, ignore_index: Optional[int], classes: Optional[int]) -> None:
    """Eagerly, refuse targets that are neither `allowed` nor `ignore_index`
    (a wrong ignore label, a NaN): class ids in `[0, classes - 1]`, or
    values in `[0, 1]` (`classes=None`)."""
    if not klp_backend.is_concrete(y_true):
        return
    values = np.asarray(ops.convert_to_numpy(y_true))
    if ignore_index is not None:
        values = values[values != ignore_index]
    with np.errstate(invalid="ignore"):
        if classes is None:
            bad = ~((values >= 0) & (values <= 1))
        else:
            bad = ~((values >= 0) & (values < classes) & (values == np.round(values)))
    if np.any(bad):
        extra = "" if ignore_index is None else f" or ignore_index={ignore_index}"
        raise ValueError(f"`y_true` must hold {allowed}{extra}. Received e.g. {values[bad].ravel()[:5].tolist()}")


def _focal(y_true, y_pred, gamma, alpha, from_logits, mode, label_smoothing, ignore_index) -> tuple:
    """`(loss per sample, counted)`: `counted` says which samples count
    (`None` without `ignore_index`)."""
    num_classes = y_pred.shape[-1] if len(y_pred.shape) else 1
    alpha = _alpha_tensor(alpha, num_classes, y_pred.dtype)

    if mode == "multiclass":
        if num_classes is not None and num_classes < 2:
            raise ValueError(
                "mode='multiclass' needs at least 2 classes on the last axis of `y_pred`; "
                f"received shape {tuple(y_pred.shape)}. Use mode='binary' for one output."
            )
        ids, keep = _class_ids(y_true, y_pred), None
        if ids is None and ignore_index is not None:
            raise ValueError(
                "`ignore_index` in mode='multiclass' applies to class ids (`y_true` of shape "
                f"y_pred.shape[:-1]); with one-hot `y_true` give ignored samples a zero `sample_weight` "
                f"instead. Received ignore_index={ignore_index} and y_true.shape={tuple(y_true.shape)}"
            )
        if ids is not None:
            _check_targets(ids, f"class ids in [0, {num_classes - 1}]", ignore_index, num_classes)
            if ignore_index is not None:
                keep = ops.not_equal(ids, float(ignore_index))
                ids = ops.where(keep, ids, ops.zeros_like(ids))
            classes = ops.arange(num_classes, dtype=ids.dtype)
            y_true = ops.cast(ops.equal(ops.expand_dims(ids, -1), classes), y_pred.dtype)
        y_true = smooth_labels(y_true, label_smoothing, float(num_classes))
        log_p, p = softmax_terms(y_pred, from_logits)
        loss = -y_true * log_p * safe_pow(1.0 - p, gamma)
        if alpha is not None:
            loss = loss * alpha
        loss = ops.sum(loss, axis=-1)
        if keep is None:
            return loss, None
        return ops.where(keep, loss, ops.zeros_like(loss)), keep

    keep = None
    if ignore_index is not None:
        _check_targets(y_true, "values in [0, 1]", ignore_index, None)
        keep = ops.not_equal(y_true, float(ignore_index))
        y_true = ops.where(keep, y_true, ops.zeros_like(y_true))
    y_true = smooth_labels(y_true, label_smoothing, 2.0)
    bce, one_minus_pt, _ = sigmoid_terms(y_true, y_pred, from_logits)
    loss = safe_pow(one_minus_pt, gamma) * bce
    if alpha is not None:
        loss = loss * (y_true * alpha + (1.0 - y_true) * (1.0 - alpha))
    if keep is None:
        return ops.mean(loss, axis=-1), None
    count = ops.sum(ops.cast(keep, loss.dtype), axis=-1)
    total = ops.sum(ops.where(keep, loss, ops.zeros_like(loss)), axis=-1)
    return total / ops.maximum(count, 1.0), count > 0


@register
class FocalLoss(LossPlus):
    """Focal loss (Lin et al., 2017) with per-class `alpha`, for binary,
    multi-label and multi-class outputs.

    See `focal_loss` for the formula. Equal to
    `keras.losses.BinaryFocalCrossentropy` (modes `"binary"` / `"multilabel"`)
    and `keras.losses.CategoricalFocalCrossentropy` (mode `"multiclass"`)
    where their options overlap; adds a per-class `alpha` vector, exact
    logit-space numerics (no clipping of sigmoid outputs) and
    `ignore_index`.

    With `ignore_index`, samples (positions of `y_pred.shape[:-1]`) with no
    counted target are left out of the reduction (a Keras mask): with one
    channel, `FocalLoss(ignore_index=255)` on `(B, H, W, 1)` maps is the
    mean over the counted pixels, segmentation_models_pytorch's
    `FocalLoss("binary", ignore_index=255)`.

    Args:
        gamma: Focusing parameter, `>= 0`.
        alpha: `None` (no class weighting), a number, or a list with one
            number per class. For sigmoid modes positives are weighted by
            `alpha` and negatives by `1 - alpha`; for `"multiclass"` class `c`
            is weighted by `alpha[c]`.
        from_logits: Whether `y_pred` holds logits.
        mode: `"binary"`, `"multilabel"` or `"multiclass"`.
        label_smoothing: Float in `[0, 1]`.
        ignore_index: `None`, or the integer label of targets that count
            nowhere (sigmoid modes: entries; `"multiclass"`: class ids).
        reduction, name, dtype: As for every `keras.losses.Loss`.

    Reference:
        Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017,
        https://arxiv.org/abs/1708.02002

    Examples:
        >>> loss = FocalLoss(gamma=2.0, alpha=[0.25, 0.75], mode="multilabel", from_logits=True)
        >>> round(float(loss([[0.0, 1.0]], [[-1.0, 2.0]])), 4)
        0.0092
        >>> loss = FocalLoss(gamma=2.0, from_logits=True, ignore_index=-1)
        >>> round(float(loss([[1.0], [-1.0]], [[2.0], [5.0]])), 4)
        0.0018
    """

    fn = staticmethod(focal_loss)

    def __init__(
        self,
        gamma: float = 2.0,
        alpha: Alpha = None,
        from_logits: bool = False,
        mode: str = "binary",
        label_smoothing: float = 0.0,
        ignore_index: Optional[int] = None,
        reduction: Optional[str] = "sum_over_batch_size",
        name: Optional[str] = "focal_loss",
        dtype: Any = None,
    ) -> None:
        super().__init__(
            reduction=reduction, name=name, dtype=dtype, gamma=gamma, alpha=alpha, from_logits=from_logits,
            mode=mode, label_smoothing=label_smoothing, ignore_index=ignore_index,
        )

    def call(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        if self._options["ignore_index"] is None:
            return super().call(y_true, y_pred)
        y_true, y_pred = prepare_inputs(y_true, y_pred)
        loss, counted = _focal(y_true, y_pred, **self._options)
        return with_keras_mask(loss, counted)
