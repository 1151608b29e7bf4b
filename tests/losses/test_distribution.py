"""Jensen-Shannon, MMD, Sinkhorn, 1-D Wasserstein and energy distance: float64
numpy / scipy references, the scipy identities, the Sinkhorn envelope gradient
and its limit (the optimal assignment), float32 against float64 where the
costs are large or the clouds far from the origin, every loss's gradient
within the float64 one-sided differences at ties, zeros and bounds (eagerly
and compiled), the eager refusal of non-finite targets, and the shared
contract."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from keras import ops
from scipy import optimize, spatial, special, stats

from keras_lossplus import losses as L
from tests.backend_utils import BACKEND, XLA_BACKENDS, to_numpy, value_and_grad
from tests.contract import LossCase, contract_suite
from tests.edge_grid import as_tensor, compiled_value_and_grad

EPS = 1e-7  # keras.backend.epsilon(), the clip of keras.losses.kl_divergence


# --------------------------------------------------------------------------- references (float64)


def ref_js(y, p, from_logits=False):
    y, p = np.asarray(y, "float64"), np.asarray(p, "float64")
    if from_logits:
        p = special.softmax(p, axis=-1)
    y, p = np.clip(y, EPS, 1.0), np.clip(p, EPS, 1.0)
    m = 0.5 * (y + p)
    return 0.5 * (y * np.log(y / m)).sum(-1) + 0.5 * (p * np.log(p / m)).sum(-1)


def ref_wasserstein(y, p, p_order=1, mode="samples"):
    y, p = np.asarray(y, "float64"), np.asarray(p, "float64")
    if mode == "samples":
        d = np.abs(np.sort(y, -1) - np.sort(p, -1)) ** p_order
        return d.mean(-1) ** (1.0 / p_order)
    cdf = np.cumsum(y / y.sum(-1, keepdims=True) - p / p.sum(-1, keepdims=True), -1)
    return np.abs(cdf[..., :-1]).sum(-1)


def _rows(x, y, sample_weight):
    """float64 samples and masses, the rows without mass dropped."""
    x, y = np.asarray(x, "float64"), np.asarray(y, "float64")
    x, y = x.reshape(len(x), -1), y.reshape(len(y), -1)
    if sample_weight is None:
        return x, y, np.ones(len(x)), np.ones(len(y))
    w = np.asarray(sample_weight, "float64").reshape(-1)
    keep = w > 0
    return x[keep], y[keep], w[keep], w[keep]


def _dist(a, b):
    return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))


def ref_mmd(y_true, y_pred, sample_weight=None, bandwidth=1.0):
    x, y, wx, wy = _rows(y_true, y_pred, sample_weight)
    if len(x) < 2:
        return 0.0
    widths = np.atleast_1d(np.asarray(bandwidth, "float64"))

    def k(a, b):
        sq = _dist(a, b) ** 2
        return sum(np.exp(-sq / (2 * s * s)) for s in widths)

    def mean(m, wa, wb, off):
        pair = wa[:, None] * wb[None, :]
        if off:
            np.fill_diagonal(pair, 0.0)
        return (pair * m).sum() / pair.sum()

    return mean(k(x, x), wx, wx, True) + mean(k(y, y), wy, wy, True) - 2 * mean(k(x, y), wx, wy, False)


def ref_energy(y_true, y_pred, sample_weight=None):
    x, y, wx, wy = _rows(y_true, y_pred, sample_weight)
    if len(x) == 0:
        return 0.0

    def mean(a, b, wa, wb):
        pair = wa[:, None] * wb[None, :]
        return (pair * _dist(a, b)).sum() / pair.sum()

    return 2 * mean(x, y, wx, wy) - mean(x, x, wx, wx) - mean(y, y, wy, wy)


def _logsumexp(m, axis):  # scipy's, without its checks (the finite differences call it 10^5 times)
    top = m.max(axis=axis, keepdims=True)
    return np.squeeze(top, axis) + np.log(np.exp(m - top).sum(axis=axis))


def sinkhorn_log_plan(cost, a, b, epsilon, max_iter):
    """POT's `sinkhorn_log` loop (v, then u), float64: the log plan."""
    m = -cost / epsilon
    la, lb = np.log(a), np.log(b)
    u, v = np.zeros(len(a)), np.zeros(len(b))
    for _ in range(max_iter):
        v = lb - _logsumexp(m + u[:, None], axis=0)
        u = la - _logsumexp(m + v[None, :], axis=1)
    return m + u[:, None] + v[None, :]


def _cost(a, b, cost):
    d = _dist(a, b)
    return d**2 if cost == "squared_euclidean" else d


def _ot(a, b, wa, wb, epsilon, max_iter, cost, entropic):
    ma, mb = wa / wa.sum(), wb / wb.sum()
    c = _cost(a, b, cost)
    log_plan = sinkhorn_log_plan(c, ma, mb, epsilon, max_iter)
    plan = np.exp(log_plan)
    value = (plan * c).sum()
    if entropic:
        value += epsilon * (plan * (log_plan - np.log(np.outer(ma, mb)))).sum()
    return value, plan


def ref_sinkhorn(y_true, y_pred, sample_weight=None, epsilon=0.1, max_iter=100, cost="squared_euclidean",
                 debias=False):
    x, y, wx, wy = _rows(y_true, y_pred, sample_weight)
    if len(x) == 0:
        return 0.0
    value, _ = _ot(x, y, wx, wy, epsilon, max_iter, cost, debias)
    if debias:
        value -= 0.5 * (_ot(x, x, wx, wx, epsilon, max_iter, cost, True)[0]
                        + _ot(y, y, wy, wy, epsilon, max_iter, cost, True)[0])
    return value


def sinkhorn_envelope_gradient(y_true, y_pred, cost="squared_euclidean", debias=False, **kw):
    """float64 `sum_i P_ij dC_ij / dy_j` (minus the self term's with `debias`),
    uniform masses: the gradient `sinkhorn_loss` returns."""
    x, y = np.asarray(y_true, "float64"), np.asarray(y_pred, "float64")

    def envelope(a, b):  # d <P, C(a, b)> / d(a, b), P fixed
        _, plan = _ot(a, b, np.ones(len(a)), np.ones(len(b)), cost=cost, entropic=False, **kw)
        diff = b[None, :, :] - a[:, None, :]
        if cost == "squared_euclidean":
            dc = 2 * diff
        else:
            d = _dist(a, b)[:, :, None]
            dc = np.divide(diff, d, out=np.zeros_like(diff), where=d > 0)
        weighted = plan[:, :, None] * dc
        return -weighted.sum(1), weighted.sum(0)

    grad = envelope(x, y)[1]
    if debias:
        grad -= 0.5 * sum(envelope(y, y))
    return grad


# --------------------------------------------------------------------------- inputs


def _probs(rng, shape):
    return rng.dirichlet(np.ones(shape[-1]), size=shape[:-1]).astype("float32")


def js_inputs(rng):
    return _probs(rng, (12, 4)), _probs(rng, (12, 4))


def js_logit_inputs(rng):
    return _probs(rng, (12, 4)), (2.0 * rng.normal(size=(12, 4))).astype("float32")


def sample_sets(rng):
    return rng.normal(size=(12, 5)).astype("float32"), (rng.normal(size=(12, 5)) + 0.3).astype("float32")


def histograms(rng):
    return rng.uniform(0.0, 2.0, size=(12, 6)).astype("float32"), _probs(rng, (12, 6))


def clouds(batch=10, dim=2):
    def make(rng):
        x = rng.normal(size=(batch, dim)).astype("float32")
        y = (rng.normal(size=(batch, dim)) * 1.2 + 0.5).astype("float32")
        return x, y

    return make


_ONE_HOT = np.eye(4, dtype="float32")[[0, 1, 2, 3]]
_JS_EDGES = {
    "one_hot_identical": (_ONE_HOT, _ONE_HOT),
    "disjoint": (_ONE_HOT, _ONE_HOT[::-1].copy()),
    "zeros": (_ONE_HOT, np.zeros((4, 4), "float32")),
}
_W_EDGES = {
    "identical": (np.ones((3, 5)) * np.arange(5), np.ones((3, 5)) * np.arange(5)[::-1].copy()),
    "ties": (np.zeros((3, 5)), np.ones((3, 5))),
    "huge": (np.zeros((3, 5)), np.full((3, 5), 1e4)),
}
_H_EDGES = {
    "identical": (np.eye(3, 6), np.eye(3, 6)),
    "all_zero": (np.zeros((3, 6)), np.zeros((3, 6))),
    "one_hot": (np.eye(3, 6), np.eye(3, 6)[:, ::-1].copy()),
}
_rng = np.random.default_rng(7)
_CLOUD = _rng.normal(size=(6, 2)).astype("float32")
_CLOUD_EDGES = {
    "identical": (_CLOUD, _CLOUD),
    "one_point": (np.ones((6, 2), "float32"), np.ones((6, 2), "float32")),
    "zeros": (np.zeros((6, 2), "float32"), np.zeros((6, 2), "float32")),
    "huge": (np.zeros((6, 2), "float32"), 1e4 * np.eye(6, 2, dtype="float32")),
}


def _case(id, cls, fn, ref, kwargs, make_inputs, edges, bad=(), batch_level=False, ref_kwargs=None, **extra):
    return LossCase(
        id=id, cls=cls, fn=fn, kwargs=kwargs,
        reference=functools.partial(ref, **(kwargs if ref_kwargs is None else ref_kwargs)),
        make_inputs=make_inputs, edge_inputs=edges, bad_args=list(bad), batch_level=batch_level, **extra,
    )


_SINKHORN_BAD = [({"epsilon": 0.0}, "epsilon"), ({"max_iter": 0}, "max_iter"), ({"max_iter": 2.5}, "max_iter"),
                 ({"cost": "cosine"}, "cost"), ({"debias": "yes"}, "debias")]

CASES = [
    _case("js", L.JensenShannonDivergence, L.jensen_shannon_divergence, ref_js, {}, js_inputs, _JS_EDGES,
          bad=[({"from_logits": "yes"}, "from_logits")], activation="softmax"),
    _case("js_from_logits", L.JensenShannonDivergence, L.jensen_shannon_divergence, ref_js,
          {"from_logits": True}, js_logit_inputs,
          {"huge_logits": (_ONE_HOT, 100.0 * (2 * _ONE_HOT - 1)), "equal_logits": (_ONE_HOT, np.zeros((4, 4)))}),
    _case("wasserstein_samples_p2", L.Wasserstein1DLoss, L.wasserstein_1d_loss, ref_wasserstein, {"p": 2},
          sample_sets, _W_EDGES, ref_kwargs={"p_order": 2}, rtol=2e-5,
          bad=[({"p": 0.5}, "p"), ({"mode": "cdf"}, "mode")]),
    _case("wasserstein_histogram", L.Wasserstein1DLoss, L.wasserstein_1d_loss, ref_wasserstein,
          {"mode": "histogram"}, histograms, _H_EDGES, activation="softmax", rtol=2e-5,
          bad=[({"p": 2, "mode": "histogram"}, "p")]),
    _case("mmd_multi_bandwidth", L.MMDLoss, L.mmd_loss, ref_mmd, {"bandwidth": [0.5, 1.0, 2.0]}, clouds(12, 3),
          _CLOUD_EDGES, batch_level=True, rtol=1e-4, atol=1e-5,
          bad=[({"bandwidth": 0.0}, "bandwidth"), ({"bandwidth": [1.0, -1.0]}, "bandwidth"),
               ({"bandwidth": []}, "bandwidth")]),
    _case("sinkhorn", L.SinkhornLoss, L.sinkhorn_loss, ref_sinkhorn, {"epsilon": 0.5, "max_iter": 20},
          clouds(10, 2), _CLOUD_EDGES, batch_level=True, rtol=1e-4, atol=1e-5, bad=_SINKHORN_BAD),
    _case("sinkhorn_debias_euclidean", L.SinkhornLoss, L.sinkhorn_loss, ref_sinkhorn,
          {"epsilon": 0.2, "max_iter": 25, "cost": "euclidean", "debias": True}, clouds(10, 3), _CLOUD_EDGES,
          batch_level=True, rtol=1e-4, atol=1e-5),
    _case("energy", L.EnergyDistance, L.energy_distance, ref_energy, {}, clouds(12, 3), _CLOUD_EDGES,
          batch_level=True, rtol=1e-4, atol=1e-5),
]

# the fit-save-reload check on the Sinkhorn loss (a fixed-length loop under
# XLA, with a gradient that bypasses it) and on the sorted 1-D Wasserstein
# (a sort and its gradient under XLA); every class's config round trip is
# checked by test_config_round_trip
TestDistributionContract = contract_suite(CASES, fit_ids={"sinkhorn", "wasserstein_samples_p2"})


# --------------------------------------------------------------------------- scipy identities


def test_js_equals_scipy_jensenshannon_squared(rng):
    p, q = js_inputs(rng)
    expected = spatial.distance.jensenshannon(p.astype("float64"), q.astype("float64"), axis=-1) ** 2
    np.testing.assert_allclose(to_numpy(L.jensen_shannon_divergence(p, q)), expected, rtol=1e-4, atol=1e-7)
    logits = np.log(q)  # softmax(log q) = q
    np.testing.assert_allclose(to_numpy(L.jensen_shannon_divergence(p, logits, from_logits=True)), expected,
                               rtol=1e-4, atol=1e-7)


def test_wasserstein_equals_scipy(rng):
    x, y = sample_sets(rng)
    expected = [stats.wasserstein_distance(a, b) for a, b in zip(x, y)]
    np.testing.assert_allclose(to_numpy(L.wasserstein_1d_loss(x, y)), expected, rtol=1e-5)
    h, g = histograms(rng)
    bins = np.arange(h.shape[1])
    expected = [stats.wasserstein_distance(bins, bins, u_weights=a, v_weights=b) for a, b in zip(h, g)]
    np.testing.assert_allclose(to_numpy(L.wasserstein_1d_loss(h, g, mode="histogram")), expected, rtol=1e-5)


def test_energy_distance_equals_scipy_squared_in_1d(rng):
    u = rng.normal(size=12).astype("float32")
    v = (1.5 * rng.normal(size=12) + 0.4).astype("float32")
    w = rng.uniform(0.0, 2.0, size=12).astype("float32")
    w[3] = 0.0
    np.testing.assert_allclose(float(to_numpy(L.energy_distance(u[:, None], v[:, None]))),
                               stats.energy_distance(u, v) ** 2, rtol=1e-4)
    weighted = float(to_numpy(L.EnergyDistance()(u[:, None], v[:, None], sample_weight=w)))
    np.testing.assert_allclose(weighted, stats.energy_distance(u, v, u_weights=w, v_weights=w) ** 2, rtol=1e-4)


# --------------------------------------------------------------------------- Sinkhorn


def test_sinkhorn_gradient_is_the_envelope_gradient(rng):
    x, y = clouds(8, 2)(rng)
    w = rng.uniform(0.5, 1.5, size=8).astype("float32")
    kw = {"epsilon": 0.3, "max_iter": 40}
    for cost in ("squared_euclidean", "euclidean"):
        value, grad = value_and_grad(lambda p: L.sinkhorn_loss(x, p, cost=cost, sample_weight=w, **kw), y)
        xd, yd, wd = x.astype("float64"), y.astype("float64"), w.astype("float64")
        ref_value, plan = _ot(xd, yd, wd, wd, cost=cost, entropic=False, **kw)
        diff = yd[None, :, :] - xd[:, None, :]  # d C_ij / d y_j
        if cost == "squared_euclidean":
            ref_grad = (plan[:, :, None] * 2 * diff).sum(0)
        else:
            ref_grad = (plan[:, :, None] * diff / _dist(xd, yd)[:, :, None]).sum(0)
        np.testing.assert_allclose(value, ref_value, rtol=1e-4)
        np.testing.assert_allclose(grad, ref_grad, rtol=1e-3, atol=1e-5)


def test_sinkhorn_small_epsilon_approaches_the_optimal_assignment(rng):
    x, y = clouds(8, 2)(rng)
    c = _cost(x.astype("float64"), y.astype("float64"), "squared_euclidean")
    rows, cols = optimize.linear_sum_assignment(c)
    exact = c[rows, cols].mean()
    value = float(to_numpy(L.sinkhorn_loss(x, y, epsilon=0.01, max_iter=500)))
    assert value == pytest.approx(exact, rel=1e-2)


def test_sinkhorn_zero_mass_rows_are_removed_without_nan(rng):
    x, y = clouds(9, 2)(rng)
    w = np.ones(9, "float32")
    w[[2, 5]] = 0.0
    keep = w > 0
    kw = {"epsilon": 0.2, "max_iter": 50, "debias": True}  # OT(x, y) and the two self terms
    value, grad = value_and_grad(lambda p: L.SinkhornLoss(**kw)(x, p, sample_weight=w), y)
    subset = float(to_numpy(L.sinkhorn_loss(x[keep], y[keep], **kw)))
    np.testing.assert_allclose(value, subset, rtol=1e-5)
    assert np.all(np.isfinite(grad)) and np.all(grad[~keep] == 0.0)


def test_sinkhorn_divergence_is_zero_on_equal_samples_and_positive_otherwise(rng):
    x, y = clouds(8, 2)(rng)
    loss = L.SinkhornLoss(epsilon=0.5, max_iter=50, debias=True)
    assert abs(float(to_numpy(loss(x, x)))) < 1e-6
    assert float(to_numpy(loss(x, y))) > 0.0
    # different sizes without weights: uniform masses on each side
    np.testing.assert_allclose(float(to_numpy(L.sinkhorn_loss(x, y[:5], epsilon=0.5, max_iter=30))),
                               ref_sinkhorn(x, y[:5], epsilon=0.5, max_iter=30), rtol=1e-4)


# --------------------------------------------------------------------------- float32 against float64 at every scale

# (spread of the points, distance of the clouds from the origin): points 1e2 - 1e4
# apart at epsilon 0.1 put C / epsilon at 1e5 - 1e9, where float32 potentials
# have no digits left for the plan (the values were up to 13x off); clouds 1e3
# from the origin and 1 apart lose the squared distances' expansion to cancellation
FAR = {"spread_1e2": (1e2, 0.0), "spread_1e4": (1e4, 0.0), "offset_1e3": (1.0, 1e3)}


def _far_clouds(where, batch=8):
    spread, offset = FAR[where]
    rng = np.random.default_rng(3)
    return [(rng.normal(size=(batch, 2)) * spread + offset).astype("float32") for _ in range(2)]


@pytest.mark.parametrize("where", list(FAR))
def test_sinkhorn_float32_equals_float64_at_large_cost_over_epsilon(where):
    x, y = _far_clouds(where)
    for options in ({"debias": True}, {"cost": "euclidean"}):  # debias: OT(x, y), OT(x, x) and OT(y, y)
        value, grad = value_and_grad(lambda p, options=options: L.sinkhorn_loss(x, p, epsilon=0.1, **options), y)
        np.testing.assert_allclose(value, ref_sinkhorn(x, y, epsilon=0.1, **options), rtol=1e-5, err_msg=str(options))
        expected = sinkhorn_envelope_gradient(x, y, epsilon=0.1, max_iter=100, **options)
        np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max(), err_msg=str(options))


@pytest.mark.parametrize("dim", [2, 8], ids=["differences", "expansion"])
def test_sample_losses_keep_float32_precision_far_from_the_origin(dim):
    """Clouds 1e3 from the origin (the mean shift), and clusters 100 apart
    with points about 1 apart within each (exact differences up to 4
    columns; the expansion beyond, whose rounding is eps |x|^2)."""
    rng = np.random.default_rng(4)
    x = (rng.normal(size=(8, dim)) + 1e3).astype("float32")
    y = (rng.normal(size=(8, dim)) + 1e3).astype("float32")
    w = rng.uniform(0.5, 1.5, size=8).astype("float32")
    clusters = (x - 1e3 + 100.0 * np.where(np.arange(8 * dim).reshape(8, dim) % 2, 1.0, -1.0)).astype("float32")
    cases = [(x, y, w), (x - 1e3, clusters, None)] if dim <= 4 else [(x, y, w)]
    for a, b, weights in cases:
        np.testing.assert_allclose(float(to_numpy(L.mmd_loss(a, b, sample_weight=weights))),
                                   ref_mmd(a, b, sample_weight=weights), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(float(to_numpy(L.energy_distance(a, b, sample_weight=weights))),
                                   ref_energy(a, b, sample_weight=weights), rtol=1e-5, atol=1e-6)
    if dim <= 4:  # distances of 1e30 (no magnitude bound: the energy distance is linear in them)
        huge = (clusters * 1e28).astype("float32")
        np.testing.assert_allclose(float(to_numpy(L.energy_distance(x - 1e3, huge))), ref_energy(x - 1e3, huge),
                                   rtol=1e-5)


def test_sinkhorn_refuses_an_epsilon_out_of_the_compute_dtype():
    x, y = clouds(4, 2)(np.random.default_rng(0))
    for epsilon in (1e-46, 1e39):
        with pytest.raises(ValueError, match="`epsilon`.*float32"):
            L.sinkhorn_loss(x, y, epsilon=epsilon)


# --------------------------------------------------------------------------- gradients against float64 differences


def one_sided_differences(reference, y_true, y_pred, per_sample, bounds=(None, None), step=1e-8):
    """float64 difference quotients `(left, right)` of `reference` in each
    entry of `y_pred`, steps `step * max(1, |entry|)` (below the 1e-7 clip
    of the Jensen-Shannon divergence, so that a clipped entry is seen as
    clipped); per row for a per-sample loss (a row of 1e30 does not drown
    the others). NaN where the step would leave the domain `bounds`."""
    t, x = np.asarray(y_true, "float64"), np.asarray(y_pred, "float64")
    at = np.asarray(reference(t, x), "float64")
    left, right = np.full(x.shape, np.nan), np.full(x.shape, np.nan)
    low, high = bounds
    for index in np.ndindex(x.shape):
        part = index[0] if per_sample else ()
        h = step * max(1.0, abs(x[index]))
        for sign, out, allowed in ((1.0, right, high is None or x[index] < high),
                                   (-1.0, left, low is None or x[index] > low)):
            if allowed:
                moved = x.copy()
                moved[index] += sign * h
                out[index] = sign * (np.asarray(reference(t, moved), "float64")[part] - at[part]) / h
    return left, right


def assert_within(grad, left, right, what, rtol=1e-4):
    """Each entry of `grad` between its one-sided differences (equal to
    both where the loss is smooth; a subgradient at a kink, the inward one
    at a bound)."""
    low, high = np.fmin(left, right), np.fmax(left, right)
    tol = rtol * np.fmax(np.abs(low), np.abs(high)) + 1e-6 * max(1.0, float(np.nanmax(np.abs(high))))
    bad = ~((grad >= low - tol) & (grad <= high + tol))
    assert not np.any(bad), (f"{what}: gradient outside the float64 one-sided differences at "
                             f"{np.argwhere(bad).tolist()}:\ngradient {grad.tolist()}\nleft {left.tolist()}\n"
                             f"right {right.tolist()}")


def _per_row(ref, **kw):
    return lambda t, x: np.asarray(ref(t, x, **kw), "float64")


_JS_TRUE = np.array([[1, 0, 0, 0], [1, 0, 0, 0], [0.25] * 4, [0.1, 0.2, 0.3, 0.4], [0.1, 0.2, 0.3, 0.4]], "float32")
_W_TRUE = np.array([[0, 1, 1, 2], [0, 1, 2, 3], [0, 0, 0, 0], [0.3, -1.2, 2.2, 0.7], [0, 0, 0, 1e30]], "float32")
_W_PRED = np.array([[1, 2, 0, 1], [1.5, 1.5, 0, 5], [0, 0, 0, 0], [1.1, -0.4, 0.9, 2.5], [1e30, 2e30, -1e30, 3e30]],
                   "float32")
# equal histograms (every CDF gap 0: a kink), one-hot at the far end, zeros (bounds), generic
_H_TRUE = np.array([[0.2, 0.3, 0.1, 0.2, 0.2], [1, 0, 0, 0, 0], [0.2] * 5, [0.5, 0.1, 0, 0.3, 0.1]], "float32")
_H_PRED = np.array([[0.2, 0.3, 0.1, 0.2, 0.2], [0, 0, 0, 0, 1], [0, 0.5, 0, 0.5, 0], [0.15, 0.3, 0.1, 0.25, 0.2]],
                   "float32")
_PAIRS = [  # the clouds of the batch losses: equal, duplicated rows, all zero, one shared point, generic
    (_CLOUD, _CLOUD),
    (_CLOUD, _CLOUD[[0, 0, 1, 1, 2, 2]].copy()),
    (np.zeros((6, 2), "float32"), np.zeros((6, 2), "float32")),
    (_CLOUD, np.concatenate([_CLOUD[:1], _CLOUD[1:] * 1.3 + 0.4]).astype("float32")),
    (_CLOUD, (_CLOUD[::-1] * 0.7 - 0.2).astype("float32")),
]
# converged (costs up to about 15: the iterations contract by about 0.4 each), where the
# envelope gradient is the gradient of the Sinkhorn divergence
_SINKHORN_CONVERGED = {"epsilon": 5.0, "max_iter": 40, "debias": True}

# id: (function, options, float64 reference, [(y_true, y_pred), ...], domain of y_pred, per sample)
GRADIENT_CASES = {
    "js": (L.jensen_shannon_divergence, {}, _per_row(ref_js), [(_JS_TRUE, np.array(
        [[1, 0, 0, 0], [0, 0, 0, 1], [1, 0, 0, 0], [0.1, 0.2, 0.3, 0.4], [0, 0, 0, 0]], "float32"))], (0.0, 1.0), True),
    "js_from_logits": (L.jensen_shannon_divergence, {"from_logits": True}, _per_row(ref_js, from_logits=True),
                       [(_JS_TRUE, np.array([[0, 0, 0, 0], [100, -100, -100, -100], [20, 0, 0, 0], [1, 2, 0, -1],
                                             [-3, 0.5, 0.5, 2]], "float32"))], (None, None), True),
    "wasserstein_p1": (L.wasserstein_1d_loss, {}, _per_row(ref_wasserstein), [(_W_TRUE, _W_PRED)], (None, None), True),
    "wasserstein_p2": (L.wasserstein_1d_loss, {"p": 2}, _per_row(ref_wasserstein, p_order=2), [(_W_TRUE, _W_PRED)],
                       (None, None), True),
    "wasserstein_p1.5": (L.wasserstein_1d_loss, {"p": 1.5}, _per_row(ref_wasserstein, p_order=1.5),
                         [(_W_TRUE, _W_PRED)], (None, None), True),
    "wasserstein_histogram": (L.wasserstein_1d_loss, {"mode": "histogram"}, _per_row(ref_wasserstein, mode="histogram"),
                              [(_H_TRUE, _H_PRED)], (0.0, None), True),
    "mmd": (L.mmd_loss, {"bandwidth": [0.5, 1.0, 2.0]}, functools.partial(ref_mmd, bandwidth=[0.5, 1.0, 2.0]), _PAIRS,
            (None, None), False),
    "energy": (L.energy_distance, {}, ref_energy, _PAIRS, (None, None), False),
    "sinkhorn_debias": (L.sinkhorn_loss, _SINKHORN_CONVERGED, functools.partial(ref_sinkhorn, **_SINKHORN_CONVERGED),
                        [_PAIRS[0], _PAIRS[1], _PAIRS[4]], (None, None), False),  # equal, duplicated, generic
}


@pytest.mark.parametrize("case_id", list(GRADIENT_CASES))
def test_gradient_within_the_float64_one_sided_differences(case_id):
    fn, options, reference, pairs, bounds, per_sample = GRADIENT_CASES[case_id]

    def total(t, p):
        return ops.sum(fn(t, p, **options))

    compiled = compiled_value_and_grad(total) if BACKEND in XLA_BACKENDS else None
    for y_true, y_pred in pairs:
        target = as_tensor(y_true)
        expected = np.asarray(reference(y_true.astype("float64"), y_pred.astype("float64")), "float64")
        np.testing.assert_allclose(to_numpy(fn(y_true, y_pred, **options)), expected, rtol=1e-5, atol=1e-6)
        left, right = one_sided_differences(reference, y_true, y_pred, per_sample, bounds)
        if BACKEND != "jax":  # eager JAX runs the loss as one jit function (compiled_on_jax): the compiled case
            _, grad = value_and_grad(lambda p, t=target: total(t, p), y_pred)
            assert_within(grad.astype("float64"), left, right, f"eager ({BACKEND})")
        if compiled is not None:
            value, grad = compiled(target, as_tensor(y_pred))
            np.testing.assert_allclose(float(to_numpy(value)), np.sum(expected), rtol=1e-5, atol=1e-6)
            assert_within(to_numpy(grad).astype("float64"), left, right, f"compiled ({BACKEND})")
    if compiled is not None:  # compiled, a NaN target cannot raise: the loss is NaN, not a finite value
        y_true, y_pred = pairs[-1]
        nan_target = y_true.copy()
        nan_target[-1, 0] = np.nan
        assert np.isnan(float(to_numpy(compiled(as_tensor(nan_target), as_tensor(y_pred))[0])))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_non_finite_targets_are_refused_by_name(case, rng):
    y_true, y_pred = case.make_inputs(rng)
    for bad in (np.nan, np.inf, -np.inf):
        target = np.array(y_true, "float32")
        target[1, 0] = bad
        with pytest.raises(ValueError, match="`y_true` must hold finite values"):
            case.call_fn(target, y_pred)
        with pytest.raises(ValueError, match="`y_true` must hold finite values"):
            case.make()(target, y_pred)


# --------------------------------------------------------------------------- weights


@pytest.mark.parametrize("cls", [L.MMDLoss, L.SinkhornLoss, L.EnergyDistance], ids=lambda c: c.__name__)
def test_batch_losses_without_enough_mass_give_zero_and_finite_gradient(cls, rng):
    x, y = clouds(6, 2)(rng)
    for w in (np.zeros(6, "float32"), np.eye(6, dtype="float32")[2]):
        value, grad = value_and_grad(lambda p: cls()(x, p, sample_weight=w), y)
        assert np.all(np.isfinite(grad))
        if cls is L.MMDLoss or not w.any():  # one row of mass: still a transport / energy distance
            assert value == 0.0 and np.all(grad == 0.0)
        else:
            assert value > 0.0 and np.all(grad[w == 0] == 0.0)


def test_mmd_unit_weights_equal_the_unweighted_estimator(rng):
    x, y = clouds(8, 3)(rng)
    plain = float(to_numpy(L.mmd_loss(x, y, bandwidth=2.0)))
    weighted = float(to_numpy(L.mmd_loss(x, y, bandwidth=2.0, sample_weight=np.ones(8, "float32"))))
    np.testing.assert_allclose(weighted, plain, rtol=1e-6)
    np.testing.assert_allclose(plain, ref_mmd(x, y, bandwidth=2.0), rtol=1e-4)


# --------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize("fn", [L.mmd_loss, L.sinkhorn_loss, L.energy_distance], ids=lambda f: f.__name__)
def test_batch_losses_reject_bad_shapes(fn):
    x = np.zeros((4, 2), "float32")
    with pytest.raises(ValueError, match="y_pred"):
        fn(x, np.zeros((4, 2, 1), "float32"))
    with pytest.raises(ValueError, match="columns"):
        fn(x, np.zeros((4, 3), "float32"))
    with pytest.raises(ValueError, match="sample_weight"):
        fn(x, np.zeros((3, 2), "float32"), sample_weight=np.ones(4, "float32"))


def test_wasserstein_rejects_different_sizes():
    with pytest.raises(ValueError, match="same number of samples"):
        L.wasserstein_1d_loss(np.zeros((2, 4)), np.zeros((2, 5), "float32"))
    with pytest.raises(ValueError, match="same number of bins"):
        L.Wasserstein1DLoss(mode="histogram")(np.zeros((2, 4)), np.zeros((2, 5), "float32"))
    with pytest.raises(ValueError, match="`p`"):
        L.Wasserstein1DLoss(p=2, mode="histogram")
