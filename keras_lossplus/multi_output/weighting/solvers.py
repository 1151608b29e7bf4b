"""Small solvers on the probability simplex, in `keras.ops` with a bounded
number of iterations (so they compile), working on the `T x T` Gram matrix
of the task gradients only."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

Tensor = Any


_RIDGE = 1e-7  # on the scaled KKT matrix's unit diagonal; one refinement step against the exact matrix removes its bias
_IMPROVES = 1e-7  # a vertex enters when it lowers <x, g_k> below |x|^2 by this times sum_j a_j |g_j| |g_k| (rounding)


def min_norm_weights(gram: Tensor, iterations: int = 100) -> Tensor:
    """Weights `a` on the simplex minimising `|sum_k a_k g_k|^2 = a^T G a`:
    the min-norm point of the convex hull of the gradients, exactly, by
    Wolfe's active-set method ("Finding the nearest point in a polytope",
    Math. Programming 1976) on the `T x T` Gram matrix `G`.

    The active set starts at the shortest gradient. Each step solves the
    KKT system of the affine min-norm problem on the active set `S`,
    `G_S a = -l 1, 1^T a = 1`, scaled by the gradients' norms (one
    `(T + 1) x (T + 1)` inverse with a `1e-7` ridge, and one refinement
    step against the exact matrix). If that point has positive weights it
    is taken, and the vertex most below the hyperplane `<x, g> = |x|^2`
    enters (none by more than `1e-7 (sum_j a_j |g_j|) |g_k|`, the rounding
    scale of `<x, g_k>`, or no lower value: optimal, stop); otherwise the weights move towards it until one reaches 0, and
    that task leaves. Static shapes (masks, not gathers) and a `while_loop`
    of at most `iterations` steps (about `T` on random problems), so it
    compiles.

    `G` is scaled to largest diagonal 1 first (the weights do not depend on
    the gradients' common scale). In float32 the value `a^T G a` is the
    minimum to `1e-7` of `max_k G_kk` (plus `3e-7` of the value: the
    weights' own rounding), and the weights, where the minimiser
    is unique, are exact to about `1e-8 * cond` (`1e-6` up to condition
    number 100, the condition number of the Gram matrix of the support
    scaled to unit diagonal). Identical, collinear, opposing or zero
    gradients and a rank-deficient `G` give valid simplex weights: where
    several weightings reach the min-norm point, one of them (vertices
    enter by position, first task first). An all-zero `G` gives uniform
    weights.

    Examples:
        >>> import numpy as np
        >>> grads = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], "float32")
        >>> [round(float(a), 6) for a in min_norm_weights(grads @ grads.T)]
        [0.5, 0.5, 0.0]
    """
    gram = ops.cast(gram, "float32")
    num_tasks = gram.shape[0]
    gram = 0.5 * (gram + ops.transpose(gram))
    largest = ops.max(ops.diagonal(gram))
    gram = gram / ops.where(largest > 0, largest, 1.0)
    squared = ops.maximum(ops.diagonal(gram), 0.0)
    norms = ops.sqrt(squared)
    # The affine minimiser on the active set S solves G_S a = -l 1, 1^T a = 1. With a = D u and
    # D = diag(1 / |g_k|) that is [[C_S, b], [b^T, 0]] [u; l] = [0; 1] with C = D G D (unit diagonal)
    # and b = D 1 scaled to max 1: well scaled whatever the gradients' norms. Inactive tasks: identity rows.
    inv_norm = 1.0 / ops.sqrt(ops.where(squared > 0, squared, 1.0))
    pad = ops.zeros((1,), "float32")
    last = ops.concatenate([ops.zeros((num_tasks,), "float32"), ops.ones((1,), "float32")])
    correlation = ops.pad(gram * inv_norm[:, None] * inv_norm[None, :], [(0, 1), (0, 1)])
    inv_norm_padded = ops.concatenate([inv_norm, pad])
    eye = ops.eye(num_tasks + 1, dtype="float32")
    positions = ops.arange(num_tasks)

    def first_min(x):
        """One-hot of the first position of x's minimum (a cheaper form of one_hot(argmin))."""
        at_min = x <= ops.min(x)
        return ops.cast(ops.equal(positions, ops.min(ops.where(at_min, positions, num_tasks))), "float32")

    def affine_minimizer(active):
        """Weights (0 off the active set, summing to 1) of the min-norm point of the active gradients' affine hull."""
        mask = ops.concatenate([active, pad])
        border = inv_norm_padded * mask
        border = border / ops.max(border)
        exact = (
            correlation * mask[:, None] * mask[None, :]
            + eye * (1.0 - mask - last)[None, :]
            + last[:, None] * border[None, :]
            + border[:, None] * last[None, :]
        )
        inverse = ops.inv(exact + eye * (_RIDGE * mask)[None, :])
        z = inverse[:, num_tasks]  # the solution of exact z = last, ridged
        z = z + ops.matmul(inverse, last - ops.matmul(exact, z))  # one refinement: removes the ridge's bias
        weights = z[:num_tasks] * inv_norm * active
        return weights / ops.sum(weights)

    def step(weights, active, best, done):
        target = affine_minimizer(active)
        # move towards the affine minimiser until the first weight reaches 0 (that task leaves the active
        # set), or all the way where its weights are positive (interior)
        blocking = ops.logical_and(active > 0, target <= 0)
        ratio = ops.where(blocking, weights / ops.maximum(weights - target, 1e-30), 2.0)
        interior = ops.min(ratio) > 1.0
        theta = ops.clip(ops.min(ratio), 0.0, 1.0)
        moved = weights + theta * (target - weights)
        first = ops.logical_and(first_min(ratio) > 0, ops.logical_not(interior))
        left = ops.logical_and(active > 0, ops.logical_or(first, moved <= 0))
        moved = ops.where(left, 0.0, ops.maximum(moved, 0.0))
        moved = moved / ops.sum(moved)
        # at an interior point the vertex most below the hyperplane <x, g> = |x|^2 enters, if it improves
        # by more than rounding (about eps * sum_j a_j |g_j| |g_k| in <x, g_k>) and the value fell
        # (Wolfe's value falls at every interior point: where rounding stops that, stop, no cycling)
        g_target = ops.matmul(gram, target)
        value = ops.sum(target * g_target)
        enter = first_min(g_target)  # ties: the first task
        noise = _IMPROVES * ops.sum(target * norms) * ops.sum(enter * norms) + 1e-30
        improves = ops.logical_and(value - ops.min(g_target) > noise, value < best)
        kept = ops.where(left, 0.0, active)
        # a non-finite solve (an affinely dependent active set that rounding let in) or theta = 0 (the
        # entering vertex left at once): the weights are the last point reached, stop there
        finite = ops.all(ops.isfinite(target))
        return (
            ops.where(finite, moved, weights),
            ops.where(ops.logical_and(interior, improves), ops.maximum(kept, enter), kept),
            ops.where(interior, value, best),
            ops.logical_or(ops.logical_not(finite), ops.where(interior, ops.logical_not(improves), theta <= 0)),
        )

    start = first_min(squared)
    weights, _, _, _ = ops.while_loop(
        lambda weights, active, best, done: ops.logical_not(done),
        step,
        (start, start, ops.full((), float("inf"), "float32"), ops.zeros((), "bool")),
        maximum_iterations=iterations,
    )
    return ops.where(largest > 0, weights, ops.full((num_tasks,), 1.0 / num_tasks, "float32"))


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
