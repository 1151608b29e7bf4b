"""Proxy-Anchor and ProxyNCA losses: the loss contract (tests/contract.py)
against numpy references, equality with pytorch-metric-learning (PML 2.9.0)
`ProxyAnchorLoss` / `ProxyNCALoss` given the same proxies, the documented
meaning of `sample_weight` for the batch-level Proxy-Anchor loss, stability
for large `alpha`, and bad input.

The compiled `fit` of a model holding the proxy layers with these losses, and
its `.keras` round trip, is in tests/layers/test_heads.py."""

from __future__ import annotations

import functools

import keras
import numpy as np
import pytest

from keras_lossplus import layers as H
from keras_lossplus import losses as L
from tests.backend_utils import to_numpy, value_and_grad
from tests.contract import LossCase, contract_suite

C, D = 5, 4


# ------------------------------------------------------------------ numpy references


def _logsumexp(x, axis):
    m = np.max(x, axis=axis, keepdims=True)
    return np.squeeze(m, axis) + np.log(np.sum(np.exp(x - m), axis=axis))


def ref_proxy_anchor(y_true, y_pred, margin=0.1, alpha=32.0, sample_weight=None):
    """Kim et al. 2020, sample weights multiplying each exp term (0 drops the sample)."""
    labels = np.asarray(y_true).reshape(-1).astype(int)
    s = np.asarray(y_pred, "float64")
    w = np.ones(len(labels)) if sample_weight is None else np.asarray(sample_weight, "float64").reshape(-1)
    pos_total, with_pos, neg_total = 0.0, 0, 0.0
    for p in range(s.shape[1]):
        pos = (labels == p) & (w > 0)
        neg = (labels != p) & (w > 0)
        if pos.any():
            with_pos += 1
            x = -alpha * (s[pos, p] - margin) + np.log(w[pos])
            pos_total += np.logaddexp(0.0, _logsumexp(x, 0))
        if neg.any():
            x = alpha * (s[neg, p] + margin) + np.log(w[neg])
            neg_total += np.logaddexp(0.0, _logsumexp(x, 0))
    return (pos_total / with_pos if with_pos else 0.0) + neg_total / s.shape[1]


def ref_proxy_nca(y_true, y_pred, softmax_scale=1.0):
    labels = np.asarray(y_true).reshape(-1).astype(int)
    z = softmax_scale * np.asarray(y_pred, "float64")
    log_p = z - _logsumexp(z, 1)[:, None]
    return -log_p[np.arange(len(labels)), labels]


# ------------------------------------------------------------------ contract


def _sims(rng, batch=10):
    labels = rng.integers(0, C - 1, size=batch).astype("float32")  # the last proxy has no positive
    return labels, rng.uniform(-1.0, 1.0, size=(batch, C)).astype("float32")


def _neg_sq(rng, batch=10):
    return rng.integers(0, C, size=batch).astype("float32"), -rng.uniform(0.0, 4.0, size=(batch, C)).astype("float32")


_EDGES = {
    "one_class": (np.zeros(6, "float32"), np.random.default_rng(5).uniform(-1, 1, size=(6, C)).astype("float32")),
    "zeros": (np.array([0, 1, 2, 0, 1, 2], "float32"), np.zeros((6, C), "float32")),
    "huge": (np.array([0, 1, 2, 0, 1, 2], "float32"),
             np.where(np.eye(6, C) > 0, -100.0, 100.0).astype("float32")),
    "single": (np.array([3.0], "float32"), np.full((1, C), 0.5, "float32")),
}


def _case(id, cls, fn, ref, kwargs, make_inputs, bad, batch_level, **extra):
    return LossCase(
        id=id, cls=cls, fn=fn, kwargs=kwargs, reference=functools.partial(ref, **kwargs),
        make_inputs=make_inputs, edge_inputs=_EDGES, bad_args=bad, batch_level=batch_level, **extra,
    )


_ANCHOR_BAD = [({"alpha": 0.0}, "alpha"), ({"alpha": -1.0}, "alpha"), ({"margin": float("nan")}, "margin")]
_NCA_BAD = [({"softmax_scale": 0.0}, "softmax_scale"), ({"softmax_scale": "big"}, "softmax_scale")]

CASES = [
    _case("proxy_anchor_m2_a16", L.ProxyAnchorLoss, L.proxy_anchor_loss, ref_proxy_anchor,
          {"margin": 0.2, "alpha": 16.0}, _sims, _ANCHOR_BAD, True, rtol=2e-5, atol=1e-5),
    _case("proxy_nca_scale3", L.ProxyNCALoss, L.proxy_nca_loss, ref_proxy_nca, {"softmax_scale": 3.0}, _neg_sq,
          _NCA_BAD, False),
]

TestContract = contract_suite(CASES)


# ------------------------------------------------------------------ pytorch-metric-learning


def _pml():
    torch = pytest.importorskip("torch")
    pml = pytest.importorskip("pytorch_metric_learning.losses")
    return torch, pml


def _batch(rng, batch=9):
    labels = np.array([0, 0, 1, 1, 1, 2, 0, 2, 1][:batch], "int32")  # proxies 3 and 4: no positive
    return labels, rng.normal(size=(batch, D)).astype("float32"), rng.normal(size=(C, D)).astype("float32")


@pytest.mark.parametrize("margin, alpha", [(0.1, 32.0), (0.25, 8.0)])
def test_proxy_anchor_equals_pml_value_and_gradient(margin, alpha, rng):
    torch, pml = _pml()
    labels, emb, proxies = _batch(rng)
    peer = pml.ProxyAnchorLoss(num_classes=C, embedding_size=D, margin=margin, alpha=alpha)
    peer.proxies.data = torch.tensor(proxies.astype("float64"))
    emb_t = torch.tensor(emb.astype("float64"), requires_grad=True)
    expected = peer(emb_t, torch.tensor(labels.astype("int64")))
    expected.backward()
    layer = H.ProxyAnchor(num_classes=C)
    layer.build((None, D))
    layer.proxies.assign(proxies)
    loss = L.ProxyAnchorLoss(margin=margin, alpha=alpha)
    value, grad = value_and_grad(lambda e: loss(labels, layer(e)), emb)
    np.testing.assert_allclose(value, float(expected.detach()), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grad, emb_t.grad.numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("softmax_scale", [1.0, 8.0])
def test_proxy_nca_equals_pml(softmax_scale, rng):
    torch, pml = _pml()
    labels, emb, proxies = _batch(rng)
    peer = pml.ProxyNCALoss(num_classes=C, embedding_size=D, softmax_scale=softmax_scale)
    peer.proxies.data = torch.tensor(proxies.astype("float64"))
    expected = float(peer(torch.tensor(emb.astype("float64")), torch.tensor(labels.astype("int64"))).detach())
    layer = H.ProxyNCA(num_classes=C)
    layer.build((None, D))
    layer.proxies.assign(proxies)
    got = float(to_numpy(L.ProxyNCALoss(softmax_scale=softmax_scale)(labels, layer(emb))))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ semantics


def test_proxy_anchor_sample_weight_counts_copies(rng):
    labels, sims = _sims(rng, batch=6)
    w = np.array([2.0, 1.0, 0.0, 1.0, 1.0, 1.0], "float32")
    weighted = to_numpy(L.proxy_anchor_loss(labels, sims, sample_weight=w))
    copies = np.array([0, 0, 1, 3, 4, 5])  # sample 0 twice, sample 2 dropped
    np.testing.assert_allclose(weighted, to_numpy(L.proxy_anchor_loss(labels[copies], sims[copies])), rtol=1e-5)
    np.testing.assert_allclose(to_numpy(L.proxy_anchor_loss(labels, sims, sample_weight=np.zeros(6))), 0.0)


def test_proxy_anchor_large_alpha_stays_finite(rng):
    labels, sims = _sims(rng)
    loss = L.ProxyAnchorLoss(alpha=1e4)
    value, grad = value_and_grad(lambda s: loss(labels, s), sims)
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    np.testing.assert_allclose(value, ref_proxy_anchor(labels, sims, alpha=1e4), rtol=1e-5)


def test_proxy_losses_reject_bad_shapes(rng):
    labels, sims = _sims(rng)
    for fn in (L.proxy_anchor_loss, L.proxy_nca_loss):
        with pytest.raises(ValueError, match="y_true"):
            fn(np.zeros((10, 2), "float32"), sims)
        with pytest.raises(ValueError, match="y_pred"):
            fn(labels, sims[:, :, None])
    with pytest.raises(ValueError, match="y_true"):
        L.ProxyNCALoss()(labels[:4, None, None], sims[:4])
    assert keras.saving.get_registered_name(L.ProxyAnchorLoss) == "keras_lossplus>ProxyAnchorLoss"
