"""Distance, miner and reducer objects (`klp.distances`, `klp.miners`,
`klp.reducers`): numpy references for the distances, pytorch-metric-learning
2.9 (float64, live, same distance / miner / reducer) for the losses they
configure, names and objects giving bitwise the same numbers, checks of the
options, compilation, and saving with a model (user-defined subclasses
included)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import ops

import keras_lossplus as klp
from keras_lossplus.losses.metric_learning import distances as dist_module
from keras_lossplus.losses.metric_learning.distance_weighted import sampling_weights
from tests.backend_utils import (
    BACKEND,
    XLA_BACKENDS,
    to_numpy,
    value_and_grad,
    xla_compile,
)
from tests.losses.metric_learning import references as R

D, M, L = klp.distances, klp.miners, klp.losses
TOL = {"rtol": 1e-5, "atol": 1e-6}


def _batch(seed=0, classes=4, per_class=3, dim=5):
    return R.grouped_batch(np.random.default_rng(seed), classes=classes, per_class=per_class, dim=dim)


# ------------------------------------------------------------------ distances against numpy


def _np_distance(name, a, b):
    diff = a[:, None, :] - b[None, :, :]
    cos = (a / np.linalg.norm(a, axis=1, keepdims=True)) @ (b / np.linalg.norm(b, axis=1, keepdims=True)).T
    return {
        "EuclideanDistance": np.sqrt((diff ** 2).sum(-1)),
        "SquaredEuclideanDistance": (diff ** 2).sum(-1),
        "CosineDistance": 1.0 - cos,
        "CosineSimilarity": cos,
        "DotProductSimilarity": a @ b.T,
        "ManhattanDistance": np.abs(diff).sum(-1),
    }[name]


NAMES = ["EuclideanDistance", "SquaredEuclideanDistance", "CosineDistance", "CosineSimilarity",
         "DotProductSimilarity", "ManhattanDistance"]


@pytest.mark.parametrize("name", NAMES)
def test_distances_match_numpy(name):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(4, 3)).astype("float32"), rng.normal(size=(5, 3)).astype("float32")
    d = getattr(D, name)()
    np.testing.assert_allclose(to_numpy(d.pairwise(a, b)), _np_distance(name, a, b), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(to_numpy(d.pair(a, b[:4])), np.diag(_np_distance(name, a, b[:4])), rtol=1e-5,
                               atol=1e-5)


def test_manhattan_gradient_is_the_sign_formula_and_zero_at_identical_points():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(6, 4)).astype("float32")
    x[3] = x[1]  # identical points
    g = rng.normal(size=(6, 6)).astype("float32")

    def f(e):
        return ops.sum(ops.convert_to_tensor(g) * D.ManhattanDistance().pairwise(e, e))

    value, grad = value_and_grad(f, x)
    signs = np.sign(x[:, None, :] - x[None, :, :])
    expected = (g[:, :, None] * signs).sum(1) - (g[:, :, None] * signs).sum(0)
    np.testing.assert_allclose(value, (g * np.abs(x[:, None] - x[None]).sum(-1)).sum(), rtol=1e-5)
    np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-5)
    assert np.isfinite(grad).all()


@pytest.mark.parametrize("budget, width", [(12, 1), (108, 3)])
def test_manhattan_and_pair_only_distances_are_built_in_blocks(monkeypatch, budget, width):
    """With a block budget of 12 (108) values, a 6 x 6 x 4 matrix takes blocks
    of 1 (3, zero-padded) features (Manhattan, value and gradient) or of rows
    (a `pair`-only distance)."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(6, 4)).astype("float32")
    g = rng.normal(size=(6, 6)).astype("float32")

    def l1(e):
        return ops.sum(ops.convert_to_tensor(g) * D.ManhattanDistance().pairwise(e, e))

    whole = value_and_grad(l1, x)
    chebyshev = D.CustomDistance(lambda u, v: ops.max(ops.abs(u - v), axis=-1))
    whole_cheb = to_numpy(chebyshev.pairwise(x, x))
    monkeypatch.setattr(dist_module, "_BLOCK_ELEMENTS", budget)
    assert dist_module._feature_width(ops.convert_to_tensor(x), ops.convert_to_tensor(x)) == width
    for blocked, expected in zip(value_and_grad(l1, x), whole):
        np.testing.assert_allclose(blocked, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(to_numpy(chebyshev.pairwise(x, x)), whole_cheb, rtol=1e-6)
    np.testing.assert_allclose(whole_cheb, np.abs(x[:, None] - x[None]).max(-1), rtol=1e-6)


def test_a_distance_must_define_pair_or_pairwise():
    class Nothing(D.Distance):
        pass

    with pytest.raises(NotImplementedError, match="override `pair` or `pairwise`"):
        Nothing().pairwise(np.zeros((2, 2), "float32"), np.zeros((2, 2), "float32"))


# ------------------------------------------------------------------ names and objects give the same numbers

SAME = [  # one per family and option (tests/losses/metric_learning/ checks the names' numbers themselves)
    (L.TripletLoss, {"mining": "all", "chunk_size": 5}, "distance", "cosine", D.CosineDistance()),
    (L.TripletLoss, {}, "mining", "semihard", M.SemiHardMiner()),
    (L.TripletLoss, {"soft": True}, "mining", "all", M.AllTripletsMiner()),
    (L.TripletLoss, {"mining": "hard"}, "reducer", None, "mean"),
    (L.QuadrupletLoss, {}, "distance", "squared_euclidean", D.SquaredEuclideanDistance()),
    (L.BatchContrastiveLoss, {}, "distance", "euclidean", D.EuclideanDistance()),
    (L.MultiSimilarityLoss, {}, "distance", "cosine", D.CosineSimilarity()),
    (L.NPairLoss, {}, "distance", "dot", D.DotProductSimilarity()),
]


@pytest.mark.parametrize("cls, base, option, name, obj", SAME,
                         ids=[f"{c.__name__}-{o}-{n}" for c, _, o, n, _ in SAME])
def test_name_and_object_give_bitwise_the_same_value_and_gradient(cls, base, option, name, obj):
    y, x = _batch(3)
    by_name, by_object = cls(**base, **{option: name}), cls(**base, **{option: obj})
    v1, g1 = value_and_grad(lambda e: by_name(y, e), x)
    v2, g2 = value_and_grad(lambda e: by_object(y, e), x)
    assert np.array_equal(v1, v2) and np.array_equal(g1, g2)


# ------------------------------------------------------------------ against pytorch-metric-learning


def _pml():
    pytest.importorskip("pytorch_metric_learning")
    import torch
    from pytorch_metric_learning import distances, losses, miners, reducers

    return torch, losses, miners, distances, reducers


def _pml_value_and_grad(loss, x, y, miner=None):
    torch = _pml()[0]
    emb = torch.tensor(np.asarray(x, dtype="float64"), requires_grad=True)
    lab = torch.tensor(np.asarray(y, dtype="int64"))
    value = loss(emb, lab, miner(emb, lab) if miner is not None else None)
    value.backward()
    return float(value.detach()), emb.grad.numpy()


def _compare(ours, peer, miner=None, seed=0, **batch):
    y, x = _batch(seed, **batch)
    v, g = value_and_grad(lambda e: ours(y, e), x)
    pv, pg = _pml_value_and_grad(peer, x, y, miner)
    assert pv > 0
    np.testing.assert_allclose(v, pv, **TOL)
    np.testing.assert_allclose(g, pg, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("seed", [0, 1])
def test_triplet_with_manhattan_distance_matches_pml(seed):
    _, losses, _, distances, _ = _pml()
    l1 = distances.LpDistance(p=1, normalize_embeddings=False)
    _compare(L.TripletLoss(margin=0.5, mining="all", distance=D.ManhattanDistance()),
             losses.TripletMarginLoss(margin=0.5, distance=l1), seed=seed)


def test_batch_contrastive_with_manhattan_distance_matches_pml():
    _, losses, _, distances, _ = _pml()
    l1 = distances.LpDistance(p=1, normalize_embeddings=False)
    _compare(L.BatchContrastiveLoss(pos_margin=1.0, neg_margin=4.0, distance=D.ManhattanDistance()),
             losses.ContrastiveLoss(pos_margin=1.0, neg_margin=4.0, distance=l1))


def test_ntxent_with_a_dot_product_object_matches_pml():
    _, losses, _, distances, _ = _pml()
    _compare(L.NTXentLoss(temperature=2.0, distance=D.DotProductSimilarity()),
             losses.NTXentLoss(temperature=2.0, distance=distances.DotProductSimilarity(normalize_embeddings=False)))


EASY_HARD = [("easy", "semihard"), ("semihard", "hard"), ("hard", "hard"), ("easy", "easy"), ("all", "hard"),
             ("hard", "all"), ("all", "all"), ("semihard", "easy")]


@pytest.mark.parametrize("pos, neg", EASY_HARD, ids=[f"{p}-{n}" for p, n in EASY_HARD])
def test_batch_easy_hard_miner_matches_pml(pos, neg):
    _, losses, miners, distances, _ = _pml()
    lp = distances.LpDistance(normalize_embeddings=False)
    ours = L.TripletLoss(margin=2.0, mining=M.BatchEasyHardMiner(pos, neg))
    peer = losses.TripletMarginLoss(margin=2.0, distance=lp)
    _compare(ours, peer, miners.BatchEasyHardMiner(pos_strategy=pos, neg_strategy=neg, distance=lp),
             per_class=4, seed=5)


def test_batch_easy_hard_ranges_manhattan_and_sum_reducer_match_pml():
    _, losses, miners, distances, reducers = _pml()
    l1 = distances.LpDistance(p=1, normalize_embeddings=False)
    ours = L.TripletLoss(margin=1.0, distance=D.ManhattanDistance(), reducer=klp.reducers.SumReducer(),
                         mining=M.BatchEasyHardMiner("hard", "all", allowed_pos_range=(0.0, 6.0),
                                                     allowed_neg_range=(2.0, 9.0)))
    peer = losses.TripletMarginLoss(margin=1.0, distance=l1, reducer=reducers.SumReducer())
    miner = miners.BatchEasyHardMiner(pos_strategy="hard", neg_strategy="all", allowed_pos_range=(0.0, 6.0),
                                      allowed_neg_range=(2.0, 9.0), distance=l1)
    _compare(ours, peer, miner, per_class=4, seed=6)


def test_mean_reducer_over_all_triplets_matches_pml():
    _, losses, _, distances, reducers = _pml()
    lp = distances.LpDistance(normalize_embeddings=False)
    _compare(L.TripletLoss(margin=0.5, mining="all", reducer="mean"),
             losses.TripletMarginLoss(margin=0.5, distance=lp, reducer=reducers.MeanReducer()))


def test_distance_weighted_weights_match_pml_formula():
    """The weights of PML's `DistanceWeightedMiner.mine` (normalized per row),
    transcribed in numpy, on normalized embeddings of dimension 5."""
    y, x = _batch(7)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    mat = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
    dim, cutoff, nonzero = x.shape[1], 0.5, 1.4
    m = np.maximum(mat, cutoff)
    log_w = (2.0 - dim) * np.log(m) - ((dim - 3) / 2) * np.log(1.0 - 0.25 * m ** 2)
    neg = y[:, None] != y[None, :]
    log_w = log_w * neg
    w = np.exp(log_w - log_w[np.isfinite(log_w)].max()) * neg * (m < nonzero)
    expected = w / w.sum(1, keepdims=True)
    ours = to_numpy(sampling_weights(ops.convert_to_tensor(mat.astype("float32")), ops.convert_to_tensor(neg),
                                     float(dim), cutoff, nonzero))
    np.testing.assert_allclose(ours / ours.sum(1, keepdims=True), expected, rtol=1e-4, atol=1e-6)


def test_distance_weighted_miner_draws_only_allowed_negatives_and_repeats_with_its_seed():
    """Anchors 0 and 1 (the only ones weighted) each have one negative
    closer than `nonzero_loss_cutoff` (the other is at distance 2, where the
    density is 0): the draw is forced, so the loss is the numpy triplet loss
    of those negatives (the mean over the positive ones)."""
    x = np.array([[1.0, 0.0], [0.96, 0.28], [0.6, 0.8], [-1.0, 0.0]], "float32")  # unit vectors
    y = np.array([0, 0, 1, 1], "int32")
    d = np.sqrt(((x[:, None].astype("float64") - x[None]) ** 2).sum(-1))
    assert d[0, 3] >= 1.4 and d[1, 3] >= 1.4 and d[0, 2] < 1.4 and d[1, 2] < 1.4
    loss = L.TripletLoss(margin=2.0, mining=M.DistanceWeightedMiner(seed=3))
    expected = np.mean([d[0, 1] - d[0, 2] + 2.0, d[1, 0] - d[1, 2] + 2.0])
    np.testing.assert_allclose(float(loss(y, x, sample_weight=[1.0, 1.0, 0.0, 0.0])), expected, rtol=1e-5)
    again = [float(L.TripletLoss(margin=0.2, mining=M.DistanceWeightedMiner(seed=11))(y, x)) for _ in range(2)]
    assert again[0] == again[1] and np.isfinite(again[0])


# ------------------------------------------------------------------ options


def test_unknown_names_wrong_types_and_wrong_kinds_are_refused():
    with pytest.raises(ValueError, match=r"argument `distance`.*'euclidean'.*`Distance` object"):
        L.TripletLoss(distance="manhattan")
    with pytest.raises(TypeError, match=r"Argument `mining` must be one of .* `Miner` object"):
        L.TripletLoss(mining=3)
    with pytest.raises(ValueError, match=r"argument `reducer`.*'avg_nonzero'"):
        L.TripletLoss(reducer="median")
    with pytest.raises(ValueError, match=r"`distance` of this loss must be a similarity"):
        L.NTXentLoss(distance=D.EuclideanDistance())
    with pytest.raises(ValueError, match=r"`distance` of this loss must be a distance"):
        klp.losses.triplet_loss([0, 0, 1, 1], np.zeros((4, 2), "float32"), distance=D.CosineSimilarity())
    with pytest.raises(ValueError, match="`pos_strategy` and `neg_strategy`"):
        M.BatchEasyHardMiner("semihard", "all")
    with pytest.raises(ValueError, match="`neg_strategy`"):
        M.BatchEasyHardMiner("easy", "medium")
    with pytest.raises(TypeError, match="`seed`"):
        M.DistanceWeightedMiner(seed="1")


# ------------------------------------------------------------------ compiled, chunked, saved


@pytest.mark.skipif(BACKEND not in XLA_BACKENDS, reason="XLA on jax and tensorflow")
def test_objects_compile_and_chunk_to_the_same_value(monkeypatch):
    y, x = _batch(9, per_class=4)
    monkeypatch.setattr(dist_module, "_BLOCK_ELEMENTS", 200)  # chunks of 5 x 16: blocks of 2 features, padded
    miner = M.BatchEasyHardMiner("semihard", "hard")
    eager = L.TripletLoss(distance=D.ManhattanDistance(), mining=miner)
    chunked = L.TripletLoss(distance=D.ManhattanDistance(), mining=miner, chunk_size=5)
    value = float(eager(y, x))
    assert value > 0
    np.testing.assert_allclose(float(xla_compile(lambda e: chunked(y, e))(x)), value, rtol=1e-6)
    grad = value_and_grad(lambda e: eager(y, e), x)[1]
    np.testing.assert_allclose(to_numpy(xla_compile(lambda e: value_and_grad_of(chunked, y, e))(x)), grad,
                               rtol=1e-5, atol=1e-6)
    if BACKEND == "tensorflow":  # the seed generator's variable is TF's own there
        dw = L.TripletLoss(mining=M.DistanceWeightedMiner(seed=1), normalize=True)
        assert np.isfinite(float(xla_compile(lambda e: dw(y, e))(x)))


def value_and_grad_of(loss, y, e):
    """The gradient of `loss(y, e)` inside a compiled function."""
    if BACKEND == "jax":
        import jax

        return jax.grad(lambda v: loss(y, v))(e)
    import tensorflow as tf

    with tf.GradientTape() as tape:
        tape.watch(e)
        value = loss(y, e)
    return tape.gradient(value, e)


@keras.saving.register_keras_serializable(package="test_pieces")
def elementwise_dot(x, y):
    return ops.sum(x * y, axis=-1)


@keras.saving.register_keras_serializable(package="test_pieces")
class ChebyshevDistance(D.Distance):
    """A user's distance: only `pair` overridden."""

    def pair(self, x, y):
        return ops.max(ops.abs(x - y), axis=-1)


@keras.saving.register_keras_serializable(package="test_pieces")
class ScaledHardMiner(M.Miner):
    """A user's miner: batch-hard with the margin scaled."""

    def __init__(self, scale=0.5):
        self.scale = scale

    def mine(self, rows, labels, d, margin, soft, nonzero):
        return M.HardMiner().mine(rows, labels, d, margin * self.scale, soft, nonzero)

    def get_config(self):
        return {"scale": self.scale}


def test_config_round_trip_of_every_object():
    for loss in (L.TripletLoss(distance=D.ManhattanDistance(), mining=M.BatchEasyHardMiner("hard", "all", (0, 3)),
                               reducer=klp.reducers.SumReducer()),
                 L.TripletLoss(mining=M.DistanceWeightedMiner(cutoff=0.4, seed=5), normalize=True),
                 L.SupConLoss(distance=D.CustomDistance(elementwise_dot, is_similarity=True)),
                 L.TripletLoss(distance=ChebyshevDistance(), mining=ScaledHardMiner(0.25))):
        config = loss.get_config()
        again = type(loss).from_config(config)
        assert again.get_config() == config
        import json
        json.dumps(config)


def test_user_defined_distance_and_miner_fit_compiled_and_load(tmp_path):
    y, x = _batch(10, per_class=4)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4)])
    loss = L.TripletLoss(margin=0.5, distance=ChebyshevDistance(), mining=ScaledHardMiner(0.5))
    model.compile(optimizer="sgd", loss=loss, jit_compile=BACKEND in XLA_BACKENDS)
    history = model.fit(x, y, batch_size=len(x), epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    path = tmp_path / "user.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.loss.get_config()["mining"], dict) or isinstance(loaded.loss, L.TripletLoss)
    assert isinstance(loaded.loss._options["mining"], ScaledHardMiner)
    assert loaded.loss._options["mining"].scale == 0.5
    np.testing.assert_allclose(loaded.evaluate(x, y, batch_size=len(x), verbose=0),
                               model.evaluate(x, y, batch_size=len(x), verbose=0), rtol=1e-5)


def test_built_in_objects_fit_and_load_in_a_fresh_process(tmp_path):
    from tests.fresh_load import load_in_fresh_process

    y, x = _batch(11, per_class=4)
    losses = {
        "manhattan_easy_hard": L.TripletLoss(distance=D.ManhattanDistance(),
                                             mining=M.BatchEasyHardMiner("easy", "semihard"), reducer="mean"),
        "distance_weighted": L.TripletLoss(margin=0.2, normalize=True, mining=M.DistanceWeightedMiner(seed=2)),
    }
    expected = {}
    for name, loss in losses.items():
        model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4)])
        model.compile(optimizer="sgd", loss=loss, jit_compile=BACKEND in XLA_BACKENDS)
        model.fit(x, y, batch_size=len(x), epochs=1, verbose=0)
        model.save(tmp_path / f"{name}.keras")
        np.savez(tmp_path / f"{name}.npz", x=x, y=y)
        expected[name] = loss.get_config()
    results = load_in_fresh_process(tmp_path)
    for name, config in expected.items():
        assert results[name]["loss_config"] == config
        assert np.isfinite(results[name]["evaluate"])
