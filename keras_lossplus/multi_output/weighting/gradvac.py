"""GradVac (Wang et al., ICLR 2021): gradient surgery towards an EMA target
cosine per task pair, following LibMTL's `GradVac` (whole-model group)."""

from __future__ import annotations

from typing import Any, Dict, Tuple

import keras
from keras import ops

from keras_lossplus.losses.options import check_choice, check_number
from keras_lossplus.multi_output.weighting.base import named
from keras_lossplus.multi_output.weighting.gradient_based import GradientStrategy

Tensor = Any


@named("gradvac")
class GradVac(GradientStrategy):
    """Gradient Vaccine: aligns each task gradient towards the others up to an
    adaptive target cosine.

    For each task `i` and every other task `j` (random order), with
    `rho = cos(g'_i, g_j)` (`g'_i` the already altered gradient) and the
    target `phi = phi_hat_ij`: if `rho < phi`,
    `g'_i += g_j * |g'_i| (phi sqrt(1 - rho^2) - rho sqrt(1 - phi^2)) /
    (|g_j| sqrt(1 - phi^2) + 1e-8)`; then `phi_hat_ij <- (1 - beta)
    phi_hat_ij + beta rho`. The update is `sum_i g'_i`; task-specific
    variables get their task gradient (weight 1, as LibMTL). `phi_hat`
    (`T x T`, starting at 0) is saved with the model.

    The granularity is the whole vector of shared parameters (LibMTL's
    `GradVac_group_type=0`, "whole_model"); LibMTL's per-layer and
    per-matrix groups are not offered.

    Args:
        beta: EMA rate of the target cosines (LibMTL default 0.5).
        shuffle: visit the other tasks in a fresh random order for each task
            (LibMTL); `False` visits them in output order.
        seed: seed of the shuffling.

    Reference:
        Wang, Tsvetkov, Firat, Cao. Gradient Vaccine: Investigating and
        Improving Multi-task Optimization in Massively Multilingual Models.
        ICLR 2021. LibMTL `LibMTL/weighting/GradVac.py`.

    Examples:
        >>> import numpy as np
        >>> strategy = GradVac(shuffle=False)
        >>> strategy.build_tasks(["a", "b"], [1.0, 1.0])
        >>> grads = np.array([[1.0, 0.0], [-1.0, 1.0]], "float32")
        >>> direction, _, _ = strategy.combine_gradients(grads, np.ones(2, "float32"))
        >>> [round(float(d), 3) for d in direction]
        [0.5, 1.5]
        >>> [round(float(p), 3) for p in strategy.target_cosines.numpy()[0]]
        [0.0, -0.354]
    """

    def __init__(self, beta: float = 0.5, shuffle: bool = True, seed: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.beta = check_number("beta", beta, low=0.0, high=1.0)
        check_choice("shuffle", shuffle, (True, False))
        self.shuffle = shuffle
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed, name="gradvac_seed")

    def create_state(self, num_tasks: int) -> None:
        self.target_cosines = self.state_weight("target_cosines", (num_tasks, num_tasks))

    def combine_gradients(self, grads: Tensor, losses: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        grads = self._weighted(grads)
        num_tasks = self.num_tasks
        norms = ops.sqrt(ops.sum(grads * grads, axis=1))
        targets = ops.copy(ops.cast(self.target_cosines, "float32"))  # a snapshot: assign() is in place on torch
        altered, rows = [], []
        for i in range(num_tasks):
            order = ops.arange(num_tasks)
            if self.shuffle:
                order = keras.random.shuffle(order, seed=self.seed_generator)
            g_i, row = grads[i], targets[i]
            for position in range(num_tasks):
                j = order[position]
                g_j = ops.take(grads, j, axis=0)
                norm_j = ops.take(norms, j)
                norm_i = ops.sqrt(ops.sum(g_i * g_i))
                rho = ops.sum(g_i * g_j) / (norm_i * norm_j + 1e-8)
                phi = ops.take(row, j)
                other = ops.not_equal(j, i)
                root_phi = ops.sqrt(ops.maximum(1.0 - phi * phi, 0.0))
                root_rho = ops.sqrt(ops.maximum(1.0 - rho * rho, 0.0))
                w = norm_i * (phi * root_rho - rho * root_phi) / (norm_j * root_phi + 1e-8)
                g_i = g_i + ops.where(ops.logical_and(other, rho < phi), w, 0.0) * g_j
                hot = ops.one_hot(j, num_tasks, dtype="float32") * ops.cast(other, "float32")
                row = row + hot * (self.beta * (rho - phi))  # (1 - beta) phi + beta rho
            altered.append(g_i)
            rows.append(row)
        self.target_cosines.assign(ops.stack(rows))
        weights = self.prior_tensor()
        return ops.sum(ops.stack(altered), axis=0), weights, weights

    def get_config(self) -> Dict[str, Any]:
        return {**super().get_config(), "beta": self.beta, "shuffle": self.shuffle, "seed": self.seed}
