"""Small solvers on the probability simplex, in `keras.ops` with a fixed
number of iterations (so they compile), working on the `T x T` Gram matrix
of the task gradients only."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

Tensor = Any


def min_norm_weights(gram: Tensor, iterations: int = 100) -> Tensor:
    """Weights `a` on the simplex minimising `|sum_k a_k g_k|^2 = a^T G a`:
    the min-norm point of the convex hull of the gradients, by Frank-Wolfe
    with exact line search (Sener & Koltun, 2018, Algorithm 2), starting at
    the uniform weights.

    Examples:
        >>> import numpy as np
        >>> gram = np.array([[1.0, 0.0], [0.0, 4.0]], "float32")
        >>> [round(float(a), 3) for a in min_norm_weights(gram)]
        [0.8, 0.2]
    """
    gram = ops.cast(gram, "float32")
    num_tasks = gram.shape[0]
    eye = ops.eye(num_tasks, dtype="float32")

    def step(_, weights):
        g_weights = ops.matmul(gram, weights)  # (G a)_t = <v, g_t>
        target = ops.argmin(g_weights)
        vertex = ops.take(eye, target, axis=0)
        v_v = ops.sum(weights * g_weights)
        v_t = ops.take(g_weights, target)
        t_t = ops.take(ops.diagonal(gram), target)
        # minimise |(1 - gamma) v + gamma g_t|^2 over gamma in [0, 1]
        denominator = v_v - 2.0 * v_t + t_t
        gamma = ops.where(denominator > 0, (v_v - v_t) / ops.where(denominator > 0, denominator, 1.0), 0.0)
        gamma = ops.clip(gamma, 0.0, 1.0)
        return (1.0 - gamma) * weights + gamma * vertex

    start = ops.full((num_tasks,), 1.0 / num_tasks, dtype="float32")
    return ops.fori_loop(0, iterations, step, start)


def project_to_simplex(v: Tensor) -> Tensor:
    """Euclidean projection of a vector onto the probability simplex
    (sort-based, Duchi et al. 2008; `v` is tiny here: one entry per task).

    Examples:
        >>> [float(p) for p in project_to_simplex(keras.ops.convert_to_tensor([2.0, 0.0]))]
        [1.0, 0.0]
    """
    n = v.shape[0]
    u = ops.flip(ops.sort(v), axis=0)
    css = ops.cumsum(u)
    k = ops.arange(1, n + 1, dtype=v.dtype)
    active = u - (css - 1.0) / k > 0
    rho = ops.sum(ops.cast(active, v.dtype))
    tau = (ops.sum(ops.where(active, u, 0.0)) - 1.0) / ops.maximum(rho, 1.0)
    return ops.maximum(v - tau, 0.0)


def cagrad_weights(gram: Tensor, c: Tensor, iterations: int = 100) -> Tensor:
    """Weights `w` on the simplex minimising CAGrad's dual objective
    `w^T G b + c * sqrt(w^T G w + 1e-8)` with `b` uniform (Liu et al. 2021,
    the problem the authors solve with SciPy), by accelerated projected
    gradient (FISTA) with the local curvature bound `c * trace(G) / |g_w|`.

    Examples:
        >>> import numpy as np
        >>> gram = np.array([[1.0, -0.5], [-0.5, 1.0]], "float32")
        >>> [round(float(w), 3) for w in cagrad_weights(gram, 0.5)]
        [0.5, 0.5]
    """
    gram = ops.cast(gram, "float32")
    c = ops.cast(c, "float32")
    num_tasks = gram.shape[0]
    uniform = ops.full((num_tasks,), 1.0 / num_tasks, dtype="float32")
    linear = ops.matmul(gram, uniform)
    trace = ops.trace(gram)

    def step(_, carry):
        weights, point, momentum = carry
        g_point = ops.matmul(gram, point)
        norm = ops.sqrt(ops.maximum(ops.sum(point * g_point), 0.0) + 1e-8)
        grad = linear + c * g_point / norm
        lipschitz = c * trace / norm + 1e-12
        new = project_to_simplex(point - grad / lipschitz)
        next_momentum = (1.0 + ops.sqrt(1.0 + 4.0 * momentum * momentum)) / 2.0
        point = new + (momentum - 1.0) / next_momentum * (new - weights)
        return new, point, next_momentum

    weights, _, _ = ops.fori_loop(0, iterations, step, (uniform, uniform, ops.ones((), "float32")))
    return weights
