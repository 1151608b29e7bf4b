"""Plain numpy re-implementations of the weighting methods, written from the
papers / the authors' code, for the tests."""

import numpy as np
from scipy.optimize import minimize


def pcgrad(grads, order=None):
    """Yu et al. 2020, Algorithm 1 (sum of projected gradients)."""
    grads = np.asarray(grads, np.float64)
    t = len(grads)
    out = []
    for i in range(t):
        g = grads[i].copy()
        for j in order if order is not None else range(t):
            if j == i:
                continue
            dot = g @ grads[j]
            if dot < 0:
                g = g - dot / (grads[j] @ grads[j]) * grads[j]
        out.append(g)
    return np.sum(out, axis=0)


def gradnorm_update(weights, grads, losses, initial, alpha, lr):
    """Chen et al. 2018: one descent step on sum_k |w_k |g_k| - mean(w|g|) r_k^alpha|."""
    weights = np.asarray(weights, np.float64)
    norms = np.linalg.norm(grads, axis=1)
    gw = weights * norms
    ratio = np.asarray(losses) / np.asarray(initial)
    target = gw.mean() * (ratio / ratio.mean()) ** alpha
    grad_w = np.sign(gw - target) * norms  # d/dw_k of |w_k n_k - target_k|
    new = np.maximum(weights - lr * grad_w, 0.0)
    return new * weights.sum() / new.sum()


def dwa_weights(previous, last, temperature):
    """Liu et al. 2019, eq. (7): T * softmax(L(t-1)/L(t-2) / temperature)."""
    r = np.asarray(last) / np.asarray(previous)
    e = np.exp(r / temperature)
    return len(r) * e / e.sum()


def uncertainty_objective(losses, log_variances, classification):
    """Kendall et al. 2018: 0.5 e^-s L + 0.5 s (regression), e^-s L + 0.5 s
    (classification); value and gradient with respect to s."""
    losses, s = np.asarray(losses, np.float64), np.asarray(log_variances, np.float64)
    c = np.where(classification, 1.0, 0.5)
    value = np.sum(c * np.exp(-s) * losses + 0.5 * s)
    grad = -c * np.exp(-s) * losses + 0.5
    return value, grad


def min_norm_weights(grads):
    """Min-norm point of the convex hull, by SciPy (SLSQP) on the simplex."""
    gram = np.asarray(grads, np.float64) @ np.asarray(grads, np.float64).T
    t = len(gram)
    res = minimize(
        lambda a: a @ gram @ a,
        np.full(t, 1.0 / t),
        jac=lambda a: 2 * gram @ a,
        bounds=[(0, 1)] * t,
        constraints=({"type": "eq", "fun": lambda a: a.sum() - 1},),
        method="SLSQP",
        options={"ftol": 1e-14, "maxiter": 1000},
    )
    return res.x


def cagrad(grads, alpha=0.5, rescale=1):
    """The authors' `cagrad` (Liu et al. 2021, official code), with SciPy."""
    grads = np.asarray(grads, np.float64).T  # (P, T) as in their code
    t = grads.shape[1]
    gram = grads.T @ grads
    g0_norm = np.sqrt(gram.mean() + 1e-8)
    b = np.full(t, 1.0 / t)
    c = alpha * g0_norm + 1e-8
    res = minimize(
        lambda x: x @ gram @ b + c * np.sqrt(x @ gram @ x + 1e-8),
        b.copy(),
        bounds=[(0, 1)] * t,
        constraints=({"type": "eq", "fun": lambda x: 1 - x.sum()},),
        method="SLSQP",
        options={"ftol": 1e-14, "maxiter": 1000},
    )
    gw = grads @ res.x
    g = grads.mean(axis=1) + c / (np.linalg.norm(gw) + 1e-8) * gw
    return g / {0: 1.0, 1: 1 + alpha**2, 2: 1 + alpha}[rescale]


def famo_logit_step(logits, old_losses, new_losses, state, lr=0.025, gamma=0.01, eps=1e-8):
    """FAMO's logit update with torch.optim.Adam, as in the authors' code."""
    import torch

    w = torch.tensor(np.asarray(logits, np.float64), requires_grad=True)
    optimizer = torch.optim.Adam([w], lr=lr, weight_decay=gamma)
    if state is not None:
        optimizer.load_state_dict(state)
    old = torch.tensor(np.asarray(old_losses, np.float64))
    new = torch.tensor(np.asarray(new_losses, np.float64))
    delta = (old + eps).log() - (new + eps).log()
    d = torch.autograd.grad(torch.softmax(w, -1), w, grad_outputs=delta)[0]
    optimizer.zero_grad()
    w.grad = d
    optimizer.step()
    return w.detach().numpy(), optimizer.state_dict()


def nash_mtl_alpha(grads):
    """Navon et al. 2022, eq. 4: the positive solution of `alpha_i (G G^T alpha)_i = 1`,
    the minimiser of `0.5 a^T K a - sum log a` (SciPy, L-BFGS-B in log space)."""
    grads = np.asarray(grads, np.float64)
    gram = grads @ grads.T

    def objective(z):
        a = np.exp(z)
        return 0.5 * a @ gram @ a - z.sum(), a * (gram @ a) - 1.0

    res = minimize(objective, np.zeros(len(gram)), jac=True, method="L-BFGS-B", options={"gtol": 1e-12, "ftol": 1e-15})
    return np.exp(res.x)


def nash_mtl_direction(grads, max_norm=1.0):
    """LibMTL's `Nash_MTL.backward`: the shared gradient `sum alpha_k g_k`, then
    `clip_grad_norm_(shared, max_norm)`; returns (direction, alpha)."""
    grads = np.asarray(grads, np.float64)
    alpha = nash_mtl_alpha(grads)
    direction = alpha @ grads
    if max_norm > 0:
        direction = direction * min(max_norm / (np.linalg.norm(direction) + 1e-6), 1.0)
    return direction, alpha


def imtl_alpha(grads):
    """LibMTL's `IMTL.backward` (IMTL-G part), in numpy."""
    grads = np.asarray(grads, np.float64)
    unit = grads / np.linalg.norm(grads, axis=-1, keepdims=True)
    d = grads[:1] - grads[1:]
    u = unit[:1] - unit[1:]
    alpha = grads[0] @ u.T @ np.linalg.inv(d @ u.T)
    return np.concatenate([[1.0 - alpha.sum()], alpha])


def imtl_step(grads, losses, loss_scale):
    """LibMTL's `IMTL.backward`: scaled losses `exp(s) L - s`; returns the shared
    direction, the task-specific scales `exp(s)` and the gradient of `s`."""
    scale = np.exp(np.asarray(loss_scale, np.float64))
    scaled = scale[:, None] * np.asarray(grads, np.float64)
    return imtl_alpha(scaled) @ scaled, scale, scale * np.asarray(losses, np.float64) - 1.0
def gradvac(grads, rho_t, beta=0.5, order=None):
    """LibMTL `GradVac.backward` (group_type 0, whole model), in numpy:
    returns the summed altered gradients and the new target cosines."""
    grads = np.asarray(grads, np.float64)
    rho_t = np.array(rho_t, np.float64)
    t = len(grads)
    pc = grads.copy()
    for i in range(t):
        for j in order if order is not None else range(t):
            if j == i:
                continue
            rho = pc[i] @ grads[j] / (np.linalg.norm(pc[i]) * np.linalg.norm(grads[j]) + 1e-8)
            if rho < rho_t[i, j]:
                phi = rho_t[i, j]
                w = np.linalg.norm(pc[i]) * (phi * np.sqrt(1 - rho**2) - rho * np.sqrt(1 - phi**2)) / (
                    np.linalg.norm(grads[j]) * np.sqrt(1 - phi**2) + 1e-8
                )
                pc[i] = pc[i] + grads[j] * w
            rho_t[i, j] = (1 - beta) * rho_t[i, j] + beta * rho
    return pc.sum(0), rho_t


def aligned_mtl(grads):
    """LibMTL `Aligned_MTL.backward` in numpy: the weights alpha and the update."""
    grads = np.asarray(grads, np.float64)
    m = grads @ grads.T
    lmbda, v = np.linalg.eigh(m)
    tol = lmbda.max() * max(m.shape) * np.finfo(np.float32).eps
    rank = int(np.sum(lmbda > tol))
    order = np.argsort(-lmbda)
    lmbda, v = lmbda[order][:rank], v[:, order][:, :rank]
    b = np.sqrt(lmbda[-1]) * ((v @ np.diag(1 / np.sqrt(lmbda))) @ v.T)
    alpha = b.sum(0)
    return alpha, alpha @ grads


def db_mtl(grads, losses, buffer, step, beta=0.9, beta_sigma=0.0):
    """LibMTL `DB_MTL.backward` in numpy (`step` counted from 1): the update
    and the new gradient buffer; `grads` are those of the losses, so the
    log-loss gradients are `grads / (losses + 1e-8)`."""
    batch = np.asarray(grads, np.float64) / (np.asarray(losses, np.float64)[:, None] + 1e-8)
    buffer = batch + (beta / step**beta_sigma) * (np.asarray(buffer, np.float64) - batch)
    u = np.linalg.norm(buffer, axis=-1)
    alpha = u.max() / (u + 1e-8)
    return alpha @ buffer, buffer
