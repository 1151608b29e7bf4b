"""Aligned-MTL (Senushkin et al., CVPR 2023): the task gradients conditioned
to their smallest singular value, following LibMTL's `Aligned_MTL`."""

from __future__ import annotations

from typing import Any, Tuple

from keras import ops

from keras_lossplus import backend as klp_backend

from keras_lossplus.multi_output.weighting.base import named
from keras_lossplus.multi_output.weighting.gradient_based import GradientStrategy

Tensor = Any

_EPS = 1.1920929e-07  # torch.finfo(torch.float32).eps, as LibMTL's tolerance


def aligned_weights(gram: Tensor) -> Tensor:
    """Aligned-MTL's task weights `alpha = 1^T B` from the `(T, T)` Gram
    matrix `M = G G^T = V diag(lambda) V^T`: with the eigenvalues above
    `tol = max(lambda) * T * eps` kept, `B = sqrt(lambda_min) V
    diag(lambda)^(-1/2) V^T` over the kept ones. All zeros when `M = 0`.

    Examples:
        >>> import numpy as np
        >>> [round(float(a), 3) for a in aligned_weights(np.diag([4.0, 1.0]).astype("float32"))]
        [0.5, 1.0]
    """
    gram = ops.cast(gram, "float32")
    num_tasks = gram.shape[0]
    lam, vectors = klp_backend.small_eigh(gram)
    tol = ops.max(lam) * num_tasks * _EPS
    keep = lam > tol
    kept = ops.where(keep, lam, 1.0)
    inverse_root = ops.where(keep, 1.0 / ops.sqrt(kept), 0.0)
    smallest = ops.min(ops.where(keep, lam, ops.max(lam) + 1.0))
    scale = ops.where(ops.any(keep), ops.sqrt(ops.maximum(smallest, 0.0)), 0.0)
    b = scale * ops.matmul(vectors * inverse_root[None, :], ops.transpose(vectors))
    return ops.sum(b, axis=0)


@named("aligned_mtl")
class AlignedMTL(GradientStrategy):
    """Aligned-MTL: the update `sum_k alpha_k g_k` with `alpha = 1^T B`,
    `B = sqrt(lambda_min) V diag(lambda)^(-1/2) V^T` from the eigendecomposition
    `G G^T = V diag(lambda) V^T` (`keras.ops.eigh`; on JAX Jacobi rotations), i.e. the gradient matrix
    with its singular values all set to the smallest one, summed.

    Eigenvalues at or below `max(lambda) * T * eps` (float32 `eps`) are
    dropped, as LibMTL does, so a rank-deficient `G` stays finite; an
    all-zero `G` gives weights 0. The Gram matrix is built from gradients
    scaled to `max |g| = 1` (the weights do not depend on the scale).
    Task-specific variables get their task gradient (weight 1, as LibMTL);
    the logged weights are `alpha` times the `loss_weights`.

    Reference:
        Senushkin, Patakin, Kuznetsov, Konushin. Independent Component
        Alignment for Multi-Task Learning. CVPR 2023. LibMTL
        `LibMTL/weighting/Aligned_MTL.py`.

    Examples:
        >>> import numpy as np
        >>> strategy = AlignedMTL()
        >>> strategy.build_tasks(["a", "b"], [1.0, 1.0])
        >>> grads = np.array([[2.0, 0.0], [0.0, 1.0]], "float32")
        >>> direction, _, logged = strategy.combine_gradients(grads, np.ones(2, "float32"))
        >>> [round(float(d), 3) for d in direction], [round(float(w), 3) for w in logged]
        ([1.0, 1.0], [0.5, 1.0])
    """

    def combine_gradients(self, grads: Tensor, losses: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        grads = self._weighted(grads)
        largest = ops.max(ops.abs(grads))
        scaled = grads / ops.where(largest > 0, largest, 1.0)
        alpha = aligned_weights(ops.matmul(scaled, ops.transpose(scaled)))
        return ops.matmul(alpha, grads), self.prior_tensor(), self.prior_tensor() * alpha
