"""Pinball, Charbonnier, Tukey biweight and Barron's general loss: numpy
references, the TFA pinball formula, the limits of Barron's loss, and the
shared contract."""

import math

import keras
import numpy as np
import pytest

from keras_lossplus import losses as L
from tests.backend_utils import to_numpy, value_and_grad
from tests.contract import LossCase, contract_suite
from tests.losses import references as R


def ref_pinball(y, p, quantiles=0.5):
    """tensorflow-addons `pinball_loss` (tau = one quantile), extended to one
    column per quantile."""
    y = np.asarray(y, "float64")
    p = np.asarray(p, "float64")
    tau = np.asarray(quantiles, "float64")
    delta = y - p
    return np.maximum(tau * delta, (tau - 1) * delta).mean(-1)


def ref_charbonnier(y, p, epsilon=1e-3):
    return np.sqrt((np.asarray(y, "float64") - p) ** 2 + epsilon**2).mean(-1)


def ref_tukey(y, p, c=4.685):
    r = np.asarray(y, "float64") - p
    inside = (c**2 / 6) * (1 - (1 - (r / c) ** 2) ** 3)
    return np.where(np.abs(r) <= c, inside, c**2 / 6).mean(-1)


def ref_barron(y, p, alpha=1.0, scale=1.0):
    """Barron (2019), eq. 1 and its limits, written directly from the paper."""
    x = (np.asarray(y, "float64") - p) / scale
    if alpha == 2:
        v = 0.5 * x**2
    elif alpha == 0:
        v = np.log(0.5 * x**2 + 1)
    elif alpha == -math.inf:
        v = 1 - np.exp(-0.5 * x**2)
    else:
        b = abs(alpha - 2)
        v = b / alpha * ((x**2 / b + 1) ** (alpha / 2) - 1)
    return v.mean(-1)


def _ref(fn, **kw):
    return lambda y, p: fn(y, p, **kw)


def quantile_inputs(quantiles):
    def make(rng):
        y = rng.normal(size=(12, 1)).astype("float32")
        p = (y + rng.normal(size=(12, len(quantiles)))).astype("float32")
        return y, p

    return make


_edges = {
    "identical": (np.ones((3, 2)), np.ones((3, 2))),
    "zeros": (np.zeros((3, 2)), np.zeros((3, 2))),
    "huge_residual": (np.zeros((2, 2)), np.full((2, 2), 1e4)),
}
_quantile_edges = {"identical": (np.ones((3, 1)), np.ones((3, 3))), "huge": (np.zeros((2, 1)), np.full((2, 3), 1e4))}


def barron_case(alpha, scale=1.0):
    kw = {"alpha": alpha, "scale": scale}
    return LossCase(
        id=f"barron_alpha_{alpha}", cls=L.GeneralAdaptiveLoss, fn=L.general_adaptive_loss, kwargs=kw,
        reference=_ref(ref_barron, **kw), make_inputs=R.regression(), edge_inputs=_edges, rtol=2e-5,
        bad_args=[({"alpha": math.inf}, "alpha"), ({"alpha": math.nan}, "alpha"), ({"scale": 0.0}, "scale")],
    )


CASES = [
    LossCase(
        id="pinball_median", cls=L.PinballLoss, fn=L.pinball_loss, kwargs={},
        reference=_ref(ref_pinball), make_inputs=R.regression(), edge_inputs=_edges,
        bad_args=[({"quantiles": 0.0}, "quantiles"), ({"quantiles": 1.5}, "quantiles")],
    ),
    LossCase(
        id="pinball_three_quantiles", cls=L.PinballLoss, fn=L.pinball_loss, kwargs={"quantiles": [0.1, 0.5, 0.9]},
        reference=_ref(ref_pinball, quantiles=[0.1, 0.5, 0.9]), make_inputs=quantile_inputs([0.1, 0.5, 0.9]),
        edge_inputs=_quantile_edges,
        bad_args=[({"quantiles": [0.1, 1.0, 0.5]}, "quantiles"), ({"quantiles": [0.1, 0.9]}, "quantile"),
                  ({"quantiles": []}, "quantiles")],
    ),
    LossCase(
        id="charbonnier", cls=L.CharbonnierLoss, fn=L.charbonnier_loss, kwargs={"epsilon": 0.01},
        reference=_ref(ref_charbonnier, epsilon=0.01), make_inputs=R.regression(), edge_inputs=_edges,
        bad_args=[({"epsilon": 0.0}, "epsilon"), ({"epsilon": -1.0}, "epsilon")],
    ),
    LossCase(
        id="tukey", cls=L.TukeyBiweightLoss, fn=L.tukey_biweight_loss, kwargs={"c": 1.5},
        reference=_ref(ref_tukey, c=1.5), make_inputs=R.regression(), edge_inputs=_edges,
        bad_args=[({"c": 0.0}, "c"), ({"c": "x"}, "c")],
    ),
    barron_case(1.0),
    barron_case(2.0, scale=0.5),
    barron_case(0.0, scale=2.0),
    barron_case(-2.0),
    barron_case(-math.inf),
    barron_case(4.0),
]

# the (slow) fit-save-reload check once per class; every case's config round
# trip is checked by test_config_round_trip
TestContract = contract_suite(
    CASES, fit_ids={"pinball_three_quantiles", "charbonnier", "tukey", "barron_alpha_0.0"}
)


def test_pinball_single_quantile_equals_tfa_formula_and_half_mae(rng):
    y, p = R.regression()(rng)
    for tau in (0.1, 0.5, 0.73):
        np.testing.assert_allclose(to_numpy(L.pinball_loss(y, p, quantiles=tau)), ref_pinball(y, p, tau), rtol=1e-6)
    half_mae = 0.5 * to_numpy(keras.losses.mean_absolute_error(y, p))
    np.testing.assert_allclose(to_numpy(L.pinball_loss(y, p, quantiles=0.5)), half_mae, rtol=1e-6)


def test_pinball_accepts_rank_one_targets_for_several_quantiles(rng):
    y, p = quantile_inputs([0.2, 0.8])(rng)
    a = L.pinball_loss(y[:, 0], p, quantiles=[0.2, 0.8])
    b = L.pinball_loss(y, p, quantiles=[0.2, 0.8])
    np.testing.assert_allclose(to_numpy(a), to_numpy(b))


def test_pinball_quantile_fit_recovers_quantiles(rng):
    # Minimising the pinball loss over a constant gives the empirical quantile.
    samples = rng.normal(size=(2001,)).astype("float32")
    grid = np.linspace(-3, 3, 601).astype("float32")
    for tau in (0.1, 0.5, 0.9):
        values = [float(np.mean(to_numpy(L.pinball_loss(samples[:, None], np.full((2001, 1), g, "float32"), tau)))) for g in grid[::20]]
        best = grid[::20][int(np.argmin(values))]
        assert abs(best - np.quantile(samples, tau)) <= 0.2


def test_barron_is_continuous_at_its_limits():
    y = np.zeros((1, 5), "float32")
    p = np.array([[0.1, 0.5, 1.0, 2.0, 4.0]], "float32")
    for limit, near in ((2.0, (1.999, 2.001)), (0.0, (-1e-3, 1e-3))):
        at = to_numpy(L.general_adaptive_loss(y, p, alpha=limit))
        for a in near:
            np.testing.assert_allclose(to_numpy(L.general_adaptive_loss(y, p, alpha=a)), at, rtol=5e-3)
    welsch = to_numpy(L.general_adaptive_loss(y, p, alpha=-math.inf))
    np.testing.assert_allclose(to_numpy(L.general_adaptive_loss(y, p, alpha=-1e4)), welsch, rtol=5e-3)


def test_barron_alpha_one_is_pseudo_huber_and_charbonnier(rng):
    y, p = R.regression()(rng)
    barron = to_numpy(L.general_adaptive_loss(y, p, alpha=1.0, scale=1.0))
    charb = to_numpy(L.charbonnier_loss(y, p, epsilon=1.0))
    np.testing.assert_allclose(barron, charb - 1.0, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("alpha", [1e-7, -1e-7, 2.0 - 1e-7, 2.0 + 1e-7, -50.0, 50.0])
def test_barron_no_nan_near_singular_alpha(alpha):
    y = np.zeros((2, 3), "float32")
    p = np.array([[0.0, 1e-4, 1.0], [3.0, 0.5, 10.0]], "float32")
    value, grad = value_and_grad(lambda x: L.GeneralAdaptiveLoss(alpha=alpha)(y, x), p)
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    np.testing.assert_allclose(value, ref_barron(y, p, alpha).mean(), rtol=1e-3)


def test_tukey_ignores_outliers_in_the_gradient():
    y = np.zeros((1, 2), "float32")
    p = np.array([[1.0, 50.0]], "float32")
    _, grad = value_and_grad(lambda x: L.TukeyBiweightLoss(c=4.685)(y, x), p)
    assert grad[0, 1] == 0.0 and grad[0, 0] != 0.0
