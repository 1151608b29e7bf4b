"""Learning-to-rank losses against loop-based numpy references (float64,
`ranking_references.py`): the shared contract, every option (temperature,
pair reductions, per-item weights, skipped empty lists), padding, ties,
labels refused by name, and gradients against float64 finite differences.
The side-by-side checks against keras-rs and optax are in
`test_ranking_peers.py`."""

from __future__ import annotations

import functools
import math

import keras
import numpy as np
import pytest

from keras_lossplus import losses as L
from tests.backend_utils import BACKEND, XLA_BACKENDS, to_numpy, value_and_grad, xla_compile
from tests.contract import LossCase, contract_suite
from tests.losses.ranking_references import (
    MASK, edge, gradient_lists, keras_reduced, make_lists, ref_approx_ndcg, ref_lambda, ref_listmle, ref_listnet,
    ref_pairwise_hinge, ref_pairwise_logistic, ref_pairwise_mse, ref_pairwise_soft_zero_one, ref_softmax,
)

_EDGES = {
    "all_padding": edge([[MASK] * 6], [[0.0] * 6]),
    "huge_scores": edge([[3, 0, 1, 2, 0, 1], [0, 1, MASK, 2, 1, 0]], [[-100, 100, 0, 100, -100, -100]] * 2),
    "tied_everything": edge([[1.0] * 6], [[1.0] * 6]),
    "one_valid_item": edge([[2] + [MASK] * 5], [[0.5, 1, 2, 3, 4, 5]]),
    "zeros": edge([[1, 0, 2, 0, 1, 0]], [[0.0] * 6]),
}


def _case(id, cls, fn, ref, kwargs=None, bad=(), **extra):
    kwargs = kwargs or {}
    return LossCase(
        id=id, cls=cls, fn=fn, kwargs=kwargs, reference=functools.partial(ref, **kwargs),
        make_inputs=make_lists(), edge_inputs=_EDGES,
        bad_args=[({"mask_value": "pad"}, "mask_value"), ({"temperature": 0.0}, "temperature")] + list(bad),
        rtol=1e-5, atol=1e-5, **extra,
    )


_REDUCTION = [({"pair_reduction": "max"}, "pair_reduction")]
CASES = [
    _case("pairwise_logistic", L.PairwiseLogisticLoss, L.pairwise_logistic_loss, ref_pairwise_logistic),
    _case("pairwise_hinge", L.PairwiseHingeLoss, L.pairwise_hinge_loss, ref_pairwise_hinge, {"margin": 0.5},
          bad=[({"margin": -1.0}, "margin")] + _REDUCTION),
    _case("pairwise_soft_zero_one", L.PairwiseSoftZeroOneLoss, L.pairwise_soft_zero_one_loss,
          ref_pairwise_soft_zero_one, {"temperature": 0.5}),
    _case("pairwise_mse", L.PairwiseMeanSquaredError, L.pairwise_mean_squared_error, ref_pairwise_mse,
          {"pair_reduction": "sum"}, bad=_REDUCTION),
    _case("listnet", L.ListNetLoss, L.listnet_loss, ref_listnet),
    _case("listmle", L.ListMLELoss, L.listmle_loss, ref_listmle),
    _case("softmax", L.SoftmaxRankingLoss, L.softmax_ranking_loss, ref_softmax),
    _case("approx_ndcg", L.ApproxNDCGLoss, L.approx_ndcg_loss, ref_approx_ndcg, {"temperature": 0.5}),
    _case("lambda_ndcg_loss2", L.LambdaLoss, L.lambda_loss, ref_lambda, {"weighting": "ndcg_loss2"},
          bad=[({"weighting": "ndcg"}, "weighting")]),
]

# the fit-save-reload check on ListMLE (it sorts and scans inside the compiled step); the other classes get
# theirs in tests/test_saving_coverage.py, whose one fresh process loads them all
TestRankingContract = contract_suite(CASES, fit_ids={"listmle"})

# configurations that only change an option of a contract case: checked against the reference (value and
# gradient) below, not through the whole contract again
OPTION_CASES = [_case("lambdarank", L.LambdaLoss, L.lambda_loss, ref_lambda, {"weighting": "lambdarank"})]

# one configuration per function (the first case of each)
FIRST = list({c.fn: c for c in reversed(CASES)}.values())[::-1]
PAIRWISE = [c for c in FIRST if c.id.startswith("pairwise")]

# every option away from its default, with per-item weights: one compilation per function on JAX
_OPTIONS = {
    "pairwise_logistic": {"temperature": 0.7, "pair_reduction": "sum"},
    "pairwise_hinge": {"margin": 0.5, "temperature": 2.0, "pair_reduction": "per_item"},
    "pairwise_soft_zero_one": {"temperature": 0.5, "pair_reduction": "per_item"},
    "pairwise_mse": {"temperature": 1.5, "pair_reduction": "mean"},
    "listnet": {"temperature": 0.7},
    "listmle": {"temperature": 0.7},
    "softmax": {"temperature": 2.0},
    "approx_ndcg": {"temperature": 0.3},
    "lambda_ndcg_loss2": {"weighting": "ndcg_loss2", "temperature": 0.5},
    "lambdarank": {"weighting": "lambdarank", "temperature": 2.0},
}


def _reference(case, y, s, **kwargs):
    return case.reference.func(y, s, **{**case.kwargs, **kwargs})


def _item_weights(rng, shape):
    return rng.uniform(0.0, 2.0, size=shape).astype("float32")


# ------------------------------------------------------------------ options


@pytest.mark.parametrize("case", FIRST + OPTION_CASES, ids=lambda c: c.id)
def test_every_option_and_per_item_weights_match_the_reference(case, rng):
    y, s = make_lists()(rng)
    w = _item_weights(rng, y.shape)
    options = {**case.kwargs, **_OPTIONS[case.id]}
    np.testing.assert_allclose(
        to_numpy(case.fn(y, s, sample_weight=w, **options)), _reference(case, y, s, sample_weight=w, **options),
        rtol=1e-5, atol=1e-5,
    )


@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum", "mean_with_sample_weight", "none"])
def test_class_routes_per_item_weights_into_the_loss(reduction, rng):
    """A `(B, list_size)` `sample_weight` enters each query's value (Keras'
    reduction then sees no weight); `(B,)` stays Keras' per-query weight;
    with `pair_reduction="per_item"` both are Keras' own, per item."""
    y, s = make_lists()(rng)
    w = _item_weights(rng, y.shape)
    for case in (FIRST[0], FIRST[5]):  # a pairwise loss, ListMLE
        per_query = _reference(case, y, s, sample_weight=w)
        expected = to_numpy(keras_reduced(per_query, reduction))
        np.testing.assert_allclose(to_numpy(case.make(reduction=reduction)(y, s, sample_weight=w)), expected,
                                   rtol=1e-5, atol=1e-5, err_msg=case.id)
    loss = L.PairwiseLogisticLoss(pair_reduction="per_item", reduction=reduction)
    per_item = _reference(FIRST[0], y, s, pair_reduction="per_item")
    for sw in (w, w[:, 0]):
        full = sw if sw.ndim == 2 else np.broadcast_to(sw[:, None], y.shape)
        expected = to_numpy(keras_reduced(per_item, reduction, full))
        np.testing.assert_allclose(to_numpy(loss(y, s, sample_weight=sw)), expected, rtol=1e-5, atol=1e-5)


def test_skip_empty_lists_leaves_all_padding_lists_out_of_the_mean(rng):
    y, s = make_lists()(rng)  # list 0 is all padding
    y[5] = MASK  # and list 5
    for case in FIRST:
        per_query = _reference(case, y, s)
        for reduction in ("sum_over_batch_size", "sum"):
            loss = case.make(skip_empty_lists=True, reduction=reduction)
            expected = per_query.sum() / (8.0 if reduction != "sum" else 1.0)
            np.testing.assert_allclose(float(to_numpy(loss(y, s))), expected, rtol=1e-5, err_msg=case.id)
    per_item = L.PairwiseHingeLoss(pair_reduction="per_item", skip_empty_lists=True, margin=0.5)
    expected = _reference(PAIRWISE[1], y, s, pair_reduction="per_item").sum() / (8 * 6)
    np.testing.assert_allclose(float(to_numpy(per_item(y, s))), expected, rtol=1e-5)


if BACKEND in XLA_BACKENDS:

    def test_per_item_weights_and_skipped_lists_compile(rng):
        y, s = make_lists()(rng)
        w = _item_weights(rng, y.shape)
        loss = L.ListMLELoss(skip_empty_lists=True)
        compiled = xla_compile(lambda yt, yp, sw: loss(yt, yp, sample_weight=sw))
        expected = _reference(FIRST[5], y, s, sample_weight=w)
        np.testing.assert_allclose(to_numpy(compiled(y, s, w)), expected.sum() / 9.0, rtol=1e-5)


# ------------------------------------------------------------------ padding, ties, shapes


def test_padding_is_the_same_as_a_shorter_list(rng):
    """Padded items, wherever they sit, change nothing: each list equals the
    reference on the list without them; lists without a pair or relevant
    item give exactly 0 with zero gradient."""
    y, s = edge([[2, MASK, 0, 1, MASK, 3], [0, 1, MASK, 0, 2, MASK]], rng.normal(size=(2, 6)))
    s = s + rng.normal(size=s.shape).astype("float32")
    keep = y != MASK  # four valid items in each list
    y_short, s_short = y[keep].reshape(-1, 4), s[keep].reshape(-1, 4)
    for case in FIRST:
        np.testing.assert_allclose(to_numpy(case.call_fn(y, s)), case.reference(y_short, s_short),
                                   rtol=1e-5, atol=1e-6, err_msg=case.id)
    # mask_value=None: no padding (every label must then be >= 0)
    y_full = np.where(y == MASK, 0.0, y).astype("float32")
    np.testing.assert_allclose(to_numpy(L.pairwise_logistic_loss(y_full, s, mask_value=None)),
                               to_numpy(L.pairwise_logistic_loss(y_full, s, mask_value=-7.0)), rtol=1e-6)
    empty, scores = edge([[MASK] * 6, [0, 0, MASK, 0, 0, 0], [0, MASK, MASK, 0, MASK, MASK]],
                         [[100, -100, 3, 0, 1, 2], [-100, 100, 0, 5, 1, 2], [100, 2, -100, 0, 1, 2]])
    for case in FIRST:
        if case.id == "pairwise_mse":  # every pair counts (equal labels too): only all-padding lists give 0
            empty = np.full_like(empty, MASK)
        value, grad = value_and_grad(lambda z: keras.ops.sum(case.call_fn(empty, z)), scores)
        assert value == 0.0 and np.all(grad == 0.0), case.id


def test_huge_score_ranges_ties_and_small_temperature_match_references():
    """Scores spanning +-100 in one list (where a cumulative sum of exp(s - max)
    underflows), tied labels and scores, and ApproxNDCG's limit T -> 0 (the
    exact 1 - NDCG)."""
    y, s = edge([[3, 0, 1, 2, 0, 1], [1, 1, 0, 2, 2, MASK], [1, 1, 1, 0, 0, 0]],
                [[-100, 100, 0, 100, -100, -60], [0.5, 0.5, 0.5, 1, 1, 9], [0, 1, 2, 0, 1, 2]])
    for case in FIRST:
        np.testing.assert_allclose(to_numpy(case.call_fn(y, s)), case.reference(y, s), rtol=1e-5, atol=1e-5,
                                   err_msg=case.id)
    s_distinct = np.array([[0.3, 0.1, 0.9, 0.5]], "float32")
    labels = np.array([[2, 0, 1, 3]], "float32")
    order = np.argsort(-s_distinct[0])
    gains = 2.0 ** labels[0] - 1
    dcg = sum(gains[i] / math.log2(2 + k) for k, i in enumerate(order))
    idcg = sum(g / math.log2(2 + k) for k, g in enumerate(sorted(gains, reverse=True)))
    approx = to_numpy(L.approx_ndcg_loss(labels, s_distinct, temperature=1e-3))
    np.testing.assert_allclose(approx, [1 - dcg / idcg], rtol=1e-5)


def test_shapes_trailing_unit_axis_and_bad_shapes(rng):
    y, p = make_lists()(rng)
    for case in FIRST[:1]:  # (B, L, 1) scores, e.g. a Dense(1) applied to every item
        expected = to_numpy(case.call_fn(y, p))
        np.testing.assert_allclose(to_numpy(case.call_fn(y, p[..., None])), expected, rtol=1e-6)
        np.testing.assert_allclose(to_numpy(case.call_fn(y[..., None], p)), expected, rtol=1e-6)
    y, s = np.zeros((2, 5), "float32"), np.zeros((2, 6), "float32")
    for case in (FIRST[0], FIRST[5]):  # the shared input step: a pairwise and a listwise loss
        with pytest.raises(ValueError, match="list sizes differ"):
            case.call_fn(y, s)
        with pytest.raises(ValueError, match="shapes differ"):
            case.call_fn(np.zeros((2,), "float32"), s)
    with pytest.raises(ValueError, match="list sizes differ"):
        L.ListMLELoss()(y, s)
    with pytest.raises(ValueError, match="`sample_weight`.*one weight per item"):
        L.listmle_loss(y, y, sample_weight=np.ones((2,), "float32"))


# ------------------------------------------------------------------ labels refused by name


@pytest.mark.parametrize("bad", [np.nan, np.inf, -2.0], ids=["nan", "inf", "negative"])
def test_bad_labels_are_refused_eagerly_naming_y_true(bad, rng):
    """A NaN, an infinity or a negative label other than `mask_value`, by
    the function and the class alike (eagerly: the values are there)."""
    y, s = make_lists()(rng)
    y[4, 2] = bad
    for case in FIRST:
        with pytest.raises(ValueError, match=r"`y_true` must hold relevance labels >= 0.*y_true"):
            case.call_fn(y, s)
        with pytest.raises(ValueError, match=r"`y_true` must hold relevance labels >= 0"):
            case.make()(y, s)
    with pytest.raises(ValueError, match=r"mask_value`=None: no padding"):
        L.listnet_loss(np.full((2, 3), MASK, "float32"), np.zeros((2, 3), "float32"), mask_value=None)


if BACKEND in XLA_BACKENDS:

    def test_under_jit_a_nan_label_is_left_out_like_padding(rng):
        """Inside a compiled function nothing can raise: the item with a NaN
        label is padding, so value and gradient are finite and equal those
        of the list with that item padded (ApproxNDCG and LambdaLoss, whose
        gradient was NaN; the rule is the shared input step of every loss)."""
        y, s = make_lists()(rng)
        y_nan, y_pad = y.copy(), y.copy()
        y_nan[4, 2], y_pad[4, 2] = np.nan, MASK

        def total(yt, yp):
            return keras.ops.sum(L.approx_ndcg_loss(yt, yp, temperature=0.5)) + keras.ops.sum(L.lambda_loss(yt, yp))

        got = xla_compile(lambda yt, yp: _value_and_grad_traced(total, yt, yp))(y_nan, s)
        want = value_and_grad(lambda z: total(y_pad, z), s)
        np.testing.assert_allclose(to_numpy(got[0]), want[0], rtol=1e-5)
        np.testing.assert_allclose(to_numpy(got[1]), want[1], rtol=1e-5, atol=1e-7)


def _value_and_grad_traced(f, yt, yp):
    if BACKEND == "jax":
        import jax

        return jax.value_and_grad(lambda z: f(yt, z))(yp)
    import tensorflow as tf

    with tf.GradientTape() as tape:
        tape.watch(yp)
        value = f(yt, yp)
    return value, tape.gradient(value, yp)


# ------------------------------------------------------------------ gradients


def _finite_differences(query_loss, y, s, h=1e-4):
    """Central differences of `query_loss(b, labels, scores)` (the float64
    reference of query `b`), one query at a time."""
    s = np.asarray(s, "float64")
    grad = np.zeros_like(s)
    for b in range(s.shape[0]):
        for i in range(s.shape[1]):
            up, down = s[b : b + 1].copy(), s[b : b + 1].copy()
            up[0, i] += h
            down[0, i] -= h
            grad[b, i] = (query_loss(b, y[b : b + 1], up) - query_loss(b, y[b : b + 1], down)) / (2 * h)
    return grad


@pytest.mark.parametrize("case", CASES + OPTION_CASES, ids=lambda c: c.id)
def test_gradient_matches_float64_finite_differences(case):
    """Every loss's gradient (float32, through the class as training uses
    it) against central differences of the float64 reference at tied
    scores, scores of +-100, padding anywhere and an all-padding list.
    LambdaLoss holds its ranks and weights constant (as the loss does), so
    its differences keep the ranks of the unperturbed scores."""
    y, s = gradient_lists()
    if case.cls is L.LambdaLoss:
        def query_loss(b, yy, ss):
            return ref_lambda(yy, ss, weighting=case.kwargs["weighting"], rank_scores=s[b : b + 1]).sum()
    else:
        def query_loss(b, yy, ss):
            return case.reference(yy, ss).sum()
    loss = case.make(reduction="sum")
    value, grad = value_and_grad(lambda z: loss(y, z), s)
    np.testing.assert_allclose(value, case.reference(y, s).sum(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grad, _finite_differences(query_loss, y, s), rtol=1e-4, atol=2e-5)
    if case.id == "listmle":  # the tied list [1, 0, 1, 0, pad]: the exact gradient, on every backend
        np.testing.assert_allclose(grad[0, :4], [-3 / 4, 1 / 12, -5 / 12, 13 / 12], rtol=1e-5)
