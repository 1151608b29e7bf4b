"""Margin heads (ArcFace, CosFace, SubCenterArcFace) and proxy layers
(ProxyAnchor, ProxyNCA): numpy references of their outputs, equality of the
cross-entropy of the heads' logits with pytorch-metric-learning (PML 2.9.0)
`ArcFaceLoss` / `CosFaceLoss` / `SubCenterArcFaceLoss` given the same weights,
finite gradients at the edge cases, saving (config and `.keras` in a fresh
process), compiled `fit`, and bad input."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_lossplus import layers as H
from tests.backend_utils import BACKEND, XLA_BACKENDS, to_numpy, value_and_grad

ROOT = Path(__file__).resolve().parents[2]
JIT = BACKEND in XLA_BACKENDS
B, D, C, K = 6, 4, 3, 2


# ------------------------------------------------------------------ numpy references


def _normalize(x, axis):
    x = np.asarray(x, "float64")
    return x / np.maximum(np.linalg.norm(x, axis=axis, keepdims=True), 1e-12)


def ref_cosine(emb, kernel):
    """Cosine (B, C) to each column of kernel (D, C) or max over sub-centers of (D, C, K)."""
    kernel = np.asarray(kernel, "float64")
    w = kernel.reshape(kernel.shape[0], -1)
    cos = np.clip(_normalize(emb, 1) @ _normalize(w, 0), -1.0, 1.0)
    if kernel.ndim == 3:
        cos = cos.reshape(len(cos), kernel.shape[1], kernel.shape[2]).max(-1)
    return cos


def ref_head_logits(kind, emb, labels, kernel, scale, margin, training):
    cos = ref_cosine(emb, kernel)
    if not training:
        return scale * cos
    labels = np.asarray(labels).reshape(-1)
    rows = np.arange(len(labels))
    target = cos[rows, labels]
    if kind == "cosface":
        new = target - margin
    else:  # ArcFace via the angle, PML's fallback beyond pi - m
        theta = np.arccos(target)
        new = np.where(theta <= math.pi - margin, np.cos(theta + margin), target - margin * math.sin(margin))
    out = cos.copy()
    out[rows, labels] = new
    return scale * out


def _inputs(rng, batch=B):
    emb = rng.normal(size=(batch, D)).astype("float32")
    labels = rng.integers(0, C, size=batch).astype("int32")
    return emb, labels


HEADS = {
    "arcface": lambda **kw: H.ArcFace(num_classes=C, **kw),
    "cosface": lambda **kw: H.CosFace(num_classes=C, **kw),
    "subcenter": lambda **kw: H.SubCenterArcFace(num_classes=C, sub_centers=K, **kw),
}


def _built(kind, rng, **kw):
    head = HEADS[kind](**kw)
    head.build([(None, D), (None,)])
    return head


def _kind(kind):
    return "cosface" if kind == "cosface" else "arcface"


# ------------------------------------------------------------------ values


@pytest.mark.parametrize("kind", list(HEADS))
def test_head_logits_match_numpy(kind, rng):
    head = _built(kind, rng, scale=10.0, margin=0.3)
    emb, labels = _inputs(rng)
    kernel = to_numpy(head.kernel)
    for training, lab in [(True, labels), (False, labels), (True, labels[:, None])]:
        got = to_numpy(head([emb, lab], training=training))
        expected = ref_head_logits(_kind(kind), emb, labels, kernel, 10.0, 0.3, training)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_arcface_fallback_beyond_pi_minus_margin():
    """theta + m > pi: target logit s (cos theta - m sin m), as PML / insightface."""
    head = H.ArcFace(num_classes=2, scale=1.0, margin=0.5, kernel_initializer="identity")
    emb = np.array([[-1.0, 0.05], [0.2, 1.0]], "float32")
    labels = np.array([0, 1], "int32")
    got = to_numpy(head([emb, labels], training=True))
    cos = ref_cosine(emb, np.eye(2))
    assert np.arccos(cos[0, 0]) > math.pi - 0.5
    np.testing.assert_allclose(got[0, 0], cos[0, 0] - 0.5 * math.sin(0.5), rtol=1e-5)
    np.testing.assert_allclose(got[1, 1], math.cos(np.arccos(cos[1, 1]) + 0.5), rtol=1e-5)


@pytest.mark.parametrize("kind", list(HEADS))
def test_no_margin_at_inference(kind, rng):
    head = _built(kind, rng, scale=5.0)
    emb, labels = _inputs(rng)
    plain = ref_cosine(emb, to_numpy(head.kernel)) * 5.0
    for training in (False, None):
        np.testing.assert_allclose(to_numpy(head([emb, labels], training=training)), plain, rtol=1e-5, atol=1e-6)
    assert not np.allclose(to_numpy(head([emb, labels], training=True)), plain)


def _pml_loss(kind, kernel, scale, margin):
    torch = pytest.importorskip("torch")
    pml = pytest.importorskip("pytorch_metric_learning.losses")
    kernel = np.asarray(kernel, "float64")
    if kind == "arcface":
        loss = pml.ArcFaceLoss(num_classes=C, embedding_size=D, margin=math.degrees(margin), scale=scale)
    elif kind == "cosface":
        loss = pml.CosFaceLoss(num_classes=C, embedding_size=D, margin=margin, scale=scale)
    else:
        loss = pml.SubCenterArcFaceLoss(
            num_classes=C, embedding_size=D, margin=math.degrees(margin), scale=scale, sub_centers=K
        )
        kernel = kernel.reshape(D, C * K)  # PML's W (D, C * K), class-major
    loss.W.data = torch.tensor(kernel)
    return lambda emb, labels: float(
        loss(torch.tensor(np.asarray(emb, "float64")), torch.tensor(np.asarray(labels, "int64"))).detach()
    )


@pytest.mark.parametrize("kind", list(HEADS))
@pytest.mark.parametrize("scale, margin", [(64.0, None), (16.0, 0.2)])
def test_cross_entropy_of_logits_equals_pml(kind, scale, margin, rng):
    kw = {"scale": scale} if margin is None else {"scale": scale, "margin": margin}
    head = _built(kind, rng, **kw)
    emb, labels = _inputs(rng, batch=8)
    emb[0] = -to_numpy(head.kernel).reshape(D, -1)[:, labels[0] * (K if kind == "subcenter" else 1)]  # theta near pi
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    ours = float(to_numpy(ce(labels, head([emb, labels], training=True))))
    pml = _pml_loss(kind, to_numpy(head.kernel), scale, head.margin)(emb, labels)
    np.testing.assert_allclose(ours, pml, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------ numerics


@pytest.mark.parametrize("kind", list(HEADS))
@pytest.mark.parametrize("edge", ["identical", "antipodal", "zeros", "same_rows"])
def test_finite_gradient_at_edge_cases(kind, edge, rng):
    head = HEADS[kind](kernel_initializer="ones" if edge == "same_rows" else "identity" if kind != "subcenter"
                       else "ones")
    head.build([(None, D), (None,)])
    kernel = to_numpy(head.kernel).reshape(D, -1)
    labels = np.array([0, 1, 2, 0], "int32")
    cols = labels * (K if kind == "subcenter" else 1)
    emb = {
        "identical": kernel[:, cols].T,  # cos = 1 with the target class
        "antipodal": -kernel[:, cols].T,  # cos = -1
        "zeros": np.zeros((4, D)),
        "same_rows": np.ones((4, D)),
    }[edge].astype("float32")
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    value, grad = value_and_grad(lambda x: ce(labels, head([x, labels], training=True)), emb)
    assert np.isfinite(value) and np.all(np.isfinite(grad)), (value, grad)


# ------------------------------------------------------------------ proxy layers


def test_proxy_layers_match_numpy(rng):
    emb = rng.normal(size=(B, D)).astype("float32")
    emb[1] = 0.0
    anchor, nca = H.ProxyAnchor(num_classes=C), H.ProxyNCA(num_classes=C)
    sims, neg_sq = to_numpy(anchor(emb)), to_numpy(nca(emb))
    pa, pn = to_numpy(anchor.proxies), to_numpy(nca.proxies)
    assert pa.shape == (C, D) and pn.shape == (C, D)
    np.testing.assert_allclose(sims, _normalize(emb, 1) @ _normalize(pa, 1).T, rtol=1e-5, atol=1e-6)
    x, p = _normalize(emb, 1), _normalize(pn, 1)
    expected = -((x[:, None, :] - p[None, :, :]) ** 2).sum(-1)
    np.testing.assert_allclose(neg_sq, expected, rtol=1e-5, atol=1e-5)
    value, grad = value_and_grad(lambda e: keras.ops.sum(anchor(e)) + keras.ops.sum(nca(e)),
                                 np.zeros((2, D), "float32"))
    assert np.isfinite(value) and np.all(np.isfinite(grad))


# ------------------------------------------------------------------ saving and fit


def test_config_round_trip():
    layers = [
        H.ArcFace(num_classes=5, scale=30.0, margin=0.4, kernel_regularizer="l2", name="a"),
        H.CosFace(num_classes=5, scale=20.0, margin=0.2, kernel_initializer="he_normal"),
        H.SubCenterArcFace(num_classes=4, sub_centers=2, margin=0.1),
        H.ProxyAnchor(num_classes=3, proxy_regularizer="l2"),
        H.ProxyNCA(num_classes=3),
    ]
    for layer in layers:
        config = layer.get_config()
        json.dumps(keras.saving.serialize_keras_object(layer))
        again = type(layer).from_config(config)
        assert again.get_config() == config
        restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
        assert type(restored) is type(layer) and restored.get_config() == config
    assert H.SubCenterArcFace(num_classes=4).get_config()["margin"] == 0.5
    assert H.CosFace(num_classes=4).get_config()["margin"] == 0.35


def _head_model():
    emb_in = keras.Input((5,), name="x")
    labels = keras.Input((), dtype="int32", name="labels")
    emb = keras.layers.Dense(D, name="embed")(emb_in)
    outputs = [
        H.ArcFace(num_classes=C, scale=8.0, name="arcface")([emb, labels]),
        H.CosFace(num_classes=C, scale=8.0, name="cosface")([emb, labels]),
        H.SubCenterArcFace(num_classes=C, scale=8.0, sub_centers=K, name="subcenter")([emb, labels]),
        H.ProxyAnchor(num_classes=C, name="proxy_anchor")(emb),
        H.ProxyNCA(num_classes=C, name="proxy_nca")(emb),
    ]
    return keras.Model([emb_in, labels], outputs)


_LOAD_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import keras, numpy as np
    import keras_lossplus  # noqa: F401  (registers the layers)
    model = keras.saving.load_model(sys.argv[1], compile=True)
    data = np.load(sys.argv[2])
    inputs = [data["x"], data["labels"]]
    out = {"predict": [keras.ops.convert_to_numpy(o).tolist() for o in model(inputs, training=False)],
           "train": [keras.ops.convert_to_numpy(o).tolist() for o in model(inputs, training=True)],
           "loss": type(model.loss[0]).__name__}
    print(json.dumps(out))
    """
)


def test_compiled_fit_then_save_and_load_in_fresh_process(tmp_path, rng):
    x = rng.normal(size=(16, 5)).astype("float32")
    labels = rng.integers(0, C, size=16).astype("int32")
    model = _head_model()
    from keras_lossplus.losses import ProxyAnchorLoss, ProxyNCALoss

    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer="adam", loss=[ce, ce, ce, ProxyAnchorLoss(), ProxyNCALoss()], jit_compile=JIT)
    history = model.fit([x, labels], [labels] * 5, batch_size=8, epochs=1, verbose=0).history
    assert np.all(np.isfinite(history["loss"]))
    assert np.all(np.isfinite(to_numpy(model.get_layer("arcface").kernel)))
    predicted = [to_numpy(o) for o in model([x, labels], training=False)]
    trained = [to_numpy(o) for o in model([x, labels], training=True)]
    model.save(tmp_path / "heads.keras")
    np.savez(tmp_path / "data.npz", x=x, labels=labels)
    out = subprocess.run(
        [sys.executable, "-c", _LOAD_SCRIPT, str(tmp_path / "heads.keras"), str(tmp_path / "data.npz")],
        capture_output=True, text=True, cwd=ROOT, env=dict(os.environ, KERAS_BACKEND=BACKEND), check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert loaded["loss"] == "SparseCategoricalCrossentropy"
    for ours, theirs in zip(predicted + trained, loaded["predict"] + loaded["train"]):
        np.testing.assert_allclose(np.asarray(theirs), ours, rtol=1e-6, atol=1e-6)


def test_mixed_precision_outputs_in_compute_dtype(rng):
    head = H.ArcFace(num_classes=C, dtype="mixed_float16")
    emb, labels = _inputs(rng)
    out = head([emb, labels], training=True)
    assert keras.backend.standardize_dtype(out.dtype) == "float16"
    assert keras.backend.standardize_dtype(head.kernel.dtype) == "float32"
    expected = ref_head_logits("arcface", emb, labels, to_numpy(head.kernel), 64.0, 0.5, True)
    np.testing.assert_allclose(to_numpy(out).astype("float64"), expected, rtol=2e-3, atol=0.1)


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize("kind", list(HEADS))
def test_head_bad_input(kind, rng):
    emb, labels = _inputs(rng)
    with pytest.raises(ValueError, match="labels"):
        HEADS[kind]()([emb, np.zeros((B, 2), "int32")])
    with pytest.raises(ValueError, match="labels"):
        HEADS[kind]()([emb, labels[:3]])
    with pytest.raises(ValueError, match="embeddings"):
        HEADS[kind]()([emb[:, None, :], labels])
    built = _built(kind, rng)
    with pytest.raises(ValueError, match="labels"):
        built([emb, np.zeros((B, 2), "int32")], training=True)
    with pytest.raises(ValueError, match="embeddings"):
        built([emb[:, None, :], labels])
    with pytest.raises(ValueError, match="num_classes"):
        H.ArcFace(num_classes=1)
    for arg, value in [("scale", -1.0), ("scale", 0.0)]:
        with pytest.raises(ValueError, match=arg):
            HEADS[kind](**{arg: value})
    with pytest.raises(ValueError, match="margin"):
        HEADS[kind](margin=-0.1)


def test_other_bad_arguments(rng):
    with pytest.raises(ValueError, match="margin"):
        H.ArcFace(num_classes=3, margin=4.0)
    with pytest.raises(ValueError, match="sub_centers"):
        H.SubCenterArcFace(num_classes=3, sub_centers=0)
    for cls in (H.CosFace, H.SubCenterArcFace, H.ProxyAnchor, H.ProxyNCA):
        with pytest.raises(ValueError, match="num_classes"):
            cls(num_classes=1)
    for cls in (H.ProxyAnchor, H.ProxyNCA):
        with pytest.raises(ValueError, match="embeddings"):
            cls(num_classes=3)(np.zeros((2, 3, 4), "float32"))
    with pytest.raises(ValueError, match="embeddings, labels"):
        H.ArcFace(num_classes=3)(np.zeros((2, 4), "float32"))
