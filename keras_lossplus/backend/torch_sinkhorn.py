"""Eager PyTorch kernel of the Sinkhorn iterations of `SinkhornLoss`.

The `keras.ops` version runs every iteration in the log domain: two
`logsumexp` over the `B x M` matrix, which eager torch runs as about a dozen
full passes (XLA fuses them into two). This kernel runs the same iterations
(POT's `sinkhorn_log` order: `v` then `u`, from `u = v = 0`) as stabilized
matrix scaling (Schmitzer 2019; POT's `sinkhorn_stabilized`): the potentials
are absorbed into a kernel `K = exp(log_k + u_i + v_j)`, the current plan,
and each iteration updates two scaling vectors with two matrix-vector
products, as a plain Sinkhorn does:

    s_v = b / (K^T s_u),    s_u = a / (K s_v).

When a scaling leaves `[1 / _ABSORB, _ABSORB]` (or is not finite, or a row
or column of `K` has underflowed to 0), the scalings are absorbed into the
potentials and that iteration is done exactly in the log domain before `K`
is rebuilt; the first iteration always is (from `u = v = 0`, `exp(log_k)`
may underflow whole columns). Plan entries below float32's range (1e-38)
are 0 in `K` where the log domain keeps their logarithm: the plan, and the
loss, are the same to float32 rounding.

Returns `None` (the caller then runs the `keras.ops` iterations) for inputs
that are not float32, or inside `torch.compile`.
"""

from __future__ import annotations

from typing import Any, Optional

import torch

from keras_lossplus.backend.torch_eager import is_compiling

Tensor = Any

_ABSORB = 1e8
"""Largest scaling (either way) kept before it is absorbed into the potentials."""


def _exact_iteration(log_k: Tensor, log_a: Tensor, log_b: Tensor, u: Tensor) -> tuple:
    v = log_b - torch.logsumexp(log_k + u[:, None], dim=0)
    return log_a - torch.logsumexp(log_k + v[None, :], dim=1), v


def _scaled(mass: Tensor, total: Tensor) -> Tensor:
    """`mass / total`, 1 (no change) where the mass is 0."""
    return torch.where(mass > 0, mass / total, torch.ones_like(total))


def sinkhorn_log_plan(cost: Tensor, log_a: Tensor, log_b: Tensor, epsilon: float, max_iter: int,
                      log_zero: float) -> Optional[Tensor]:
    """`log P` after `max_iter` Sinkhorn iterations, without gradient (see
    `keras_lossplus.losses.distribution._sinkhorn_log_plan`; a row of
    `log_a` or column of `log_b` at `log_zero` carries no mass)."""
    if cost.dtype != torch.float32 or is_compiling():
        return None
    with torch.no_grad():
        log_k = cost.detach() * (-1.0 / epsilon)
        log_a, log_b = log_a.detach(), log_b.detach()
        a, b = torch.exp(log_a), torch.exp(log_b)
        u = torch.where(log_a > 0.5 * log_zero, torch.zeros_like(log_a), log_a)
        u, v = _exact_iteration(log_k, log_a, log_b, u)
        done = 1
        while done < max_iter:
            kernel = torch.exp(log_k + u[:, None] + v[None, :])
            s_u, s_v = torch.ones_like(u), torch.ones_like(v)
            while done < max_iter:
                new_v = _scaled(b, torch.mv(kernel.t(), s_u))
                new_u = _scaled(a, torch.mv(kernel, new_v))
                scalings = torch.cat([new_u, new_v])
                if not bool(((scalings >= 1.0 / _ABSORB) & (scalings <= _ABSORB)).all()):  # NaN too
                    break
                s_u, s_v = new_u, new_v
                done += 1
            u, v = u + torch.log(s_u), v + torch.log(s_v)
            if done < max_iter:  # this iteration's scaling left the range: do it exactly
                u, v = _exact_iteration(log_k, log_a, log_b, u)
                done += 1
        return log_k + u[:, None] + v[None, :]
