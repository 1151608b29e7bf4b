"""Focal and poly losses at the edges, and `FocalLoss(ignore_index=...)`
(issue 29): value and gradient against float64 references and their
finite differences at ties, zeros, bounds, +-100 and 1e4, eagerly and
compiled; the all-zero probabilities of `PolyLoss`; `ignore_index` against
segmentation_models_pytorch's own `FocalLoss`, the reduction over the
counted samples, and the refusals."""

import keras
import numpy as np
import pytest

from keras_lossplus import losses as L
from tests.backend_utils import to_numpy
from tests.losses import references as R
from tests.losses.classification.test_classification import EPS, ref_focal, ref_poly
from tests.losses.finite_differences import check_against_float64, values_and_grad
from tests.peers import smp_losses


# ------------------------------------------------------------------ float64 values and gradients at the edges


def ref_poly64(y, x, epsilon=1.0, from_logits=True):
    """Poly-1 in float64 numpy (optax, the contract's reference, runs in float32)."""
    if not from_logits:
        return ref_poly(y, x, epsilon, from_logits=False)
    y = np.asarray(y, "float64")
    return -(y * R.log_softmax(x)).sum(-1) + epsilon * (y * (1 - R.softmax(x))).sum(-1)


_Y3 = np.array([1.0, 0.0, 1.0])


def _sigmoid_rows(rng, y=_Y3):
    """Labels and logits (B, 3): ties at 0 (issue 29: a zero-initialised head
    with labels [1, 0, 1] got [-0.183, 0.016, -0.183] on JAX and
    [-0.083, 0, -0.083] on TF / torch for the gradient [-0.099, 0.099, -0.099]),
    +-100 and +-1e4 right and wrong, a mixed row, random."""
    sign = 2 * y - 1
    x = [np.zeros(3), 100 * sign, -100 * sign, 1e4 * sign, -1e4 * sign, [0.0, 100.0, -1e4], rng.normal(size=3) * 3]
    return np.tile(y, (len(x), 1)), np.array(x)


def _prob_rows(rng, y=_Y3):
    """Labels and probabilities (B, 3) at the bounds 0 and 1, a tie at 0.5, random."""
    x = [np.zeros(3), np.ones(3), y, 1 - y, np.full(3, 0.5), [0.0, 1.0, 0.5], rng.uniform(0.05, 0.95, 3)]
    return np.tile(y, (len(x), 1)), np.array(x)


def _softmax_rows(rng):
    """One-hot labels and logits (B, 3): ties, +-100 and 1e4 right and wrong, random."""
    y = np.eye(3)[[0, 1, 2, 0, 1, 2]]
    x = [np.zeros(3), [100.0, -100.0, 0.0], [100.0, -100.0, 0.0], [1e4, 0.0, -1e4], [0.0, 0.0, 1e4],
         rng.normal(size=3) * 2]
    return y, np.array(x)


def _simplex_rows(rng):
    """One-hot labels and probability rows (B, 3): exactly right, exactly wrong, uniform, random."""
    y = np.eye(3)[[0, 1, 2, 0, 2]]
    x = [np.eye(3)[0], np.eye(3)[0], np.full(3, 1 / 3), [0.5, 0.5, 0.0], R.softmax(rng.normal(size=3))]
    return y, np.array(x)


def _ignored_rows(rng):
    """Labels with ignored entries (-1), one row all ignored."""
    y, x = _sigmoid_rows(rng)
    y[[1, 4], 1] = -1.0
    y[5] = -1.0
    return y, x


def _ignored_ids(rng):
    """Class ids (B,) with ignored samples (255) against logits (B, 3)."""
    _, x = _softmax_rows(rng)
    return np.array([0.0, 255.0, 2.0, 0.0, 255.0, 1.0]), x


FLOAT64_CASES = {
    # id: (function options, rows, step of the differences)
    "focal_logits": ({"gamma": 2.0, "from_logits": True}, _sigmoid_rows, 1e-6),
    "focal_logits_gamma_half_smoothing": ({"gamma": 0.5, "from_logits": True, "label_smoothing": 0.1},
                                          _sigmoid_rows, 1e-6),
    "focal_multilabel_alpha": ({"gamma": 1.5, "alpha": [0.2, 0.5, 0.8], "from_logits": True, "mode": "multilabel"},
                               _sigmoid_rows, 1e-6),
    # probabilities: steps inside Keras' 1e-7 clip, where the clipped logarithm is flat
    "focal_probs_alpha": ({"gamma": 2.0, "alpha": 0.25}, _prob_rows, 1e-9),
    "focal_multiclass_logits": ({"gamma": 2.0, "alpha": [0.25, 1.0, 2.0], "from_logits": True, "mode": "multiclass",
                                 "label_smoothing": 0.1}, _softmax_rows, 1e-6),
    "focal_multiclass_probs": ({"gamma": 0.5, "mode": "multiclass"}, _simplex_rows, 1e-9),
    "focal_ignore_index": ({"gamma": 2.0, "alpha": 0.25, "from_logits": True, "ignore_index": -1},
                           _ignored_rows, 1e-6),
    "focal_multiclass_ids_ignore_index": ({"gamma": 2.0, "from_logits": True, "mode": "multiclass",
                                           "ignore_index": 255}, _ignored_ids, 1e-6),
    "poly_logits": ({"epsilon": 1.0, "from_logits": True}, _softmax_rows, 1e-6),
    "poly_probs": ({"epsilon": 2.0, "from_logits": False}, _simplex_rows, 1e-9),
}


@pytest.mark.parametrize("case", list(FLOAT64_CASES))
def test_value_and_gradient_match_float64_at_the_edges(case, rng):
    options, rows, step = FLOAT64_CASES[case]
    fn, reference = (L.poly_loss, ref_poly64) if case.startswith("poly") else (L.focal_loss, ref_focal)
    y_true, y_pred = rows(rng)
    check_against_float64(lambda t, p: fn(t, p, **options), lambda t, p: reference(t, p, **options),
                          y_true, y_pred, step=step)


def test_poly_all_zero_probabilities_give_the_clipped_value_and_zero_gradient():
    y = np.eye(3, dtype="float32")[[0, 2]]
    x = np.zeros((2, 3), "float32")
    values, grad = values_and_grad(lambda t, p: L.poly_loss(t, p, epsilon=1.0), y, x)
    np.testing.assert_allclose(values, [-np.log(EPS) + (1 - EPS)] * 2, rtol=1e-6)
    np.testing.assert_array_equal(grad, np.zeros_like(x))
    # the float64 reference is flat there: a step inside the clip changes nothing
    assert ref_poly(y, x + 1e-16, from_logits=False).tolist() == ref_poly(y, x, from_logits=False).tolist()
    # Keras' own categorical cross-entropy divides 0 by 0 here
    assert np.all(np.isnan(to_numpy(keras.losses.categorical_crossentropy(y, x))))


# ------------------------------------------------------------------ ignore_index


@pytest.mark.parametrize("alpha", [None, 0.25])
def test_focal_ignore_index_equals_smp_focal(alpha, rng):
    """segmentation_models_pytorch 0.6 `FocalLoss(mode, alpha, gamma, ignore_index)` from logits, run side
    by side: "binary" is ours on one-channel maps; smp's "multiclass" (a sigmoid focal term per class,
    one-vs-rest, on label maps) is ours in "multilabel" mode on the one-hot maps whose ignored pixels
    hold the ignore label in every channel."""
    import torch

    smp = smp_losses()
    logits = rng.normal(size=(2, 5, 6, 3)).astype("float32") * 2
    labels = rng.integers(0, 3, size=(2, 5, 6)).astype("float32")
    labels[rng.uniform(size=labels.shape) < 0.3] = 255
    labels[1, :2] = 255
    for mode in ("binary", "multiclass"):
        if mode == "binary":
            pred, target = logits[..., :1], np.where(labels == 255, 255, labels == 1).astype("float32")[..., None]
            torch_pred, torch_target = np.moveaxis(pred, -1, 1), target[..., 0]
        else:
            pred = logits
            target = np.where(labels[..., None] == 255, 255.0, np.eye(3)[np.where(labels == 255, 0, labels).astype(int)])
            torch_pred, torch_target = np.moveaxis(pred, -1, 1), labels.astype("int64")
        theirs = smp.FocalLoss(mode, alpha=alpha, gamma=2.0, ignore_index=255)(
            torch.from_numpy(np.ascontiguousarray(torch_pred)), torch.from_numpy(torch_target))
        ours = L.FocalLoss(gamma=2.0, alpha=alpha, from_logits=True, ignore_index=255,
                           mode="binary" if mode == "binary" else "multilabel")(target.astype("float32"), pred)
        np.testing.assert_allclose(float(to_numpy(ours)), float(theirs), rtol=1e-5, err_msg=mode)


def test_focal_ignore_index_reduction_counts_only_kept_samples(rng):
    y, x = _ignored_rows(rng)
    y, x = y.astype("float32"), x.astype("float32")
    per_sample = ref_focal(y, x, gamma=2.0, from_logits=True, ignore_index=-1)
    counted = np.any(y != -1, axis=-1)
    w = rng.uniform(0.5, 2.0, size=len(y)).astype("float32")
    for reduction, expected in (
        ("sum_over_batch_size", per_sample[counted].mean()),
        ("sum", per_sample.sum()),
        ("mean_with_sample_weight", (w * per_sample)[counted].sum() / w[counted].sum()),
        ("none", per_sample),
    ):
        loss = L.FocalLoss(gamma=2.0, from_logits=True, ignore_index=-1, reduction=reduction)
        weights = w if reduction == "mean_with_sample_weight" else None
        np.testing.assert_allclose(to_numpy(loss(y, x, sample_weight=weights)), expected, rtol=1e-5, atol=1e-7)


def test_focal_ignore_index_refuses_ambiguous_or_unknown_labels():
    x = np.zeros((2, 3), "float32")
    with pytest.raises(ValueError, match="ignore_index"):
        L.FocalLoss(ignore_index=1)
    with pytest.raises(TypeError, match="ignore_index"):
        L.FocalLoss(ignore_index=0.5)
    with pytest.raises(ValueError, match=r"`y_true` must hold values in \[0, 1\] or ignore_index=255"):
        L.focal_loss(np.array([[1.0, 0.0, -1.0]] * 2), x, ignore_index=255)
    with pytest.raises(ValueError, match="ignore_index.*class ids"):
        L.focal_loss(np.eye(3)[[0, 1]], x, mode="multiclass", ignore_index=255)
    with pytest.raises(ValueError, match=r"class ids in \[0, 2\]"):
        L.focal_loss(np.array([0.0, 3.0]), x, mode="multiclass", ignore_index=255)


def test_focal_multiclass_takes_class_ids(rng):
    y, x = R.one_hot_logits(classes=4)(rng)
    ids = np.argmax(y, -1).astype("float32")
    kw = {"gamma": 2.0, "alpha": [0.5, 1.0, 1.5, 2.0], "from_logits": True, "mode": "multiclass"}
    for labels in (ids, ids[:, None]):
        np.testing.assert_allclose(to_numpy(L.focal_loss(labels, x, **kw)), to_numpy(L.focal_loss(y, x, **kw)), rtol=1e-6)
