"""Nash-MTL (Navon et al., ICML 2022): the task weights of the Nash
bargaining solution, `G G^T alpha = 1 / alpha`, by a fixed number of damped
Newton steps in `keras.ops` (so that the step compiles under XLA)."""

from __future__ import annotations

from typing import Any, Dict, Tuple

from keras import ops

from keras_lossplus.losses.options import check_number
from keras_lossplus.multi_output.weighting.base import named
from keras_lossplus.multi_output.weighting.gradient_based import GradientStrategy

Tensor = Any

_RIDGE = 1e-6  # added to the correlation matrix of the gradients: collinear gradients give finite weights


def nash_weights(gram: Tensor, iterations: int = 20) -> Tensor:
    """The positive solution `alpha` of `alpha_i * (K alpha)_i = 1` (the
    Nash bargaining weights of Navon et al. 2022, eq. 4, for the Gram matrix
    `K = G G^T` of the task gradients): the minimiser of the strictly convex
    `0.5 alpha^T K alpha - sum_i log(alpha_i)`.

    With `d = diag(K)`, `alpha = beta / sqrt(d)` where `beta` solves the same
    equation for the correlation matrix `C = K / sqrt(d d^T)` (unit
    diagonal, so the solution does not depend on the gradients' scales),
    plus `1e-6 I` so that collinear gradients keep finite weights. `beta` is
    found by damped Newton steps, `beta -= step / (1 + lambda)` with `lambda`
    the Newton decrement (Nesterov's damping: the iterates stay positive, and
    converge quadratically once close), from `1`, exact for orthogonal
    gradients. A zero gradient (`d_k <= 1e-12 max(d)`) counts as orthogonal
    to the others with the mean norm of the non-zero ones; an all-zero `K`
    gives `alpha = 1`.

    Examples:
        >>> import numpy as np
        >>> gram = np.array([[1.0, 0.0], [0.0, 4.0]], "float32")  # orthogonal: alpha_i = 1 / |g_i|
        >>> [round(float(a), 3) for a in nash_weights(gram)]
        [1.0, 0.5]
    """
    gram = ops.cast(gram, "float32")
    num_tasks = gram.shape[0]
    eye = ops.eye(num_tasks, dtype="float32")
    diagonal = ops.diagonal(gram)
    largest = ops.max(diagonal)
    zero = diagonal <= 1e-12 * largest
    count = ops.sum(ops.cast(ops.logical_not(zero), "float32"))
    fill = ops.sum(ops.where(zero, 0.0, diagonal)) / ops.maximum(count, 1.0)
    inv_sqrt = 1.0 / ops.sqrt(ops.where(zero, ops.where(fill > 0, fill, 1.0), diagonal))
    kept = ops.cast(ops.logical_not(zero), "float32")
    correlation = gram * (inv_sqrt * kept)[:, None] * (inv_sqrt * kept)[None, :]
    correlation = correlation + eye * (1.0 - kept)[:, None] + _RIDGE * eye

    def step(_, beta):
        gradient = ops.matmul(correlation, beta) - 1.0 / beta
        hessian = correlation + eye / (beta * beta)[:, None]
        direction = ops.solve(hessian, gradient[:, None])[:, 0]
        decrement = ops.sqrt(ops.maximum(ops.sum(gradient * direction), 0.0))
        return beta - direction / (1.0 + decrement)

    beta = ops.fori_loop(0, iterations, step, ops.ones((num_tasks,), "float32"))
    return ops.where(largest > 0, beta * inv_sqrt, ops.ones_like(beta))


@named("nash_mtl")
class NashMTL(GradientStrategy):
    """Nash-MTL: multi-task learning as a bargaining game (Navon et al., 2022).

    The update is `sum_k alpha_k g_k` with `alpha > 0` the Nash bargaining
    solution `G G^T alpha = 1 / alpha` (`G` the `(T, P)` task gradients of
    the shared variables): each task's directional derivative along the
    update is `1 / alpha_k`, scale-invariant and proportionally fair. The
    shared update is then clipped to norm `max_norm` (as LibMTL, which clips
    the shared parameters' gradient with `clip_grad_norm_`); task-specific
    variables get `alpha_k` times their task's gradient. The weights are
    recomputed every `update_weights_every` steps and reused in between.

    As LibMTL's `Nash_MTL`, except that LibMTL solves the problem with cvxpy
    (20 convex-concave iterations of ECOS) and this class by 20 damped
    Newton steps on the same equation (see `nash_weights`); both reach its
    solution to solver precision on well-posed problems. Where LibMTL's
    solver fails (zero gradients) it keeps the previous weights: so do we
    for all-zero gradients, while a single zero gradient is treated as an
    orthogonal one of the mean norm (see `nash_weights`, which also adds
    `1e-6` to the gradients' correlation matrix, so that nearly collinear
    gradients keep finite weights). LibMTL's stop test compares
    `G G^T / |G G^T|_F` with `1 / alpha` and can stop at the starting
    weights (e.g. nearly parallel gradients); we always solve. The
    gradients are computed at every step (LibMTL skips them when it reuses
    the weights).

    The first step differs from LibMTL's where LibMTL's first convex
    subproblem (linearised at `alpha = 1`) is unbounded, which needs a task
    whose gradient opposes the sum of the gradients (`g_k . sum_j g_j < 0`):
    ECOS reports it unbounded and LibMTL keeps `alpha = 1`, so its first
    update is the plain sum of the gradients (clipped), a step against
    which raises that task's loss; here it is the Nash direction, a step
    against which lowers every task's loss. Gradients `(1, 0)`, `(-1.1, 1)`: LibMTL `(1, 1)`,
    here `(1.961, 1.319)`. Exactly opposite gradients have no solution:
    LibMTL's subproblem is infeasible (it keeps `alpha = 1`), here the ridge
    gives large finite weights and `max_norm` clips the update.

    Args:
        update_weights_every: recompute the weights every this many steps
            (LibMTL's `update_weights_every`, default 1).
        max_norm: clip the shared update to this norm; 0 turns clipping off
            (LibMTL's `max_norm`, default 1.0).
        iterations: Newton steps (LibMTL's `optim_niter`, default 20).

    Reference:
        Navon, Shamsian, Achituve, Maron, Kawaguchi, Chechik, Fetaya.
        Multi-Task Learning as a Bargaining Game. ICML 2022. LibMTL's
        `LibMTL/weighting/Nash_MTL.py`.

    Examples:
        >>> import numpy as np
        >>> strategy = NashMTL(max_norm=0.0)
        >>> strategy.build_tasks(["a", "b"], [1.0, 1.0])
        >>> grads = np.array([[1.0, 0.0], [0.0, 2.0]], "float32")
        >>> direction, weights, _ = strategy.combine_gradients(grads, np.ones(2, "float32"))
        >>> [round(float(w), 3) for w in weights], [round(float(d), 3) for d in direction]
        ([1.0, 0.5], [1.0, 1.0])
    """

    def __init__(self, update_weights_every: int = 1, max_norm: float = 1.0, iterations: int = 20, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.update_weights_every = int(check_number("update_weights_every", update_weights_every, low=1))
        self.max_norm = check_number("max_norm", max_norm, low=0.0)
        self.iterations = int(check_number("iterations", iterations, low=1))

    def create_state(self, num_tasks: int) -> None:
        self.alpha = self.add_weight(shape=(num_tasks,), initializer="ones", name="alpha", trainable=False)
        self.step = self.state_weight("step", ())

    def combine_gradients(self, grads: Tensor, losses: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        grads = self._weighted(grads)
        # the weights scale as 1 / |g|: solve on gradients scaled to max |g| = 1, so that G G^T cannot overflow
        largest = ops.max(ops.abs(grads))
        scale = ops.where(largest > 0, largest, 1.0)
        scaled = grads / scale
        gram = ops.matmul(scaled, ops.transpose(scaled))
        previous = ops.copy(ops.cast(self.alpha, "float32"))  # a snapshot: assign() is in place on torch
        solved = ops.where(ops.max(ops.abs(gram)) > 0, nash_weights(gram, self.iterations) / scale, previous)
        step = ops.cast(self.step, "float32")
        update = ops.equal(ops.mod(step, float(self.update_weights_every)), 0.0)
        alpha = ops.where(update, solved, previous)
        self.alpha.assign(alpha)
        self.step.assign(step + 1.0)
        direction = ops.matmul(alpha, grads)
        if self.max_norm > 0:  # torch.nn.utils.clip_grad_norm_
            norm = ops.sqrt(ops.sum(direction * direction))
            direction = direction * ops.minimum(self.max_norm / (norm + 1e-6), 1.0)
        weights = alpha * self.prior_tensor()
        return direction, weights, weights

    def get_config(self) -> Dict[str, Any]:
        return {
            **super().get_config(),
            "update_weights_every": self.update_weights_every,
            "max_norm": self.max_norm,
            "iterations": self.iterations,
        }
