"""Pinball, Charbonnier, Tukey biweight and Barron's general loss: numpy
references, the TFA pinball formula, the limits of Barron's loss, and the
shared contract."""

import math

import keras
import numpy as np
import pytest

from keras_lossplus import losses as L
from tests.backend_utils import BACKEND, XLA_BACKENDS, to_numpy, value_and_grad
from tests.contract import LossCase, contract_suite
from tests.edge_grid import as_tensor, compiled_value_and_grad
from tests.losses import references as R
from tests.losses.finite_differences import check_against_float64


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
        bad_args=[({"quantiles": -0.1}, "quantiles"), ({"quantiles": 1.5}, "quantiles")],
    ),
    LossCase(
        id="pinball_three_quantiles", cls=L.PinballLoss, fn=L.pinball_loss, kwargs={"quantiles": [0.1, 0.5, 0.9]},
        reference=_ref(ref_pinball, quantiles=[0.1, 0.5, 0.9]), make_inputs=quantile_inputs([0.1, 0.5, 0.9]),
        edge_inputs=_quantile_edges,
        bad_args=[({"quantiles": [0.1, 1.01, 0.5]}, "quantiles"), ({"quantiles": [0.1, 0.9]}, "quantile"),
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


# ------------------------------------------------------------------ tensorflow-addons' published values

# tensorflow_addons/losses/tests/quantiles_test.py (TFA 0.23): y_true [1, 9, 2, -5, -2, 6] and y_pred
# [4, 8, 12, 8, 1, 3], shape (2, 3), PinballLoss(tau)(y_true, y_pred) with the default reduction
TFA_Y, TFA_P = np.array([[1, 9, 2], [-5, -2, 6]], "float32"), np.array([[4, 8, 12], [8, 1, 3]], "float32")
TFA_PINBALL = {0.0: 4.8333, 0.1: 4.4166, 0.5: 2.75, 0.9: 1.0833, 1.0: 0.6666}


@pytest.mark.parametrize("tau", list(TFA_PINBALL))
def test_pinball_equals_tfa_published_values_including_tau_0_and_1(tau):
    np.testing.assert_allclose(float(to_numpy(L.PinballLoss(quantiles=tau)(TFA_Y, TFA_P))), TFA_PINBALL[tau], atol=1e-4)
    np.testing.assert_allclose(to_numpy(L.pinball_loss(TFA_Y, TFA_P, quantiles=tau)), ref_pinball(TFA_Y, TFA_P, tau), rtol=1e-6)


# ------------------------------------------------------------------ float64 values and gradients at the edges


def _residual_rows(scale: float = 1.0):
    """Targets and predictions (B, 3): ties (residual 0, a kink of the pinball
    loss), zeros, residuals of +-1, +-scale (Charbonnier's epsilon, Tukey's
    c), +-100 and 1e30, and large inputs with a small residual."""
    def make(rng):
        y = np.array([[0.5, -2.0, 3.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [1.0, 0.0, -1.0],
                      [0.0, 0.0, 0.0], [1e6, -1e6, 0.0], rng.normal(size=3)])
        p = y + np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [1.0, -1.0, 0.5], [scale, -scale, 2 * scale],
                          [101.0, -100.0, 99.0], [1e30, -1e30, 1e30], [0.25, -0.5, 3.0], rng.normal(size=3) * 2])
        return y, p
    return make


def _without_huge(rows):
    """The rows without residuals of 1e30, for the losses whose value there
    overflows float32 and is refused (Barron's loss with alpha > 1)."""
    def make(rng):
        y, p = rows(rng)
        keep = np.max(np.abs(y - p), axis=-1) < 1e20
        return y[keep], p[keep]
    return make


def _quantile_rows(rng):
    y = np.array([[0.0], [0.0], [1.0], [0.0], [2.0]])
    p = np.array([[0.0, 0.0, 0.0], [1e30, -1e30, 1e30], [1.0, 2.0, 0.0], [100.0, -100.0, 0.0], [1.5, 2.0, 2.5]])
    return y, p + np.concatenate([np.zeros((4, 3)), rng.normal(size=(1, 3))])


FLOAT64_CASES = {
    # id: (function, reference, options, rows)
    "pinball_median": (L.pinball_loss, ref_pinball, {}, _residual_rows()),
    "pinball_0_half_1": (L.pinball_loss, ref_pinball, {"quantiles": [0.0, 0.5, 1.0]}, _quantile_rows),
    "charbonnier": (L.charbonnier_loss, ref_charbonnier, {"epsilon": 0.01}, _residual_rows(0.01)),
    "tukey": (L.tukey_biweight_loss, ref_tukey, {"c": 1.5}, _residual_rows(1.5)),
    **{f"barron_alpha_{a}": (L.general_adaptive_loss, ref_barron, {"alpha": a, "scale": s}, rows)
       for a, s, rows in ((1.0, 1.0, _residual_rows()), (0.0, 2.0, _residual_rows()), (-2.0, 1.0, _residual_rows()),
                          (-math.inf, 1.0, _residual_rows()),
                          (1.5, 1.0, _without_huge(_residual_rows())), (2.0, 0.5, _without_huge(_residual_rows())),
                          (4.0, 1.0, _without_huge(_residual_rows())))},
}


@pytest.mark.parametrize("case", list(FLOAT64_CASES))
def test_value_and_gradient_match_float64_at_the_edges(case, rng):
    fn, reference, options, rows = FLOAT64_CASES[case]
    check_against_float64(lambda t, p: fn(t, p, **options), lambda t, p: reference(t, p, **options), *rows(rng))


def test_barron_cauchy_is_finite_at_residuals_of_1e30():
    # issue 29: alpha = 0 gave inf where log(0.5 (1e30)^2 + 1) = 137.5 exists
    value = to_numpy(L.general_adaptive_loss([[0.0]], [[1e30]], alpha=0.0))
    np.testing.assert_allclose(value, [np.log(0.5e60 + 1.0)], rtol=1e-6)
    np.testing.assert_allclose(value, [137.46], atol=0.01)


@pytest.mark.parametrize("alpha", [1.5, 2.0, 4.0])
def test_barron_refuses_residuals_whose_value_overflows(alpha):
    y, p = np.zeros((2, 2), "float32"), np.array([[1e30, 0.0], [1.0, 2.0]], "float32")
    with pytest.raises(ValueError, match=r"general_adaptive_loss: `y_true - y_pred` holds values of magnitude up to 1e\+30"):
        L.GeneralAdaptiveLoss(alpha=alpha)(y, p)
    # the bound scales with `scale`: the same residual is accepted on a scale of 1e30
    assert np.isfinite(to_numpy(L.general_adaptive_loss(y, p, alpha=alpha, scale=1e30))).all()
    if BACKEND in XLA_BACKENDS and alpha == 2.0:  # compiled: clipped to the bound, the gradient passed through
        value, grad = compiled_value_and_grad(lambda t, x: L.GeneralAdaptiveLoss(alpha=alpha)(t, x))(as_tensor(y), as_tensor(p))
        assert np.isfinite(to_numpy(value)) and np.all(np.isfinite(to_numpy(grad)))
