"""Eager PyTorch kernel of the Sinkhorn iterations of `SinkhornLoss`.

The `keras.ops` version runs every iteration in the log domain: two
`logsumexp` over the `B x M` matrix, which eager torch runs as about a dozen
full passes (XLA fuses them into two). This kernel runs the same
iterations (POT's `sinkhorn_log` order: `v` then `u`, from `u = v = 0`) as
stabilized matrix scaling (Schmitzer 2019; POT's `sinkhorn_stabilized`):
the log plan `L = log_k + u + v` is held as a matrix, its exponential
`K = exp(L)` is the current plan, and each iteration updates two scaling
vectors with two matrix-vector products, as a plain Sinkhorn does:

    s_v = b / (K^T s_u),    s_u = a / (K s_v).

When a scaling leaves `[1 / _ABSORB, _ABSORB]` (or is not finite: a row or
column of `K` has underflowed), the scalings are absorbed into the log plan
(`L += log s_u + log s_v`, so that no potential of the size of
`cost / epsilon` is ever held: float32 keeps the plan's `O(1)` entries
exact) and that iteration is done exactly in the log domain before `K` is
rebuilt. While a scaling stays in range, every column sum of `K` is at least
`1e-8` times its mass, so the entries lost to underflow (below float32's
`1e-38`) change no sum: the plan, and the loss, are the same to float32
rounding.

The first iteration is the one `SinkhornLoss` runs in `keras.ops`
(`keras_lossplus.losses.distribution.sinkhorn._first_iteration`): on the
cost reduced by its column, then row minima, so that the log plan it
returns holds the `O(1)` log-masses exactly whatever `cost / epsilon` is
(points 1e4 apart at `epsilon = 0.1`: 1e9), written here in torch's
in-place operations.

Returns `None` (the caller then runs the `keras.ops` iterations) for inputs
that are not float32, or inside `torch.compile`.
"""

from __future__ import annotations

from typing import Any, Optional

import torch

from keras_lossplus.backend.torch_eager import is_compiling

Tensor = Any

_ABSORB = 1e8
"""Largest scaling (either way) kept before it is absorbed into the log plan."""


def _exact_iteration(log_plan: Tensor, log_a: Tensor, log_b: Tensor) -> None:
    """One log-domain iteration on the log plan, in place: `v`, then `u`."""
    log_plan += (log_b - torch.logsumexp(log_plan, dim=0))[None, :]
    log_plan += (log_a - torch.logsumexp(log_plan, dim=1))[:, None]


def _masked_min(cost: Tensor, keep: Tensor, dim: int) -> Tensor:
    """The minimum of `cost` over `dim` among the rows (`dim=0`) or columns
    (`dim=1`) `keep` marks; 0 where it marks none."""
    if not bool(keep.any()):
        return cost.new_zeros(cost.shape[1 - dim])
    largest = torch.finfo(cost.dtype).max
    floor = torch.where(keep, -largest, largest)
    return torch.maximum(cost, floor.unsqueeze(1 - dim)).amin(dim=dim)


def _first_iteration(cost: Tensor, log_a: Tensor, log_b: Tensor, epsilon: float, log_zero: float) -> Tensor:
    """The log plan after the first iteration, on the cost reduced by its
    column, then row minima (over the rows and columns with mass), as
    `keras_lossplus.losses.distribution.sinkhorn._first_iteration` computes
    it: the same numbers, in fewer and in-place passes."""
    rows, cols = log_a > 0.5 * log_zero, log_b > 0.5 * log_zero
    largest = torch.finfo(cost.dtype).max
    cap_rows = torch.where(rows, largest, log_zero).unsqueeze(1)
    cap_cols = torch.where(cols, largest, log_zero).unsqueeze(0)
    reduced = cost - _masked_min(cost, rows, 0).unsqueeze(0)
    # v from u = 0: each column's largest entry over the rows with mass is exactly 0
    column_sums = torch.minimum(reduced / -epsilon, cap_rows).exp_().sum(dim=0)
    v = log_b - column_sums.clamp_(min=1.0).log_()
    reduced -= _masked_min(reduced, cols, 1).unsqueeze(1)
    log_plan = reduced.div_(-epsilon).add_(v.unsqueeze(0)).clamp_(min=log_zero)
    torch.minimum(log_plan, cap_rows, out=log_plan)
    torch.minimum(log_plan, cap_cols, out=log_plan)
    log_plan += (log_a - torch.logsumexp(log_plan, dim=1)).unsqueeze(1)
    return log_plan


def _scaled(mass: Tensor, total: Tensor) -> Tensor:
    """`mass / total`, 1 (no change) where the mass is 0."""
    return torch.where(mass > 0, mass / total, torch.ones_like(total))


def sinkhorn_log_plan(cost: Tensor, log_a: Tensor, log_b: Tensor, epsilon: float, max_iter: int,
                      log_zero: float) -> Optional[Tensor]:
    """`log P` after `max_iter` Sinkhorn iterations from `u = v = 0` on the
    log kernel `-cost / epsilon`, without gradient (see
    `keras_lossplus.losses.distribution.sinkhorn._sinkhorn_log_plan`; a row
    of `log_a` or column of `log_b` at `log_zero` carries no mass)."""
    if cost.dtype != torch.float32 or is_compiling():
        return None
    with torch.no_grad():
        log_a, log_b = log_a.detach(), log_b.detach()
        a, b = torch.exp(log_a), torch.exp(log_b)
        log_plan = _first_iteration(cost.detach(), log_a, log_b, epsilon, log_zero)
        done = 1
        while done < max_iter:
            kernel = torch.exp(log_plan)
            s_u, s_v = torch.ones_like(log_a), torch.ones_like(log_b)
            scaled = False
            while done < max_iter:
                new_v = _scaled(b, torch.mv(kernel.t(), s_u))
                new_u = _scaled(a, torch.mv(kernel, new_v))
                scalings = torch.cat([new_u, new_v])
                if not bool(((scalings >= 1.0 / _ABSORB) & (scalings <= _ABSORB)).all()):  # NaN too
                    break
                s_u, s_v, scaled = new_u, new_v, True
                done += 1
            if scaled:
                log_plan += torch.log(s_u)[:, None] + torch.log(s_v)[None, :]
            if done < max_iter:  # this iteration's scaling left the range: do it exactly
                _exact_iteration(log_plan, log_a, log_b)
                done += 1
        return log_plan
