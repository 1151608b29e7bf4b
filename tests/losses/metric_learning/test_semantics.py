"""The package's in-batch metric-learning losses against the independent numpy
references of tests/losses/metric_learning/references.py (issue 6 spec): values with
and without sample_weight and chunking, every reduction, the per-sample forms,
the classic Keras triplet recipe, the edge cases of the uniform valid-anchor
rule and the argument errors."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tests.backend_utils import to_numpy, value_and_grad
from tests.losses.metric_learning import references as R

TOL = dict(rtol=1e-5, atol=1e-6)  # float32 package vs float64 reference


def _L():
    from keras_lossplus import losses as L

    return L


# ------------------------------------------------------------------ inputs


def grouped(seed=0, scale=1.0):
    """4 classes x 3 samples, shuffled: every anchor valid."""
    return R.grouped_batch(np.random.default_rng(seed), classes=4, per_class=3, dim=5, scale=scale)


def mixed(seed=0, scale=1.0):
    """Class sizes 4, 3, 3, 1, 1: the two singletons are invalid anchors."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(5), [4, 3, 3, 1, 1])
    rng.shuffle(labels)
    x = rng.normal(size=(12, 5)) * scale
    return labels.astype("int32"), x.astype("float32")


def weights(seed=0, b=12):
    return np.random.default_rng(seed + 100).uniform(0.2, 2.0, size=b).astype("float32")


BATCHES = {"grouped": grouped, "mixed": mixed}

# id, function name, class name, kwargs, embedding scale
CASES = [
    ("triplet_semihard", "triplet_loss", "TripletLoss", dict(mining="semihard"), 0.5),
    ("triplet_semihard_m0.3_cos", "triplet_loss", "TripletLoss", dict(mining="semihard", margin=0.3, distance="cosine"), 1.0),
    ("triplet_semihard_soft", "triplet_loss", "TripletLoss", dict(mining="semihard", soft=True), 0.5),
    ("triplet_semihard_norm", "triplet_loss", "TripletLoss", dict(mining="semihard", margin=0.5, normalize=True), 1.0),
    ("triplet_hard", "triplet_loss", "TripletLoss", dict(mining="hard", margin=0.5), 0.5),
    ("triplet_hard_sq", "triplet_loss", "TripletLoss", dict(mining="hard", distance="squared_euclidean"), 0.5),
    ("triplet_hard_soft", "triplet_loss", "TripletLoss", dict(mining="hard", soft=True), 0.5),
    ("triplet_all", "triplet_loss", "TripletLoss", dict(mining="all", margin=0.5), 0.5),
    ("triplet_all_soft", "triplet_loss", "TripletLoss", dict(mining="all", soft=True), 0.5),
    ("triplet_all_cos", "triplet_loss", "TripletLoss", dict(mining="all", margin=0.4, distance="cosine"), 1.0),
    ("quadruplet", "quadruplet_loss", "QuadrupletLoss", dict(), 0.5),
    ("quadruplet_cos", "quadruplet_loss", "QuadrupletLoss", dict(margin1=0.6, margin2=0.3, distance="cosine"), 1.0),
    ("quadruplet_norm_sq", "quadruplet_loss", "QuadrupletLoss", dict(distance="squared_euclidean", normalize=True), 1.0),
    ("batch_contrastive", "batch_contrastive_loss", "BatchContrastiveLoss", dict(), 0.4),
    ("batch_contrastive_margins", "batch_contrastive_loss", "BatchContrastiveLoss", dict(pos_margin=0.2, neg_margin=2.0), 0.6),
    ("batch_contrastive_cos", "batch_contrastive_loss", "BatchContrastiveLoss", dict(pos_margin=0.1, neg_margin=0.8, distance="cosine"), 1.0),
    ("multi_similarity", "multi_similarity_loss", "MultiSimilarityLoss", dict(), 1.0),
    ("multi_similarity_dot", "multi_similarity_loss", "MultiSimilarityLoss", dict(alpha=2.0, beta=5.0, base=0.2, epsilon=0.2, distance="dot"), 0.4),
    ("lifted", "lifted_structure_loss", "LiftedStructureLoss", dict(), 0.5),
    ("lifted_cos", "lifted_structure_loss", "LiftedStructureLoss", dict(margin=0.5, distance="cosine"), 1.0),
    ("npair", "npair_loss", "NPairLoss", dict(), 0.5),
    ("npair_cos", "npair_loss", "NPairLoss", dict(distance="cosine"), 1.0),
    ("npair_norm", "npair_loss", "NPairLoss", dict(distance="dot", normalize=True), 1.0),
    ("supcon", "supcon_loss", "SupConLoss", dict(), 1.0),
    ("supcon_dot", "supcon_loss", "SupConLoss", dict(temperature=0.5, distance="dot"), 0.5),
    ("nt_xent", "nt_xent_loss", "NTXentLoss", dict(), 1.0),
    ("nt_xent_dot", "nt_xent_loss", "NTXentLoss", dict(temperature=0.5, distance="dot"), 0.5),
    ("snn", "soft_nearest_neighbor_loss", "SoftNearestNeighborLoss", dict(), 0.5),
    ("snn_euclidean", "soft_nearest_neighbor_loss", "SoftNearestNeighborLoss", dict(temperature=0.5, distance="euclidean"), 0.5),
    ("snn_cos_norm", "soft_nearest_neighbor_loss", "SoftNearestNeighborLoss", dict(temperature=0.2, distance="cosine", normalize=True), 1.0),
]
IDS = [c[0] for c in CASES]
# one case per function, for the edge cases whose outcome does not depend on
# the options (the option combinations are all in test_function_matches_reference)
FAMILIES = [c for i, c in enumerate(CASES) if c[1] not in [d[1] for d in CASES[:i]]]
FAMILY_IDS = [c[0] for c in FAMILIES]
SIMILARITY_LOSSES = ("multi_similarity_loss", "npair_loss", "supcon_loss", "nt_xent_loss")


def _ref(fn_name, y, x, kwargs, sample_weight=None):
    return getattr(R, "ref_" + fn_name)(y, x, sample_weight=sample_weight, **kwargs)


# ------------------------------------------------------------------ batch losses


# (batch, weighted, chunk_size): the plain case (every anchor valid, no
# weights, one block) and the hardest one (invalid anchors, weights, blocks).
FUNCTION_VARIANTS = [("grouped", False, None), ("mixed", True, 5)]


def _variant_id(variant):
    batch, weighted, chunk_size = variant
    return f"{batch}-{'weighted' if weighted else 'unweighted'}-chunk{chunk_size}"


@pytest.mark.parametrize("variant", FUNCTION_VARIANTS, ids=_variant_id)
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_function_matches_reference(case, variant):
    _, fn_name, _, kwargs, scale = case
    batch, weighted, chunk_size = variant
    y, x = BATCHES[batch](0, scale)
    w = weights() if weighted else None
    expected = _ref(fn_name, y, x, kwargs, w)
    assert expected > 0
    got = to_numpy(getattr(_L(), fn_name)(y, x, chunk_size=chunk_size, sample_weight=w, **kwargs))
    assert got.shape == ()
    np.testing.assert_allclose(got, expected, **TOL)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_class_matches_reference(case):
    """The class gives the function's scalar, here with `reduction="none"`
    (a BatchLoss returns the same scalar whatever its reduction; the contract
    suite checks every reduction)."""
    _, fn_name, cls_name, kwargs, scale = case
    y, x = mixed(1, scale)
    w = weights(1)
    cls = getattr(_L(), cls_name)
    reduction = "none"
    for chunk_size, sample_weight in ((None, None), (5, w)):
        loss = cls(chunk_size=chunk_size, reduction=reduction, **kwargs)
        got = to_numpy(loss(y, x, sample_weight=sample_weight))
        expected = _ref(fn_name, y, x, kwargs, sample_weight)
        assert got.shape == ()
        message = f"chunk_size={chunk_size} weighted={sample_weight is not None}"
        np.testing.assert_allclose(got, expected, **TOL, err_msg=message)


@pytest.mark.parametrize("case", FAMILIES, ids=FAMILY_IDS)
def test_label_layouts_agree(case):
    """(B,), (B, 1) and float labels holding integers give one value."""
    _, fn_name, _, kwargs, scale = case
    y, x = grouped(2, scale)
    fn = getattr(_L(), fn_name)
    base = to_numpy(fn(y, x, **kwargs))
    np.testing.assert_allclose(base, _ref(fn_name, y, x, kwargs), **TOL)
    np.testing.assert_allclose(to_numpy(fn(y[:, None], x, **kwargs)), base, rtol=1e-6)
    np.testing.assert_allclose(to_numpy(fn(y.astype("float32"), x, **kwargs)), base, rtol=1e-6)


@pytest.mark.parametrize("case", FAMILIES, ids=FAMILY_IDS)
def test_single_class_batch_is_zero_with_zero_gradient(case):
    _, fn_name, _, kwargs, scale = case
    _, x = grouped(3, scale)
    y = np.zeros(12, dtype="int32")
    assert _ref(fn_name, y, x, kwargs) == 0.0
    fn = getattr(_L(), fn_name)
    for chunk_size in (None, 5):
        value, grad = value_and_grad(lambda e: fn(y, e, chunk_size=chunk_size, **kwargs), x)
        assert value == 0.0
        assert np.all(grad == 0.0), grad


@pytest.mark.parametrize("case", FAMILIES, ids=FAMILY_IDS)
def test_batch_without_positive_pairs_is_zero(case):
    _, fn_name, _, kwargs, scale = case
    _, x = grouped(4, scale)
    y = np.arange(12, dtype="int32")
    assert _ref(fn_name, y, x, kwargs) == 0.0
    fn = getattr(_L(), fn_name)
    value, grad = value_and_grad(lambda e: fn(y, e, **kwargs), x)
    assert value == 0.0
    assert np.all(grad == 0.0), grad


@pytest.mark.parametrize("fill", [0.3, 0.0], ids=["identical", "zero"])
@pytest.mark.parametrize("case", FAMILIES, ids=FAMILY_IDS)
def test_identical_embeddings_have_finite_gradient(case, fill):
    _, fn_name, _, kwargs, _ = case
    y, _ = grouped(5)
    x = np.full((12, 5), fill, dtype="float32")
    fn = getattr(_L(), fn_name)
    value, grad = value_and_grad(lambda e: fn(y, e, **kwargs), x)
    assert np.isfinite(value) and np.all(np.isfinite(grad)), (value, grad)
    np.testing.assert_allclose(value, _ref(fn_name, y, x, kwargs), **TOL)


def test_invalid_anchors_do_not_count():
    """Adding a singleton class (an invalid anchor) that is far from everything
    changes neither the batch-hard value nor, with weights, the denominator."""
    L = _L()
    y, x = grouped(6, 0.5)
    far = np.full((1, 5), 50.0, dtype="float32")
    y2 = np.concatenate([y, [99]]).astype("int32")
    x2 = np.concatenate([x, far])
    w2 = np.concatenate([np.ones(12, "float32"), [1000.0]]).astype("float32")
    base = to_numpy(L.triplet_loss(y, x, mining="hard"))
    got = to_numpy(L.triplet_loss(y2, x2, mining="hard", sample_weight=w2))
    np.testing.assert_allclose(got, base, **TOL)
    np.testing.assert_allclose(got, R.ref_triplet_loss(y2, x2, mining="hard", sample_weight=w2), **TOL)


def integer_grid(seed):
    """Embeddings with coordinates in {-1, 0, 1}: many exactly equal distances
    (d_ap == d_an) and hinges exactly at 0 for margin 1 (e.g. 1 - 2 + 1), all
    exact in float32 for the Euclidean distances."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(4), 3)
    rng.shuffle(labels)
    return labels.astype("int32"), rng.integers(-1, 2, size=(12, 3)).astype("float32")


TIE_CASES = [
    ("triplet_loss", dict(mining=mining, margin=1.0, distance=distance))
    for mining in ("semihard", "hard", "all")
    for distance in ("euclidean", "squared_euclidean")
] + [
    ("batch_contrastive_loss", dict(pos_margin=1.0, neg_margin=2.0, distance="squared_euclidean")),
    ("quadruplet_loss", dict(margin1=1.0, margin2=1.0)),
]


@pytest.mark.parametrize("fn_name,kwargs", TIE_CASES, ids=[f"{n}-{'-'.join(map(str, k.values()))}" for n, k in TIE_CASES])
def test_exact_ties_follow_the_strict_inequalities(fn_name, kwargs):
    """semihard: S = {n: d_an > d_ap} (strict); all: cnt = #{t > 0};
    contrastive: d_ap > pos_margin, d_an < neg_margin."""
    y, x = integer_grid(0)
    labels, d = list(y), R.distance_matrix(x)
    ties = [d[a, p] == d[a, n] for a in range(12) for p in R.positives(labels, a) for n in R.negatives(labels, a)]
    hinge_zero = [d[a, p] - d[a, n] + 1.0 == 0 for a in range(12) for p in R.positives(labels, a) for n in R.negatives(labels, a)]
    assert any(ties) and any(hinge_zero)
    expected = _ref(fn_name, y, x, kwargs)
    for chunk_size in (None, 5):
        got = to_numpy(getattr(_L(), fn_name)(y, x, chunk_size=chunk_size, **kwargs))
        np.testing.assert_allclose(got, expected, **TOL, err_msg=f"chunk_size={chunk_size}")


# ------------------------------------------------------------------ per-sample forms


def _keras_reduce(values, sample_weight, reduction):
    """keras.losses.Loss semantics on per-sample values."""
    v = np.asarray(values, "float64")
    if sample_weight is not None:
        v = v * np.asarray(sample_weight, "float64")
    if reduction in ("none", None):
        return v
    if reduction == "sum":
        return v.sum()
    if reduction == "mean_with_sample_weight" and sample_weight is not None:
        return v.sum() / np.sum(sample_weight)
    return v.sum() / v.size  # sum_over_batch_size / mean


def _triplets(seed=7, b=8, d=4):
    rng = np.random.default_rng(seed)
    return np.zeros(b, "int32"), (rng.normal(size=(b, 3 * d)) * 0.5).astype("float32")


def _quadruplets(seed=8, b=8, d=4):
    rng = np.random.default_rng(seed)
    return np.zeros(b, "int32"), (rng.normal(size=(b, 4 * d)) * 0.5).astype("float32")


def _pairs(seed=9, b=10):
    rng = np.random.default_rng(seed)
    y = (rng.uniform(size=b) < 0.5).astype("float32")
    d = rng.uniform(0.0, 2.0, size=b).astype("float32")
    return y, d


PER_SAMPLE = [
    ("triplet_none", "triplet_loss", "TripletLoss", dict(mining="none", margin=0.5), _triplets),
    ("triplet_none_soft", "triplet_loss", "TripletLoss", dict(mining="none", soft=True), _triplets),
    ("triplet_none_cos", "triplet_loss", "TripletLoss", dict(mining="none", margin=0.3, distance="cosine"), _triplets),
    ("triplet_none_norm", "triplet_loss", "TripletLoss", dict(mining="none", margin=0.4, normalize=True), _triplets),
    ("quadruplet_none", "quadruplet_loss", "QuadrupletLoss", dict(mining="none"), _quadruplets),
    ("quadruplet_none_sq", "quadruplet_loss", "QuadrupletLoss", dict(mining="none", distance="squared_euclidean"), _quadruplets),
    ("contrastive", "contrastive_loss", "ContrastiveLoss", dict(), _pairs),
    ("contrastive_m1.5", "contrastive_loss", "ContrastiveLoss", dict(margin=1.5), _pairs),
]


def _ref_per_sample(fn_name, y, x, kwargs):
    if fn_name == "contrastive_loss":
        return R.ref_contrastive_loss(y, x, **kwargs)
    return getattr(R, "ref_" + fn_name)(y, x, **kwargs)


@pytest.mark.parametrize("case", PER_SAMPLE, ids=[c[0] for c in PER_SAMPLE])
def test_per_sample_function_matches_reference(case):
    _, fn_name, _, kwargs, make = case
    y, x = make()
    expected = _ref_per_sample(fn_name, y, x, kwargs)
    assert expected.shape == (y.shape[0],) and expected.max() > 0
    got = to_numpy(getattr(_L(), fn_name)(y, x, **kwargs))
    np.testing.assert_allclose(got.reshape(-1), expected, **TOL)


@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum", "mean_with_sample_weight", "none"])
@pytest.mark.parametrize("case", PER_SAMPLE, ids=[c[0] for c in PER_SAMPLE])
def test_per_sample_class_uses_keras_reduction(case, reduction):
    _, fn_name, cls_name, kwargs, make = case
    y, x = make()
    w = weights(2, y.shape[0])
    per_sample = _ref_per_sample(fn_name, y, x, kwargs)
    loss = getattr(_L(), cls_name)(reduction=reduction, **kwargs)
    for sample_weight in (None, w):
        got = to_numpy(loss(y, x, sample_weight=sample_weight))
        expected = _keras_reduce(per_sample, sample_weight, reduction)
        np.testing.assert_allclose(got.reshape(-1), np.reshape(expected, -1), **TOL)


def test_contrastive_accepts_column_distances():
    y, d = _pairs()
    L = _L()
    np.testing.assert_allclose(
        to_numpy(L.ContrastiveLoss()(y[:, None], d[:, None])), R.ref_contrastive_loss(y, d).mean(), **TOL
    )


def _classic_triplet(y_pred, margin):
    """The usual Keras recipe: split [anchor | positive | negative], Euclidean
    distances with keras.ops, hinge, mean."""
    ops = keras.ops
    a, p, n = ops.split(y_pred, 3, axis=-1)
    d_ap = ops.sqrt(ops.sum(ops.square(a - p), axis=-1))
    d_an = ops.sqrt(ops.sum(ops.square(a - n), axis=-1))
    return ops.mean(ops.maximum(d_ap - d_an + margin, 0.0))


@pytest.mark.parametrize("margin", [0.2, 1.0])
def test_explicit_triplets_match_classic_keras_recipe(margin):
    y, x = _triplets(10)
    L = _L()
    expected = to_numpy(_classic_triplet(keras.ops.convert_to_tensor(x), margin))
    assert expected > 0
    np.testing.assert_allclose(to_numpy(L.TripletLoss(mining="none", margin=margin)(y, x)), expected, **TOL)
    np.testing.assert_allclose(to_numpy(L.triplet_loss(y, x, mining="none", margin=margin)).mean(), expected, **TOL)
    _, g_pkg = value_and_grad(lambda e: L.TripletLoss(mining="none", margin=margin)(y, e), x)
    _, g_classic = value_and_grad(lambda e: _classic_triplet(e, margin), x)
    np.testing.assert_allclose(g_pkg, g_classic, rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------------ argument errors


def _raises(match, fn_name, cls_name, y, x, kwargs):
    L = _L()
    with pytest.raises(ValueError, match=match):
        getattr(L, fn_name)(y, x, **kwargs)
    with pytest.raises(ValueError, match=match):
        getattr(L, cls_name)(**kwargs)(y, x)


@pytest.mark.parametrize("case", FAMILIES, ids=FAMILY_IDS)
def test_bad_labels_shape_names_y_true(case):
    _, fn_name, cls_name, kwargs, _ = case
    y, x = grouped()
    _raises("y_true", fn_name, cls_name, np.stack([y, y], axis=1), x, kwargs)


@pytest.mark.parametrize("case", FAMILIES, ids=FAMILY_IDS)
def test_rank3_embeddings_name_y_pred(case):
    _, fn_name, cls_name, kwargs, _ = case
    y, x = grouped()
    _raises("y_pred", fn_name, cls_name, y, x.reshape(12, 5, 1), kwargs)


@pytest.mark.parametrize("case", FAMILIES, ids=FAMILY_IDS)
def test_unknown_distance_names_distance(case):
    _, fn_name, cls_name, kwargs, _ = case
    y, x = grouped()
    _raises("distance", fn_name, cls_name, y, x, {**kwargs, "distance": "bogus"})


SIMILARITY_CASES = sorted({(c[1], c[2]) for c in CASES if c[1] in SIMILARITY_LOSSES})


@pytest.mark.parametrize("fn_name,cls_name", SIMILARITY_CASES)
def test_similarity_losses_refuse_distances(fn_name, cls_name):
    """Similarity-based losses take distance in ("cosine", "dot") only."""
    y, x = grouped()
    _raises("distance", fn_name, cls_name, y, x, {"distance": "euclidean"})


@pytest.mark.parametrize("fn_name,cls_name", [("triplet_loss", "TripletLoss"), ("quadruplet_loss", "QuadrupletLoss")])
def test_unknown_mining_names_mining(fn_name, cls_name):
    y, x = grouped()
    _raises("mining", fn_name, cls_name, y, x, {"mining": "bogus"})


@pytest.mark.parametrize("fn_name,cls_name", [("triplet_loss", "TripletLoss"), ("quadruplet_loss", "QuadrupletLoss")])
def test_explicit_tuples_of_wrong_width_name_y_pred(fn_name, cls_name):
    x = np.random.default_rng(0).normal(size=(6, 10)).astype("float32")  # 10: neither 3D nor 4D
    _raises("y_pred", fn_name, cls_name, np.zeros(6, "int32"), x, {"mining": "none"})


@pytest.mark.parametrize("cls_name, kwargs", [
    ("TripletLoss", {"mining": "hard"}), ("SupConLoss", {}), ("NTXentLoss", {}), ("MultiSimilarityLoss", {}),
])
def test_large_integer_labels_stay_distinct(cls_name, kwargs):
    # float32 cannot tell 2**24 from 2**24 + 1: the class keeps integer labels as integers
    from keras_lossplus import losses as L

    labels = np.array([0, 1, 0, 1], "int64")
    big = labels + 2**24
    x = np.array([[0.0, 0.0], [5.0, 0.0], [0.0, 1.0], [5.0, 1.0]], "float32")
    loss = getattr(L, cls_name)(**kwargs)
    np.testing.assert_allclose(to_numpy(loss(big, x)), to_numpy(loss(labels, x)), rtol=1e-6, atol=1e-6)
