"""The 1-D Wasserstein distance between two distributions per sample:
sorted samples, or histograms over ordered bins (from their CDFs)."""

from __future__ import annotations

from typing import Any, Optional

import keras  # noqa: F401  (the docstring examples use it)
from keras import ops

from keras_lossplus.backend import compiled_on_jax
from keras_lossplus.losses.base import LossPlus, prepare_inputs, register
from keras_lossplus.losses.distribution.common import finite_or_nan, targets_checked
from keras_lossplus.losses.options import Options, choice, number
from keras_lossplus.ops import safe_pow

Tensor = Any

WASSERSTEIN_MODES = ("samples", "histogram")


def _histogram_order(options: dict) -> dict:
    """`p` must be 1 with `mode="histogram"`."""
    if options["mode"] == "histogram" and options["p"] != 1.0:
        raise ValueError(
            'Argument `p` must be 1 with mode="histogram" (the CDF form gives W1 only). '
            f"Received: p={options['p']!r}"
        )
    return options


@Options(mode=choice(*WASSERSTEIN_MODES), p=number(low=1.0), joint=_histogram_order)
@targets_checked
@compiled_on_jax
def wasserstein_1d_loss(y_true: Tensor, y_pred: Tensor, p: float = 1, mode: str = "samples") -> Tensor:
    r"""Wasserstein distance between two 1-D distributions per sample
    (sorted / CDF form).

    `mode="samples"`: the last axis of `y_true` and of `y_pred` holds `N`
    samples of a 1-D distribution each (the same `N` on both sides), and

    $$W_p = \Big(\frac1N \sum_{k} |x_{(k)} - y_{(k)}|^p\Big)^{1/p}$$

    with `x_(k)`, `y_(k)` the sorted samples (`p = 1`: the mean absolute
    difference of the sorted values, `scipy.stats.wasserstein_distance`).
    The outer power has a finite gradient (0) at 0.

    `mode="histogram"`: the last axis holds non-negative weights over `K`
    ordered, unit-spaced bins `0, 1, ..., K - 1` (each row normalized to sum
    1 here; an all-zero row counts as empty), and

    $$W_1 = \sum_{k=0}^{K-2} |F_p(k) - F_q(k)|$$

    with `F` the cumulative sums (`p` must be 1): the earth mover's distance
    of ordinal classes, for a softmax output over ordered bins.

    A NaN or infinite target raises a `ValueError` naming `y_true` when the
    values are concrete; inside a compiled function that sample's loss is
    NaN (not a finite value over a NaN gradient).

    Args:
        y_true: Target samples or histograms, `(..., N)`.
        y_pred: Predicted samples or histograms, `(..., N)`.
        p: Order `>= 1` (`"samples"`); 1 only for `"histogram"`.
        mode: `"samples"` or `"histogram"`.

    Returns:
        The distance per sample, `y_pred.shape[:-1]`.

    Reference:
        Ramdas, Garcia Trillos & Cuturi, "On Wasserstein Two-Sample Testing
        and Related Families of Nonparametric Tests", Entropy 2017; Hou, Yu
        & Samaras, "Squared Earth Mover's Distance-based Loss for Training
        Deep Neural Networks", arXiv:1611.05916, 2016 (histograms).

    Examples:
        >>> w = wasserstein_1d_loss([[0.0, 1.0, 3.0]], [[5.0, 1.0, 2.0]])
        >>> print(keras.ops.convert_to_numpy(w).round(4))
        [1.3333]
        >>> w = wasserstein_1d_loss([[1.0, 0.0, 0.0]], [[0.0, 0.0, 2.0]], mode="histogram")
        >>> print(keras.ops.convert_to_numpy(w).round(4))
        [2.]
    """
    y_true, y_pred = prepare_inputs(y_true, y_pred)
    same_rank = len(y_true.shape) == len(y_pred.shape) >= 1
    n_true, n_pred = (y_true.shape[-1], y_pred.shape[-1]) if same_rank else (None, None)
    if not same_rank or (n_true is not None and n_pred is not None and n_true != n_pred):
        what = "samples" if mode == "samples" else "bins"
        raise ValueError(
            f"`y_true` and `y_pred` must have the same shape: the same number of {what} on the last "
            f"axis. Received: y_true.shape={tuple(y_true.shape)}, y_pred.shape={tuple(y_pred.shape)}"
        )
    if mode == "samples":
        diff = ops.abs(ops.sort(y_true, axis=-1) - ops.sort(y_pred, axis=-1))
        if p == 1.0:
            return finite_or_nan(ops.mean(diff, axis=-1), y_true, per_sample=True)
        # W_p is homogeneous of degree 1: computed on diff / s with s the
        # row's largest difference (held constant, so the gradient is exact),
        # the powers cannot overflow (|diff| = 1e30, p = 2 is still finite).
        scale = ops.stop_gradient(ops.max(diff, axis=-1, keepdims=True))
        scale = ops.where(scale > 0, scale, ops.ones_like(scale))
        value = ops.squeeze(scale, -1) * safe_pow(ops.mean(safe_pow(diff / scale, p), axis=-1), 1.0 / p)
        return finite_or_nan(value, y_true, per_sample=True)

    def normalize(h):
        total = ops.sum(h, axis=-1, keepdims=True)
        return h / ops.where(total != 0, total, ops.ones_like(total))

    cdf_gap = ops.cumsum(normalize(y_true) - normalize(y_pred), axis=-1)
    return finite_or_nan(ops.sum(ops.abs(cdf_gap[..., :-1]), axis=-1), y_true, per_sample=True)


@register
class Wasserstein1DLoss(LossPlus):
    """Wasserstein distance between 1-D distributions, one per sample: sets of
    1-D samples (`mode="samples"`, `W_p`) or histograms over ordered bins
    (`mode="histogram"`, `W_1` from the CDFs).

    See `wasserstein_1d_loss`.

    Args:
        p: Order `>= 1` (`"samples"`); 1 only for `"histogram"`.
        mode: `"samples"` or `"histogram"`.
        reduction, name, dtype: As for every `keras.losses.Loss`.

    Reference:
        Ramdas, Garcia Trillos & Cuturi, Entropy 2017; Hou, Yu & Samaras,
        arXiv:1611.05916, 2016.

    Examples:
        >>> loss = Wasserstein1DLoss(p=2)
        >>> round(float(loss([[0.0, 1.0, 3.0]], [[5.0, 1.0, 2.0]])), 4)
        1.4142
    """

    fn = staticmethod(wasserstein_1d_loss)

    def __init__(
        self,
        p: float = 1,
        mode: str = "samples",
        reduction: Optional[str] = "sum_over_batch_size",
        name: Optional[str] = "wasserstein_1d_loss",
        dtype: Any = None,
    ) -> None:
        super().__init__(reduction=reduction, name=name, dtype=dtype, p=p, mode=mode)

