"""torch's smooth L1 loss (`nn.SmoothL1Loss`), the box regression loss of
Fast / Faster R-CNN."""

from __future__ import annotations

from typing import Any, Optional

import keras  # noqa: F401  (the docstring examples use it)
from keras import ops

from keras_lossplus.losses.base import LossPlus, prepare_inputs, register
from keras_lossplus.losses.options import Options, number

Tensor = Any

__all__ = ["SmoothL1Loss", "smooth_l1_loss"]


@Options(beta=number(low=0.0))
def smooth_l1_loss(y_true: Tensor, y_pred: Tensor, beta: float = 1.0) -> Tensor:
    r"""Smooth L1 loss (torch's `nn.SmoothL1Loss`), averaged over the last axis.

    $$\ell(r) = \begin{cases} 0.5\, r^2 / \beta & |r| < \beta \\
      |r| - 0.5\, \beta & \text{otherwise} \end{cases}, \quad r = y - \hat y$$

    computed as `0.5 c^2 / beta + |r| - c` with `c = min(|r|, beta)` (no
    branch, finite at any residual); `beta = 0` is the L1 loss. This is
    `keras.losses.Huber(delta=beta)` divided by `beta`. The mean over the
    last axis and Keras' `"sum_over_batch_size"` give torch's
    `reduction="mean"` over all elements.

    Args:
        y_true: Targets.
        y_pred: Predictions.
        beta: Where the loss turns from quadratic to linear, `>= 0`.

    Returns:
        The loss per sample, `y_pred.shape[:-1]`.

    Reference:
        Girshick, "Fast R-CNN", ICCV 2015; torch `nn.SmoothL1Loss`.

    Examples:
        >>> print(keras.ops.convert_to_numpy(smooth_l1_loss([[0.0, 0.0]], [[0.5, 3.0]])))
        [1.3125]
    """
    y_true, y_pred = prepare_inputs(y_true, y_pred)
    r = ops.abs(y_true - y_pred)
    if beta == 0.0:
        return ops.mean(r, axis=-1)
    c = ops.minimum(r, beta)
    return ops.mean(0.5 * ops.square(c) / beta + (r - c), axis=-1)


@register
class SmoothL1Loss(LossPlus):
    """Smooth L1 loss (torch's `nn.SmoothL1Loss(beta=...)`): quadratic below
    `beta`, linear above.

    See `smooth_l1_loss`.

    Args:
        beta: `>= 0`; 0 is the L1 loss.
        reduction, name, dtype: As for every `keras.losses.Loss`.

    Reference:
        Girshick, "Fast R-CNN", ICCV 2015.

    Examples:
        >>> loss = SmoothL1Loss(beta=1.0)
        >>> float(loss([[0.0, 0.0]], [[0.5, 3.0]]))
        1.3125
    """

    fn = staticmethod(smooth_l1_loss)

    def __init__(self, beta: float = 1.0, reduction: Optional[str] = "sum_over_batch_size",
                 name: Optional[str] = "smooth_l1_loss", dtype: Any = None) -> None:
        super().__init__(reduction=reduction, name=name, dtype=dtype, beta=beta)
