"""The entropic optimal transport cost between the rows of `y_true` and of
`y_pred` (Sinkhorn), in float32 at any `C / epsilon`."""

from __future__ import annotations

from typing import Any, Optional

import keras
import numpy as np
from keras import ops

from keras_lossplus import backend as klp_backend
from keras_lossplus.backend import compiled_on_jax
from keras_lossplus.losses.base import BatchLoss, register
from keras_lossplus.losses.distribution.common import (
    distances,
    finite_or_nan,
    sample_inputs,
    targets_checked,
)
from keras_lossplus.losses.magnitude import magnitude_checked
from keras_lossplus.losses.options import Options, choice, flag, number, positive_int

Tensor = Any

SINKHORN_COSTS = ("squared_euclidean", "euclidean")
# log(0) of a zero mass: a large finite negative number, so that log-sum-exps
# and differences of log-masses stay finite (exp of it is exactly 0).
_LOG_ZERO = -1e30
_BLOCK = 16  # Sinkhorn iterations between two absorptions of the potentials into the log plan


def _log_masses(w: Tensor) -> tuple:
    """Log of the masses `w / sum(w)` (`_LOG_ZERO` where a mass is 0) and `sum(w)`."""
    total = ops.sum(w)
    mass = w / ops.where(total > 0, total, ops.ones_like(total))
    positive = mass > 0
    log_mass = ops.log(ops.where(positive, mass, ops.ones_like(mass)))
    return ops.where(positive, log_mass, ops.full_like(mass, _LOG_ZERO)), total


def _largest(dtype: Any) -> float:
    return float(np.finfo(keras.backend.standardize_dtype(dtype)).max)


def _masked_min(cost: Tensor, keep: Tensor, axis: int) -> Tensor:
    """The minimum of `cost` along `axis` over the rows (`axis=0`) or
    columns (`axis=1`) that the boolean vector `keep` marks (0 where it
    marks none). The mask enters as a `maximum` with a vector (`+-largest`),
    not a `where` over the matrix (eager torch runs a float `maximum` several
    times faster)."""
    largest = _largest(cost.dtype)
    floor = ops.where(keep, ops.full_like(keep, -largest, dtype=cost.dtype), ops.full_like(keep, largest, dtype=cost.dtype))
    low = ops.min(ops.maximum(cost, ops.expand_dims(floor, 1 - axis)), axis=axis)
    return ops.where(ops.any(keep), low, ops.zeros_like(low))


def _first_iteration(cost: Tensor, log_a: Tensor, log_b: Tensor, epsilon: float) -> Tensor:
    """`log P` after the first Sinkhorn iteration (from `u = 0`: `v`, then
    `u`), in a shifted frame that float32 holds.

    The potentials of the log-domain iterations are of the size of
    `C / epsilon` (1e9 for points 1e4 apart at `epsilon = 0.1`), where a
    float32 has no digits left for the `O(1)` log-masses of the plan: the
    plan came out 10x off. Here the cost is reduced first (the column
    minima, then the row minima subtracted, over the rows and columns with
    mass: every row and column then holds a 0), which changes the
    potentials by constants and not the plan, and the first iteration
    returns `log P` itself, whose entries that matter are `O(log B)`; the
    later iterations start from it (`_sinkhorn_steps`). Entries of a row or
    column without mass are exactly `_LOG_ZERO` (and no entry is below it,
    so that no `logsumexp` sees only `-inf`)."""
    rows, cols = log_a > 0.5 * _LOG_ZERO, log_b > 0.5 * _LOG_ZERO
    largest = _largest(cost.dtype)
    # the mask of the rows / columns without mass as caps: a vector `where`, then a float `minimum` over
    # the matrix (eager torch runs it several times faster than a `where` over the matrix)
    cap_rows = ops.expand_dims(ops.where(rows, ops.full_like(log_a, largest), ops.full_like(log_a, _LOG_ZERO)), 1)
    cap_cols = ops.expand_dims(ops.where(cols, ops.full_like(log_b, largest), ops.full_like(log_b, _LOG_ZERO)), 0)
    reduced = cost - ops.expand_dims(_masked_min(cost, rows, 0), 0)
    # v from u = 0 (a row without mass starts, and stays, at log 0). Each column's largest entry over the
    # rows with mass is exactly 0: the log-sum-exp needs no shift (and is 0, not log 0, with no such row)
    column_sums = ops.sum(ops.exp(ops.minimum(reduced / -epsilon, cap_rows)), axis=0)
    v = log_b - ops.log(ops.maximum(column_sums, 1.0))
    # the row minima subtracted in cost units (then divided: no cancellation in log units)
    reduced = reduced - ops.expand_dims(_masked_min(reduced, cols, 1), 1)
    log_plan = ops.maximum(reduced / -epsilon + ops.expand_dims(v, 0), _LOG_ZERO)
    log_plan = ops.minimum(ops.minimum(log_plan, cap_rows), cap_cols)
    return log_plan + ops.expand_dims(log_a - ops.logsumexp(log_plan, axis=1), 1)


def _sinkhorn_steps(log_plan: Tensor, log_a: Tensor, log_b: Tensor, count: int) -> Tensor:
    """`count` log-domain iterations from the log plan `log_plan` (whose
    rows hold the masses `a`): the potentials `u`, `v` from 0 as the loop's
    state (POT's `sinkhorn_log` on the log kernel `log_plan`), then absorbed
    into the plan."""
    def body(_, state):
        u, v = state
        v = log_b - ops.logsumexp(log_plan + ops.expand_dims(u, 1), axis=0)
        u = log_a - ops.logsumexp(log_plan + ops.expand_dims(v, 0), axis=1)
        return u, v

    u, v = ops.fori_loop(0, count, body, (ops.zeros_like(log_a), ops.zeros_like(log_b)))
    return log_plan + ops.expand_dims(u, 1) + ops.expand_dims(v, 0)


def _sinkhorn_log_plan(cost: Tensor, log_a: Tensor, log_b: Tensor, epsilon: float, max_iter: int) -> Tensor:
    """Log of the entropic transport plan after `max_iter` log-domain Sinkhorn
    iterations (POT's `sinkhorn_log`: `v` then `u`, from `u = v = 0`), with
    no gradient. A row without mass is left out exactly (also from the first
    iteration), as if it were not in the batch.

    The first iteration is `_first_iteration`; the later ones run in blocks
    of `_BLOCK`, each from the last block's log plan with potentials from 0,
    which are absorbed into the plan at its end: the same iterations, with
    potentials that never grow past a block's worth (about `_BLOCK log B`
    where the plan is far from converged), so that float32 keeps the plan's
    entries to a few 1e-7 at any `C / epsilon` and any `max_iter`, for the
    price of one `B x M` pass per block."""
    cost = ops.stop_gradient(cost)
    log_a, log_b = ops.stop_gradient(log_a), ops.stop_gradient(log_b)
    fast = klp_backend.sinkhorn_log_plan(cost, log_a, log_b, epsilon, max_iter, _LOG_ZERO)
    if fast is not None:  # torch: the same iterations as stabilized matrix scaling
        return fast
    log_plan = _first_iteration(cost, log_a, log_b, epsilon)
    blocks, rest = divmod(max_iter - 1, _BLOCK)
    if blocks:
        log_plan = ops.fori_loop(0, blocks, lambda _, plan: _sinkhorn_steps(plan, log_a, log_b, _BLOCK), log_plan)
    if rest:
        log_plan = _sinkhorn_steps(log_plan, log_a, log_b, rest)
    return ops.stop_gradient(log_plan)


def _transport_cost(x, y, log_a, log_b, cost, epsilon, max_iter, entropic) -> Tensor:
    """`<P, C>` (plus `epsilon KL(P || a b^T)` if `entropic`), with the
    plan `P` held constant: the gradient flows through `C` only (envelope
    theorem)."""
    c = distances(x, y, squared=cost == "squared_euclidean")
    log_p = _sinkhorn_log_plan(c, log_a, log_b, epsilon, max_iter)
    plan = ops.exp(log_p)
    value = ops.sum(plan * c)
    if entropic:
        # log P >= about 2 _LOG_ZERO, finite: where P is 0, P log(...) is 0
        kl = log_p - ops.expand_dims(log_a, 1) - ops.expand_dims(log_b, 0)
        value = value + epsilon * ops.stop_gradient(ops.sum(plan * kl))
    return value


def _check_epsilon(epsilon: float, dtype: Any) -> None:
    """`epsilon` must be a normal number of the compute dtype (the log plan
    is `-C / epsilon`, and `epsilon KL(P || a b^T)` is added to the value)."""
    info = np.finfo(keras.backend.standardize_dtype(dtype))
    if not float(info.tiny) <= epsilon <= float(info.max):
        raise ValueError(
            f"Argument `epsilon` must be a positive number between {float(info.tiny):.3g} and "
            f"{float(info.max):.3g} (the range of {info.dtype}, in which the loss computes). "
            f"Received: epsilon={epsilon!r}"
        )


@compiled_on_jax
def _sinkhorn(
    y_true: Tensor, y_pred: Tensor, epsilon: float, max_iter: int, cost: str, debias: bool,
    sample_weight: Optional[Tensor],
) -> Tensor:
    x, y, wx, wy = sample_inputs(y_true, y_pred, sample_weight)
    _check_epsilon(epsilon, x.dtype)
    log_a, total_a = _log_masses(wx)
    log_b, total_b = _log_masses(wy)
    value = _transport_cost(x, y, log_a, log_b, cost, epsilon, max_iter, debias)
    if debias:
        self_x = _transport_cost(x, None, log_a, log_a, cost, epsilon, max_iter, True)
        self_y = _transport_cost(y, None, log_b, log_b, cost, epsilon, max_iter, True)
        value = value - 0.5 * (self_x + self_y)
    valid = ops.logical_and(total_a > 0, total_b > 0)
    return finite_or_nan(ops.where(valid, value, ops.zeros_like(value)), x, per_sample=False)


@Options(cost=choice(*SINKHORN_COSTS), epsilon=number(low=0.0, low_open=True), max_iter=positive_int, debias=flag)
@targets_checked
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
    iterations run on the cost reduced by its row and column minima and
    update the log plan itself (the potentials, of the size of
    `C / epsilon`, are never held), so float32 gives the float64 value to
    about 1e-6 also where `C / epsilon` reaches 1e9 or more. The
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
    gradient); with no mass on either side the loss is 0. The costs are
    exact for close points wherever they sit up to 4 dimensions
    (`common.distances`).

    A NaN or infinite target raises a `ValueError` naming `y_true` when the
    values are concrete (inside a compiled function the loss is NaN).
    `epsilon` must lie in the range of the compute dtype (a `ValueError`
    naming it otherwise). Inputs of magnitude beyond `magnitude.squares_bound` (1.7e13 in float32)
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
