"""A per-sample loss's value and gradient against its float64 numpy reference
and that reference's one-sided finite differences, on the backend
`KERAS_BACKEND` selects: compiled on JAX and TensorFlow (`jax.jit`,
`tf.function(jit_compile=True)`), eagerly on torch.

The points that matter are the edges: ties, zeros, probabilities of exactly
0 and 1, logits of +-100 and 1e4, residuals of 1e30. There the pieces of a
formula (`relu`, `abs`, `maximum`, a clip, a rescale) have subgradients that
need not add up to the derivative of the whole, so the value can be right
and the gradient wrong.

The rule: each entry of the float32 gradient lies between the left and the
right difference quotient of the float64 reference (equal to both where the
loss is smooth; any subgradient at a kink such as the pinball loss's), to a
relative tolerance. The differences are taken one row at a time, so that a
row of 1e30 residuals does not drown a row of small ones. All rows of one
configuration are one batch: per-sample losses are independent across rows,
so one call (and one compilation) checks every edge.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from keras import ops

from tests.backend_utils import BACKEND, to_numpy
from tests.edge_grid import as_tensor


def one_sided_quotients(reference: Callable, y_true: np.ndarray, y_pred: np.ndarray, step: float) -> tuple:
    """`(left, right)`: float64 difference quotients of each row's reference
    value in each entry of `y_pred`, with steps `max(step, 1e-11 |x|)`:
    small beside the loss's own scales (a margin, Charbonnier's epsilon)
    also where `x` is large and the residual small, and large enough at
    `|x| = 1e30` for float64 to resolve the difference of values of 1e30."""
    y_true, y_pred = np.asarray(y_true, "float64"), np.asarray(y_pred, "float64")
    left, right = np.zeros_like(y_pred), np.zeros_like(y_pred)
    for row in range(y_pred.shape[0]):
        t, x = y_true[row : row + 1], y_pred[row : row + 1]
        at = float(np.sum(reference(t, x)))
        for index in np.ndindex(x.shape):
            h = max(step, 1e-11 * abs(float(x[index])))
            up, down = x.copy(), x.copy()
            up[index] += h
            down[index] -= h
            right[(row,) + index[1:]] = (float(np.sum(reference(t, up))) - at) / h
            left[(row,) + index[1:]] = (at - float(np.sum(reference(t, down)))) / h
    return left, right


def assert_between(grad: np.ndarray, left: np.ndarray, right: np.ndarray, what: str, rtol: float = 2e-4) -> None:
    low, high = np.minimum(left, right), np.maximum(left, right)
    tol = rtol * np.maximum(np.abs(low), np.abs(high)) + 1e-6 * max(1.0, float(np.max(np.abs(high))))
    bad = ~((grad >= low - tol) & (grad <= high + tol))
    if np.any(bad):
        rows = sorted({int(i[0]) for i in np.argwhere(bad)})
        raise AssertionError(
            f"{what}: gradient outside the one-sided float64 differences in rows {rows}:\n"
            f"gradient {grad[rows].tolist()}\nleft {left[rows].tolist()}\nright {right[rows].tolist()}"
        )


def values_and_grad(fn: Callable, y_true: np.ndarray, y_pred: np.ndarray) -> tuple:
    """`(fn(y_true, y_pred), gradient of its sum in y_pred)` as numpy, in one
    compiled call on JAX and TensorFlow (`jax.jit`,
    `tf.function(jit_compile=True)`: what XLA may rewrite is what a compiled
    model runs; TensorFlow's tape builds the same gradient graph eagerly),
    eagerly on torch."""
    y_true, y_pred = as_tensor(y_true), as_tensor(y_pred)
    if BACKEND == "jax":
        import jax

        def step(t, x):
            values, pull = jax.vjp(lambda q: fn(t, q), x)
            return values, pull(jax.numpy.ones_like(values))[0]

        values, grad = jax.jit(step)(y_true, y_pred)
    elif BACKEND == "tensorflow":
        import tensorflow as tf

        def step(t, x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                values = fn(t, x)
                total = tf.reduce_sum(values)
            return values, tape.gradient(total, x)

        values, grad = tf.function(step, jit_compile=True, autograph=False)(y_true, y_pred)
    else:
        x = y_pred.detach().clone().requires_grad_(True)
        values = fn(y_true, x)
        ops.sum(values).backward()
        values, grad = values.detach(), x.grad
    return to_numpy(values).astype("float64"), to_numpy(grad).astype("float64")


def check_against_float64(fn: Callable, reference: Callable, y_true: np.ndarray, y_pred: np.ndarray,
                          step: float = 1e-6, rtol: float = 2e-5) -> None:
    """`fn(y_true, y_pred)` (per-sample float32 values) against
    `reference` (float64 numpy) in value, and the gradient of their sum in
    `y_pred` against the reference's one-sided differences
    (`values_and_grad`: compiled on JAX and TensorFlow, eager on torch)."""
    y_true, y_pred = np.asarray(y_true, "float32"), np.asarray(y_pred, "float32")
    expected = np.asarray(reference(y_true.astype("float64"), y_pred.astype("float64")), "float64")
    values, grad = values_and_grad(fn, y_true, y_pred)
    np.testing.assert_allclose(values, expected, rtol=rtol, atol=1e-6, err_msg=f"float32 value vs float64 ({BACKEND})")
    left, right = one_sided_quotients(reference, y_true, y_pred, step)
    assert_between(grad, left, right, BACKEND)
