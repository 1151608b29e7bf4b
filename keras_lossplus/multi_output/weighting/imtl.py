"""IMTL (Liu et al., ICLR 2021): learnable loss scales (IMTL-L) and the
closed-form gradient weights that make the update's projection equal on
every task's unit gradient (IMTL-G), as LibMTL's hybrid `IMTL`."""

from __future__ import annotations

from typing import Any, Dict, Tuple

from keras import ops

from keras_lossplus.multi_output.weighting.base import named
from keras_lossplus.multi_output.weighting.gradient_based import GradientStrategy

Tensor = Any

_RIDGE = 1e-6  # added to D U^T (gradients scaled to a largest norm of 1): parallel gradients give finite weights


def imtl_weights(gram: Tensor) -> Tensor:
    """IMTL-G's weights `alpha` (summing to 1), from the Gram matrix
    `K = G G^T` of the `(T, P)` gradients `g_k`: with `u_k = g_k / |g_k|`,
    `D` and `U` the rows `g_1 - g_k` and `u_1 - u_k` (`k = 2..T`),
    `alpha_{2:T} = g_1 U^T (D U^T)^{-1}` and `alpha_1 = 1 - sum(alpha_{2:T})`
    (Liu et al. 2021, eq. 5). Then `(sum_k alpha_k g_k) . u_k` is the same
    for every task. Every product is one of `K`'s entries divided by a norm,
    so nothing of size `P` is formed.

    The weights do not depend on the gradients' scale: `K` is divided by its
    largest diagonal entry and `1e-6 I` added to `D U^T`, so that parallel
    (or zero) gradients give finite weights; a zero gradient's unit vector
    is 0.

    Examples:
        >>> import numpy as np
        >>> [round(float(a), 3) for a in imtl_weights(np.array([[1.0, 0.0], [0.0, 9.0]], "float32"))]
        [0.75, 0.25]
    """
    gram = ops.cast(gram, "float32")
    num_tasks = gram.shape[0]
    largest = ops.max(ops.diagonal(gram))
    gram = gram / ops.where(largest > 0, largest, 1.0)
    norms = ops.sqrt(ops.maximum(ops.diagonal(gram), 0.0))
    dots = gram / ops.where(norms > 0, norms, 1.0)[None, :] * ops.cast(norms > 0, "float32")[None, :]  # g_i . u_j
    # (D U^T)_ij = (g_1 - g_i) . (u_1 - u_j), (U g_1)_j = g_1 . (u_1 - u_j), i, j = 2..T
    system = dots[0, 0] - dots[0:1, 1:] - dots[1:, 0:1] + dots[1:, 1:] + _RIDGE * ops.eye(num_tasks - 1, dtype="float32")
    rhs = dots[0, 0] - dots[0, 1:]
    # alpha (D U^T) = g_1 U^T  <=>  (D U^T)^T alpha^T = U g_1^T
    rest = ops.solve(ops.transpose(system), rhs[:, None])[:, 0]
    return ops.concatenate([ops.reshape(1.0 - ops.sum(rest), (1,)), rest])


@named("imtl")
class IMTL(GradientStrategy):
    """Impartial multi-task learning (Liu et al., 2021), the hybrid IMTL of
    LibMTL: IMTL-L learnable loss scales and IMTL-G on the scaled gradients.

    Each task has a learnable `s_k` (starting at 0, trained by the model's
    optimizer) and the scaled loss `exp(s_k) * L_k - s_k` (`L_k` the task
    loss times its `loss_weights` entry). The shared update is `sum_k
    alpha_k * exp(s_k) g_k` with `alpha = imtl_weights(exp(s) g)` (its
    projection on every task's unit gradient is equal); a task-specific
    variable gets `exp(s_k)` times its task's gradient, and `s_k` the
    gradient of its scaled loss, `exp(s_k) * L_k - 1`, as in LibMTL, where
    the task-specific parameters and the scales accumulate the gradients of
    the T backward passes.

    Reference:
        Liu, Li, Kuang, Xue, Chen, Yang, Liao, Zhang. Towards Impartial
        Multi-task Learning. ICLR 2021. LibMTL's `LibMTL/weighting/IMTL.py`.

    Examples:
        >>> import numpy as np
        >>> strategy = IMTL()
        >>> strategy.build_tasks(["a", "b"], [1.0, 1.0])
        >>> grads = np.array([[1.0, 0.0], [0.0, 3.0]], "float32")
        >>> direction, heads, _ = strategy.combine_gradients(grads, np.ones(2, "float32"))
        >>> [round(float(d), 3) for d in direction], [float(h) for h in heads]
        ([0.75, 0.75], [1.0, 1.0])
    """

    def create_state(self, num_tasks: int) -> None:
        self.loss_scale = self.add_weight(shape=(num_tasks,), initializer="zeros", name="loss_scale", trainable=True)

    def _scales(self) -> Tensor:
        return ops.exp(ops.cast(self.loss_scale, "float32"))

    def combine_gradients(self, grads: Tensor, losses: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        scales = self._scales()
        grads = self._weighted(grads)
        # the Gram matrix of the scaled gradients exp(s_k) g_k, on gradients scaled to max |g| = 1 (no overflow)
        largest = ops.max(ops.abs(grads))
        scaled = grads / ops.where(largest > 0, largest, 1.0)
        gram = ops.matmul(scaled, ops.transpose(scaled)) * scales[:, None] * scales[None, :]
        alpha = imtl_weights(gram)
        heads = scales * self.prior_tensor()
        return ops.matmul(alpha * scales, grads), heads, alpha * heads

    def own_gradients(self, losses: Tensor) -> Dict[int, Tensor]:
        scaled = self._scales() * self.prior_tensor() * ops.cast(losses, "float32")
        return {id(self.loss_scale): scaled - 1.0}
