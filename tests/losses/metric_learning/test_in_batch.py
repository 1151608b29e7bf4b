"""The in-batch losses of sentence embeddings (multiple negatives ranking,
CoSENT, AnglE) and the Matryoshka wrapper: the whole loss contract
(tests/contract.py) against numpy references written here from the published
formulas (sentence-transformers' `MultipleNegativesRankingLoss`,
`MultipleNegativesSymmetricRankingLoss`, `CoSENTLoss`, `AnglELoss` with
`util.pairwise_angle_sim`, `MatryoshkaLoss`), values computed with
sentence-transformers itself, and the edge cases and bad inputs of the
stacked `(B, m, D)` convention."""

from __future__ import annotations

import functools

import keras
import numpy as np
import pytest

import keras_lossplus as klp
from keras_lossplus import losses as L
from tests.backend_utils import BACKEND, XLA_BACKENDS, to_numpy, value_and_grad, xla_compile
from tests.contract import LossCase, contract_suite

B, D = 8, 6

# ------------------------------------------------------------------ numpy references


def _unit(x):
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(n > 0, n, 1.0)


def _lse(x):
    m = np.max(x)
    return m + np.log(np.sum(np.exp(x - m)))


def _mean(values, w):
    if w is None:
        return float(np.mean(values))
    w = np.asarray(w, "float64").reshape(-1)
    return float(np.sum(w * values) / np.sum(w)) if np.sum(w) > 0 else 0.0


def ref_mnrl(y_true, y_pred, scale=20.0, similarity="cosine", symmetric=False, mask_same_label=False,
             sample_weight=None):
    """sentence-transformers: scores = scale * sim(anchors, cat(positives, negatives column by column)),
    cross-entropy with target i; symmetric: (forward + CE(scores[:, :B].T, i)) / 2."""
    y = np.asarray(y_pred, "float64")
    n, m, dim = y.shape
    sim = (lambda a, b: _unit(a) @ _unit(b).T) if similarity == "cosine" else (lambda a, b: a @ b.T)
    anchors, positives = y[:, 0], y[:, 1]
    candidates = np.concatenate([positives] + [y[:, k] for k in range(2, m)], axis=0)
    scores = scale * sim(anchors, candidates)
    keep = np.ones_like(scores, bool)
    if mask_same_label:
        labels = np.asarray(y_true).reshape(-1)
        keep[:, :n] = (labels[:, None] != labels[None, :]) | np.eye(n, dtype=bool)
    forward = np.array([_lse(scores[i][keep[i]]) - scores[i, i] for i in range(n)])
    loss = _mean(forward, sample_weight)
    if symmetric:
        back, keep_b = scores[:, :n].T, keep[:, :n].T
        backward = np.array([_lse(back[i][keep_b[i]]) - back[i, i] for i in range(n)])
        loss = (loss + _mean(backward, sample_weight)) / 2.0
    return np.float64(loss)


def _angle_sim(x, y):
    """sentence-transformers' util.pairwise_angle_sim, line by line."""
    a, b = np.split(x, 2, axis=1)
    c, d = np.split(y, 2, axis=1)
    z = np.sum(c**2 + d**2, axis=1, keepdims=True)
    re = (a * c + b * d) / z
    im = (b * c - a * d) / z
    dz = np.sum(a**2 + b**2, axis=1, keepdims=True) ** 0.5
    dw = np.sum(c**2 + d**2, axis=1, keepdims=True) ** 0.5
    re /= dz / dw
    im /= dz / dw
    return np.abs(np.sum(np.concatenate((re, im), axis=1), axis=1))


def ref_cosent(y_true, y_pred, scale=20.0, angle=False, sample_weight=None):
    """sentence-transformers: s = scale * sim; logsumexp([0] + [s_i - s_j for y_i < y_j]);
    with weights, the term of (i, j) counts w_i w_j times."""
    y = np.asarray(y_pred, "float64")
    labels = np.asarray(y_true, "float64").reshape(-1)
    if angle:
        s = scale * _angle_sim(y[:, 0], y[:, 1])
    else:
        s = scale * np.sum(_unit(y[:, 0]) * _unit(y[:, 1]), axis=-1)
    w = np.ones(len(s)) if sample_weight is None else np.asarray(sample_weight, "float64").reshape(-1)
    terms = [0.0]
    for i in range(len(s)):
        for j in range(len(s)):
            if labels[i] < labels[j] and w[i] * w[j] > 0:
                terms.append(s[i] - s[j] + np.log(w[i] * w[j]))
    return np.float64(_lse(np.array(terms)))


def ref_matryoshka(y_true, y_pred, base, dims, weights=None, sample_weight=None):
    weights = [1.0] * len(dims) if weights is None else weights
    return np.float64(sum(w * base(y_true, _unit(np.asarray(y_pred, "float64")[..., :d]), sample_weight=sample_weight)
                          for d, w in zip(dims, weights)))


def ref_matryoshka_mse(y_true, y_pred, dims):
    """Per sample: sum_d mean((t[:, :d] - p[:, :d])^2) (normalize=False)."""
    t, p = np.asarray(y_true, "float64"), np.asarray(y_pred, "float64")
    return sum(np.mean((t[:, :d] - p[:, :d]) ** 2, axis=-1) for d in dims)


# ------------------------------------------------------------------ inputs


def _stacked(m, labelled=False):
    def make(rng):
        y_pred = rng.normal(size=(B, m, D)).astype("float32")
        y_pred[:, 1] += y_pred[:, 0]  # positives near their anchors
        y_true = rng.integers(0, 3, size=B).astype("float32") if labelled else np.zeros(B, "float32")
        return y_true, y_pred

    return make


def _scored(rng):
    y_pred = rng.normal(size=(B, 2, D)).astype("float32")
    scores = rng.choice([0.0, 0.25, 0.5, 1.0], size=B).astype("float32")  # ties included
    return scores, y_pred


def _distillation(rng):
    return rng.normal(size=(B, D)).astype("float32"), rng.normal(size=(B, D)).astype("float32")


_ones = np.ones((4, 3, D), "float32")
_base = np.random.default_rng(7).normal(size=(4, 3, D)).astype("float32")
_STACKED_EDGES = {
    "identical": (np.zeros(4, "float32"), _ones),
    "zeros": (np.zeros(4, "float32"), np.zeros_like(_ones)),
    "huge": (np.zeros(4, "float32"), 1e30 * _base),
    "positive_is_anchor": (np.zeros(4, "float32"), np.repeat(_base[:, :1], 3, axis=1)),
}
_PAIR_EDGES = {
    "identical": (np.array([0.0, 1.0, 0.5, 0.2], "float32"), _ones[:, :2]),
    "zeros": (np.array([0.0, 1.0, 0.5, 0.2], "float32"), np.zeros_like(_ones[:, :2])),
    "huge": (np.array([0.0, 1.0, 0.5, 0.2], "float32"), 1e30 * _base[:, :2]),
    "tied_scores": (np.full(4, 0.5, "float32"), _base[:, :2]),
    "wrong_order_large_scale": (np.array([0.0, 1.0, 0.0, 1.0], "float32"),
                                np.stack([_ones[:, 0], np.array([1, -1, 1, -1], "float32")[:, None] * _ones[:, 1]], 1)),
}
_SCALE_BAD = [({"scale": 0.0}, "scale"), ({"scale": -1.0}, "scale")]


def _case(id, cls, fn, ref, kwargs, make_inputs, edges, bad=(), **extra):
    return LossCase(
        id=id, cls=cls, fn=fn, kwargs=kwargs, reference=functools.partial(ref, **kwargs), make_inputs=make_inputs,
        edge_inputs=edges, bad_args=list(bad), batch_level=True, **extra,
    )


_MNRL_BAD = _SCALE_BAD + [({"similarity": "euclidean"}, "similarity"), ({"symmetric": "yes"}, "symmetric"),
                          ({"mask_same_label": 1}, "mask_same_label")]
_MATRYOSHKA = {"loss": L.MultipleNegativesRankingLoss(scale=10.0), "matryoshka_dims": [6, 4, 2],
               "matryoshka_weights": [1.0, 0.5, 0.25]}

CASES = [
    _case("mnrl", L.MultipleNegativesRankingLoss, L.multiple_negatives_ranking_loss, ref_mnrl, {"scale": 20.0},
          _stacked(2), _STACKED_EDGES, _MNRL_BAD, rtol=1e-4, atol=1e-5),
    _case("mnrl_hard_negatives_symmetric", L.MultipleNegativesRankingLoss, L.multiple_negatives_ranking_loss, ref_mnrl,
          {"scale": 10.0, "symmetric": True}, _stacked(4), _STACKED_EDGES, rtol=1e-4, atol=1e-5),
    _case("mnrl_dot_labels", L.MultipleNegativesRankingLoss, L.multiple_negatives_ranking_loss, ref_mnrl,
          {"scale": 1.0, "similarity": "dot", "mask_same_label": True, "symmetric": True}, _stacked(3, labelled=True),
          {}, rtol=1e-4, atol=1e-5),
    _case("cosent", L.CoSENTLoss, L.cosent_loss, ref_cosent, {"scale": 20.0}, _scored, _PAIR_EDGES, _SCALE_BAD,
          rtol=1e-4, atol=1e-4),
    _case("angle", L.AnglELoss, L.angle_loss, functools.partial(ref_cosent, angle=True), {"scale": 20.0}, _scored,
          _PAIR_EDGES, _SCALE_BAD, rtol=1e-4, atol=1e-4),
    LossCase(
        id="matryoshka_mnrl", cls=L.MatryoshkaLoss, fn=L.matryoshka_loss, kwargs=_MATRYOSHKA,
        reference=functools.partial(ref_matryoshka, base=functools.partial(ref_mnrl, scale=10.0),
                                    dims=[6, 4, 2], weights=[1.0, 0.5, 0.25]),
        make_inputs=_stacked(3), edge_inputs=_STACKED_EDGES, batch_level=True, rtol=1e-4, atol=1e-5,
        bad_args=[({"matryoshka_dims": [7]}, "matryoshka_dims"), ({"matryoshka_dims": [0]}, "matryoshka_dims"),
                  ({"matryoshka_dims": []}, "matryoshka_dims"), ({"matryoshka_weights": [1.0]}, "matryoshka_weights"),
                  ({"matryoshka_weights": [1.0, -1.0, 1.0]}, "matryoshka_weights"), ({"loss": "mnrl"}, "loss")],
    ),
    LossCase(
        id="matryoshka_mse_per_sample", cls=L.MatryoshkaLoss, fn=L.matryoshka_loss,
        kwargs={"loss": keras.losses.MeanSquaredError(), "matryoshka_dims": [6, 3], "normalize": False},
        reference=functools.partial(ref_matryoshka_mse, dims=[6, 3]), make_inputs=_distillation,
        edge_inputs={"zeros": (np.zeros((4, D), "float32"), np.zeros((4, D), "float32"))},
    ),
]

_FIT_IDS = {"mnrl", "cosent", "angle", "matryoshka_mnrl"}
TestInBatchContract = contract_suite(CASES, fit_ids=_FIT_IDS)


# ------------------------------------------------------------------ sentence-transformers' own values

# Computed with sentence-transformers 6.3.0 (torch 2.13 CPU, float64) in a throwaway venv, on
#   emb = np.random.default_rng(11).normal(size=(5, 3, 6)).astype("float32")
#   scores = [0.0, 0.3, 1.0, 0.3, 0.7]
# as `losses.X(None, **options).compute_loss_from_embeddings([emb[:, 0], emb[:, 1], (emb[:, 2])], scores)`;
# MatryoshkaLoss through its forward on a stub model returning emb[:, column] (embedding dimension 6).
_ST_EMB = np.random.default_rng(11).normal(size=(5, 3, 6)).astype("float32")
_ST_SCORES = np.array([0.0, 0.3, 1.0, 0.3, 0.7], "float32")
_ST_ZEROS = np.zeros(5, "float32")
ST_VALUES = [
    # (id, our call, sentence-transformers' value)
    ("MultipleNegativesRankingLoss()", lambda: L.multiple_negatives_ranking_loss(_ST_ZEROS, _ST_EMB[:, :2]),
     10.413060331067154),
    ("MultipleNegativesRankingLoss(scale=5), hard negatives",
     lambda: L.multiple_negatives_ranking_loss(_ST_ZEROS, _ST_EMB, scale=5.0), 3.274997371232061),
    ("MultipleNegativesRankingLoss(scale=1, similarity_fct=dot_score), hard negatives",
     lambda: L.multiple_negatives_ranking_loss(_ST_ZEROS, _ST_EMB, scale=1.0, similarity="dot"), 2.8856427492293326),
    ("MultipleNegativesSymmetricRankingLoss()",
     lambda: L.multiple_negatives_ranking_loss(_ST_ZEROS, _ST_EMB[:, :2], symmetric=True), 10.325769034637142),
    ("MultipleNegativesSymmetricRankingLoss(scale=5), hard negatives",
     lambda: L.multiple_negatives_ranking_loss(_ST_ZEROS, _ST_EMB, scale=5.0, symmetric=True), 3.1482451352306278),
    ("CoSENTLoss()", lambda: L.cosent_loss(_ST_SCORES, _ST_EMB[:, :2]), 19.795237964410532),
    ("CoSENTLoss(scale=3)", lambda: L.cosent_loss(_ST_SCORES, _ST_EMB[:, :2], scale=3.0), 3.5771118685525893),
    ("AnglELoss()", lambda: L.angle_loss(_ST_SCORES, _ST_EMB[:, :2]), 17.26444033848661),
    ("AnglELoss(scale=3)", lambda: L.angle_loss(_ST_SCORES, _ST_EMB[:, :2], scale=3.0), 3.6036170518527118),
    ("MatryoshkaLoss(MNRL(scale=10), [6, 4, 2], [1, 0.5, 0.25]), hard negatives",
     lambda: L.matryoshka_loss(_ST_ZEROS, _ST_EMB, L.MultipleNegativesRankingLoss(scale=10.0), [6, 4, 2],
                               [1.0, 0.5, 0.25]), 11.936061726319387),
    ("MatryoshkaLoss(MNRL(scale=1, dot_score), [4, 2]): prefixes normalized",
     lambda: L.matryoshka_loss(_ST_ZEROS, _ST_EMB[:, :2], L.MultipleNegativesRankingLoss(scale=1.0, similarity="dot"),
                               [4, 2]), 3.79742649853878),
]


@pytest.mark.parametrize("call, expected", [v[1:] for v in ST_VALUES], ids=[v[0] for v in ST_VALUES])
def test_values_of_sentence_transformers(call, expected):
    np.testing.assert_allclose(to_numpy(call()), expected, rtol=2e-6)


# ------------------------------------------------------------------ properties


def test_hard_negatives_are_candidates_of_every_anchor(rng):
    """A hard negative equal to another anchor's positive counts twice in the
    softmax denominator of every anchor."""
    _, y = _stacked(2)(rng)
    with_neg = np.concatenate([y, np.roll(y[:, 1:2], 1, axis=0)], axis=1)
    scores = 5.0 * _unit(y[:, 0]) @ _unit(y[:, 1]).T
    doubled = np.concatenate([scores, np.roll(scores, 1, axis=1)], axis=1)
    expected = np.mean([_lse(doubled[i]) - scores[i, i] for i in range(B)])
    got = to_numpy(L.multiple_negatives_ranking_loss(None, with_neg, scale=5.0))
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_same_label_positives_are_not_negatives():
    """Two anchors of one label with the same positive: with the labels the
    loss is that of a batch without the other's positive."""
    y = np.random.default_rng(3).normal(size=(3, 2, 4)).astype("float32")
    y[1, 1] = y[0, 1]
    masked = L.multiple_negatives_ranking_loss([5, 5, 7], y, scale=3.0, mask_same_label=True)
    a, p = _unit(y[:, 0]), _unit(y[:, 1])
    seen = {0: [0, 2], 1: [1, 2], 2: [0, 1, 2]}  # each anchor's candidates
    expected = np.mean([_lse(3.0 * a[i] @ p[seen[i]].T) - 3.0 * a[i] @ p[i] for i in range(3)])
    np.testing.assert_allclose(to_numpy(masked), expected, rtol=1e-5)


def test_symmetric_is_the_mean_of_both_directions(rng):
    _, y = _stacked(2)(rng)
    both = L.multiple_negatives_ranking_loss(None, y, symmetric=True)
    forward = L.multiple_negatives_ranking_loss(None, y)
    backward = L.multiple_negatives_ranking_loss(None, y[:, ::-1])
    np.testing.assert_allclose(to_numpy(both), (to_numpy(forward) + to_numpy(backward)) / 2, rtol=1e-5)


def test_cosent_depends_only_on_the_order_of_the_scores(rng):
    scores, y = _scored(rng)
    a = L.cosent_loss(scores, y)
    b = L.cosent_loss(10.0 * scores ** 3 - 4.0, y)
    np.testing.assert_allclose(to_numpy(a), to_numpy(b), rtol=1e-6)


def test_cosent_is_stable_where_the_textbook_formula_overflows():
    """scale 1e3: differences of 2e3 overflow exp in float32 and float64."""
    scores = np.array([0.0, 1.0], "float32")
    y = np.array([[[1.0, 0.0], [1.0, 0.0]], [[1.0, 0.0], [-1.0, 0.0]]], "float32")  # wrong order: s = 1, -1
    value, grad = value_and_grad(lambda p: L.cosent_loss(scores, p, scale=1e3), y)
    np.testing.assert_allclose(to_numpy(value), 2e3, rtol=1e-6)
    assert np.all(np.isfinite(grad))


@pytest.mark.parametrize("fn", [L.multiple_negatives_ranking_loss, L.cosent_loss, L.angle_loss], ids=lambda f: f.__name__)
def test_all_zero_weights_give_zero_with_zero_gradient(fn, rng):
    scores, y = _scored(rng)
    value, grad = value_and_grad(lambda p: fn(scores, p, sample_weight=np.zeros(B, "float32")), y)
    assert float(to_numpy(value)) == 0.0
    np.testing.assert_array_equal(grad, np.zeros_like(y))


def test_cosine_losses_are_scale_invariant_up_to_1e30(rng):
    _, y = _stacked(3)(rng)
    for fn in (L.multiple_negatives_ranking_loss, L.cosent_loss):
        yy = y if fn is not L.cosent_loss else y[:, :2]
        s = np.arange(B, dtype="float32")
        np.testing.assert_allclose(to_numpy(fn(s, 1e30 * yy)), to_numpy(fn(s, yy)), rtol=1e-5)


def test_matryoshka_saves_its_wrapped_loss_as_a_nested_config():
    loss = L.MatryoshkaLoss(L.CoSENTLoss(scale=7.0), matryoshka_dims=[4, 2], matryoshka_weights=[1.0, 0.5])
    config = loss.get_config()
    assert config["loss"]["class_name"] == "CoSENTLoss" and config["loss"]["config"]["scale"] == 7.0
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert isinstance(again.loss, L.CoSENTLoss) and again.get_config() == config


def test_matryoshka_wraps_2d_embedding_losses(rng):
    """(B, D) embeddings and labels: TripletLoss over the prefixes."""
    labels = np.array([0, 0, 1, 1, 2, 2, 0, 1], "float32")
    emb = rng.normal(size=(B, D)).astype("float32")
    inner = L.TripletLoss(margin=0.2, distance="cosine", mining="all")
    got = L.MatryoshkaLoss(inner, matryoshka_dims=[6, 3])(labels, emb)
    expected = inner(labels, emb) + inner(labels, emb[:, :3])
    np.testing.assert_allclose(to_numpy(got), to_numpy(expected), rtol=1e-5)


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize("fn, y_pred, match", [
    (L.multiple_negatives_ranking_loss, np.ones((4, 1, D)), r"y_pred.*\(batch_size, m, dim\) with m >= 2"),
    (L.multiple_negatives_ranking_loss, np.ones((4, D)), "y_pred"),
    (L.cosent_loss, np.ones((4, 3, D)), r"y_pred.*\(batch_size, 2, dim\)"),
    (L.angle_loss, np.ones((4, 2, 5)), "dimension of `y_pred` must be even"),
], ids=["mnrl_m1", "mnrl_2d", "cosent_m3", "angle_odd"])
def test_bad_shapes_raise_naming_the_argument(fn, y_pred, match):
    with pytest.raises(ValueError, match=match):
        fn(np.zeros(4, "float32"), y_pred.astype("float32"))


@pytest.mark.parametrize("cls", [L.MultipleNegativesRankingLoss, L.CoSENTLoss, L.AnglELoss])
def test_y_true_of_another_batch_size_is_refused(cls):
    with pytest.raises(ValueError, match="`y_true` and `y_pred` must have the same batch size"):
        cls()(np.zeros(3, "float32"), np.ones((4, 2, D), "float32"))
    with pytest.raises(ValueError, match=r"`y_true` must hold one value per example"):
        cls()(np.zeros((4, 2), "float32"), np.ones((4, 2, D), "float32"))


def test_labels_must_be_class_ids_with_mask_same_label():
    y = np.ones((3, 2, D), "float32")
    with pytest.raises(ValueError, match="integer class labels"):
        L.multiple_negatives_ranking_loss([0.5, 1.0, 2.0], y, mask_same_label=True)
    L.multiple_negatives_ranking_loss([0.5, 1.0, 2.0], y)  # ignored otherwise


def test_matryoshka_refuses_a_function_in_the_class_and_weights_for_per_sample_losses():
    with pytest.raises(ValueError, match="`loss` must be a `keras.losses.Loss` instance"):
        L.MatryoshkaLoss(lambda t, p: p, matryoshka_dims=[2])
    with pytest.raises(ValueError, match="`sample_weight`"):
        L.matryoshka_loss(np.zeros((2, 4)), np.ones((2, 4)), keras.losses.MeanSquaredError(), [2],
                          sample_weight=np.ones(2))


# ------------------------------------------------------------------ compiled, in a model


if BACKEND in XLA_BACKENDS:

    def test_compiles_with_hard_negatives_and_labels(rng):
        y_true, y = _stacked(4, labelled=True)(rng)
        loss = L.MultipleNegativesRankingLoss(symmetric=True, mask_same_label=True)
        compiled = xla_compile(lambda t, p: loss(t, p))
        np.testing.assert_allclose(to_numpy(compiled(y_true, y)), to_numpy(loss(y_true, y)), rtol=1e-5)


def test_ranking_loss_takes_a_similarity_object_with_the_names_values():
    y_pred = np.random.default_rng(3).normal(size=(6, 3, 4)).astype("float32")
    labels = np.zeros((6,), "float32")
    for name, obj in (("cosine", klp.distances.CosineSimilarity()), ("dot", klp.distances.DotProductSimilarity())):
        by_name = klp.losses.MultipleNegativesRankingLoss(similarity=name, scale=2.0)(labels, y_pred)
        by_object = klp.losses.MultipleNegativesRankingLoss(similarity=obj, scale=2.0)(labels, y_pred)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(by_object), keras.ops.convert_to_numpy(by_name),
                                   rtol=1e-5)
    with pytest.raises(ValueError, match="similarity"):
        klp.losses.MultipleNegativesRankingLoss(similarity=klp.distances.EuclideanDistance())
