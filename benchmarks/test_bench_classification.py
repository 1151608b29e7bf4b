"""Forward + backward of the classification losses against their peers.

Each case times `value_and_grad_step` (compiled with XLA on JAX and
TensorFlow, eager autograd on torch) on a 4096 x 1000 float32 batch, then
checks the loss value and gradient against a float64 numpy reference so that
every implementation timed computes the same thing. Peers that do not exist
on the current backend are skipped (optax is a peer on JAX only).

Run with `KERAS_BACKEND=<backend> pytest benchmarks/ --benchmark-only`.
"""

import keras
import numpy as np
import pytest
from harness import BACKEND, as_numpy, to_backend, value_and_grad_step, xla_temp_bytes

from keras_lossplus.losses import FocalLoss, PolyLoss

ROUNDS = 50
GAMMA = 2.0
EPSILON = 1.0


def _optax(build):
    """An optax loss made a scalar `(y_true, y_pred) -> mean`, on JAX only."""
    if BACKEND != "jax":
        pytest.skip("optax is a peer on the JAX backend only")
    import optax

    loss = build(optax)
    return lambda y_true, y_pred: loss(y_pred, y_true).mean()


FOCAL = {
    "keras_lossplus": lambda: FocalLoss(gamma=GAMMA, from_logits=True),
    "keras": lambda: keras.losses.BinaryFocalCrossentropy(gamma=GAMMA, from_logits=True),
    "optax": lambda: _optax(
        lambda optax: lambda x, y: optax.sigmoid_focal_loss(x, y, gamma=GAMMA)
    ),
}

POLY = {
    "keras_lossplus": lambda: PolyLoss(epsilon=EPSILON, from_logits=True),
    "optax": lambda: _optax(
        lambda optax: lambda x, y: optax.losses.poly_loss_cross_entropy(x, y, epsilon=EPSILON)
    ),
}


# --------------------------------------------------------------------------- references


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def focal_reference(y, x):
    """Mean binary focal loss from logits and its gradient, in float64."""
    y, x = y.astype("float64"), x.astype("float64")
    p = _sigmoid(x)
    bce = np.logaddexp(0.0, x) - x * y
    q = y * (1.0 - p) + (1.0 - y) * p  # 1 - p_t
    d_q = (1.0 - 2.0 * y) * p * (1.0 - p)
    grad = GAMMA * q ** (GAMMA - 1.0) * d_q * bce + q**GAMMA * (p - y)
    return np.mean(q**GAMMA * bce), grad / y.size


def poly_reference(y, x):
    """Mean Poly-1 loss from logits (one-hot `y`) and its gradient, in float64."""
    y, x = y.astype("float64"), x.astype("float64")
    log_p = x - x.max(-1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(-1, keepdims=True))
    p = np.exp(log_p)
    p_t = (y * p).sum(-1, keepdims=True)
    loss = -(y * log_p).sum(-1) + EPSILON * (1.0 - p_t[:, 0])
    grad = p - y - EPSILON * p * (y - p_t)
    return loss.mean(), grad / len(y)


# --------------------------------------------------------------------------- cases


def run_case(benchmark, loss, implementation, make_loss, batch, reference):
    loss_fn = make_loss()
    y_true, y_pred = (to_backend(a) for a in batch)
    step = value_and_grad_step(loss_fn, y_true, y_pred)
    benchmark.group = f"{loss} {BACKEND}"
    benchmark.extra_info.update(
        backend=BACKEND,
        loss=loss,
        implementation=implementation,
        shape=list(batch[1].shape),
        xla_temp_bytes=xla_temp_bytes(loss_fn, y_true, y_pred),
        measured="the loss and its gradient w.r.t. `y_pred`, 4096 x 1000 float32; XLA jit on "
                 "jax and tensorflow, eager autograd on torch",
    )
    value, grad = as_numpy(benchmark.pedantic(step, rounds=ROUNDS, warmup_rounds=1))

    ref_value, ref_grad = reference(*batch)
    assert value == pytest.approx(ref_value, rel=1e-4)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-3, atol=1e-4 * np.abs(ref_grad).max())


@pytest.mark.parametrize("implementation", list(FOCAL))
def test_binary_focal_from_logits(benchmark, binary_batch, implementation):
    run_case(benchmark, "focal", implementation, FOCAL[implementation], binary_batch, focal_reference)


@pytest.mark.parametrize("implementation", list(POLY))
def test_poly_from_logits(benchmark, one_hot_batch, implementation):
    run_case(benchmark, "poly", implementation, POLY[implementation], one_hot_batch, poly_reference)
