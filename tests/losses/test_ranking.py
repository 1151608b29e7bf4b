"""Learning-to-rank losses: loop-based numpy references (float64), optax for
the softmax loss, padding / ties / all-padding lists, bad input, and the
shared contract."""

from __future__ import annotations

import functools
import math

import keras
import numpy as np
import pytest

from keras_lossplus import losses as L
from tests.backend_utils import to_numpy, value_and_grad
from tests.contract import LossCase, contract_suite

MASK = -1.0


# ------------------------------------------------------------------ numpy references (one query at a time)


def _valid(y, mask_value):
    return [i for i in range(len(y)) if mask_value is None or y[i] != mask_value]


def _lse(x):
    x = np.asarray(x, "float64")
    m = x.max()
    return m + math.log(np.exp(x - m).sum())


def _softplus(x):
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


def _sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def _per_query(fn):
    @functools.wraps(fn)
    def wrapper(y_true, y_pred, mask_value=MASK, **kwargs):
        y_true = np.asarray(y_true, "float64").reshape(-1, np.shape(y_true)[-1])
        y_pred = np.asarray(y_pred, "float64").reshape(y_true.shape)
        return np.array([fn(list(y), list(s), _valid(y, mask_value), **kwargs) for y, s in zip(y_true, y_pred)])

    return wrapper


def _pairs(y, v):
    return [(i, j) for i in v for j in v if y[i] > y[j]]


@_per_query
def ref_pairwise_logistic(y, s, v):
    pairs = _pairs(y, v)
    return sum(_softplus(-(s[i] - s[j])) for i, j in pairs) / len(pairs) if pairs else 0.0


@_per_query
def ref_pairwise_hinge(y, s, v, margin=1.0):
    pairs = _pairs(y, v)
    return sum(max(0.0, margin - (s[i] - s[j])) for i, j in pairs) / len(pairs) if pairs else 0.0


@_per_query
def ref_listnet(y, s, v):
    if not any(y[i] > 0 for i in v):
        return 0.0
    ly, ls = _lse([y[i] for i in v]), _lse([s[i] for i in v])
    return -sum(math.exp(y[i] - ly) * (s[i] - ls) for i in v)


@_per_query
def ref_listmle(y, s, v):
    if not any(y[i] > 0 for i in v):
        return 0.0
    order = sorted(v, key=lambda i: -y[i])  # Python's sort is stable: ties keep input order
    return sum(_lse([s[j] for j in order[k:]]) - s[order[k]] for k in range(len(order)))


@_per_query
def ref_softmax(y, s, v):
    if not v:
        return 0.0
    ls = _lse([s[i] for i in v])
    return -sum(y[i] * (s[i] - ls) for i in v)


def _gain(label):
    return 2.0**label - 1.0


def _idcg(y, v):
    gains = sorted((_gain(y[i]) for i in v), reverse=True)
    return sum(g / math.log2(1 + k) for k, g in enumerate(gains, start=1))


@_per_query
def ref_approx_ndcg(y, s, v, temperature=0.1):
    idcg = _idcg(y, v)
    if idcg == 0:
        return 0.0
    dcg = 0.0
    for i in v:
        rank = 1.0 + sum(_sigmoid((s[j] - s[i]) / temperature) for j in v if j != i)
        dcg += _gain(y[i]) / math.log2(1 + rank)
    return 1.0 - dcg / idcg


@_per_query
def ref_lambda(y, s, v, weighting="ndcg_loss2"):
    order = sorted(v, key=lambda i: -s[i])  # ties in input order
    rank = {i: k for k, i in enumerate(order, start=1)}
    idcg = _idcg(y, v)
    total = 0.0
    for i, j in _pairs(y, v):
        inv = lambda r: 1.0 / math.log2(1 + r)  # noqa: E731
        if weighting == "ndcg_loss2":
            gap = abs(rank[i] - rank[j])
            delta = abs(inv(gap) - inv(gap + 1))
        else:
            delta = abs(inv(rank[i]) - inv(rank[j]))
        total += delta * abs(_gain(y[i]) - _gain(y[j])) / idcg * _softplus(-(s[i] - s[j]))
    return total


# ------------------------------------------------------------------ inputs


def make_lists(batch=10, size=6):
    def make(rng):
        labels = rng.integers(0, 4, size=(batch, size)).astype("float32")
        labels[rng.uniform(size=(batch, size)) < 0.2] = MASK  # padding anywhere in a list
        labels[0] = MASK  # a list that is all padding
        labels[1] = [0, 0, 0, 0, MASK, 0]  # no relevant item
        labels[2] = [2, 2, 1, 1, 0, 2]  # ties
        scores = (2.0 * rng.normal(size=(batch, size))).astype("float32")
        scores[3] = scores[3, 0]  # tied scores
        return labels, scores

    return make


def _edge(y, p, batch=10):
    """An edge case with the shape of `make_lists()` (10 lists of 6): on JAX
    every new shape is one more compilation."""
    reps = -(-batch // len(y))
    return np.tile(np.asarray(y, "float32"), (reps, 1))[:batch], np.tile(np.asarray(p, "float32"), (reps, 1))[:batch]


_EDGES = {
    "all_padding": _edge([[MASK] * 6], [[0.0] * 6]),
    "huge_scores": _edge([[3, 0, 1, 2, 0, 1], [0, 1, MASK, 2, 1, 0]], [[-100, 100, 0, 100, -100, -100]] * 2),
    "tied_everything": _edge([[1.0] * 6], [[1.0] * 6]),
    "one_valid_item": _edge([[2] + [MASK] * 5], [[0.5, 1, 2, 3, 4, 5]]),
    "zeros": _edge([[1, 0, 2, 0, 1, 0]], [[0.0] * 6]),
}


def _case(id, cls, fn, ref, kwargs=None, bad=(), **extra):
    kwargs = kwargs or {}
    return LossCase(
        id=id, cls=cls, fn=fn, kwargs=kwargs, reference=functools.partial(ref, **kwargs),
        make_inputs=make_lists(), edge_inputs=_EDGES,
        bad_args=[({"mask_value": "pad"}, "mask_value")] + list(bad), rtol=1e-5, atol=1e-5, **extra,
    )


CASES = [
    _case("pairwise_logistic", L.PairwiseLogisticLoss, L.pairwise_logistic_loss, ref_pairwise_logistic),
    _case("pairwise_hinge", L.PairwiseHingeLoss, L.pairwise_hinge_loss, ref_pairwise_hinge, {"margin": 0.5},
          bad=[({"margin": -1.0}, "margin")]),
    _case("listnet", L.ListNetLoss, L.listnet_loss, ref_listnet),
    _case("listmle", L.ListMLELoss, L.listmle_loss, ref_listmle),
    _case("softmax", L.SoftmaxRankingLoss, L.softmax_ranking_loss, ref_softmax),
    _case("approx_ndcg", L.ApproxNDCGLoss, L.approx_ndcg_loss, ref_approx_ndcg, {"temperature": 0.5},
          bad=[({"temperature": 0.0}, "temperature")]),
    _case("lambda_ndcg_loss2", L.LambdaLoss, L.lambda_loss, ref_lambda, {"weighting": "ndcg_loss2"},
          bad=[({"weighting": "ndcg"}, "weighting")]),
    _case("lambdarank", L.LambdaLoss, L.lambda_loss, ref_lambda, {"weighting": "lambdarank"}),
]

# the fit-save-reload check on the two losses that sort inside the compiled step
TestRankingContract = contract_suite(CASES, fit_ids={"listmle", "lambda_ndcg_loss2"})


# ------------------------------------------------------------------ beyond the contract

_ALL = [(c.fn, c.kwargs, c.reference) for c in CASES]


def test_softmax_and_listnet_equal_optax(rng):
    """`SoftmaxRankingLoss` is optax's `ranking_softmax_loss(where=valid)` per
    query (value and gradient); ListNet is the same loss with the target
    `softmax(y)` over the valid items."""
    import jax
    import jax.numpy as jnp
    import optax

    y, s = make_lists()(rng)
    valid = y != MASK
    expected = np.asarray(optax.losses.ranking_softmax_loss(s, y, where=valid, reduce_fn=None))
    np.testing.assert_allclose(to_numpy(L.softmax_ranking_loss(y, s)), expected, rtol=1e-5, atol=1e-6)
    optax_grad = jax.grad(lambda z: optax.losses.ranking_softmax_loss(z, y, where=valid, reduce_fn=jnp.sum))(s)
    _, grad = value_and_grad(lambda z: keras.ops.sum(L.softmax_ranking_loss(y, z)), s)
    np.testing.assert_allclose(grad, np.asarray(optax_grad), rtol=1e-5, atol=1e-6)

    target = np.where(valid, np.exp(np.where(valid, y, -np.inf)), 0.0)
    target = target / np.maximum(target.sum(-1, keepdims=True), 1e-30)
    listnet = np.asarray(optax.losses.ranking_softmax_loss(s, target, where=valid, reduce_fn=None))
    relevant = np.any(valid & (y > 0), axis=-1)
    np.testing.assert_allclose(to_numpy(L.listnet_loss(y, s)), np.where(relevant, listnet, 0.0), rtol=1e-5, atol=1e-6)


def test_padding_is_the_same_as_a_shorter_list(rng):
    """Padded items, wherever they sit, change nothing: each list equals the
    list without them; lists without a pair or relevant item give exactly 0
    with zero gradient."""
    y, s = _edge([[2, MASK, 0, 1, MASK, 3], [0, 1, MASK, 0, 2, MASK]], rng.normal(size=(2, 6)))
    s = s + rng.normal(size=s.shape).astype("float32")
    keep = y != MASK  # four valid items in each list
    y_short, s_short = y[keep].reshape(-1, 4), s[keep].reshape(-1, 4)
    for fn, kwargs, _ in _ALL:
        np.testing.assert_allclose(
            to_numpy(fn(y, s, **kwargs)), to_numpy(fn(y_short, s_short, **kwargs)), rtol=1e-5, atol=1e-6,
            err_msg=fn.__name__,
        )
    # mask_value=None: no padding (a label -1 is then an ordinary label)
    np.testing.assert_allclose(
        to_numpy(L.pairwise_logistic_loss(y, s, mask_value=None)),
        to_numpy(L.pairwise_logistic_loss(y, s, mask_value=-7.0)), rtol=1e-6,
    )
    empty, scores = _edge([[MASK] * 6, [0, 0, MASK, 0, 0, 0], [0, MASK, MASK, 0, MASK, MASK]],
                          [[100, -100, 3, 0, 1, 2], [-100, 100, 0, 5, 1, 2], [100, 2, -100, 0, 1, 2]])
    for fn, kwargs, _ in _ALL:
        value, grad = value_and_grad(lambda z: keras.ops.sum(fn(empty, z, **kwargs)), scores)
        assert value == 0.0 and np.all(grad == 0.0), fn.__name__


def test_huge_score_ranges_ties_and_small_temperature_match_references():
    """Scores spanning +-100 in one list (where a cumulative sum of exp(s - max)
    underflows), tied labels and scores, and ApproxNDCG's limit T -> 0 (the
    exact 1 - NDCG)."""
    y = np.array([[3, 0, 1, 2, 0, 1], [1, 1, 0, 2, 2, MASK], [1, 1, 1, 0, 0, 0]], "float32")
    s = np.array([[-100, 100, 0, 100, -100, -60], [0.5, 0.5, 0.5, 1, 1, 9], [0, 1, 2, 0, 1, 2]], "float32")
    for fn, kwargs, ref in _ALL:
        np.testing.assert_allclose(to_numpy(fn(y, s, **kwargs)), ref(y, s), rtol=1e-5, atol=1e-5, err_msg=fn.__name__)
    s_distinct = np.array([[0.3, 0.1, 0.9, 0.5]], "float32")
    labels = np.array([[2, 0, 1, 3]], "float32")
    order = np.argsort(-s_distinct[0])
    gains = 2.0 ** labels[0] - 1
    dcg = sum(gains[i] / math.log2(2 + k) for k, i in enumerate(order))
    idcg = sum(g / math.log2(2 + k) for k, g in enumerate(sorted(gains, reverse=True)))
    approx = to_numpy(L.approx_ndcg_loss(labels, s_distinct, temperature=1e-3))
    np.testing.assert_allclose(approx, [1 - dcg / idcg], rtol=1e-5)


def test_shapes_trailing_unit_axis_and_bad_shapes(rng):
    y, p = make_lists(batch=4)(rng)
    for fn, kwargs, _ in _ALL[:3]:  # (B, L, 1) scores, e.g. a Dense(1) applied to every item
        expected = to_numpy(fn(y, p, **kwargs))
        np.testing.assert_allclose(to_numpy(fn(y, p[..., None], **kwargs)), expected, rtol=1e-6)
        np.testing.assert_allclose(to_numpy(fn(y[..., None], p, **kwargs)), expected, rtol=1e-6)
    y, s = np.zeros((2, 5), "float32"), np.zeros((2, 6), "float32")
    for fn, kwargs, _ in _ALL:
        with pytest.raises(ValueError, match="list sizes differ"):
            fn(y, s, **kwargs)
        with pytest.raises(ValueError, match="shapes differ"):
            fn(np.zeros((2,), "float32"), s, **kwargs)
    with pytest.raises(ValueError, match="list sizes differ"):
        L.ListMLELoss()(y, s)
