"""Class-id labels (`keras_lossplus.losses.labels`): NaN, infinite and
non-whole float labels are refused eagerly by every label-based loss and
layer, integer and whole-float labels work, and under XLA compilation (where
values cannot be checked) the losses still trace and compile.

The cases are enumerated from the families' `__all__`, so that a new
label-based loss is checked without being listed here."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_lossplus import layers as KL
from keras_lossplus import losses as L
from keras_lossplus.layers import heads
from keras_lossplus.losses import metric_learning, ordinal, segmentation
from keras_lossplus.losses.labels import check_integer_labels
from tests.backend_utils import BACKEND, XLA_BACKENDS, to_numpy, xla_compile

# metric-learning losses whose y_true is not a class id
NOT_CLASS_IDS = {
    "ContrastiveLoss": "y_true marks similar (1) / dissimilar (0) pairs of given distances",
    "MultipleNegativesRankingLoss": "y_true ignored unless mask_same_label=True (then checked: test_in_batch.py)",
    "CoSENTLoss": "y_true holds the pairs' similarity scores", "AnglELoss": "y_true holds the pairs' similarity scores",
    "MatryoshkaLoss": "a wrapper: its wrapped loss reads y_true",
}
ORDINAL_OPTIONS = {"WeightedKappaLoss": {"num_classes": 3}}

BAD = {"nan": np.nan, "inf": np.inf, "half": 0.5}
MESSAGE = r"`(y_true|labels)` must hold integer class labels \(whole numbers.*Received 1 invalid value\(s\)"


def _classes(module, base=keras.losses.Loss):
    return [
        (name, getattr(module, name)) for name in module.__all__
        if isinstance(getattr(module, name), type) and issubclass(getattr(module, name), base)
    ]


def _probabilities(shape, seed=0):
    z = np.random.default_rng(seed).normal(size=shape)
    e = np.exp(z - z.max(-1, keepdims=True))
    return (e / e.sum(-1, keepdims=True)).astype("float32")


def _loss_cases():
    """`(id, loss, labels, y_pred)`: a loss, good integer labels, its `y_pred`."""
    emb = np.random.default_rng(1).normal(size=(4, 3)).astype("float32")
    cases = [
        (name, cls(), np.array([0, 0, 1, 1], "int32"), emb)
        for name, cls in _classes(metric_learning) if name not in NOT_CLASS_IDS
    ]
    cases += [
        (name, cls(**ORDINAL_OPTIONS.get(name, {})), np.array([0, 1, 2, 1], "int32"),
         _probabilities((4, 3)) if name == "WeightedKappaLoss" else emb)
        for name, cls in _classes(ordinal)
    ]
    label_map = np.array([[[0, 1], [2, 1]], [[1, 0], [0, 2]]], "int32")
    cases += [(name, cls(mode="multiclass"), label_map, _probabilities((2, 2, 2, 3))) for name, cls in _classes(segmentation)]
    cases.append((
        "ClassBalancedLoss",
        L.ClassBalancedLoss(keras.losses.SparseCategoricalCrossentropy(), samples_per_class=[3, 2, 1]),
        np.array([0, 1, 2, 1], "int32"), _probabilities((4, 3)),
    ))
    return cases


LOSS_CASES = _loss_cases()
LOSS_IDS = [c[0] for c in LOSS_CASES]
HEADS = [(name, cls) for name, cls in _classes(KL, heads._MarginHead)]


def _bad(labels, value):
    y = labels.astype("float32")
    y.flat[1] = value
    return y


def test_the_cases_cover_every_family():
    assert {"TripletLoss", "ProxyAnchorLoss", "ProxyNCALoss", "SupConLoss", "CoralLoss", "CornLoss",
            "WeightedKappaLoss", "DiceLoss", "LovaszLoss"} <= set(LOSS_IDS)
    assert {"ArcFace", "CosFace", "SubCenterArcFace"} <= {name for name, _ in HEADS}


@pytest.mark.parametrize("bad", list(BAD), ids=list(BAD))
@pytest.mark.parametrize("name, loss, labels, y_pred", LOSS_CASES, ids=LOSS_IDS)
def test_bad_float_labels_raise_eagerly(name, loss, labels, y_pred, bad):
    y = _bad(labels, BAD[bad])
    with pytest.raises(ValueError, match=MESSAGE):
        loss(y, y_pred)
    fn = None if name == "ClassBalancedLoss" else type(loss).fn  # (its class wraps base_loss)
    if fn is not None:  # the functional form too
        with pytest.raises(ValueError, match=MESSAGE):
            fn(y, y_pred, **loss._options)


@pytest.mark.parametrize("name, loss, labels, y_pred", LOSS_CASES, ids=LOSS_IDS)
def test_integer_and_whole_float_labels_work(name, loss, labels, y_pred):
    as_int = to_numpy(loss(labels, y_pred))
    as_float = to_numpy(loss(labels.astype("float32"), y_pred))
    assert np.all(np.isfinite(as_int))
    np.testing.assert_allclose(as_float, as_int, rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(BACKEND not in XLA_BACKENDS, reason="XLA compilation: JAX and TensorFlow")
@pytest.mark.parametrize("name, loss, labels, y_pred", LOSS_CASES, ids=LOSS_IDS)
def test_nan_labels_compile_undetected(name, loss, labels, y_pred):
    """Under jit the values cannot be checked: tracing does not raise, and a
    NaN label gives a finite loss (it matches no class / no other label)."""
    compiled = xla_compile(lambda y, p: loss(y, p))
    value = to_numpy(compiled(_bad(labels, np.nan), y_pred))
    assert np.all(np.isfinite(value))
    np.testing.assert_allclose(to_numpy(compiled(labels.astype("float32"), y_pred)), to_numpy(loss(labels, y_pred)),
                               rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("bad", list(BAD), ids=list(BAD))
@pytest.mark.parametrize("name, cls", HEADS, ids=[h[0] for h in HEADS])
def test_margin_heads_refuse_bad_labels_in_training(name, cls, bad):
    head = cls(num_classes=3)
    emb = np.random.default_rng(2).normal(size=(4, 5)).astype("float32")
    labels = np.array([0, 1, 2, 1], "int32")
    with pytest.raises(ValueError, match=f"{name}: " + MESSAGE):
        head([emb, _bad(labels, BAD[bad])], training=True)
    np.testing.assert_allclose(to_numpy(head([emb, labels.astype("float32")], training=True)),
                               to_numpy(head([emb, labels], training=True)), rtol=1e-5, atol=1e-5)
    head([emb, _bad(labels, BAD[bad])])  # at inference the labels are not used


@pytest.mark.skipif(BACKEND not in XLA_BACKENDS, reason="XLA compilation: JAX and TensorFlow")
@pytest.mark.parametrize("name, cls", HEADS, ids=[h[0] for h in HEADS])
def test_margin_heads_compile_with_nan_labels(name, cls):
    head = cls(num_classes=3)
    emb = np.random.default_rng(2).normal(size=(4, 5)).astype("float32")
    labels = np.array([0, 1, 2, 1], "float32")
    head([emb, labels])  # build
    compiled = xla_compile(lambda e, y: head([e, y], training=True))
    nan = to_numpy(compiled(emb, _bad(labels, np.nan)))
    plain = to_numpy(head([emb, labels]))
    assert np.all(np.isfinite(nan))
    np.testing.assert_allclose(nan[1], plain[1], rtol=1e-5, atol=1e-5)  # the NaN row gets no margin


def test_center_penalty_takes_integer_labels_only():
    layer = KL.CenterPenalty(num_classes=2)
    emb = np.ones((2, 3), "float32")
    layer([emb, np.array([0, 1], "int32")])
    with pytest.raises(TypeError, match="integer class labels"):
        layer([emb, np.array([0.0, np.nan], "float32")])


def test_helper_passes_integers_and_whole_floats():
    check_integer_labels(np.array([0, 3, 7], "int64"))
    check_integer_labels(keras.ops.convert_to_tensor([0.0, 2.0, -1.0]))
    check_integer_labels([1.0, 2.0])
    with pytest.raises(ValueError, match=r"`labels` must hold integer class labels.*e\.g\. \[nan, inf\]"):
        check_integer_labels(np.array([0.0, np.nan, np.inf]), "labels")
