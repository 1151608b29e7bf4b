"""The eager torch kernels of the triplet miners (`backend/torch_mining.py`,
`backend/torch_triplet.py`, `backend/torch_scratch.py`) against the
backend-neutral miners they stand in for.

On every backend: the kernels (pure torch, called directly) give the neutral
miners' `(value, count, coef)` and the neutral loss's value and gradient,
computed with `keras.ops` on the backend under test. On torch the neutral
path is the same loss with the kernels switched off. The cases reach the
kernels' corners: exact distance ties (integer grids, duplicates), zero
vectors, a batch of one class and of singletons, large classes (many slot
groups), several row blocks, sample weights, memory references, every
reducer and both margins.
"""

from __future__ import annotations

import numpy as np
import pytest

import keras_lossplus as klp
from keras_lossplus.losses.metric_learning import miners as neutral
from keras_lossplus.losses.metric_learning.references import memory_references
from keras_lossplus.losses.metric_learning.rows import Rows
from tests.backend_utils import BACKEND, to_numpy, value_and_grad

torch = pytest.importorskip("torch")
from keras_lossplus.backend import torch_mining as kernels  # noqa: E402
from keras_lossplus.backend import torch_scratch, torch_triplet  # noqa: E402

MINERS = {"semihard": (neutral.semihard_triplets, kernels.semihard_triplets),
          "all": (neutral.all_triplets, kernels.all_triplets)}


def batch(kind, rng):
    """Labels `(B,)` and float32 embeddings `(B, D)` of one named layout."""
    if kind == "pk":
        labels = np.repeat(np.arange(6), 4)
        x = rng.normal(size=(24, 5))
    elif kind == "grid":  # small integers: many exact distance ties
        labels = rng.integers(0, 4, size=20)
        x = rng.integers(-1, 2, size=(20, 3)).astype(float)
    elif kind == "duplicates":  # identical embeddings across and within classes
        labels = np.array([0, 0, 1, 1, 2, 2, 0, 1])
        x = np.repeat(rng.normal(size=(4, 3)), 2, axis=0)
    elif kind == "zeros":
        labels = np.array([0, 0, 1, 1, 2])
        x = np.zeros((5, 4))
    elif kind == "one_class":
        labels = np.zeros(6, int)
        x = rng.normal(size=(6, 3))
    elif kind == "singletons":
        labels = np.arange(7)
        x = rng.normal(size=(7, 3))
    elif kind == "large_classes":  # 2 classes of 40: 39 positives per anchor
        labels = np.repeat([0, 1], 40)
        rng.shuffle(labels)
        x = rng.normal(size=(80, 4))
    else:
        raise ValueError(kind)
    return labels.astype("int32"), x.astype("float32")


KINDS = ["pk", "grid", "duplicates", "zeros", "one_class", "singletons", "large_classes"]


BLOCK_SETTINGS = [None, 64]
"""The kernels run in their default row blocks, then in many small row blocks
and slot groups (`_BLOCK_ELEMENTS` and `_GROUP_ELEMENTS` of 64)."""


def small_blocks(monkeypatch, size):
    monkeypatch.setattr(torch_triplet, "_BLOCK_ELEMENTS", size or 1 << 18)
    monkeypatch.setattr(kernels, "_GROUP_ELEMENTS", size or 1 << 21)


@pytest.fixture
def neutral_only(monkeypatch):
    """The neutral code path on torch too (no kernels)."""
    from keras_lossplus.backend import torch as torch_backend

    monkeypatch.setattr(torch_backend, "MINER_KERNELS", {})
    monkeypatch.setattr(torch_backend, "triplet_block", None)


MINER_CASES = [("semihard", soft, nonzero) for soft in (False, True) for nonzero in (False, True)] + [
    ("all", soft, nonzero) for soft in (False, True) for nonzero in (None, False, True)]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mining, soft, nonzero", MINER_CASES)
def test_miner_kernel_matches_the_neutral_miner(rng, kind, mining, soft, nonzero, neutral_only, monkeypatch):
    labels, x = batch(kind, rng)
    rows = Rows(_tensor(x), _tensor(labels))
    d = rows.distances("euclidean")
    reference, kernel = MINERS[mining]
    expected = [to_numpy(t) for t in reference(rows, rows.row(_tensor(labels)), d, 0.3, soft, nonzero)]
    masks = [torch.from_numpy(to_numpy(m)) for m in (rows.pos, rows.neg, rows.valid)]
    for size in BLOCK_SETTINGS:
        small_blocks(monkeypatch, size)
        got = [t.numpy() for t in kernel(*masks, torch.from_numpy(to_numpy(d)), 0.3, soft, nonzero)]
        for name, e, g in zip(("value", "count", "coef"), expected, got):
            np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5, err_msg=f"{name}, blocks of {size}")


@pytest.mark.parametrize("kind", ["pk", "duplicates", "large_classes"])
@pytest.mark.parametrize("mining, soft, nonzero", MINER_CASES[:2] + MINER_CASES[4:5])
def test_miner_kernel_matches_the_neutral_miner_below_zero(rng, kind, mining, soft, nonzero, neutral_only):
    """A distance (a custom one, say) below 0 in places, with +0 and -0
    entries and exact ties: the kernels order the negative floats, -0 as +0,
    and break ties to the first column, as the neutral miner."""
    labels, x = batch(kind, rng)
    rows = Rows(_tensor(x), _tensor(labels))
    d = to_numpy(rows.distances("euclidean"))
    d = np.round(d - np.median(d), 1).astype("float32")  # below 0 in half the entries, many exact ties
    d[::3, ::4] = -0.0
    d[1::3, ::5] = 0.0
    reference, kernel = MINERS[mining]
    expected = [to_numpy(t) for t in reference(rows, rows.row(_tensor(labels)), _tensor(d), 0.3, soft, nonzero)]
    masks = [torch.from_numpy(to_numpy(m)) for m in (rows.pos, rows.neg, rows.valid)]
    got = [t.numpy() for t in kernel(*masks, torch.from_numpy(d), 0.3, soft, nonzero)]
    for name, e, g in zip(("value", "count", "coef"), expected, got):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5, err_msg=name)


def _tensor(x):
    import keras

    return keras.ops.convert_to_tensor(x)


CASES = [
    dict(mining="semihard"),
    dict(mining="semihard", soft=True),
    dict(mining="semihard", distance="cosine", margin=0.1),
    dict(mining="semihard", distance="squared_euclidean", reducer="avg_nonzero"),
    dict(mining="all", margin=0.3),
    dict(mining="all", soft=True),
    dict(mining="all", distance="cosine", reducer="mean"),
    dict(mining="all", distance="squared_euclidean", reducer="sum"),
    dict(mining="semihard", chunk_size=5, reducer="sum"),
    dict(mining="all", chunk_size=7, normalize=True),
]


def _loss(labels, x, options, sample_weight=None):
    return lambda e: klp.losses.triplet_loss(labels, e, sample_weight=sample_weight, **options)


def _by_hand(kind, options):
    """Cases `_kernel_value_and_grad` can run off torch: the default reducer,
    no chunks, no normalization; and not cosine on the grid, whose exact ties
    each backend's matmul rounds its own way."""
    plain = not ({"chunk_size", "reducer", "normalize"} & set(options))
    return plain and not (kind == "grid" and options.get("distance") == "cosine")


LOSS_CASES = [(k, o) for o in CASES for k in KINDS if BACKEND == "torch" or _by_hand(k, o)]


@pytest.mark.parametrize("kind, options", LOSS_CASES,
                         ids=[f"{k}-" + "-".join(f"{a}={b}" for a, b in o.items()) for k, o in LOSS_CASES])
def test_loss_with_kernels_matches_the_neutral_loss(rng, kind, options, monkeypatch):
    """Value and gradient of `triplet_loss` through `triplet_block` (torch
    autograd) equal the neutral loss's on the backend under test (on torch
    every case; elsewhere those `_by_hand` runs)."""
    labels, x = batch(kind, rng)
    weights = rng.uniform(0.5, 2.0, size=len(labels)).astype("float32")
    from keras_lossplus.backend import torch as torch_backend

    for size in BLOCK_SETTINGS:
        case = dict(options)
        if size and kind == "grid" and case.get("distance") == "cosine" and "chunk_size" not in case:
            # the kernel's 3-row blocks round the cosine matmul differently from
            # one 20-row matmul, and the grid's exact ties then fall the other
            # way: give the neutral loss the same blocks (the same roundings)
            case["chunk_size"] = size // len(labels)
        with monkeypatch.context() as patch:
            patch.setattr(torch_backend, "MINER_KERNELS", {})
            patch.setattr(torch_backend, "triplet_block", None)
            expected = value_and_grad(_loss(labels, x, case, weights), x)
        with monkeypatch.context() as patch:
            small_blocks(patch, size)
            got = _kernel_value_and_grad(labels, x, case, weights)
        np.testing.assert_allclose(got[0], expected[0], rtol=1e-5, atol=1e-6, err_msg=f"blocks of {size}")
        np.testing.assert_allclose(got[1], expected[1], rtol=1e-4, atol=1e-5, err_msg=f"blocks of {size}")
        assert np.isfinite(got[1]).all()


def _kernel_value_and_grad(labels, x, options, weights):
    """The loss through the torch kernels: on torch the loss itself; on the
    other backends `triplet_block` called by hand on the masks of `Rows`
    (in numpy), reduced as the loss's default reducer does."""
    if BACKEND == "torch":
        return value_and_grad(_loss(labels, x, options, weights), x)
    rows = Rows(_tensor(x), _tensor(labels), sample_weight=_tensor(weights))
    masks = [torch.from_numpy(to_numpy(m)) for m in (rows.pos, rows.neg, rows.valid, rows.weights)]
    leaf = torch.from_numpy(x).requires_grad_(True)
    metric = options.get("distance", "euclidean")
    soft = options.get("soft", False)
    margin = 0.0 if soft else options.get("margin", 1.0)
    nonzero = options["mining"] == "all" and not soft
    emb = leaf / leaf.norm(dim=1, keepdim=True).clamp_min(1e-12) if metric == "cosine" else leaf
    value, count = torch_triplet.triplet_block(options["mining"], emb, emb, *masks, metric, margin, soft, nonzero)
    loss = value / count if float(count) > 0 else value * 0.0
    (grad,) = torch.autograd.grad(loss, leaf)
    return loss.detach().numpy(), grad.numpy()


@pytest.mark.skipif(BACKEND != "torch", reason="memory references reach the kernels through the loss on torch")
@pytest.mark.parametrize("mining", ["semihard", "all"])
@pytest.mark.parametrize("size", BLOCK_SETTINGS)
def test_memory_references_match_the_neutral_loss(rng, mining, size, neutral_only, monkeypatch):
    """Anchors against a larger reference set with empty slots (the
    `CrossBatchMemory` hook): the same value and gradient with the kernels."""
    labels, x = batch("pk", rng)
    valid = _tensor(np.arange(len(labels)) < 20)

    def loss(e):
        with memory_references(8, valid):
            return klp.losses.triplet_loss(labels, e, mining=mining, margin=0.5)

    expected = value_and_grad(loss, x)
    monkeypatch.undo()
    small_blocks(monkeypatch, size)
    got = value_and_grad(loss, x)
    np.testing.assert_allclose(got[0], expected[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[1], expected[1], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("start, stop", [(0, None), (2, 5)])
def test_anchor_masks_match_the_neutral_masks(rng, kind, start, stop, monkeypatch):
    """The torch `anchor_masks` (pure torch, on every backend) give `Rows`'
    masks, counts and validity of a block as the neutral code does; `Rows`
    then builds `not_self` on first use, as the neutral code does."""
    from keras_lossplus.backend import torch as torch_backend

    labels, x = batch(kind, rng)
    hooked = Rows(_tensor(x), _tensor(labels), start, stop)
    monkeypatch.setattr(torch_backend, "anchor_masks", lambda *args: None)
    rows = Rows(_tensor(x), _tensor(labels), start, stop)
    names = ("pos", "neg", "positives", "valid")
    expected = [to_numpy(getattr(rows, name)) for name in names]
    t = torch.from_numpy(labels)
    got = torch_triplet.anchor_masks(t[start:stop], t, start)
    for name, e, g in zip(names, expected, got):
        assert g.dtype == (torch.int32 if name == "positives" else torch.bool), name
        np.testing.assert_array_equal(g.numpy(), e, err_msg=name)
    np.testing.assert_array_equal(to_numpy(hooked.not_self), to_numpy(rows.not_self))


def test_kernels_step_aside_where_they_do_not_apply():
    """float64 distances (and `torch.compile`) fall back to the neutral code."""
    d = torch.zeros((3, 3), dtype=torch.float64)
    masks = (torch.eye(3, dtype=torch.bool),) * 3
    assert kernels.semihard_triplets(masks[0], masks[1], masks[2][0], d, 0.1, False, False) is None
    assert kernels.all_triplets(masks[0], masks[1], masks[2][0], d, 0.1, False, None) is None
    e = torch.zeros((3, 2), dtype=torch.float64)
    assert torch_triplet.triplet_block("all", e, e, *masks[:2], masks[2][0], torch.ones(3), "euclidean",
                                 0.1, False, None) is None


def test_scratch_buffers_are_reused_and_bounded():
    """The CPU scratch space hands back views of one buffer per name, grown to
    the largest request only."""
    scratch = torch_scratch.Scratch()
    a = scratch.get("x", (4, 8), torch.int64, "cpu")
    b = scratch.get("x", (2, 3), torch.int64, "cpu")
    assert b.data_ptr() == a.data_ptr() and scratch.buffers[("x", torch.int64)].numel() == 32
    scratch.get("x", (8, 8), torch.int64, "cpu")
    assert scratch.buffers[("x", torch.int64)].numel() == 64
    big = scratch.get("x", (torch_scratch.SCRATCH_ELEMENTS + 1,), torch.int64, "cpu")  # not kept
    assert big.numel() == torch_scratch.SCRATCH_ELEMENTS + 1 and scratch.buffers[("x", torch.int64)].numel() == 64
