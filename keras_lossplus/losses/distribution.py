"""Divergences and distances between distributions.

Two kinds of loss live here:

* **Per sample**, between two distributions held by one row each:
  `JensenShannonDivergence` (probability vectors over the last axis) and
  `Wasserstein1DLoss` (1-D sample sets or histograms over ordered bins).
  They return one value per sample and Keras applies reduction and
  `sample_weight`, as for `keras.losses.kl_divergence`.
* **Per batch**, between two empirical distributions: the rows of `y_true`
  `(B, D)` are samples of the target distribution and the rows of `y_pred`
  `(B, D)` samples of the model's: `MMDLoss`, `SinkhornLoss`,
  `EnergyDistance`. They return one scalar per batch; `sample_weight` `w_i`
  is the probability mass of row `i` in both samples (row `i` of `y_true`
  and row `i` of `y_pred`), normalized to sum 1, so that a weight of 0
  removes a row from both distributions.

Every pairwise computation is one `(B, D) x (D, B)` matmul
(`keras_lossplus.ops.pairwise_distances`), `O(B^2)` memory, and the
gradient is finite between identical points.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Union

import numpy as np
import keras  # noqa: F401  (the docstring examples use it)
from keras import ops

from keras_lossplus import backend as klp_backend
from keras_lossplus.backend import compiled_on_jax
from keras_lossplus.losses.base import BatchLoss, LossPlus, prepare_inputs, register
from keras_lossplus.losses.magnitude import magnitude_checked
from keras_lossplus.losses.options import Options, choice, flag, number, number_or_list
from keras_lossplus.ops import pairwise_distances, safe_pow

Tensor = Any
Bandwidth = Union[float, Sequence[float]]

__all__ = [
    "EnergyDistance",
    "JensenShannonDivergence",
    "MMDLoss",
    "SinkhornLoss",
    "Wasserstein1DLoss",
    "energy_distance",
    "jensen_shannon_divergence",
    "mmd_loss",
    "sinkhorn_loss",
    "wasserstein_1d_loss",
]

SINKHORN_COSTS = ("squared_euclidean", "euclidean")
WASSERSTEIN_MODES = ("samples", "histogram")
_EPSILON = 1e-7  # keras.backend.epsilon(): the clip of keras.losses.kl_divergence
# log(0) of a zero mass: a large finite negative number, so that log-sum-exps
# and differences of log-masses stay finite (exp of it is exactly 0).
_LOG_ZERO = -1e30


# --------------------------------------------------------------------------- shared pieces


def _positive_int(name: str, value: Any) -> int:
    """An integer `>= 1` (`TypeError` for a non-integer, `ValueError` below 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"Argument `{name}` must be a positive integer. Received: {name}={value!r}")
    if int(value) < 1:
        raise ValueError(f"Argument `{name}` must be a positive integer (>= 1). Received: {name}={value!r}")
    return int(value)


def _sample_inputs(y_true: Tensor, y_pred: Tensor, sample_weight: Optional[Tensor]) -> tuple:
    """`x` (N, D), `y` (M, D) in the compute dtype and their row weights.

    Rank-1 inputs are read as `(B, 1)` (1-D samples). Without
    `sample_weight` every row weighs 1 (and `N != M` is allowed); with it,
    `N == M` and row `i` of both samples weighs `w_i` (negative weights
    count as 0).
    """
    y_true, y_pred = prepare_inputs(y_true, y_pred)
    out = []
    for name, t in (("y_true", y_true), ("y_pred", y_pred)):
        if len(t.shape) == 1:
            t = ops.expand_dims(t, -1)
        if len(t.shape) != 2:
            raise ValueError(
                f"`{name}` must hold one sample per row, shape (batch_size, dim) (or (batch_size,) "
                f"for 1-D samples). Received: {name}.shape={tuple(t.shape)}"
            )
        out.append(t)
    x, y = out
    if x.shape[1] is not None and y.shape[1] is not None and x.shape[1] != y.shape[1]:
        raise ValueError(
            "`y_true` and `y_pred` must have the same number of columns (the dimension of the "
            f"samples). Received: y_true.shape={tuple(x.shape)}, y_pred.shape={tuple(y.shape)}"
        )
    if sample_weight is None:
        return x, y, ops.ones_like(x[:, 0]), ops.ones_like(y[:, 0])
    if x.shape[0] is not None and y.shape[0] is not None and x.shape[0] != y.shape[0]:
        raise ValueError(
            "With `sample_weight`, `y_true` and `y_pred` must have the same number of rows (row i "
            f"of both weighs sample_weight[i]). Received: y_true.shape={tuple(x.shape)}, "
            f"y_pred.shape={tuple(y.shape)}"
        )
    w = ops.reshape(ops.cast(ops.convert_to_tensor(sample_weight), x.dtype), (-1,))
    if w.shape[0] is not None and x.shape[0] is not None and w.shape[0] != x.shape[0]:
        raise ValueError(
            "`sample_weight` must hold one weight per row of `y_pred`. Received: "
            f"sample_weight with {w.shape[0]} values for y_pred.shape={tuple(y.shape)}"
        )
    w = ops.maximum(w, 0.0)  # a mass: negative weights count as 0
    return x, y, w, w


def _weighted_mean(matrix: Tensor, wa: Tensor, wb: Tensor, off_diagonal: bool = False) -> tuple:
    """`sum_ij wa_i wb_j m_ij / sum_ij wa_i wb_j` (over `i != j` if asked),
    0 when the weights of the pairs sum to 0; and that sum."""
    pair = ops.expand_dims(wa, 1) * ops.expand_dims(wb, 0)
    if off_diagonal:
        pair = ops.where(ops.eye(ops.shape(pair)[0], dtype="bool"), ops.zeros_like(pair), pair)
    total = ops.sum(pair)
    return ops.divide_no_nan(ops.sum(pair * matrix), total), total


# --------------------------------------------------------------------------- Jensen-Shannon


@Options(from_logits=flag)
@compiled_on_jax
def jensen_shannon_divergence(y_true: Tensor, y_pred: Tensor, from_logits: bool = False) -> Tensor:
    r"""Jensen-Shannon divergence between two probability vectors per sample.

    $$\mathrm{JS}(p, q) = \tfrac12 \mathrm{KL}(p \,\|\, m) + \tfrac12 \mathrm{KL}(q \,\|\, m),
      \quad m = \tfrac12 (p + q)$$

    over the last axis, natural logarithm, so `0 <= JS <= log 2`. `p` is
    `y_true` and `q` is `y_pred` (after a softmax when `from_logits=True`).
    Like `keras.losses.kl_divergence`, both are clipped to `[1e-7, 1]`
    first, so the value and the gradient stay finite at zero probabilities;
    the vectors are not renormalized (feed distributions). Unlike KL it is
    symmetric and bounded, and finite when the supports differ. It equals
    `scipy.spatial.distance.jensenshannon(p, q) ** 2` (scipy returns the
    square root, the Jensen-Shannon distance).

    Args:
        y_true: Target distributions, `(..., K)`.
        y_pred: Predicted distributions (or logits), `(..., K)`.
        from_logits: Whether `y_pred` holds logits.

    Returns:
        The divergence per sample, `y_pred.shape[:-1]`.

    Reference:
        Lin, "Divergence measures based on the Shannon entropy",
        IEEE Transactions on Information Theory 1991.

    Examples:
        >>> js = jensen_shannon_divergence([[1.0, 0.0], [0.5, 0.5]], [[0.0, 1.0], [0.5, 0.5]])
        >>> print(keras.ops.convert_to_numpy(js).round(4))
        [0.6931 0.    ]
    """
    y_true, y_pred = prepare_inputs(y_true, y_pred)
    if from_logits:
        y_pred = ops.softmax(y_pred, axis=-1)
    p = ops.clip(y_true, _EPSILON, 1.0)
    q = ops.clip(y_pred, _EPSILON, 1.0)
    log_m = ops.log(0.5 * (p + q))
    return 0.5 * ops.sum(p * (ops.log(p) - log_m) + q * (ops.log(q) - log_m), axis=-1)


@register
class JensenShannonDivergence(LossPlus):
    """Jensen-Shannon divergence `0.5 KL(p || m) + 0.5 KL(q || m)`,
    `m = (p + q) / 2`, between the target and predicted distributions.

    See `jensen_shannon_divergence`. A symmetric, bounded (`<= log 2`)
    alternative to `keras.losses.KLDivergence`.

    Args:
        from_logits: Whether `y_pred` holds logits (a softmax is applied).
        reduction, name, dtype: As for every `keras.losses.Loss`.

    Reference:
        Lin, "Divergence measures based on the Shannon entropy",
        IEEE Transactions on Information Theory 1991.

    Examples:
        >>> loss = JensenShannonDivergence()
        >>> round(float(loss([[1.0, 0.0], [0.5, 0.5]], [[0.0, 1.0], [0.5, 0.5]])), 4)
        0.3466
    """

    fn = staticmethod(jensen_shannon_divergence)

    def __init__(
        self,
        from_logits: bool = False,
        reduction: Optional[str] = "sum_over_batch_size",
        name: Optional[str] = "jensen_shannon_divergence",
        dtype: Any = None,
    ) -> None:
        super().__init__(reduction=reduction, name=name, dtype=dtype, from_logits=from_logits)


# --------------------------------------------------------------------------- MMD


@compiled_on_jax
def _mmd(y_true: Tensor, y_pred: Tensor, bandwidth: tuple, sample_weight: Optional[Tensor]) -> Tensor:
    x, y, wx, wy = _sample_inputs(y_true, y_pred, sample_weight)

    def kernel(sq):
        return sum(ops.exp(sq * (-0.5 / (s * s))) for s in bandwidth)

    k_xx = kernel(pairwise_distances(x, metric="squared_euclidean"))
    k_yy = kernel(pairwise_distances(y, metric="squared_euclidean"))
    k_xy = kernel(pairwise_distances(x, y, metric="squared_euclidean"))
    mean_xx, pairs_x = _weighted_mean(k_xx, wx, wx, off_diagonal=True)
    mean_yy, pairs_y = _weighted_mean(k_yy, wy, wy, off_diagonal=True)
    mean_xy, _ = _weighted_mean(k_xy, wx, wy)
    value = mean_xx + mean_yy - 2.0 * mean_xy
    valid = ops.logical_and(pairs_x > 0, pairs_y > 0)
    return ops.where(valid, value, ops.zeros_like(value))


@Options(bandwidth=number_or_list(low=0.0, low_open=True))
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
    Squared distances come from one matmul (no square root), so identical
    points have a finite gradient.

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


# --------------------------------------------------------------------------- Sinkhorn


def _log_masses(w: Tensor) -> tuple:
    """Log of the masses `w / sum(w)` (`_LOG_ZERO` where a mass is 0) and `sum(w)`."""
    total = ops.sum(w)
    mass = w / ops.where(total > 0, total, ops.ones_like(total))
    positive = mass > 0
    log_mass = ops.log(ops.where(positive, mass, ops.ones_like(mass)))
    return ops.where(positive, log_mass, ops.full_like(mass, _LOG_ZERO)), total


def _sinkhorn_log_plan(cost: Tensor, log_a: Tensor, log_b: Tensor, epsilon: float, max_iter: int) -> Tensor:
    """Log of the entropic transport plan after `max_iter` log-domain Sinkhorn
    iterations (POT's `sinkhorn_log`: `v` then `u`, from `u = v = 0`), with
    no gradient. A row without mass is left out exactly (also from the first
    iteration), as if it were not in the batch."""
    fast = klp_backend.sinkhorn_log_plan(cost, log_a, log_b, epsilon, max_iter, _LOG_ZERO)
    if fast is not None:  # torch: the same iterations as stabilized matrix scaling
        return fast
    cost = ops.stop_gradient(cost)
    log_a, log_b = ops.stop_gradient(log_a), ops.stop_gradient(log_b)
    log_k = cost * (-1.0 / epsilon)

    def body(_, state):
        u, v = state
        v = log_b - ops.logsumexp(log_k + ops.expand_dims(u, 1), axis=0)
        u = log_a - ops.logsumexp(log_k + ops.expand_dims(v, 0), axis=1)
        return u, v

    # u = 0 (POT's start) on the rows with mass; rows without mass start (and
    # stay) at log 0, so that they are absent from every iteration
    u0 = ops.where(log_a > 0.5 * _LOG_ZERO, ops.zeros_like(log_a), log_a)
    u, v = ops.fori_loop(0, max_iter, body, (u0, ops.zeros_like(log_b)))
    return ops.stop_gradient(log_k + ops.expand_dims(u, 1) + ops.expand_dims(v, 0))


def _transport_cost(x, y, log_a, log_b, cost, epsilon, max_iter, entropic) -> Tensor:
    """`<P, C>` (plus `epsilon KL(P || a b^T)` if `entropic`), with the
    plan `P` held constant: the gradient flows through `C` only (envelope
    theorem)."""
    c = pairwise_distances(x, y, metric=cost) if y is not None else pairwise_distances(x, metric=cost)
    log_p = _sinkhorn_log_plan(c, log_a, log_b, epsilon, max_iter)
    plan = ops.exp(log_p)
    value = ops.sum(plan * c)
    if entropic:
        kl = log_p - ops.expand_dims(log_a, 1) - ops.expand_dims(log_b, 0)
        value = value + epsilon * ops.stop_gradient(ops.sum(plan * kl))
    return value


@compiled_on_jax
def _sinkhorn(
    y_true: Tensor, y_pred: Tensor, epsilon: float, max_iter: int, cost: str, debias: bool,
    sample_weight: Optional[Tensor],
) -> Tensor:
    x, y, wx, wy = _sample_inputs(y_true, y_pred, sample_weight)
    log_a, total_a = _log_masses(wx)
    log_b, total_b = _log_masses(wy)
    value = _transport_cost(x, y, log_a, log_b, cost, epsilon, max_iter, debias)
    if debias:
        self_x = _transport_cost(x, None, log_a, log_a, cost, epsilon, max_iter, True)
        self_y = _transport_cost(y, None, log_b, log_b, cost, epsilon, max_iter, True)
        value = value - 0.5 * (self_x + self_y)
    valid = ops.logical_and(total_a > 0, total_b > 0)
    return ops.where(valid, value, ops.zeros_like(value))


@Options(cost=choice(*SINKHORN_COSTS), epsilon=number(low=0.0, low_open=True), max_iter=_positive_int, debias=flag)
@magnitude_checked("y_true", "y_pred", hint="Standardize the samples (`epsilon` is on the scale of their costs).")
def sinkhorn_loss(
    y_true: Tensor,
    y_pred: Tensor,
    epsilon: float = 0.1,
    max_iter: int = 100,
    cost: str = "squared_euclidean",
    debias: bool = False,
    sample_weight: Optional[Tensor] = None,
) -> Tensor:
    r"""Entropic optimal transport cost between the samples of `y_true` and
    of `y_pred` (Sinkhorn).

    The rows `x_i` of `y_true` carry masses `a_i`, the rows `y_j` of
    `y_pred` masses `b_j` (uniform, or `sample_weight` normalized to sum
    1). With the cost `C_ij = |x_i - y_j|^2` (or `|x_i - y_j|`), the plan

    $$P = \arg\min_{P \mathbf 1 = a,\ P^\top \mathbf 1 = b}
      \langle P, C\rangle + \epsilon\, \mathrm{KL}(P \,\|\, a b^\top)$$

    is computed by `max_iter` log-domain Sinkhorn iterations (a fixed number,
    so it compiles with XLA; POT's `sinkhorn_log` updates, `v` then `u`),
    and the loss is `<P, C>`, the value of POT's `ot.sinkhorn2`. The
    iterations carry no gradient: the gradient is `P` times the gradient of
    `C` (envelope theorem, as POT returns), which costs one `B x B` pass
    instead of backpropagating through every iteration.

    With `debias=True` the loss is the Sinkhorn divergence
    `S = OT(x, y) - (OT(x, x) + OT(y, y)) / 2` of Feydy et al., where `OT`
    is the entropic cost `<P, C> + epsilon KL(P || a b^T)` (the minimum
    above): it is 0 when the two samples are equal, non-negative (up to the
    convergence of the iterations) and, unlike `<P, C>`, not biased towards
    shrinking `y_pred`'s spread.

    `epsilon` is in the units of the cost: small values approach the
    unregularized optimal transport (the optimal assignment for two clouds
    of equal size) but need more iterations; large values blur it towards
    the distance between the means. A row of weight 0 has no mass (and no
    gradient); with no mass on either side the loss is 0.

    Inputs of magnitude beyond `magnitude.squares_bound` (1.7e13 in float32)
    overflow its squares: eagerly they raise a `ValueError` naming the
    argument; under jit they are clipped to the bound, with the gradient
    passed through (see `keras_lossplus.losses.magnitude`).

    Args:
        y_true: Target samples `(N, D)` (or `(N,)` for 1-D samples).
        y_pred: Model samples `(M, D)`; `M == N` when `sample_weight` is given.
        epsilon: Entropic regularization `> 0`, in cost units.
        max_iter: Number of Sinkhorn iterations, `>= 1`.
        cost: `"squared_euclidean"` or `"euclidean"`.
        debias: Return the Sinkhorn divergence instead of `<P, C>`.
        sample_weight: Optional `(N,)` masses of the rows.

    Returns:
        A scalar.

    Reference:
        Cuturi, "Sinkhorn Distances: Lightspeed Computation of Optimal
        Transport", NeurIPS 2013; Feydy et al., "Interpolating between
        Optimal Transport and MMDs using Sinkhorn Divergences", AISTATS 2019.

    Examples:
        >>> x = [[0.0, 0.0], [1.0, 0.0]]
        >>> y = [[0.0, 1.0], [1.0, 1.0]]
        >>> round(float(sinkhorn_loss(x, y, epsilon=0.01)), 4)
        1.0
    """
    return _sinkhorn(y_true, y_pred, epsilon, max_iter, cost, debias, sample_weight=sample_weight)


@register
class SinkhornLoss(BatchLoss):
    """Entropic optimal transport cost (or Sinkhorn divergence) between the
    samples in `y_true` and those in `y_pred`.

    See `sinkhorn_loss`. One scalar per batch (the same for every
    `reduction`); `sample_weight[i]` is the mass of row `i` in both samples.

    Args:
        epsilon: Entropic regularization `> 0`, in cost units.
        max_iter: Number of Sinkhorn iterations, `>= 1`.
        cost: `"squared_euclidean"` or `"euclidean"`.
        debias: Return the Sinkhorn divergence `OT(x, y) - (OT(x, x) + OT(y, y)) / 2`.
        cross_replica: `"gather"` (default): under `tf.distribute`, the loss of
            the global batch, all-gathered from the replicas; `"local"`: each
            replica's own slice (see `keras_lossplus.losses.BatchLoss`).
        reduction, name, dtype: As for every `keras.losses.Loss`.

    Reference:
        Cuturi, "Sinkhorn Distances", NeurIPS 2013; Feydy et al.,
        "Interpolating between Optimal Transport and MMDs using Sinkhorn
        Divergences", AISTATS 2019.

    Examples:
        >>> loss = SinkhornLoss(epsilon=0.01, debias=True)
        >>> round(float(loss([[0.0, 0.0], [1.0, 0.0]], [[0.0, 1.0], [1.0, 1.0]])), 4)
        1.0
    """

    fn = staticmethod(sinkhorn_loss)

    def __init__(
        self,
        epsilon: float = 0.1,
        max_iter: int = 100,
        cost: str = "squared_euclidean",
        debias: bool = False,
        reduction: Optional[str] = "sum_over_batch_size",
        name: Optional[str] = "sinkhorn_loss",
        dtype: Any = None,
        cross_replica: str = "gather",
    ) -> None:
        super().__init__(
            reduction=reduction, name=name, dtype=dtype, cross_replica=cross_replica,
            epsilon=epsilon, max_iter=max_iter, cost=cost, debias=debias,
        )


# --------------------------------------------------------------------------- 1-D Wasserstein


def _histogram_order(options: dict) -> dict:
    """`p` must be 1 with `mode="histogram"`."""
    if options["mode"] == "histogram" and options["p"] != 1.0:
        raise ValueError(
            'Argument `p` must be 1 with mode="histogram" (the CDF form gives W1 only). '
            f"Received: p={options['p']!r}"
        )
    return options


@Options(mode=choice(*WASSERSTEIN_MODES), p=number(low=1.0), joint=_histogram_order)
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
            return ops.mean(diff, axis=-1)
        # W_p is homogeneous of degree 1: computed on diff / s with s the
        # row's largest difference (held constant, so the gradient is exact),
        # the powers cannot overflow (|diff| = 1e30, p = 2 is still finite).
        scale = ops.stop_gradient(ops.max(diff, axis=-1, keepdims=True))
        scale = ops.where(scale > 0, scale, ops.ones_like(scale))
        return ops.squeeze(scale, -1) * safe_pow(ops.mean(safe_pow(diff / scale, p), axis=-1), 1.0 / p)

    def normalize(h):
        total = ops.sum(h, axis=-1, keepdims=True)
        return h / ops.where(total != 0, total, ops.ones_like(total))

    cdf_gap = ops.cumsum(normalize(y_true) - normalize(y_pred), axis=-1)
    return ops.sum(ops.abs(cdf_gap[..., :-1]), axis=-1)


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


# --------------------------------------------------------------------------- energy distance


@compiled_on_jax
def _energy(y_true: Tensor, y_pred: Tensor, sample_weight: Optional[Tensor]) -> Tensor:
    x, y, wx, wy = _sample_inputs(y_true, y_pred, sample_weight)
    e_xy, total = _weighted_mean(pairwise_distances(x, y), wx, wy)
    e_xx, _ = _weighted_mean(pairwise_distances(x), wx, wx)
    e_yy, _ = _weighted_mean(pairwise_distances(y), wy, wy)
    value = ops.maximum(2.0 * e_xy - e_xx - e_yy, 0.0)
    return ops.where(total > 0, value, ops.zeros_like(value))


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
    distance kernel grows linearly).

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
