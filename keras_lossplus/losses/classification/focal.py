"""Focal loss (Lin et al. 2017): binary, multi-label and multi-class, with
per-class `alpha`."""

from __future__ import annotations

from typing import Any, Optional, Sequence, Union

import keras  # noqa: F401  (the docstring examples use it)
from keras import ops

from keras_lossplus.losses.base import LossPlus, prepare_inputs, register
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


def _alpha_for_mode(options: dict) -> dict:
    """`alpha` weighs positives by `alpha` and negatives by `1 - alpha` unless
    `mode="multiclass"`: then every value must be at most 1."""
    alpha, mode = options["alpha"], options["mode"]
    values = alpha if isinstance(alpha, list) else [] if alpha is None else [alpha]
    if mode != "multiclass" and any(v > 1.0 for v in values):
        raise ValueError(
            f"Argument `alpha` must be in [0, 1] for mode={mode!r} (it weighs positives "
            f"by alpha and negatives by 1 - alpha). Received: alpha={alpha!r}"
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
    joint=_alpha_for_mode,
    mode=choice(*FOCAL_MODES),
    alpha=_check_alpha,
    gamma=number(low=0.0),
    from_logits=flag,
    label_smoothing=number(low=0.0, high=1.0),
)
def focal_loss(
    y_true: Tensor,
    y_pred: Tensor,
    gamma: float = 2.0,
    alpha: Alpha = None,
    from_logits: bool = False,
    mode: str = "binary",
    label_smoothing: float = 0.0,
) -> Tensor:
    r"""Focal loss (Lin et al., 2017), per sample.

    Binary and multi-label (sigmoid outputs), averaged over the last axis:

    $$\ell = \operatorname{mean}_c\; \alpha_{t,c}\,(1 - p_{t,c})^{\gamma}\,
      \mathrm{BCE}(y_c, p_c), \quad p_t = y p + (1 - y)(1 - p),\;
      \alpha_t = y\alpha + (1 - y)(1 - \alpha)$$

    Multi-class (softmax outputs, one-hot `y_true`), summed over the classes:

    $$\ell = -\sum_c \alpha_c\, y_c\, (1 - p_c)^{\gamma} \log p_c$$

    `alpha` may be one number or one value per class, which Keras'
    `BinaryFocalCrossentropy` and `CategoricalFocalCrossentropy` do not
    offer; where the options overlap the values equal theirs
    (`alpha=None` is `apply_class_balancing=False`).

    Args:
        y_true: Targets in `[0, 1]`, the shape of `y_pred` (one-hot for
            `"multiclass"`).
        y_pred: Probabilities, or logits with `from_logits=True`.
        gamma: Focusing parameter, `>= 0`; `0` gives (weighted) cross-entropy.
        alpha: `None`, a number, or one number per class (last axis).
        from_logits: Whether `y_pred` holds logits.
        mode: `"binary"`, `"multilabel"` (sigmoid per entry) or
            `"multiclass"` (softmax over the last axis).
        label_smoothing: Float in `[0, 1]`, applied as in Keras.

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
    """
    y_true, y_pred = prepare_inputs(y_true, y_pred)
    num_classes = y_pred.shape[-1] if len(y_pred.shape) else 1
    alpha = _alpha_tensor(alpha, num_classes, y_pred.dtype)

    if mode == "multiclass":
        if num_classes is not None and num_classes < 2:
            raise ValueError(
                "mode='multiclass' needs at least 2 classes on the last axis of `y_pred`; "
                f"received shape {tuple(y_pred.shape)}. Use mode='binary' for one output."
            )
        y_true = smooth_labels(y_true, label_smoothing, float(num_classes))
        log_p, p = softmax_terms(y_pred, from_logits)
        loss = -y_true * log_p * safe_pow(1.0 - p, gamma)
        if alpha is not None:
            loss = loss * alpha
        return ops.sum(loss, axis=-1)

    y_true = smooth_labels(y_true, label_smoothing, 2.0)
    bce, one_minus_pt, _ = sigmoid_terms(y_true, y_pred, from_logits)
    loss = safe_pow(one_minus_pt, gamma) * bce
    if alpha is not None:
        loss = loss * (y_true * alpha + (1.0 - y_true) * (1.0 - alpha))
    return ops.mean(loss, axis=-1)


@register
class FocalLoss(LossPlus):
    """Focal loss (Lin et al., 2017) with per-class `alpha`, for binary,
    multi-label and multi-class outputs.

    See `focal_loss` for the formula. Equal to
    `keras.losses.BinaryFocalCrossentropy` (modes `"binary"` / `"multilabel"`)
    and `keras.losses.CategoricalFocalCrossentropy` (mode `"multiclass"`)
    where their options overlap; adds a per-class `alpha` vector and exact
    logit-space numerics (no clipping of sigmoid outputs).

    Args:
        gamma: Focusing parameter, `>= 0`.
        alpha: `None` (no class weighting), a number, or a list with one
            number per class. For sigmoid modes positives are weighted by
            `alpha` and negatives by `1 - alpha`; for `"multiclass"` class `c`
            is weighted by `alpha[c]`.
        from_logits: Whether `y_pred` holds logits.
        mode: `"binary"`, `"multilabel"` or `"multiclass"`.
        label_smoothing: Float in `[0, 1]`.
        reduction, name, dtype: As for every `keras.losses.Loss`.

    Reference:
        Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017,
        https://arxiv.org/abs/1708.02002

    Examples:
        >>> loss = FocalLoss(gamma=2.0, alpha=[0.25, 0.75], mode="multilabel", from_logits=True)
        >>> round(float(loss([[0.0, 1.0]], [[-1.0, 2.0]])), 4)
        0.0092
    """

    fn = staticmethod(focal_loss)

    def __init__(
        self,
        gamma: float = 2.0,
        alpha: Alpha = None,
        from_logits: bool = False,
        mode: str = "binary",
        label_smoothing: float = 0.0,
        reduction: Optional[str] = "sum_over_batch_size",
        name: Optional[str] = "focal_loss",
        dtype: Any = None,
    ) -> None:
        super().__init__(
            reduction=reduction, name=name, dtype=dtype, gamma=gamma, alpha=alpha, from_logits=from_logits,
            mode=mode, label_smoothing=label_smoothing,
        )
