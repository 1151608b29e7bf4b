"""The eager torch Sinkhorn kernel (`backend/torch_sinkhorn.py`, stabilized
matrix scaling on the log plan) against the log-domain `keras.ops`
iterations it stands in for, on every backend: the same log plan after the
same iterations, with absorptions forced at every step or never, on costs
whose `exp(-C / eps)` underflows or whose `C / eps` reaches 1e8, with rows
and columns without mass, and small epsilons; and the loss through the
kernel (torch) against the loss without it."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import keras_lossplus as klp
from keras_lossplus.losses.distribution import sinkhorn
from tests.backend_utils import BACKEND, to_numpy, value_and_grad

torch = pytest.importorskip("torch")
from keras_lossplus.backend import torch_sinkhorn  # noqa: E402


@pytest.fixture
def neutral_only(monkeypatch):
    from keras_lossplus.backend import torch as torch_backend

    monkeypatch.setattr(torch_backend, "sinkhorn_log_plan", None)


def problem(kind, rng):
    """`(cost (B, M), masses a (B,), b (M,), epsilon, iterations)`."""
    x, y = rng.normal(size=(9, 3)), rng.normal(size=(7, 3)) + 0.5
    if kind == "far":  # points 1e3 apart: C / epsilon about 1e8
        x, y = x * 1e3, y * 1e3
    cost = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    a, b = rng.uniform(0.5, 1.5, size=9), rng.uniform(0.5, 1.5, size=7)
    epsilon, iterations = 0.5, 30
    if kind == "underflow":  # exp(-C / eps) is 0 for every entry of some columns
        cost, epsilon = cost * 50.0, 0.05
    elif kind in ("massless", "far"):
        a[[1, 4]], b[2] = 0.0, 0.0
    elif kind == "small_epsilon":
        epsilon, iterations = 0.01, 200
    elif kind == "one_iteration":
        iterations = 1
    return cost.astype("float32"), a, b, epsilon, iterations


KINDS = ["plain", "underflow", "massless", "far", "small_epsilon", "one_iteration"]


def _neutral_plan():
    """The `keras.ops` iterations; on JAX one `jax.jit` per (epsilon,
    iterations, shape) instead of eager JAX compiling the loops at every call."""
    if BACKEND != "jax":
        return sinkhorn._sinkhorn_log_plan
    import jax

    return jax.jit(sinkhorn._sinkhorn_log_plan, static_argnames=("epsilon", "max_iter"))


NEUTRAL_PLAN = _neutral_plan()


def _log_masses(a, b):
    return [to_numpy(sinkhorn._log_masses(np.asarray(m, "float32"))[0]) for m in (a, b)]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("absorb", [None, 1.5], ids=["default", "absorb_often"])
def test_kernel_plan_matches_the_log_domain_iterations(rng, kind, absorb, neutral_only, monkeypatch):
    cost, a, b, epsilon, iterations = problem(kind, rng)
    log_a, log_b = _log_masses(a, b)
    tensors = [keras.ops.convert_to_tensor(t) for t in (cost, log_a, log_b)]
    expected = to_numpy(NEUTRAL_PLAN(*tensors, epsilon=epsilon, max_iter=iterations))
    if absorb:
        monkeypatch.setattr(torch_sinkhorn, "_ABSORB", absorb)
    got = torch_sinkhorn.sinkhorn_log_plan(torch.from_numpy(cost), torch.from_numpy(log_a), torch.from_numpy(log_b),
                                           epsilon, iterations, sinkhorn._LOG_ZERO).numpy()
    plan, expected_plan = np.exp(got), np.exp(expected)
    assert np.isfinite(got).all()
    # both hold the log plan itself (never potentials of the size of C / epsilon), whose
    # entries that carry mass are O(log B): float32 rounding, whatever C / epsilon is
    np.testing.assert_allclose(plan, expected_plan, rtol=2e-5, atol=1e-7)
    np.testing.assert_allclose(plan.sum(), expected_plan.sum(), rtol=1e-6)
    mass = np.outer(a > 0, b > 0)
    assert np.all(plan[~mass] == 0.0)


@pytest.mark.skipif(BACKEND != "torch", reason="the loss reaches the kernel on torch only")
@pytest.mark.parametrize("options", [dict(), dict(debias=True), dict(cost="euclidean", epsilon=0.05),
                                     dict(epsilon=0.01, max_iter=300), dict(scale=1e3)], ids=str)
def test_loss_with_the_kernel_matches_the_loss_without(rng, options, monkeypatch):
    scale = options.pop("scale", 1.0)
    x = (rng.normal(size=(12, 4)) * scale).astype("float32")
    y = ((rng.normal(size=(12, 4)) + 0.5) * scale).astype("float32")
    w = rng.uniform(0.0, 1.0, size=12).astype("float32")
    w[3] = 0.0  # a pair without mass

    def loss(p):
        return klp.losses.sinkhorn_loss(x, p, sample_weight=w, **options)

    got = value_and_grad(loss, y)
    from keras_lossplus.backend import torch as torch_backend

    monkeypatch.setattr(torch_backend, "sinkhorn_log_plan", None)
    expected = value_and_grad(loss, y)
    np.testing.assert_allclose(got[0], expected[0], rtol=1e-6)
    np.testing.assert_allclose(got[1], expected[1], rtol=1e-5, atol=1e-6 * np.abs(expected[1]).max())


def test_kernel_steps_aside_for_float64():
    cost = torch.zeros((2, 2), dtype=torch.float64)
    assert torch_sinkhorn.sinkhorn_log_plan(cost, cost[0], cost[1], 0.1, 5, -1e30) is None
