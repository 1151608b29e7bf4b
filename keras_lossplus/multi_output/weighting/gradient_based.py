"""Strategies that combine per-task gradients: GradNorm, PCGrad, CAGrad and
MGDA. The model computes one gradient per task (one backward pass each; the
backend-specific step is in `keras_lossplus/backend/`) and hands the
gradients of the *shared* variables, flattened to a `(T, P)` matrix, to
`combine_gradients`; variables that only one output depends on get the
weighted sum of the task gradients. The user's `loss_weights` scale the task
losses before anything else."""

from __future__ import annotations

from typing import Any, Dict, Tuple

import keras
from keras import ops

from keras_lossplus.losses.options import check_choice, check_number
from keras_lossplus.multi_output.weighting.base import WeightingStrategy, named
from keras_lossplus.multi_output.weighting.solvers import cagrad_weights, min_norm_weights

Tensor = Any


class GradientStrategy(WeightingStrategy):
    """Base of the strategies that need per-task gradients (two or more tasks)."""

    uses_task_gradients = True
    min_tasks = 2

    def _weighted(self, grads: Tensor) -> Tensor:
        return self.prior_tensor()[:, None] * ops.cast(grads, "float32")


@named("gradnorm")
class GradNorm(GradientStrategy):
    """GradNorm (Chen et al., 2018): learned task weights that balance the
    tasks' gradient norms.

    With `G_k = w_k * |grad L_k|` (norm over the shared variables),
    `r_k = (L_k / L_k(0)) / mean_j(L_j / L_j(0))` and the target
    `G_bar * r_k^alpha` held constant, each step moves the weights by one
    gradient-descent step of `sum_k |G_k - target_k|` (its exact gradient,
    `sign(G_k - target_k) * |grad L_k|`, needs no second backward pass),
    clips them at 0 and renormalises them to sum to the sum of the initial
    `loss_weights` (T by default). The model's update uses the weights
    before this step.

    Args:
        alpha: strength of the restoring force towards equal training rates.
        learning_rate: step size of the weight update.

    Reference:
        Chen, Badrinarayanan, Lee, Rabinovich. GradNorm: Gradient
        Normalization for Adaptive Loss Balancing in Deep Multitask
        Networks. ICML 2018.

    Examples:
        >>> import numpy as np
        >>> strategy = GradNorm(alpha=1.5, learning_rate=0.1)
        >>> strategy.build_tasks(["a", "b"], [1.0, 1.0])
        >>> grads = np.array([[3.0, 0.0], [0.0, 1.0]], "float32")
        >>> _ = strategy.combine_gradients(grads, np.array([1.0, 1.0], "float32"))
        >>> [round(float(w), 3) for w in strategy.task_weights.numpy()]
        [0.778, 1.222]
    """

    def __init__(self, alpha: float = 1.5, learning_rate: float = 0.025, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.alpha = check_number("alpha", alpha, low=0.0)
        self.learning_rate = check_number("learning_rate", learning_rate, low=0.0, low_open=True)

    def create_state(self, num_tasks: int) -> None:
        self.task_weights = self.add_weight(
            shape=(num_tasks,), initializer=keras.initializers.Constant(self.prior), name="task_weights", trainable=False
        )
        self.initial_losses = self.state_weight("initial_losses", (num_tasks,))

    def loss_weights(self, losses: Tensor, training: bool = True) -> Tuple[Tensor, Tensor]:
        return ops.copy(ops.cast(self.task_weights, "float32")), ops.zeros((), "float32")

    def combine_gradients(self, grads: Tensor, losses: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        grads = ops.cast(grads, "float32")
        losses = ops.cast(losses, "float32")
        weights = ops.copy(ops.cast(self.task_weights, "float32"))  # a snapshot: assign() is in place on torch
        initial = ops.cast(self.initial_losses, "float32")
        initial = ops.where(initial > 0, initial, losses)  # first step: L(0) = L
        self.initial_losses.assign(initial)
        norms = ops.sqrt(ops.sum(grads * grads, axis=1))
        weighted_norms = weights * norms
        ratio = losses / ops.where(initial > 0, initial, 1.0)
        relative = ratio / ops.maximum(ops.mean(ratio), 1e-12)
        target = ops.mean(weighted_norms) * relative**self.alpha
        new = ops.maximum(weights - self.learning_rate * ops.sign(weighted_norms - target) * norms, 0.0)
        total = float(sum(self.prior))
        new = new * total / ops.maximum(ops.sum(new), 1e-12)
        self.task_weights.assign(ops.where(ops.sum(new) > 0, new, weights))
        return ops.matmul(weights, grads), weights, weights

    def get_config(self) -> Dict[str, Any]:
        return {**super().get_config(), "alpha": self.alpha, "learning_rate": self.learning_rate}


@named("pcgrad")
class PCGrad(GradientStrategy):
    """Projecting Conflicting Gradients (Yu et al., 2020).

    For each task `i`, its gradient `g_i` is projected, for every other task
    `j` in random order, onto the normal plane of `g_j` whenever they
    conflict (`g_i . g_j < 0`): `g_i -= (g_i . g_j) / |g_j|^2 * g_j`. The
    update is the sum of the projected gradients (`reduction="sum"`, which
    equals static weighting when no gradients conflict) or their mean.

    Args:
        reduction: `"sum"` or `"mean"` of the projected gradients.
        shuffle: visit the other tasks in a fresh random order for each task
            (the paper); `False` visits them in output order.
        seed: seed of the shuffling.

    Reference:
        Yu, Kumar, Gupta, Levine, Hausman, Finn. Gradient Surgery for
        Multi-Task Learning. NeurIPS 2020.

    Examples:
        >>> import numpy as np
        >>> strategy = PCGrad(shuffle=False)
        >>> strategy.build_tasks(["a", "b"], [1.0, 1.0])
        >>> grads = np.array([[1.0, 0.0], [-1.0, 1.0]], "float32")
        >>> direction, _, _ = strategy.combine_gradients(grads, np.ones(2, "float32"))
        >>> [round(float(d), 3) for d in direction]
        [0.5, 1.5]
    """

    def __init__(self, reduction: str = "sum", shuffle: bool = True, seed: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        check_choice("reduction", reduction, ("sum", "mean"))
        check_choice("shuffle", shuffle, (True, False))
        self.reduction = reduction
        self.shuffle = shuffle
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed, name="pcgrad_seed")

    def combine_gradients(self, grads: Tensor, losses: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        grads = self._weighted(grads)
        num_tasks = self.num_tasks
        squared = ops.sum(grads * grads, axis=1)
        projected = []
        for i in range(num_tasks):
            order = ops.arange(num_tasks)
            if self.shuffle:
                order = keras.random.shuffle(order, seed=self.seed_generator)
            g_i = grads[i]
            for position in range(num_tasks):
                j = order[position]
                g_j = ops.take(grads, j, axis=0)
                dot = ops.sum(g_i * g_j)
                conflict = ops.logical_and(dot < 0, ops.not_equal(j, i))
                norm = ops.take(squared, j)
                coefficient = ops.where(conflict, dot / ops.where(norm > 0, norm, 1.0), 0.0)
                g_i = g_i - coefficient * g_j
            projected.append(g_i)
        direction = ops.sum(ops.stack(projected), axis=0)
        scale = 1.0 / num_tasks if self.reduction == "mean" else 1.0
        weights = self.prior_tensor() * scale
        return direction * scale, weights, weights

    def get_config(self) -> Dict[str, Any]:
        return {**super().get_config(), "reduction": self.reduction, "shuffle": self.shuffle, "seed": self.seed}


@named("cagrad")
class CAGrad(GradientStrategy):
    """Conflict-Averse Gradient descent (Liu et al., 2021).

    With `g0` the mean task gradient and `c = alpha * |g0|`, finds weights
    `w` on the simplex minimising `g_w . g0 + c * |g_w|` (`g_w = sum_k w_k
    g_k`), and updates along `(g0 + c / |g_w| * g_w) / (1 + alpha^2)` (the
    authors' `rescale=1`). Task-specific variables get the weighted sum of
    their task gradients.

    Args:
        alpha: radius of the ball around `g0` searched (paper: 0.4-0.5).
        rescale: `1` divides by `1 + alpha^2` (authors' default), `0` not at
            all, `2` by `1 + alpha`.
        iterations: FISTA iterations on the `T x T` dual problem.

    Reference:
        Liu, Liu, Jin, Stone, Liu. Conflict-Averse Gradient Descent for
        Multi-task Learning. NeurIPS 2021.

    Examples:
        >>> import numpy as np
        >>> strategy = CAGrad(alpha=0.5)
        >>> strategy.build_tasks(["a", "b"], [1.0, 1.0])
        >>> direction, _, _ = strategy.combine_gradients(np.eye(2, dtype="float32"), np.ones(2, "float32"))
        >>> [round(float(d), 3) for d in direction]
        [0.6, 0.6]
    """

    def __init__(self, alpha: float = 0.5, rescale: int = 1, iterations: int = 100, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.alpha = check_number("alpha", alpha, low=0.0)
        check_choice("rescale", rescale, (0, 1, 2))
        self.rescale = rescale
        self.iterations = int(check_number("iterations", iterations, low=1))

    def combine_gradients(self, grads: Tensor, losses: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        grads = self._weighted(grads)
        num_tasks = self.num_tasks
        # the coefficients do not depend on the gradients' scale: solve on gradients scaled to max |g| = 1,
        # so that the Gram matrix of gradients of 1e30 does not overflow
        largest = ops.max(ops.abs(grads))
        scaled = grads / ops.where(largest > 0, largest, 1.0)
        gram = ops.matmul(scaled, ops.transpose(scaled))
        c = self.alpha * ops.sqrt(ops.mean(gram) + 1e-8) + 1e-8
        w = cagrad_weights(gram, c, self.iterations)
        g_w_norm = ops.sqrt(ops.maximum(ops.sum(w * ops.matmul(gram, w)), 0.0))
        lam = ops.where(g_w_norm > 1e-12, c / (g_w_norm + 1e-8), 0.0)  # all-zero gradients: no step
        coefficients = 1.0 / num_tasks + lam * w
        divisor = {0: 1.0, 1: 1.0 + self.alpha**2, 2: 1.0 + self.alpha}[self.rescale]
        coefficients = coefficients / divisor
        return ops.matmul(coefficients, grads), self.prior_tensor(), self.prior_tensor() * coefficients

    def get_config(self) -> Dict[str, Any]:
        return {**super().get_config(), "alpha": self.alpha, "rescale": self.rescale, "iterations": self.iterations}


_NORMALIZATIONS = ("none", "l2", "loss", "loss+")


@named("mgda")
class MGDA(GradientStrategy):
    """Multiple-Gradient Descent as multi-objective optimisation (Sener &
    Koltun, 2018): the update is the min-norm point of the convex hull of
    the task gradients, `sum_k a_k g_k` with `a` on the simplex minimising
    its norm, solved exactly on the `T x T` Gram matrix by an active-set
    method (see `min_norm_weights`: the value is optimal to about `1e-7` of
    the largest squared gradient norm, the weights to `1e-6` where the
    minimiser is unique and well conditioned); every variable (task-specific
    ones too) gets the task gradients weighted by `a` (the authors scale the
    task losses by `a`).

    The authors' solver (LibMTL's too: the best pair of tasks, then
    projected steps until the weights move by less than `1e-5`) can stop
    well short of that point with three or more tasks (see the docs), and
    plain Frank-Wolfe converges like `1/k`. Where several weightings give
    the min-norm point (identical or affinely dependent gradients), one of
    them is returned; all-zero gradients give uniform weights.

    Args:
        normalization: how gradients are normalised before solving
            (`"none"`, `"l2"`: by their norm, `"loss"`: by the loss,
            `"loss+"`: by loss times norm), as in the authors' code; the
            update uses the un-normalised gradients (the authors' code;
            LibMTL's `MGDA` sums the normalised ones).
        iterations: at most this many active-set steps (each one
            `(T + 1) x (T + 1)` linear solve); it stops earlier, when no
            task's gradient improves the point (about `T` steps).

    Reference:
        Sener, Koltun. Multi-Task Learning as Multi-Objective Optimization.
        NeurIPS 2018. Wolfe. Finding the nearest point in a polytope.
        Mathematical Programming 11, 1976.

    Examples:
        >>> import numpy as np
        >>> strategy = MGDA()
        >>> strategy.build_tasks(["a", "b", "c"], [1.0, 1.0, 1.0])
        >>> grads = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], "float32")
        >>> direction, weights, _ = strategy.combine_gradients(grads, np.ones(3, "float32"))
        >>> [round(float(w), 6) for w in weights], [round(float(d), 6) for d in direction]
        ([0.5, 0.5, 0.0], [0.5, 0.5])
    """

    def __init__(self, normalization: str = "none", iterations: int = 100, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        check_choice("normalization", normalization, _NORMALIZATIONS)
        self.normalization = normalization
        self.iterations = int(check_number("iterations", iterations, low=1))

    def combine_gradients(self, grads: Tensor, losses: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        grads = self._weighted(grads)
        scale = ops.ones((self.num_tasks,), "float32")
        if self.normalization in ("l2", "loss+"):
            scale = scale * ops.sqrt(ops.sum(grads * grads, axis=1))
        if self.normalization in ("loss", "loss+"):
            scale = scale * self.prior_tensor() * ops.cast(losses, "float32")
        scale = ops.where(scale > 0, scale, 1.0)
        normalized = grads / scale[:, None]
        # the weights do not depend on the gradients' common scale: solve on max |g| = 1, so G G^T cannot overflow
        largest = ops.max(ops.abs(normalized))
        normalized = normalized / ops.where(largest > 0, largest, 1.0)
        weights = min_norm_weights(ops.matmul(normalized, ops.transpose(normalized)), self.iterations)
        task_weights = weights * self.prior_tensor()
        return ops.matmul(weights, grads), task_weights, task_weights

    def get_config(self) -> Dict[str, Any]:
        return {**super().get_config(), "normalization": self.normalization, "iterations": self.iterations}
