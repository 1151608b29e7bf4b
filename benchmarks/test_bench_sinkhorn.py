"""Forward + backward of `SinkhornLoss` (log-domain, fixed iterations,
envelope gradient) against a plain Sinkhorn written in `keras.ops`, issue 7.

Setting: two point clouds of B = 256 and 1024 rows, D = 16, float32:
`y_true` ~ N(0, 1) / 4 and `y_pred` ~ (N(0, 1) + 1) / 4, uniform masses,
squared Euclidean cost, epsilon = 0.1, 100 iterations on both sides. The
clouds are scaled so that `C_ij / epsilon` is 3-110 (median 30) and the
plain peer works: on unscaled N(0, 1) clouds its kernel `exp(-C / epsilon)`
underflows to 0 in float32 and it returns NaN, which
`check_unscaled_clouds` asserts (and that ours stays finite) before timing.

* `keras_lossplus`: `SinkhornLoss(epsilon=0.1, max_iter=100)`: log-domain
  iterations in a `fori_loop` under `stop_gradient`, the loss `<P, C>`, the
  gradient `P` times the gradient of `C` (envelope theorem; POT's gradient).
* `plain_sinkhorn` (peer): the textbook matrix scaling `v = b / (K^T u)`,
  `u = a / (K v)` with `K = exp(-C / epsilon)`, the iterations unrolled in
  Python (so that every backend can differentiate them), the same update
  order and start as ours, the loss `<diag(u) K diag(v), C>` and its
  gradient by automatic differentiation through all 100 iterations.

Both are timed by `harness.value_and_grad_step` (XLA jit on JAX and
TensorFlow, eager autograd on torch); variants take turns, `BLOCKS` blocks
of `ROUNDS` rounds per variant, the order rotated from block to block. Each
variant is checked in its first block against a float64 numpy Sinkhorn with
the same iterations: the value (rel. 1e-4) for both, the gradient (rel. 1e-3)
for ours against the envelope gradient `sum_i P_ij dC_ij / dy_j`; the
peer's autodiff gradient, which also differentiates `P`, is only checked to
be finite, and its relative distance to the envelope gradient is recorded
(`grad_gap`). On JAX the compiled program's temporaries are recorded
(`xla_temp_bytes`, the harness's only memory figure).

Run with `KERAS_BACKEND=<backend> pytest benchmarks/test_bench_sinkhorn.py --benchmark-only`
or `benchmarks/report.py --suites sinkhorn`.
"""

import numpy as np
import pytest
from harness import BACKEND, as_numpy, rotated, step_of_size, to_backend, value_and_grad_step, xla_temp_bytes
from keras import ops

from keras_lossplus.losses import SinkhornLoss

EPSILON = 0.1
ITERATIONS = 100
DIM = 16
BATCH_SIZES = (256, 1024)
BLOCKS = {256: 8, 1024: 4}
ROUNDS = {256: 5, 1024: 2}
IMPLEMENTATIONS = ("keras_lossplus", "plain_sinkhorn")
MEASURED = (
    "the loss and its gradient w.r.t. `y_pred`, two clouds of B points in D = 16, float32, "
    f"epsilon = {EPSILON}, {ITERATIONS} iterations; XLA jit on jax and tensorflow, eager autograd on torch"
)


def clouds(batch_size, scale=0.25):
    rng = np.random.default_rng(batch_size)
    x = rng.normal(size=(batch_size, DIM)) * scale
    y = (rng.normal(size=(batch_size, DIM)) + 1.0) * scale
    return x.astype("float32"), y.astype("float32")


def plain_sinkhorn(y_true, y_pred):
    """The straightforward Sinkhorn: matrix scaling in the exp domain, the
    iterations unrolled, autodiff through all of them."""
    sq_x = ops.sum(ops.square(y_true), axis=1)
    sq_y = ops.sum(ops.square(y_pred), axis=1)
    cost = ops.maximum(sq_x[:, None] + sq_y[None, :] - 2.0 * ops.matmul(y_true, ops.transpose(y_pred)), 0.0)
    kernel = ops.exp(-cost / EPSILON)
    n, m = y_true.shape[0], y_pred.shape[0]
    a = ops.full((n,), 1.0 / n, dtype=y_pred.dtype)
    b = ops.full((m,), 1.0 / m, dtype=y_pred.dtype)
    u = ops.ones((n,), dtype=y_pred.dtype)
    for _ in range(ITERATIONS):
        v = b / ops.matmul(u, kernel)
        u = a / ops.matmul(kernel, v)
    plan = u[:, None] * kernel * v[None, :]
    return ops.sum(plan * cost)


def reference(x, y):
    """float64 value `<P, C>` and envelope gradient w.r.t. `y`, same
    iterations (the exp domain is exact enough in float64 at this scale)."""
    x, y = x.astype("float64"), y.astype("float64")
    cost = (x**2).sum(1)[:, None] + (y**2).sum(1)[None, :] - 2 * x @ y.T
    kernel = np.exp(-cost / EPSILON)
    a, b = np.full(len(x), 1 / len(x)), np.full(len(y), 1 / len(y))
    u = np.ones(len(x))
    for _ in range(ITERATIONS):
        v = b / (u @ kernel)
        u = a / (kernel @ v)
    plan = u[:, None] * kernel * v[None, :]
    grad = 2 * (plan.sum(0)[:, None] * y - plan.T @ x)
    return (plan * cost).sum(), grad


def make_loss(implementation):
    if implementation == "keras_lossplus":
        return SinkhornLoss(epsilon=EPSILON, max_iter=ITERATIONS)
    return plain_sinkhorn


def check_unscaled_clouds():
    """Why the clouds are scaled: on N(0, 1) clouds in D = 16, `C / epsilon`
    is 55-1750 (median 460), `exp(-C / epsilon)` underflows to 0 in float32
    and the plain Sinkhorn returns NaN, while the log-domain one stays finite."""
    x, y = clouds(256, scale=1.0)
    y_true, y_pred = to_backend(x), to_backend(y)
    plain = float(ops.convert_to_numpy(plain_sinkhorn(y_true, y_pred)))
    ours = float(ops.convert_to_numpy(SinkhornLoss(epsilon=EPSILON, max_iter=ITERATIONS)(y_true, y_pred)))
    assert not np.isfinite(plain), plain
    assert np.isfinite(ours) and ours > 0, ours


@pytest.fixture(scope="module")
def sinkhorn_steps():
    """(B, implementation) -> (warmed-up step, extra info); only the current B's
    are kept. Checks first that the peer fails where ours does not."""
    check_unscaled_clouds()
    return {}


def build_step(batch_size, implementation):
    x, y = clouds(batch_size)
    loss = make_loss(implementation)
    y_true, y_pred = to_backend(x), to_backend(y)
    step = value_and_grad_step(loss, y_true, y_pred)
    value, grad = as_numpy(step())
    ref_value, ref_grad = reference(x, y)
    assert np.isfinite(value) and np.isfinite(grad).all()
    assert value == pytest.approx(ref_value, rel=1e-4)
    gap = float(np.linalg.norm(grad - ref_grad) / np.linalg.norm(ref_grad))
    if implementation == "keras_lossplus":
        np.testing.assert_allclose(grad, ref_grad, rtol=1e-3, atol=1e-4 * np.abs(ref_grad).max())
    return step, dict(xla_temp_bytes=xla_temp_bytes(loss, y_true, y_pred), grad_gap=gap, value=value)


CASES = [
    (batch_size, block, implementation)
    for batch_size in BATCH_SIZES
    for block in range(BLOCKS[batch_size])
    for implementation in rotated(IMPLEMENTATIONS, block)
]


@pytest.mark.parametrize("batch_size, block, implementation", CASES, ids=str)
def test_sinkhorn(benchmark, sinkhorn_steps, batch_size, block, implementation):
    step, info = step_of_size(sinkhorn_steps, batch_size, implementation,
                              lambda: build_step(batch_size, implementation))
    benchmark.group = f"sinkhorn B={batch_size} {BACKEND}"
    benchmark.extra_info.update(
        backend=BACKEND, loss=f"sinkhorn B={batch_size}", implementation=implementation, block=block,
        batch_size=batch_size, dim=DIM, epsilon=EPSILON, iterations=ITERATIONS, measured=MEASURED, **info,
    )
    benchmark.pedantic(step, rounds=ROUNDS[batch_size], warmup_rounds=1)
