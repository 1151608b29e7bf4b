"""The numpy references of tests/losses/metric_learning/references.py checked against
published implementations, and the package's losses checked against the same
peers.

Peers:
  * pytorch-metric-learning (PML) 2.9.0, float64, on batches where every
    anchor is valid (PML has no valid-anchor rule of its own):
      - TripletMarginLoss (AvgNonZeroReducer)   == triplet_loss(mining="all")
      - TripletMarginLoss(smooth_loss=True)      computes softplus(d_ap - d_an + margin);
        the spec's soft "all" drops the margin, so they agree only at margin 0
        (checked there, and that the spec ignores `margin` when soft=True).
      - ContrastiveLoss(pos_margin, neg_margin)  == batch_contrastive_loss
      - MultiSimilarityLoss + MultiSimilarityMiner == multi_similarity_loss
      - SupConLoss                               == supcon_loss
      - NTXentLoss                               == nt_xent_loss
      - LiftedStructureLoss(neg_margin=m, pos_margin=0) == lifted_structure_loss
        (PML sums over ordered positive pairs and halves, as the spec's 0.5).
      - GeneralizedLiftedStructureLoss is NOT the spec's formula (one
        logsumexp over all positives and all negatives of the anchor), and
        PML's TripletMarginMiner("semihard") is NOT TensorFlow-Addons'
        semihard mining (it keeps every triplet with d_ap < d_an <= d_ap + margin
        and averages them, instead of taking, per positive, the nearest
        farther negative or else the farthest negative): neither is compared.
  * tensorflow-addons TripletSemiHardLoss / TripletHardLoss, which do not
    install next to Keras 3: their algorithm (tensorflow_addons/losses/triplet.py,
    the tiled (B*B) x B masked minimum) transcribed into numpy below.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.losses.metric_learning import references as R

SEEDS = (0, 1, 2)
REF_TOL = dict(rtol=1e-9, atol=1e-12)  # float64 reference vs float64 peer
PKG_TOL = dict(rtol=1e-5, atol=1e-6)  # float32 package vs float64 peer


def _pml():
    pytest.importorskip("pytorch_metric_learning")
    import torch
    from pytorch_metric_learning import distances, losses, miners

    return torch, losses, miners, distances


def _batch(seed, scale=1.0):
    return R.grouped_batch(np.random.default_rng(seed), classes=4, per_class=3, dim=5, scale=scale)


def _pml_value(loss, x, y, miner=None):
    torch, *_ = _pml()
    emb = torch.tensor(np.asarray(x, dtype="float64"))
    lab = torch.tensor(np.asarray(y, dtype="int64"))
    tuples = miner(emb, lab) if miner is not None else None
    return float(loss(emb, lab, tuples))


def _package(name):
    """The package's functional form `name`."""
    from keras_lossplus import losses as L

    return getattr(L, name)


def _to_float(x):
    import keras

    return float(keras.ops.convert_to_numpy(x))


# ------------------------------------------------------------------ PML peers


def _lp(normalize=False, power=1):
    _, _, _, distances = _pml()
    return distances.LpDistance(normalize_embeddings=normalize, p=2, power=power)


def _dot():
    _, _, _, distances = _pml()
    return distances.DotProductSimilarity(normalize_embeddings=False)


def _pml_case(kind, **kw):
    _, losses, miners, distances = _pml()
    if kind == "triplet":
        return losses.TripletMarginLoss(margin=kw["margin"], distance=kw["distance"]), None
    if kind == "triplet_smooth":
        return losses.TripletMarginLoss(margin=kw["margin"], smooth_loss=True, distance=kw["distance"]), None
    if kind == "contrastive":
        return losses.ContrastiveLoss(pos_margin=kw["pos"], neg_margin=kw["neg"], distance=kw["distance"]), None
    if kind == "ms":
        dist = kw.get("distance") or distances.CosineSimilarity()
        loss = losses.MultiSimilarityLoss(alpha=kw["alpha"], beta=kw["beta"], base=kw["base"], distance=dist)
        return loss, miners.MultiSimilarityMiner(epsilon=kw["epsilon"], distance=dist)
    if kind == "supcon":
        dist = kw.get("distance") or distances.CosineSimilarity()
        return losses.SupConLoss(temperature=kw["temperature"], distance=dist), None
    if kind == "ntxent":
        dist = kw.get("distance") or distances.CosineSimilarity()
        return losses.NTXentLoss(temperature=kw["temperature"], distance=dist), None
    if kind == "lifted":
        return losses.LiftedStructureLoss(neg_margin=kw["margin"], pos_margin=0, distance=kw["distance"]), None
    raise AssertionError(kind)


def _case(case_id, name, kwargs, kind, pml_kwargs, scale=1.0):
    """(id, reference/package name, spec kwargs, PML kind, thunk -> PML kwargs, embedding scale);
    the thunk defers building PML distances until PML is known to be importable."""
    return (case_id, name, kwargs, kind, pml_kwargs, scale)


TRIPLET, CONTRASTIVE, LIFTED = "triplet_loss", "batch_contrastive_loss", "lifted_structure_loss"
PML_CASES = [
    _case("triplet_all_m0.2", TRIPLET, dict(mining="all", margin=0.2), "triplet", lambda: dict(margin=0.2, distance=_lp())),
    _case("triplet_all_m1", TRIPLET, dict(mining="all", margin=1.0), "triplet", lambda: dict(margin=1.0, distance=_lp())),
    _case(
        "triplet_all_sq", TRIPLET, dict(mining="all", margin=1.0, distance="squared_euclidean"),
        "triplet", lambda: dict(margin=1.0, distance=_lp(power=2)), 0.5,
    ),
    _case(
        "triplet_all_norm", TRIPLET, dict(mining="all", margin=0.3, normalize=True),
        "triplet", lambda: dict(margin=0.3, distance=_lp(normalize=True)),
    ),
    _case(
        "triplet_soft_all_m0", TRIPLET, dict(mining="all", soft=True, margin=0.0),
        "triplet_smooth", lambda: dict(margin=0.0, distance=_lp()),
    ),
    # soft=True ignores the margin: still PML's smooth loss at margin 0
    _case(
        "triplet_soft_all_m0.7", TRIPLET, dict(mining="all", soft=True, margin=0.7),
        "triplet_smooth", lambda: dict(margin=0.0, distance=_lp()),
    ),
    _case("contrastive_0_1", CONTRASTIVE, dict(), "contrastive", lambda: dict(pos=0.0, neg=1.0, distance=_lp()), 0.4),
    _case(
        "contrastive_02_2", CONTRASTIVE, dict(pos_margin=0.2, neg_margin=2.0),
        "contrastive", lambda: dict(pos=0.2, neg=2.0, distance=_lp()), 0.6,
    ),
    _case(
        "contrastive_norm", CONTRASTIVE, dict(pos_margin=0.5, neg_margin=1.2, normalize=True),
        "contrastive", lambda: dict(pos=0.5, neg=1.2, distance=_lp(normalize=True)),
    ),
    _case(
        "ms_default", "multi_similarity_loss", dict(),
        "ms", lambda: dict(alpha=2.0, beta=50.0, base=0.5, epsilon=0.1),
    ),
    _case(
        "ms_other", "multi_similarity_loss", dict(alpha=1.0, beta=10.0, base=0.3, epsilon=0.3),
        "ms", lambda: dict(alpha=1.0, beta=10.0, base=0.3, epsilon=0.3),
    ),
    _case(
        "ms_dot", "multi_similarity_loss", dict(alpha=2.0, beta=5.0, base=0.2, epsilon=0.2, distance="dot"),
        "ms", lambda: dict(alpha=2.0, beta=5.0, base=0.2, epsilon=0.2, distance=_dot()), 0.4,
    ),
    _case("supcon_0.1", "supcon_loss", dict(temperature=0.1), "supcon", lambda: dict(temperature=0.1)),
    _case("supcon_0.5", "supcon_loss", dict(temperature=0.5), "supcon", lambda: dict(temperature=0.5)),
    _case(
        "supcon_dot", "supcon_loss", dict(temperature=0.5, distance="dot"),
        "supcon", lambda: dict(temperature=0.5, distance=_dot()), 0.5,
    ),
    _case("ntxent_0.07", "nt_xent_loss", dict(temperature=0.07), "ntxent", lambda: dict(temperature=0.07)),
    _case("ntxent_0.5", "nt_xent_loss", dict(temperature=0.5), "ntxent", lambda: dict(temperature=0.5)),
    _case(
        "ntxent_dot", "nt_xent_loss", dict(temperature=0.5, distance="dot"),
        "ntxent", lambda: dict(temperature=0.5, distance=_dot()), 0.5,
    ),
    _case("lifted_m1", LIFTED, dict(margin=1.0), "lifted", lambda: dict(margin=1.0, distance=_lp()), 0.5),
    _case("lifted_m2", LIFTED, dict(margin=2.0), "lifted", lambda: dict(margin=2.0, distance=_lp()), 0.8),
    _case(
        "lifted_norm", LIFTED, dict(margin=1.0, normalize=True),
        "lifted", lambda: dict(margin=1.0, distance=_lp(normalize=True)),
    ),
]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("case", PML_CASES, ids=[c[0] for c in PML_CASES])
def test_reference_matches_pml(case, seed):
    _, name, kwargs, kind, pml_kwargs, scale = case
    y, x = _batch(seed, scale)
    loss, miner = _pml_case(kind, **pml_kwargs())
    expected = _pml_value(loss, x, y, miner)
    got = getattr(R, "ref_" + name)(y, x, **kwargs)
    assert expected > 0  # a non-trivial batch
    np.testing.assert_allclose(got, expected, **REF_TOL)


@pytest.mark.parametrize("case", PML_CASES, ids=[c[0] for c in PML_CASES])
def test_package_matches_pml(case):
    _, name, kwargs, kind, pml_kwargs, scale = case
    fn = _package(name)
    y, x = _batch(0, scale)
    loss, miner = _pml_case(kind, **pml_kwargs())
    expected = _pml_value(loss, x, y, miner)
    np.testing.assert_allclose(_to_float(fn(y, x, **kwargs)), expected, **PKG_TOL)


def test_pml_smooth_triplet_keeps_the_margin():
    """Documents the one difference: PML's smooth triplet adds the margin inside
    softplus, the spec's (and TFA's, Hermans et al.'s) soft margin does not."""
    y, x = _batch(0)
    loss, _ = _pml_case("triplet_smooth", margin=0.5, distance=_lp())
    pml = _pml_value(loss, x, y)
    ref = R.ref_triplet_loss(y, x, mining="all", soft=True, margin=0.5)
    assert abs(pml - ref) > 1e-3


# ------------------------------------------------------------------ TFA transcription


def tfa_pairwise_distance_numpy(feature, squared=False):
    """tensorflow_addons.losses.metric_learning.pairwise_distance."""
    feature = np.asarray(feature, dtype="float64")
    d2 = (
        np.sum(np.square(feature), axis=1, keepdims=True)
        + np.sum(np.square(feature.T), axis=0, keepdims=True)
        - 2.0 * feature @ feature.T
    )
    d2 = np.maximum(d2, 0.0)
    error_mask = d2 <= 0.0
    d = d2 if squared else np.sqrt(d2 + error_mask * 1e-16)
    d = d * np.logical_not(error_mask)
    return d * (np.ones_like(d) - np.eye(feature.shape[0]))


def tfa_angular_distance_numpy(feature):
    """tensorflow_addons.losses.metric_learning.angular_distance."""
    feature = np.asarray(feature, dtype="float64")
    feature = feature / np.sqrt(np.maximum(np.sum(feature**2, axis=1, keepdims=True), 1e-12))
    return np.maximum(1 - feature @ feature.T, 1e-16)


def _tfa_pdist(embeddings, distance_metric):
    # Labels of this transcription (not TFA's strings): "L_2" is the SQUARED
    # Euclidean distance (TFA >= 0.11 "squared-L2"; 0.10 "L2"), "L_1" the plain
    # Euclidean distance, pairwise_distance(squared=False) (TFA >= 0.11 "L2";
    # 0.10 "L1"), "angular" 1 - cos.
    if distance_metric == "L_1":
        return tfa_pairwise_distance_numpy(embeddings, squared=False)
    if distance_metric == "L_2":
        return tfa_pairwise_distance_numpy(embeddings, squared=True)
    if distance_metric == "angular":
        return tfa_angular_distance_numpy(embeddings)
    return distance_metric(embeddings)


def _masked_maximum(data, mask, dim=1):
    axis_minimums = np.min(data, dim, keepdims=True)
    return np.max((data - axis_minimums) * mask, dim, keepdims=True) + axis_minimums


def _masked_minimum(data, mask, dim=1):
    axis_maximums = np.max(data, dim, keepdims=True)
    return np.min((data - axis_maximums) * mask, dim, keepdims=True) + axis_maximums


def tfa_triplet_semihard_numpy(y_true, y_pred, margin=1.0, distance_metric="L_2"):
    """tensorflow_addons.losses.triplet_semihard_loss, line by line in numpy."""
    labels = np.asarray(y_true).reshape(-1, 1)
    pdist_matrix = _tfa_pdist(y_pred, distance_metric)
    adjacency = np.equal(labels, labels.T)
    adjacency_not = np.logical_not(adjacency)
    batch_size = labels.size

    pdist_matrix_tile = np.tile(pdist_matrix, [batch_size, 1])
    mask = np.logical_and(
        np.tile(adjacency_not, [batch_size, 1]),
        np.greater(pdist_matrix_tile, np.reshape(pdist_matrix.T, [-1, 1])),
    )
    mask_final = np.reshape(
        np.greater(np.sum(mask.astype("float64"), 1, keepdims=True), 0.0),
        [batch_size, batch_size],
    )
    mask_final = mask_final.T

    adjacency_not = adjacency_not.astype("float64")
    mask = mask.astype("float64")

    # negatives_outside: smallest D_an where D_an > D_ap.
    negatives_outside = np.reshape(_masked_minimum(pdist_matrix_tile, mask), [batch_size, batch_size])
    negatives_outside = negatives_outside.T

    # negatives_inside: largest D_an.
    negatives_inside = np.tile(_masked_maximum(pdist_matrix, adjacency_not), [1, batch_size])
    semi_hard_negatives = np.where(mask_final, negatives_outside, negatives_inside)

    loss_mat = margin + pdist_matrix - semi_hard_negatives
    mask_positives = adjacency.astype("float64") - np.eye(batch_size)
    num_positives = np.sum(mask_positives)
    return float(np.sum(np.maximum(loss_mat * mask_positives, 0.0)) / num_positives)


def tfa_triplet_hard_numpy(y_true, y_pred, margin=1.0, soft=False, distance_metric="L_2"):
    """tensorflow_addons.losses.triplet_hard_loss, line by line in numpy."""
    labels = np.asarray(y_true).reshape(-1, 1)
    pdist_matrix = _tfa_pdist(y_pred, distance_metric)
    adjacency = np.equal(labels, labels.T)
    adjacency_not = np.logical_not(adjacency).astype("float64")
    hard_negatives = _masked_minimum(pdist_matrix, adjacency_not)
    batch_size = labels.size
    mask_positives = adjacency.astype("float64") - np.eye(batch_size)
    hard_positives = _masked_maximum(pdist_matrix, mask_positives)
    if soft:
        triplet_loss = np.log1p(np.exp(hard_positives - hard_negatives))
    else:
        triplet_loss = np.maximum(hard_positives - hard_negatives + margin, 0.0)
    return float(np.mean(triplet_loss))


TFA_DISTANCES = [("euclidean", "L_1"), ("squared_euclidean", "L_2"), ("cosine", "angular")]
TFA_CASES = [
    # id, spec kwargs, TFA function, TFA kwargs
    ("semihard_m1", dict(mining="semihard", margin=1.0), tfa_triplet_semihard_numpy, dict(margin=1.0)),
    ("semihard_m0.3", dict(mining="semihard", margin=0.3), tfa_triplet_semihard_numpy, dict(margin=0.3)),
    ("hard_m1", dict(mining="hard", margin=1.0), tfa_triplet_hard_numpy, dict(margin=1.0)),
    ("hard_m0.3", dict(mining="hard", margin=0.3), tfa_triplet_hard_numpy, dict(margin=0.3)),
    ("hard_soft", dict(mining="hard", soft=True, margin=0.3), tfa_triplet_hard_numpy, dict(margin=0.3, soft=True)),
]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("dist", TFA_DISTANCES, ids=[d[0] for d in TFA_DISTANCES])
@pytest.mark.parametrize("case", TFA_CASES, ids=[c[0] for c in TFA_CASES])
def test_reference_matches_tfa(case, dist, seed):
    _, kwargs, tfa, tfa_kwargs = case
    y, x = _batch(seed, scale=0.5)
    expected = tfa(y, x, distance_metric=dist[1], **tfa_kwargs)
    got = R.ref_triplet_loss(y, x, distance=dist[0], **kwargs)
    assert expected > 0
    np.testing.assert_allclose(got, expected, **REF_TOL)


@pytest.mark.parametrize("seed", SEEDS)
def test_semihard_batches_use_both_branches(seed):
    """The TFA comparison above is only meaningful if the batches contain
    positives with a farther negative (d* = nearest farther negative) and
    positives without one (d* = farthest negative)."""
    y, x = _batch(seed, scale=0.5)
    labels = list(y)
    d = R.distance_matrix(x)
    with_farther = without = 0
    for a in range(len(labels)):
        for p in R.positives(labels, a):
            if any(d[a, n] > d[a, p] for n in R.negatives(labels, a)):
                with_farther += 1
            else:
                without += 1
    assert with_farther > 0 and without > 0


@pytest.mark.parametrize("dist", TFA_DISTANCES, ids=[d[0] for d in TFA_DISTANCES])
@pytest.mark.parametrize("case", TFA_CASES, ids=[c[0] for c in TFA_CASES])
def test_package_matches_tfa(case, dist):
    _, kwargs, tfa, tfa_kwargs = case
    fn = _package("triplet_loss")
    y, x = _batch(1, scale=0.5)
    expected = tfa(y, x, distance_metric=dist[1], **tfa_kwargs)
    np.testing.assert_allclose(_to_float(fn(y, x, distance=dist[0], **kwargs)), expected, **PKG_TOL)
