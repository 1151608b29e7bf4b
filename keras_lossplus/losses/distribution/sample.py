"""Two-sample discrepancies between the rows of `y_true` and of `y_pred`:
the squared maximum mean discrepancy and the squared energy distance."""

from __future__ import annotations

from typing import Any, Optional, Sequence, Union

import keras  # noqa: F401  (the docstring examples use it)
from keras import ops

from keras_lossplus.backend import compiled_on_jax
from keras_lossplus.losses.base import BatchLoss, register
from keras_lossplus.losses.distribution.common import (
    distances,
    finite_or_nan,
    sample_inputs,
    targets_checked,
    weighted_mean,
)
from keras_lossplus.losses.magnitude import magnitude_checked
from keras_lossplus.losses.options import Options, number_or_list

Tensor = Any
Bandwidth = Union[float, Sequence[float]]


# --------------------------------------------------------------------------- MMD


@compiled_on_jax
def _mmd(y_true: Tensor, y_pred: Tensor, bandwidth: tuple, sample_weight: Optional[Tensor]) -> Tensor:
    x, y, wx, wy = sample_inputs(y_true, y_pred, sample_weight)

    def kernel(sq):
        return sum(ops.exp(sq * (-0.5 / (s * s))) for s in bandwidth)

    k_xx = kernel(distances(x, squared=True))
    k_yy = kernel(distances(y, squared=True))
    k_xy = kernel(distances(x, y, squared=True))
    mean_xx, pairs_x = weighted_mean(k_xx, wx, wx, off_diagonal=True)
    mean_yy, pairs_y = weighted_mean(k_yy, wy, wy, off_diagonal=True)
    mean_xy, _ = weighted_mean(k_xy, wx, wy)
    value = mean_xx + mean_yy - 2.0 * mean_xy
    valid = ops.logical_and(pairs_x > 0, pairs_y > 0)
    return finite_or_nan(ops.where(valid, value, ops.zeros_like(value)), x, per_sample=False)


@Options(bandwidth=number_or_list(low=0.0, low_open=True))
@targets_checked
@magnitude_checked("y_true", "y_pred", hint="Standardize the samples (the kernel's bandwidth is on their scale).")
def mmd_loss(
    y_true: Tensor, y_pred: Tensor, bandwidth: Bandwidth = 1.0, sample_weight: Optional[Tensor] = None
) -> Tensor:
    r"""Squared maximum mean discrepancy (unbiased) with a Gaussian kernel.

    The rows `x_i` of `y_true` are samples of the target distribution, the
    rows `y_j` of `y_pred` samples of the model's. With
    `k(a, b) = sum_s exp(-|a - b|^2 / (2 s^2))` summed over the bandwidths
    `s` (one, or several for a multi-scale kernel),

    $$\mathrm{MMD}^2_u = \frac{1}{n(n-1)}\sum_{i \ne j} k(x_i, x_j)
      + \frac{1}{m(m-1)}\sum_{i \ne j} k(y_i, y_j)
      - \frac{2}{nm}\sum_{i, j} k(x_i, y_j)$$

    The estimator is unbiased, so it **can be slightly negative** when the
    two distributions are close (its expectation is the true `MMD^2 >= 0`).
    With `sample_weight` `w`, row `i` of both samples has mass `w_i`, and
    each mean becomes a weighted mean over its pairs
    (`sum_{i != j} w_i w_j k_ij / sum_{i != j} w_i w_j`); `w = 1` gives the
    formula above. With fewer than two rows of positive weight the loss is 0.
    Squared distances need no square root, so identical points have a
    finite gradient; they are exact for close points wherever they sit up
    to 4 dimensions (`common.distances`).

    A NaN or infinite target raises a `ValueError` naming `y_true` when the
    values are concrete (inside a compiled function the loss is NaN).
    Inputs of magnitude beyond `magnitude.squares_bound` (1.7e13 in float32)
    overflow its squares: eagerly they raise a `ValueError` naming the
    argument; under jit they are clipped to the bound, with the gradient
    passed through (see `keras_lossplus.losses.magnitude`).

    Args:
        y_true: Target samples `(N, D)` (or `(N,)` for 1-D samples).
        y_pred: Model samples `(M, D)`; `M == N` when `sample_weight` is given.
        bandwidth: Kernel bandwidth `s > 0`, or a list of them (the kernels
            are summed). Pick it on the scale of the distances between
            samples; a list such as `[0.5, 1, 2, 4]` covers several scales.
        sample_weight: Optional `(N,)` masses of the rows.

    Returns:
        A scalar.

    Reference:
        Gretton et al., "A Kernel Two-Sample Test", JMLR 2012; Li, Swersky
        & Zemel, "Generative Moment Matching Networks", ICML 2015
        (multi-bandwidth kernel).

    Examples:
        >>> x = [[0.0], [1.0], [2.0]]
        >>> round(float(mmd_loss(x, [[3.0], [4.0], [5.0]], bandwidth=1.0)), 4)
        0.6964
        >>> round(float(mmd_loss(x, [[0.5], [1.5], [2.5]], bandwidth=1.0)), 4)  # close: can be < 0
        -0.3078
    """
    widths = tuple(bandwidth) if isinstance(bandwidth, list) else (bandwidth,)
    return _mmd(y_true, y_pred, bandwidth=widths, sample_weight=sample_weight)


@register
class MMDLoss(BatchLoss):
    """Squared maximum mean discrepancy between the samples in `y_true` and
    those in `y_pred`, unbiased estimator, (multi-bandwidth) Gaussian kernel.

    See `mmd_loss`. One scalar per batch (the same for every `reduction`);
    it can be slightly negative when the distributions are close.
    `sample_weight[i]` is the mass of row `i` in both samples.

    Args:
        bandwidth: Kernel bandwidth `> 0`, or a list of them (summed kernels).
        cross_replica: `"gather"` (default): under `tf.distribute`, the loss of
            the global batch, all-gathered from the replicas; `"local"`: each
            replica's own slice (see `keras_lossplus.losses.BatchLoss`).
        reduction, name, dtype: As for every `keras.losses.Loss`.

    Reference:
        Gretton et al., "A Kernel Two-Sample Test", JMLR 2012; Li, Swersky
        & Zemel, "Generative Moment Matching Networks", ICML 2015.

    Examples:
        >>> loss = MMDLoss(bandwidth=[0.5, 1.0, 2.0])
        >>> round(float(loss([[0.0], [1.0], [2.0]], [[3.0], [4.0], [5.0]])), 4)
        1.6759
    """

    fn = staticmethod(mmd_loss)

    def __init__(
        self,
        bandwidth: Bandwidth = 1.0,
        reduction: Optional[str] = "sum_over_batch_size",
        name: Optional[str] = "mmd_loss",
        dtype: Any = None,
        cross_replica: str = "gather",
    ) -> None:
        super().__init__(reduction=reduction, name=name, dtype=dtype, cross_replica=cross_replica, bandwidth=bandwidth)


# --------------------------------------------------------------------------- energy distance


@compiled_on_jax
def _energy(y_true: Tensor, y_pred: Tensor, sample_weight: Optional[Tensor]) -> Tensor:
    x, y, wx, wy = sample_inputs(y_true, y_pred, sample_weight)
    e_xy, total = weighted_mean(distances(x, y), wx, wy)
    e_xx, _ = weighted_mean(distances(x), wx, wx)
    e_yy, _ = weighted_mean(distances(y), wy, wy)
    value = 2.0 * e_xy - e_xx - e_yy
    # >= 0 but for rounding; `where`, not `maximum`: its gradient is whole at 0 and a NaN stays NaN
    value = ops.where(ops.logical_or(value < 0.0, total <= 0.0), ops.zeros_like(value), value)
    return finite_or_nan(value, x, per_sample=False)


@targets_checked
def energy_distance(y_true: Tensor, y_pred: Tensor, sample_weight: Optional[Tensor] = None) -> Tensor:
    r"""Squared energy distance between the samples of `y_true` and of `y_pred`.

    $$\mathcal E^2 = 2\,\mathbb E|X - Y| - \mathbb E|X - X'| - \mathbb E|Y - Y'|$$

    with Euclidean distances between the rows, estimated by the V-statistic
    (means over all pairs, the zero self-distances included), so it is
    never negative and 0 when the samples are equal. With `sample_weight`
    `w`, row `i` of both samples has mass `w_i` (weighted means over the
    pairs, `sum w_i w_j d_ij / sum w_i w_j`); with no mass the loss is 0.
    For 1-D samples it equals `scipy.stats.energy_distance(u, v) ** 2`
    (also with `u_weights = v_weights = w`). Like MMD it needs no
    bandwidth; its gradients do not vanish far from the target (the
    distance kernel grows linearly). The distances are exact for close
    points wherever they sit up to 4 dimensions (`common.distances`).

    A NaN or infinite target raises a `ValueError` naming `y_true` when the
    values are concrete; inside a compiled function the loss is NaN (not a
    finite value over a NaN gradient).

    Args:
        y_true: Target samples `(N, D)` (or `(N,)` for 1-D samples).
        y_pred: Model samples `(M, D)`; `M == N` when `sample_weight` is given.
        sample_weight: Optional `(N,)` masses of the rows.

    Returns:
        A scalar.

    Reference:
        Szekely & Rizzo, "Energy statistics: A class of statistics based on
        distances", Journal of Statistical Planning and Inference 2013;
        Bellemare et al., "The Cramer Distance as a Solution to Biased
        Wasserstein Gradients", arXiv:1705.10743, 2017.

    Examples:
        >>> round(float(energy_distance([[0.0], [1.0]], [[2.0], [3.0]])), 4)
        3.0
    """
    return _energy(y_true, y_pred, sample_weight=sample_weight)


@register
class EnergyDistance(BatchLoss):
    """Squared energy distance `2 E|X - Y| - E|X - X'| - E|Y - Y'|` between
    the samples in `y_true` and those in `y_pred`.

    See `energy_distance`. One scalar per batch (the same for every
    `reduction`); `sample_weight[i]` is the mass of row `i` in both samples.

    Args:
        cross_replica: `"gather"` (default): under `tf.distribute`, the loss of
            the global batch, all-gathered from the replicas; `"local"`: each
            replica's own slice (see `keras_lossplus.losses.BatchLoss`).
        reduction, name, dtype: As for every `keras.losses.Loss`.

    Reference:
        Szekely & Rizzo, "Energy statistics: A class of statistics based on
        distances", Journal of Statistical Planning and Inference 2013.

    Examples:
        >>> loss = EnergyDistance()
        >>> round(float(loss([[0.0], [1.0]], [[2.0], [3.0]])), 4)
        3.0
    """

    fn = staticmethod(energy_distance)

    def __init__(
        self,
        reduction: Optional[str] = "sum_over_batch_size",
        name: Optional[str] = "energy_distance",
        dtype: Any = None,
        cross_replica: str = "gather",
    ) -> None:
        super().__init__(reduction=reduction, name=name, dtype=dtype, cross_replica=cross_replica)
