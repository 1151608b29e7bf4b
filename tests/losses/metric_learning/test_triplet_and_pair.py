"""The whole loss contract (tests/contract.py) for the metric-learning losses,
against the independent numpy references of tests/losses/metric_learning/references.py.

Peer checks (pytorch-metric-learning, the tensorflow-addons algorithm) are in
test_peers.py, the edge-case semantics in
test_semantics.py, which also covers the
remaining option combinations (soft margins, other distances, chunking)."""

from __future__ import annotations

import functools

import numpy as np

from keras_lossplus import losses as L
from tests.contract import LossCase, contract_suite
from tests.losses.metric_learning import references as R

# four classes of three, one of two and a singleton (an anchor without positive)
_LABELS = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 4, 0, 1], dtype="float32")


def _batch(rng, dim=5, scale=1.0):
    labels = rng.permutation(_LABELS)
    return labels, (scale * rng.normal(size=(len(labels), dim))).astype("float32")


def _tuples(parts):
    def make(rng):
        emb = rng.normal(size=(10, parts * 4)).astype("float32")
        return np.zeros(10, "float32"), emb

    return make


def _pairs(rng):
    return rng.integers(0, 2, size=10).astype("float32"), rng.uniform(0.0, 2.0, size=10).astype("float32")


_EDGES = {
    "one_class": (np.zeros(6, "float32"), np.random.default_rng(5).normal(size=(6, 5)).astype("float32")),
    "no_positive": (np.arange(6, dtype="float32"), np.random.default_rng(6).normal(size=(6, 5)).astype("float32")),
    "identical": (np.array([0, 0, 1, 1, 2, 2], "float32"), np.ones((6, 5), "float32")),
    "zeros": (np.array([0, 0, 1, 1, 2, 2], "float32"), np.zeros((6, 5), "float32")),
    "huge": (np.array([0, 0, 1, 1, 2, 2], "float32"), 1e4 * np.eye(6, 5, dtype="float32")),
}
_BAD = [
    ({"distance": "manhattan"}, "distance"),
    ({"chunk_size": 0}, "chunk_size"),
]


def _case(id, cls, fn, ref, kwargs, *, bad=(), make_inputs=_batch, batch_level=True, edges=None, **extra):
    return LossCase(
        id=id,
        cls=cls,
        fn=fn,
        kwargs=kwargs,
        reference=functools.partial(ref, **kwargs),
        make_inputs=make_inputs,
        edge_inputs=_EDGES if edges is None else edges,
        bad_args=list(_BAD) + list(bad),
        batch_level=batch_level,
        **extra,
    )


def _ref_no_chunk(ref):
    def call(y_true, y_pred, chunk_size=None, **kwargs):
        return ref(y_true, y_pred, **kwargs)

    return call


_triplet = _ref_no_chunk(R.ref_triplet_loss)
_margin_bad = [({"margin": -1.0}, "margin"), ({"mining": "random"}, "mining")]

CASES = [
    _case("triplet_semihard", L.TripletLoss, L.triplet_loss, _triplet, {"margin": 1.0, "mining": "semihard"}, bad=_margin_bad),
    _case("triplet_semihard_chunked_cosine", L.TripletLoss, L.triplet_loss, _triplet,
          {"margin": 0.2, "mining": "semihard", "distance": "cosine", "chunk_size": 5}),
    _case("triplet_hard", L.TripletLoss, L.triplet_loss, _triplet, {"margin": 0.5, "mining": "hard"}, bad=_margin_bad),
    _case("triplet_all", L.TripletLoss, L.triplet_loss, _triplet, {"margin": 1.0, "mining": "all"}, bad=_margin_bad),
    _case("triplet_none", L.TripletLoss, L.triplet_loss, _triplet, {"margin": 1.0, "mining": "none"},
          make_inputs=_tuples(3), batch_level=False, edges={}),
    _case("quadruplet_hard", L.QuadrupletLoss, L.quadruplet_loss, _ref_no_chunk(R.ref_quadruplet_loss),
          {"margin1": 1.0, "margin2": 0.5, "chunk_size": 6}, bad=[({"margin2": -0.1}, "margin2")]),
    _case("quadruplet_none", L.QuadrupletLoss, L.quadruplet_loss, _ref_no_chunk(R.ref_quadruplet_loss),
          {"margin1": 1.0, "margin2": 0.5, "mining": "none"}, make_inputs=_tuples(4), batch_level=False, edges={}),
    LossCase(
        id="contrastive", cls=L.ContrastiveLoss, fn=L.contrastive_loss, kwargs={"margin": 1.0},
        reference=functools.partial(R.ref_contrastive_loss, margin=1.0), make_inputs=_pairs,
        edge_inputs={"zero_distance": (np.array([1.0, 0.0], "float32"), np.zeros(2, "float32"))},
        bad_args=[({"margin": -1.0}, "margin")],
    ),
    _case("batch_contrastive", L.BatchContrastiveLoss, L.batch_contrastive_loss,
          _ref_no_chunk(R.ref_batch_contrastive_loss), {"pos_margin": 0.5, "neg_margin": 2.5},
          bad=[({"neg_margin": -1.0}, "neg_margin")]),
    _case("multi_similarity", L.MultiSimilarityLoss, L.multi_similarity_loss,
          _ref_no_chunk(R.ref_multi_similarity_loss), {"chunk_size": 5}, rtol=1e-4,
          bad=[({"alpha": 0.0}, "alpha"), ({"distance": "euclidean"}, "distance")]),
    _case("lifted_structure", L.LiftedStructureLoss, L.lifted_structure_loss,
          _ref_no_chunk(R.ref_lifted_structure_loss), {"margin": 1.0}, rtol=1e-4),
    _case("npair", L.NPairLoss, L.npair_loss, _ref_no_chunk(R.ref_npair_loss), {"distance": "dot"}, rtol=1e-4,
          bad=[({"distance": "euclidean"}, "distance")]),
    _case("supcon", L.SupConLoss, L.supcon_loss, _ref_no_chunk(R.ref_supcon_loss), {"temperature": 0.1}, rtol=1e-4,
          bad=[({"temperature": 0.0}, "temperature")]),
    _case("nt_xent_chunked", L.NTXentLoss, L.nt_xent_loss, _ref_no_chunk(R.ref_nt_xent_loss),
          {"temperature": 0.5, "chunk_size": 3}, rtol=1e-4),
    _case("soft_nearest_neighbor", L.SoftNearestNeighborLoss, L.soft_nearest_neighbor_loss,
          _ref_no_chunk(R.ref_soft_nearest_neighbor_loss), {"temperature": 2.0}, rtol=1e-4,
          bad=[({"temperature": -1.0}, "temperature")]),
]

# the (slow) fit-save-reload check on one loss of each kind: a mined triplet
# loss (while loop), a per-sample loss, a mined pair loss and a softmax loss;
# every class's config round trip is checked by test_config_round_trip
_FIT_IDS = {"triplet_semihard", "contrastive", "multi_similarity", "supcon"}
TestMetricLearningContract = contract_suite(CASES, fit_ids=_FIT_IDS)
