"""Asymmetric loss (ASL, Ridnik et al. 2021) for multi-label classification."""

from __future__ import annotations

from typing import Any, Optional

import keras  # noqa: F401  (the docstring examples use it)
from keras import ops

from keras_lossplus.losses.base import LossPlus, prepare_inputs, register
from keras_lossplus.losses.classification.terms import EPSILON
from keras_lossplus.losses.options import Options, flag, number

Tensor = Any


@Options(
    gamma_pos=number(low=0.0), gamma_neg=number(low=0.0), clip=number(low=0.0, high=1.0, high_open=True),
    from_logits=flag,
)
def asymmetric_loss(
    y_true: Tensor,
    y_pred: Tensor,
    gamma_pos: float = 0.0,
    gamma_neg: float = 4.0,
    clip: float = 0.05,
    from_logits: bool = False,
) -> Tensor:
    r"""Asymmetric loss for multi-label classification (Ridnik et al., 2021),
    averaged over the labels.

    With `p = sigmoid(x)` and the shifted probability
    `p_m = max(p - clip, 0)`:

    $$\ell = -\operatorname{mean}_c \bigl[y (1 - p)^{\gamma_+} \log p +
      (1 - y)\, p_m^{\gamma_-} \log(1 - p_m)\bigr]$$

    For soft labels the focusing weight is `(1 - p_t) ** (gamma_pos * y +
    gamma_neg * (1 - y))` with `p_t = y p + (1 - y)(1 - p_m)`, exactly as in
    the authors' implementation, which sums over labels and batch; this
    function averages over labels (as Keras' `binary_crossentropy` does), so
    its value is the authors' per-sample sum divided by the number of labels.

    Args:
        y_true: Multi-hot targets in `[0, 1]`, shape `(..., C)`.
        y_pred: Probabilities, or logits with `from_logits=True`.
        gamma_pos: Focusing parameter for positives, `>= 0`.
        gamma_neg: Focusing parameter for negatives, `>= 0`.
        clip: Probability margin `m` in `[0, 1)` that discards easy negatives.
        from_logits: Whether `y_pred` holds logits.

    Returns:
        The loss per sample, shape `y_pred.shape[:-1]`.

    Reference:
        Ridnik et al., "Asymmetric Loss For Multi-Label Classification",
        ICCV 2021, https://arxiv.org/abs/2009.14119

    Examples:
        >>> y_true = [[1.0, 0.0, 0.0]]
        >>> y_pred = [[0.6, 0.3, 0.02]]
        >>> print(keras.ops.convert_to_numpy(asymmetric_loss(y_true, y_pred)).round(4))
        [0.1706]
    """
    y_true, y_pred = prepare_inputs(y_true, y_pred)
    if from_logits:
        log_p = ops.log_sigmoid(y_pred)
        log_q = ops.log_sigmoid(-y_pred)  # log(1 - p)
        p = ops.sigmoid(y_pred)
        q = ops.sigmoid(-y_pred)
    else:
        p = y_pred
        q = 1.0 - y_pred
        log_p = ops.log(ops.maximum(p, EPSILON))
        log_q = ops.log(ops.maximum(q, EPSILON))
    if clip > 0:
        # 1 - p_m = min(1 - p + clip, 1) >= clip: its log is always finite.
        log_q = ops.log(ops.minimum(q + clip, 1.0))
        p_m = ops.maximum(p - clip, 0.0)
    else:
        p_m = p
    loss = y_true * log_p + (1.0 - y_true) * log_q
    if gamma_pos > 0 or gamma_neg > 0:
        # 1 - p_t = y (1 - p) + (1 - y) p_m
        base = ops.maximum(y_true * q + (1.0 - y_true) * p_m, 0.0)
        exponent = gamma_pos * y_true + gamma_neg * (1.0 - y_true)
        positive = base > 0
        safe_base = ops.where(positive, base, ops.ones_like(base))
        weight = ops.where(
            positive,
            ops.exp(exponent * ops.log(safe_base)),
            ops.cast(exponent == 0, base.dtype),  # 0 ** 0 = 1, 0 ** g = 0
        )
        loss = loss * weight
    return -ops.mean(loss, axis=-1)


@register
class AsymmetricLoss(LossPlus):
    """Asymmetric loss (ASL) for multi-label classification
    (Ridnik et al., 2021).

    See `asymmetric_loss`. It focuses on positives (`gamma_pos`, default 0)
    and hard negatives (`gamma_neg`, default 4) separately and discards
    negatives whose probability is below `clip`.

    Args:
        gamma_pos: Focusing parameter for positives, `>= 0`.
        gamma_neg: Focusing parameter for negatives, `>= 0`.
        clip: Probability margin in `[0, 1)` for negatives.
        from_logits: Whether `y_pred` holds logits (Keras' default, `False`;
            the authors' code takes logits).
        reduction, name, dtype: As for every `keras.losses.Loss`.

    Reference:
        Ridnik et al., "Asymmetric Loss For Multi-Label Classification",
        ICCV 2021, https://arxiv.org/abs/2009.14119

    Examples:
        >>> loss = AsymmetricLoss(gamma_pos=0.0, gamma_neg=4.0, clip=0.05)
        >>> round(float(loss([[1.0, 0.0, 0.0]], [[0.6, 0.3, 0.02]])), 4)
        0.1706
    """

    fn = staticmethod(asymmetric_loss)

    def __init__(
        self,
        gamma_pos: float = 0.0,
        gamma_neg: float = 4.0,
        clip: float = 0.05,
        from_logits: bool = False,
        reduction: Optional[str] = "sum_over_batch_size",
        name: Optional[str] = "asymmetric_loss",
        dtype: Any = None,
    ) -> None:
        super().__init__(
            reduction=reduction, name=name, dtype=dtype, gamma_pos=gamma_pos, gamma_neg=gamma_neg, clip=clip,
            from_logits=from_logits,
        )
