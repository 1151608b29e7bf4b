"""DB-MTL (Lin et al., 2023): loss-scale balancing by the logarithm and
gradient-magnitude balancing of EMA gradients, following LibMTL's `DB_MTL`."""

from __future__ import annotations

from typing import Any, Dict, Tuple

from keras import ops

from keras_lossplus.losses.options import check_number
from keras_lossplus.multi_output.weighting.base import named
from keras_lossplus.multi_output.weighting.gradient_based import GradientStrategy

Tensor = Any

_LARGEST = 1e30  # log-loss gradients are clipped to +-1e30 so that the update stays finite


@named("db_mtl")
class DBMTL(GradientStrategy):
    """Dual-Balancing MTL.

    Each task's gradient is that of `log(L_k + eps)`, `h_k = g_k / (L_k +
    eps)`; at step `t` the EMA `m_k <- h_k + beta / t^beta_sigma * (m_k -
    h_k)` (starting at 0) is kept per task, and the update is
    `sum_k (max_j |m_j|) / (|m_k| + 1e-8) * m_k`: every task's EMA gradient
    scaled to the largest norm. Task-specific variables get the gradient of
    their log-loss, weight `1 / (L_k + eps)` (as LibMTL, whose heads get the
    log-loss gradients); the logged weights are `w_k alpha_k / (w_k L_k + eps)`
    (`alpha_k` the magnitude balance, `w` the `loss_weights`). `m` (`T x P`, `P` shared parameters) and `t` are
    saved with the model; the user's `loss_weights` scale `L_k` first.
    Deviation from LibMTL: `h` is clipped to `+-1e30` and the norms are
    computed on rescaled vectors, so that the update stays finite.

    Args:
        beta: EMA rate (LibMTL default 0.9).
        beta_sigma: decay exponent of the EMA rate with the step (LibMTL
            default 0).
        epsilon: added to the losses inside the logarithm (LibMTL 1e-8).

    Reference:
        Lin, Ye, Xu, Shi, Zhang, Kwok. Dual-Balancing for Multi-Task
        Learning. arXiv:2308.12029, 2023. LibMTL `LibMTL/weighting/DB_MTL.py`.

    Examples:
        >>> import numpy as np
        >>> strategy = DBMTL(beta=0.9)
        >>> strategy.build_tasks(["a", "b"], [1.0, 1.0])
        >>> grads = np.array([[2.0, 0.0], [0.0, 1.0]], "float32")
        >>> direction, _, _ = strategy.combine_gradients(grads, np.array([1.0, 0.5], "float32"))
        >>> [round(float(d), 3) for d in direction]
        [0.2, 0.2]
    """

    def __init__(self, beta: float = 0.9, beta_sigma: float = 0.0, epsilon: float = 1e-8, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.beta = check_number("beta", beta, low=0.0, high=1.0)
        self.beta_sigma = check_number("beta_sigma", beta_sigma, low=0.0)
        self.epsilon = check_number("epsilon", epsilon, low=0.0)
        self.num_shared = 0

    def create_state(self, num_tasks: int) -> None:
        self.step = self.state_weight("step", ())

    def build_shared(self, num_shared: int) -> None:
        self.num_shared = int(num_shared)
        self.gradient_average = self.state_weight("gradient_average", (self.num_tasks, self.num_shared))

    def combine_gradients(self, grads: Tensor, losses: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        if self.num_shared != int(grads.shape[1]):  # used outside a model: size the state now (eager only)
            self.build_shared(int(grads.shape[1]))
        grads = self._weighted(grads)
        losses = self.prior_tensor() * ops.cast(losses, "float32")
        head = 1.0 / (losses + self.epsilon)
        log_grads = ops.clip(grads * head[:, None], -_LARGEST, _LARGEST)  # finite for huge g / tiny L
        step = ops.cast(self.step, "float32") + 1.0
        rate = self.beta / step**self.beta_sigma
        average = log_grads + rate * (ops.cast(self.gradient_average, "float32") - log_grads)
        self.gradient_average.assign(average)
        self.step.assign(step)
        largest = ops.max(ops.abs(average))
        largest = ops.where(largest > 0, largest, 1.0)
        scaled = average / largest  # norms without overflow
        norms = largest * ops.sqrt(ops.sum(scaled * scaled, axis=1))
        alpha = ops.max(norms) / (norms + 1e-8)
        return ops.matmul(alpha, average), self.prior_tensor() * head, self.prior_tensor() * head * alpha

    def get_config(self) -> Dict[str, Any]:
        return {**super().get_config(), "beta": self.beta, "beta_sigma": self.beta_sigma, "epsilon": self.epsilon}
