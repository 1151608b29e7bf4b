"""Robust regression losses: quantile (pinball), Charbonnier, Tukey's biweight
and Barron's general adaptive loss.

Each function returns the mean over the last axis, as
`keras.losses.mean_squared_error` does.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence, Union

import keras  # noqa: F401  (the docstring examples use it)
from keras import ops

from keras_lossplus.losses.base import LossPlus, prepare_inputs, register
from keras_lossplus.losses.magnitude import ROOM, check_magnitude, clip_magnitude
from keras_lossplus.losses.options import Options, check_number, number, number_or_list
from keras_lossplus.ops import compute_dtype, largest_finite

Tensor = Any
Quantiles = Union[float, Sequence[float]]

__all__ = [
    "CharbonnierLoss",
    "GeneralAdaptiveLoss",
    "PinballLoss",
    "TukeyBiweightLoss",
    "charbonnier_loss",
    "general_adaptive_loss",
    "pinball_loss",
    "tukey_biweight_loss",
]


@Options(quantiles=number_or_list(low=0.0, high=1.0))
def pinball_loss(y_true: Tensor, y_pred: Tensor, quantiles: Quantiles = 0.5) -> Tensor:
    r"""Pinball (quantile) loss, averaged over the last axis.

    $$\rho_\tau(u) = \max(\tau u, (\tau - 1) u), \quad u = y - \hat y$$

    With one quantile this is tensorflow-addons' `pinball_loss(tau=...)`,
    whose `tau` is also in `[0, 1]`: `tau = 0` is `max(-u, 0)` (the loss of
    the lowest value) and `tau = 1` is `max(u, 0)`.
    With a list of `Q` quantiles, the last axis of `y_pred` holds one column
    per quantile (in the given order) and `y_true` has one column (or none)
    that is compared with every column: the loss is the mean over the
    quantiles, and the model learns a whole predictive interval at once.

    Args:
        y_true: Targets; for a list of quantiles, shape `(..., 1)` or `(...)`.
        y_pred: Predictions; for a list of quantiles, shape `(..., Q)`.
        quantiles: One quantile or a list, each in `[0, 1]`.

    Returns:
        The loss per sample, `y_pred.shape[:-1]`.

    Reference:
        Koenker & Bassett, "Regression Quantiles", Econometrica 1978.

    Examples:
        >>> y_true = [[1.0], [2.0]]
        >>> y_pred = [[0.5, 1.0, 1.5], [2.5, 3.0, 3.5]]
        >>> print(keras.ops.convert_to_numpy(pinball_loss(y_true, y_pred, quantiles=[0.1, 0.5, 0.9])).round(4))
        [0.0333 0.3667]
    """
    y_true, y_pred = prepare_inputs(y_true, y_pred)
    if isinstance(quantiles, list):
        num = len(quantiles)
        if y_pred.shape[-1] != num:
            raise ValueError(
                f"`y_pred` must have one column per quantile on its last axis ({num} for "
                f"quantiles={quantiles}). Received y_pred.shape={tuple(y_pred.shape)}"
            )
        if len(y_true.shape) == len(y_pred.shape) - 1:
            y_true = ops.expand_dims(y_true, -1)
        tau = ops.convert_to_tensor(quantiles, dtype=y_pred.dtype)
    else:
        tau = quantiles
        if len(y_true.shape) == len(y_pred.shape) + 1 and y_true.shape[-1] == 1:
            y_true = ops.squeeze(y_true, -1)
        elif len(y_pred.shape) == len(y_true.shape) + 1 and y_pred.shape[-1] == 1:
            y_pred = ops.squeeze(y_pred, -1)
    delta = y_true - y_pred
    return ops.mean(ops.maximum(tau * delta, (tau - 1.0) * delta), axis=-1)


@register
class PinballLoss(LossPlus):
    """Pinball (quantile) loss for one quantile or several at once.

    See `pinball_loss`. `PinballLoss(quantiles=0.5)` is half the mean
    absolute error; `PinballLoss(quantiles=[0.1, 0.5, 0.9])` trains a model
    with three outputs to predict the 10%, 50% and 90% quantiles.

    Args:
        quantiles: One quantile or a list, each in `[0, 1]`.
        reduction, name, dtype: As for every `keras.losses.Loss`.

    Reference:
        Koenker & Bassett, "Regression Quantiles", Econometrica 1978;
        tensorflow-addons `tfa.losses.PinballLoss`.

    Examples:
        >>> loss = PinballLoss(quantiles=[0.1, 0.5, 0.9])
        >>> round(float(loss([[1.0], [2.0]], [[0.5, 1.0, 1.5], [2.5, 3.0, 3.5]])), 4)
        0.2
    """

    fn = staticmethod(pinball_loss)

    def __init__(
        self,
        quantiles: Quantiles = 0.5,
        reduction: Optional[str] = "sum_over_batch_size",
        name: Optional[str] = "pinball_loss",
        dtype: Any = None,
    ) -> None:
        super().__init__(reduction=reduction, name=name, dtype=dtype, quantiles=quantiles)


@Options(epsilon=number(low=0.0, low_open=True))
def charbonnier_loss(y_true: Tensor, y_pred: Tensor, epsilon: float = 1e-3) -> Tensor:
    r"""Charbonnier loss (a smooth L1), averaged over the last axis.

    $$\ell = \operatorname{mean}\sqrt{(y - \hat y)^2 + \epsilon^2}$$

    Args:
        y_true: Targets.
        y_pred: Predictions.
        epsilon: Smoothing scale, `> 0`; the loss is quadratic for errors
            well below `epsilon` and linear above.

    Returns:
        The loss per sample, `y_pred.shape[:-1]`.

    Reference:
        Charbonnier et al., "Two deterministic half-quadratic regularization
        algorithms for computed imaging", ICIP 1994; Lai et al., "Deep
        Laplacian Pyramid Networks", CVPR 2017.

    Examples:
        >>> print(keras.ops.convert_to_numpy(charbonnier_loss([[0.0, 3.0]], [[0.0, 0.0]], epsilon=4.0)))
        [4.5]
    """
    y_true, y_pred = prepare_inputs(y_true, y_pred)
    # sqrt(r^2 + eps^2) as m * sqrt((r/m)^2 + (eps/m)^2), m = max(|r|, eps): no overflow at |r| = 1e30.
    # The value does not depend on m, so m is a constant for the gradient: differentiated, its terms
    # cancel only in exact arithmetic (XLA's simplifications doubled the gradient at |r| = 1e30).
    r = ops.abs(y_true - y_pred)
    m = ops.stop_gradient(ops.maximum(r, epsilon))
    return ops.mean(m * ops.sqrt(ops.square(r / m) + ops.square(epsilon / m)), axis=-1)


@register
class CharbonnierLoss(LossPlus):
    """Charbonnier loss `sqrt((y - y_hat)^2 + epsilon^2)`, a differentiable L1.

    See `charbonnier_loss`.

    Args:
        epsilon: Smoothing scale, `> 0`.
        reduction, name, dtype: As for every `keras.losses.Loss`.

    Reference:
        Charbonnier et al., ICIP 1994; Lai et al., CVPR 2017.

    Examples:
        >>> loss = CharbonnierLoss(epsilon=4.0)
        >>> float(loss([[0.0, 3.0]], [[0.0, 0.0]]))
        4.5
    """

    fn = staticmethod(charbonnier_loss)

    def __init__(
        self,
        epsilon: float = 1e-3,
        reduction: Optional[str] = "sum_over_batch_size",
        name: Optional[str] = "charbonnier_loss",
        dtype: Any = None,
    ) -> None:
        super().__init__(
            reduction=reduction, name=name, dtype=dtype,
            epsilon=epsilon,
        )


@Options(c=number(low=0.0, low_open=True))
def tukey_biweight_loss(y_true: Tensor, y_pred: Tensor, c: float = 4.685) -> Tensor:
    r"""Tukey's biweight (bisquare) loss, averaged over the last axis.

    $$\rho(r) = \frac{c^2}{6}\Bigl(1 - \bigl(1 - (r/c)^2\bigr)^3\Bigr)
      \text{ for } |r| \le c, \qquad \frac{c^2}{6} \text{ otherwise}$$

    Residuals beyond `c` contribute a constant (zero gradient): outliers are
    ignored. `c = 4.685` gives 95% efficiency for Gaussian noise of unit
    scale; scale your targets (or `c`) to the noise level.

    Args:
        y_true: Targets.
        y_pred: Predictions.
        c: Tuning constant, `> 0`.

    Returns:
        The loss per sample, `y_pred.shape[:-1]`.

    Reference:
        Beaton & Tukey, "The Fitting of Power Series, Meaning Polynomials,
        Illustrated on Band-Spectroscopic Data", Technometrics 1974;
        Belagiannis et al., "Robust Optimization for Deep Regression",
        ICCV 2015.

    Examples:
        >>> print(keras.ops.convert_to_numpy(tukey_biweight_loss([[0.0, 0.0]], [[1.0, 10.0]], c=2.0)).round(4))
        [0.526]
    """
    y_true, y_pred = prepare_inputs(y_true, y_pred)
    u = ops.minimum(ops.square((y_true - y_pred) / c), 1.0)
    one_minus = 1.0 - u
    return ops.mean((c * c / 6.0) * (1.0 - one_minus * one_minus * one_minus), axis=-1)


@register
class TukeyBiweightLoss(LossPlus):
    """Tukey's biweight loss: quadratic-like for small residuals, constant
    (zero gradient) beyond `c`, so gross outliers stop pulling the fit.

    See `tukey_biweight_loss`.

    Args:
        c: Tuning constant, `> 0` (4.685 for unit-scale Gaussian noise).
        reduction, name, dtype: As for every `keras.losses.Loss`.

    Reference:
        Beaton & Tukey, Technometrics 1974; Belagiannis et al., ICCV 2015.

    Examples:
        >>> loss = TukeyBiweightLoss(c=2.0)
        >>> round(float(loss([[0.0, 0.0]], [[1.0, 10.0]])), 4)
        0.526
    """

    fn = staticmethod(tukey_biweight_loss)

    def __init__(
        self,
        c: float = 4.685,
        reduction: Optional[str] = "sum_over_batch_size",
        name: Optional[str] = "tukey_biweight_loss",
        dtype: Any = None,
    ) -> None:
        super().__init__(
            reduction=reduction, name=name, dtype=dtype, c=c
        )


def _check_alpha(name: str, alpha: Any) -> float:
    alpha = check_number(name, alpha, allow_inf=True)
    if alpha == math.inf:
        raise ValueError(
            "Argument `alpha` must be a finite number or -inf (+inf gives exp(x^2/2) - 1, which "
            f"overflows). Received: alpha={alpha!r}"
        )
    return alpha


@Options(alpha=_check_alpha, scale=number(low=0.0, low_open=True))
def general_adaptive_loss(
    y_true: Tensor, y_pred: Tensor, alpha: float = 1.0, scale: float = 1.0
) -> Tensor:
    r"""Barron's general and adaptive robust loss, averaged over the last axis.

    With `x = (y - y_hat) / scale`:

    $$\rho(x, \alpha) = \frac{|\alpha - 2|}{\alpha}\left(\Bigl(\frac{x^2}
      {|\alpha - 2|} + 1\Bigr)^{\alpha / 2} - 1\right)$$

    and its limits: `alpha = 2` is `x^2 / 2` (L2), `alpha = 0` is
    `log(x^2 / 2 + 1)` (Cauchy), `alpha = -inf` is `1 - exp(-x^2 / 2)`
    (Welsch); `alpha = 1` is the pseudo-Huber / Charbonnier loss and
    `alpha = -2` Geman-McClure. The general case is evaluated as
    `|a - 2| / a * expm1(a / 2 * log1p(x^2 / |a - 2|))`, which stays accurate
    for `alpha` close to 0 and 2; the limits are used exactly at 0, 2 and
    -inf. No value of `alpha` gives NaN; for `alpha <= 1` (growth at most
    linear: pseudo-Huber, Cauchy, Geman-McClure, Welsch) value and gradient
    stay finite at residuals of `1e30` (the Cauchy loss is `137.5` there).

    For `alpha > 1` the loss grows as `|x|^alpha`, which overflows float32
    for large residuals (`0.5 x^2` is `5e59` at `x = 1e30`): as the losses
    on squares do (`keras_lossplus.losses.magnitude`), a residual
    `y_true - y_pred` where the loss passes `3e38 / 1e12` (float32's
    largest over room for sums of `1e12` terms; `x = 2.4e13` for
    `alpha = 2`, `7e6` for `alpha = 4`, times `scale`) is refused eagerly
    with a `ValueError`, and under compilation clipped to that bound for the
    value, with its gradient passed through.

    Args:
        y_true: Targets.
        y_pred: Predictions.
        alpha: Shape parameter: any finite number, or `-inf`.
        scale: Scale `c > 0` of the quadratic bowl near 0.

    Returns:
        The loss per sample, `y_pred.shape[:-1]`.

    Reference:
        Barron, "A General and Adaptive Robust Loss Function", CVPR 2019,
        https://arxiv.org/abs/1701.03077

    Examples:
        >>> print(keras.ops.convert_to_numpy(general_adaptive_loss([[0.0, 0.0]], [[1.0, 2.0]], alpha=2.0)))
        [1.25]
    """
    y_true, y_pred = prepare_inputs(y_true, y_pred)
    residual = y_true - y_pred
    if alpha > 1.0:
        bound = _residual_bound(alpha, scale, residual.dtype)
        check_magnitude(residual, "y_true - y_pred", "general_adaptive_loss: ", _GROWTH_HINT, alpha, bound)
        residual = clip_magnitude(residual, alpha, bound)
    if alpha == 2.0:
        loss = 0.5 * ops.square(residual / scale)
    elif alpha == 0.0:
        loss = _log1p_square_over(residual, scale, 2.0)
    elif alpha == -math.inf:
        loss = -ops.expm1(-0.5 * ops.square(residual / scale))
    else:
        b = abs(alpha - 2.0)
        loss = (b / alpha) * ops.expm1((alpha / 2.0) * _log1p_square_over(residual, scale, b))
    return ops.mean(loss, axis=-1)


_GROWTH_HINT = "Rescale the targets and predictions, or raise `scale` (the loss is on (y - y_hat) / scale)."


def _residual_bound(alpha: float, scale: float, dtype: Any) -> float:
    """The residual at which Barron's loss (`alpha > 1`) reaches
    `largest / 1e12` (room for sums of `1e12` terms, as
    `keras_lossplus.losses.magnitude.squares_bound`): the inverse of
    `rho(x) = b / alpha ((x^2 / b + 1)^(alpha / 2) - 1)`, times `scale`."""
    value = largest_finite(compute_dtype(dtype)) / ROOM
    b = abs(alpha - 2.0)
    if b == 0.0:
        return scale * math.sqrt(2.0 * value)
    return scale * math.sqrt(b * ((1.0 + alpha * value / b) ** (2.0 / alpha) - 1.0))


def _log1p_square_over(residual: Tensor, scale: float, b: float) -> Tensor:
    """`log1p((residual / scale)^2 / b)`, finite where the square overflows
    float32 (|residual| of 1e30): there as `2 log(hypot(x, sqrt(b))) - log(b)`."""
    x = ops.abs(residual / scale)
    large = x > 1e15
    small = ops.where(large, ops.zeros_like(x), x)
    big = ops.where(large, x, ops.ones_like(x))
    hypot_log = ops.log(big) + 0.5 * ops.log1p(b / ops.square(big))
    return ops.where(large, 2.0 * hypot_log - math.log(b), ops.log1p(ops.square(small) / b))


@register
class GeneralAdaptiveLoss(LossPlus):
    """Barron's general robust loss: one `alpha` moves between L2 (2),
    pseudo-Huber (1), Cauchy (0), Geman-McClure (-2) and Welsch (-inf).

    See `general_adaptive_loss`. Here `alpha` and `scale` are fixed
    hyperparameters.

    Args:
        alpha: Shape parameter: any finite number or `-inf`.
        scale: Scale `> 0`.
        reduction, name, dtype: As for every `keras.losses.Loss`.

    Reference:
        Barron, "A General and Adaptive Robust Loss Function", CVPR 2019,
        https://arxiv.org/abs/1701.03077

    Examples:
        >>> loss = GeneralAdaptiveLoss(alpha=0.0, scale=1.0)
        >>> round(float(loss([[0.0]], [[2.0]])), 4)
        1.0986
    """

    fn = staticmethod(general_adaptive_loss)

    def __init__(
        self,
        alpha: float = 1.0,
        scale: float = 1.0,
        reduction: Optional[str] = "sum_over_batch_size",
        name: Optional[str] = "general_adaptive_loss",
        dtype: Any = None,
    ) -> None:
        super().__init__(
            reduction=reduction, name=name, dtype=dtype,
            alpha=alpha, scale=scale,
        )
