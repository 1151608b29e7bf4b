"""Focal, poly, asymmetric and F-beta losses: numpy / optax / Keras references
and the shared contract."""

import keras
import numpy as np
import optax
import pytest

from keras_lossplus import losses as L
from tests.backend_utils import BACKEND, to_numpy
from tests.contract import LossCase, contract_suite
from tests.losses import references as R

EPS = R.EPS
HIGH = float(np.float32(1 - EPS))  # the clip's upper bound as float32 computes it (1 - 1.19e-7)


# ------------------------------------------------------------------ references


def ref_focal(y, x, gamma=2.0, alpha=None, from_logits=False, mode="binary", label_smoothing=0.0, ignore_index=None):
    y = np.asarray(y, "float64")
    x = np.asarray(x, "float64")
    if mode == "multiclass":
        c = x.shape[-1]
        keep = np.ones(x.shape[:-1], bool)
        if y.ndim == x.ndim - 1:  # class ids
            keep = y != ignore_index
            y = np.eye(c)[np.where(keep, y, 0).astype(int)]
        y = y * (1 - label_smoothing) + label_smoothing / c
        if from_logits:
            p = R.softmax(x)
            logp = R.log_softmax(x)
        else:
            p = np.clip(x / np.maximum(x.sum(-1, keepdims=True), EPS), EPS, HIGH)
            logp = np.log(p)
        a = 1.0 if alpha is None else np.asarray(alpha)
        return np.where(keep, (-y * logp * (1 - p) ** gamma * a).sum(-1), 0.0)
    keep = y != ignore_index
    y = np.where(keep, y, 0.0)
    y = y * (1 - label_smoothing) + 0.5 * label_smoothing
    if from_logits:
        p = R.sigmoid(x)
        bce = -(y * R.log_sigmoid(x) + (1 - y) * R.log_sigmoid(-x))
    else:
        p = x
        pc = np.clip(p, EPS, HIGH)
        bce = -(y * np.log(pc) + (1 - y) * np.log(1 - pc))
    pt = y * p + (1 - y) * (1 - p)
    loss = (1 - pt) ** gamma * bce
    if alpha is not None:
        a = np.asarray(alpha)
        loss = loss * (y * a + (1 - y) * (1 - a))
    return np.where(keep, loss, 0.0).sum(-1) / np.maximum(keep.sum(-1), 1)


def ref_poly(y, x, epsilon=1.0, from_logits=True):
    if from_logits:  # the published implementation
        return np.asarray(optax.losses.poly_loss_cross_entropy(np.asarray(x), np.asarray(y), epsilon=epsilon))
    y, x = np.asarray(y, "float64"), np.asarray(x, "float64")
    # Keras' renormalisation and clip; the sum floored at EPS (documented: no 0 / 0)
    p = np.clip(x / np.maximum(np.sum(x, -1, keepdims=True), EPS), EPS, HIGH)
    return -(y * np.log(p)).sum(-1) + epsilon * (y * (1 - p)).sum(-1)


def ref_asymmetric(y, x, gamma_pos=0.0, gamma_neg=4.0, clip=0.05, from_logits=False):
    """The authors' AsymmetricLoss.forward (github.com/Alibaba-MIIL/ASL), per
    sample, divided by the number of labels."""
    y = np.asarray(y, "float64")
    p = R.sigmoid(x) if from_logits else np.asarray(x, "float64")
    xs_pos, xs_neg = p, 1 - p
    if clip > 0:
        xs_neg = np.minimum(xs_neg + clip, 1.0)
    loss = y * np.log(np.maximum(xs_pos, 1e-8)) + (1 - y) * np.log(np.maximum(xs_neg, 1e-8))
    if gamma_pos > 0 or gamma_neg > 0:
        pt = xs_pos * y + xs_neg * (1 - y)
        loss = loss * np.power(1 - pt, gamma_pos * y + gamma_neg * (1 - y))
    return -loss.sum(-1) / y.shape[-1]


def ref_f_beta(y, x, beta=1.0, from_logits=False, average="micro", sample_weight=None):
    p = R.sigmoid(x) if from_logits else np.asarray(x, "float64")
    y = np.asarray(y, "float64")
    w = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, "float64")
    w = w.reshape((-1,) + (1,) * (y.ndim - 1))
    axes = None if average == "micro" else tuple(range(y.ndim - 1))
    tp = (w * y * p).sum(axes)
    fp = (w * (1 - y) * p).sum(axes)
    fn = (w * y * (1 - p)).sum(axes)
    b2 = beta**2
    return 1 - np.mean((1 + b2) * tp / ((1 + b2) * tp + b2 * fn + fp + EPS))


def _ref(fn, **kw):
    return lambda y, x, **extra: fn(y, x, **kw, **extra)


# ------------------------------------------------------------------ cases

_logit_edges = {
    "logits_pm100": (np.array([[1.0], [0.0], [1.0], [0.0]]), np.array([[100.0], [-100.0], [-100.0], [100.0]])),
    "zeros": (np.zeros((4, 1)), np.zeros((4, 1))),
}
_prob_edges = {
    "probs_0_1": (np.array([[1.0], [0.0], [1.0], [0.0]]), np.array([[1.0], [0.0], [0.0], [1.0]])),
    "all_negative": (np.zeros((4, 1)), np.zeros((4, 1))),
}
_softmax_edges = {
    "logits_pm100": (np.eye(3)[[0, 1, 2]], np.array([[100.0, -100.0, 0.0], [-100.0, 100.0, 0.0], [100.0, -100.0, 0.0]])),
    "identical_logits": (np.eye(3)[[0, 1, 2]], np.zeros((3, 3))),
}


def focal_case(id, make, edges, activation, **kw):
    return LossCase(
        id=id, cls=L.FocalLoss, fn=L.focal_loss, kwargs=kw, reference=_ref(ref_focal, **kw),
        make_inputs=make, edge_inputs=edges, activation=activation,
        bad_args=[({"mode": "softmax"}, "mode"), ({"gamma": -1.0}, "gamma"),
                  ({"alpha": [0.1] * 7}, "alpha"), ({"label_smoothing": 2.0}, "label_smoothing")],
    )


CASES = [
    focal_case("focal_binary_logits", R.binary_logits(), _logit_edges, "linear", gamma=2.0, from_logits=True),
    focal_case("focal_binary_probs_alpha", R.binary_probs(), _prob_edges, "sigmoid", gamma=2.0, alpha=0.25),
    focal_case("focal_binary_gamma_half_smoothing", R.binary_logits(), _logit_edges, "linear",
               gamma=0.5, from_logits=True, label_smoothing=0.1),
    focal_case("focal_multilabel_alpha_per_class", R.binary_logits(classes=3),
               {"logits_pm100": (np.eye(3)[[0, 1, 2]], 100.0 * (2 * np.eye(3)[[0, 2, 1]] - 1))}, "linear",
               gamma=1.5, alpha=[0.2, 0.5, 0.8], from_logits=True, mode="multilabel"),
    focal_case("focal_multiclass_logits_alpha", R.one_hot_logits(classes=3), _softmax_edges, "linear",
               gamma=2.0, alpha=[0.25, 1.0, 2.0], from_logits=True, mode="multiclass", label_smoothing=0.1),
    focal_case("focal_multiclass_probs", R.one_hot_probs(classes=3),
               {"probs_0_1": (np.eye(3)[[0, 1, 2]], np.eye(3)[[0, 2, 1]])}, "softmax",
               gamma=0.5, mode="multiclass"),
    LossCase(
        id="poly_logits", cls=L.PolyLoss, fn=L.poly_loss, kwargs={"epsilon": 1.0, "from_logits": True},
        reference=_ref(ref_poly, epsilon=1.0), make_inputs=R.one_hot_logits(), edge_inputs=_softmax_edges,
        bad_args=[({"epsilon": -2.0}, "epsilon"), ({"epsilon": "big"}, "epsilon")],
    ),
    LossCase(
        id="poly_probs", cls=L.PolyLoss, fn=L.poly_loss, kwargs={"epsilon": 2.0, "from_logits": False},
        reference=_ref(ref_poly, epsilon=2.0, from_logits=False), make_inputs=R.one_hot_probs(),
        edge_inputs={"probs_0_1": (np.eye(3)[[0, 1, 2]], np.eye(3)[[0, 2, 1]])}, activation="softmax",
        bad_args=[({"epsilon": float("nan")}, "epsilon")],
    ),
    LossCase(
        id="asymmetric_probs", cls=L.AsymmetricLoss, fn=L.asymmetric_loss, kwargs={},
        reference=_ref(ref_asymmetric), make_inputs=R.binary_probs(classes=5),
        edge_inputs={"probs_0_1": (np.eye(3)[[0, 1, 2]], np.eye(3)[[0, 2, 1]]), "all_zero": (np.zeros((2, 3)), np.zeros((2, 3)))},
        activation="sigmoid",
        bad_args=[({"gamma_neg": -1.0}, "gamma_neg"), ({"gamma_pos": -0.5}, "gamma_pos"), ({"clip": 1.0}, "clip")],
    ),
    LossCase(
        id="asymmetric_logits_noclip", cls=L.AsymmetricLoss, fn=L.asymmetric_loss,
        kwargs={"gamma_pos": 1.0, "gamma_neg": 2.0, "clip": 0.0, "from_logits": True},
        reference=_ref(ref_asymmetric, gamma_pos=1.0, gamma_neg=2.0, clip=0.0, from_logits=True),
        make_inputs=R.binary_logits(classes=5),
        edge_inputs={"logits_pm100": (np.eye(3)[[0, 1, 2]], 100.0 * (2 * np.eye(3)[[0, 2, 1]] - 1))},
        bad_args=[({"clip": -0.1}, "clip")],
    ),
    LossCase(
        id="f_beta_micro", cls=L.FBetaLoss, fn=L.f_beta_loss, kwargs={"beta": 2.0},
        reference=_ref(ref_f_beta, beta=2.0), make_inputs=R.binary_probs(classes=3), batch_level=True,
        edge_inputs=_prob_edges, activation="sigmoid",
        bad_args=[({"beta": 0.0}, "beta"), ({"average": "weighted"}, "average")],
    ),
    LossCase(
        id="f_beta_macro_logits", cls=L.FBetaLoss, fn=L.f_beta_loss,
        kwargs={"beta": 0.5, "average": "macro", "from_logits": True},
        reference=_ref(ref_f_beta, beta=0.5, average="macro", from_logits=True),
        make_inputs=R.binary_logits(classes=3), batch_level=True, edge_inputs=_logit_edges,
        bad_args=[({"beta": -1.0}, "beta")],
    ),
]

# the (slow) fit-save-reload check once per class; every case's config
# round trip is checked by test_config_round_trip
TestContract = contract_suite(
    CASES, fit_ids={"focal_binary_logits", "poly_logits", "asymmetric_probs", "f_beta_micro"}
)


# ------------------------------------------------------------------ peers


@pytest.mark.parametrize("gamma", [0.0, 2.0, 3.5])
@pytest.mark.parametrize("from_logits", [True, False])
def test_focal_equals_keras_binary_focal(gamma, from_logits, rng):
    y = (rng.uniform(size=(16, 5)) < 0.3).astype("float32")
    x = rng.normal(size=(16, 5)).astype("float32") * 2
    if not from_logits:
        x = R.sigmoid(x).astype("float32")
    for alpha, smoothing in ((None, 0.0), (0.3, 0.0), (0.6, 0.2)):
        ours = L.FocalLoss(gamma=gamma, alpha=alpha, from_logits=from_logits, label_smoothing=smoothing)(y, x)
        theirs = keras.losses.BinaryFocalCrossentropy(
            gamma=gamma, alpha=alpha or 0.25, apply_class_balancing=alpha is not None,
            from_logits=from_logits, label_smoothing=smoothing,
        )(y, x)
        np.testing.assert_allclose(to_numpy(ours), to_numpy(theirs), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("from_logits", [True, False])
def test_focal_equals_keras_categorical_focal(from_logits, rng):
    y, x = R.one_hot_logits(batch=16, classes=5)(rng)
    if not from_logits:
        x = R.softmax(x).astype("float32")
    for gamma, alpha, smoothing in ((2.0, 0.25, 0.0), (1.0, 1.0, 0.1), (0.0, 0.5, 0.0)):
        ours = L.FocalLoss(gamma=gamma, alpha=alpha, from_logits=from_logits, mode="multiclass", label_smoothing=smoothing)
        theirs = keras.losses.CategoricalFocalCrossentropy(
            gamma=gamma, alpha=alpha, from_logits=from_logits, label_smoothing=smoothing
        )
        np.testing.assert_allclose(to_numpy(ours(y, x)), to_numpy(theirs(y, x)), rtol=1e-5, atol=1e-6)


def test_focal_equals_optax_sigmoid_focal(rng):
    y, x = R.binary_logits(batch=16, classes=4, scale=5.0)(rng)
    for alpha in (None, 0.25):
        theirs = np.asarray(optax.sigmoid_focal_loss(x, y, alpha=alpha, gamma=2.0)).mean(-1)
        ours = L.focal_loss(y, x, gamma=2.0, alpha=alpha, from_logits=True)
        np.testing.assert_allclose(to_numpy(ours), theirs, rtol=1e-5, atol=1e-6)


def test_focal_from_logits_is_exact_where_keras_clips():
    # On JAX and torch Keras passes sigmoid outputs through a 1e-7 clip; the logit-space form does not.
    y = np.array([[1.0]], "float32")
    x = np.array([[-30.0]], "float32")
    ours = float(to_numpy(L.focal_loss(y, x, gamma=0.0, from_logits=True))[0])
    np.testing.assert_allclose(ours, 30.0, rtol=1e-6)
    if BACKEND != "tensorflow":  # Keras' TF backend recovers the logits behind a sigmoid
        keras_value = float(to_numpy(keras.losses.binary_focal_crossentropy(y, x, gamma=0.0, from_logits=True))[0])
        np.testing.assert_allclose(keras_value, -np.log(1e-7), rtol=1e-4)


def test_poly_with_zero_epsilon_is_categorical_crossentropy(rng):
    y, x = R.one_hot_logits()(rng)
    ours = L.PolyLoss(epsilon=0.0, from_logits=True)(y, x)
    theirs = keras.losses.CategoricalCrossentropy(from_logits=True)(y, x)
    np.testing.assert_allclose(to_numpy(ours), to_numpy(theirs), rtol=1e-6)


def test_f_beta_perfect_and_worst_predictions():
    y = np.array([[1.0], [0.0], [1.0]], "float32")
    np.testing.assert_allclose(to_numpy(L.f_beta_loss(y, y)), 0.0, atol=1e-6)
    np.testing.assert_allclose(to_numpy(L.f_beta_loss(y, 1.0 - y)), 1.0, atol=1e-6)
    # all-negative batch predicted all-negative: finite, and no NaN
    zero = np.zeros((3, 1), "float32")
    assert np.isfinite(to_numpy(L.f_beta_loss(zero, zero)))


def test_f_beta_beta_trades_recall_against_precision():
    y = np.array([[1.0], [1.0], [0.0], [0.0]], "float32")
    high_recall = np.array([[0.9], [0.9], [0.9], [0.9]], "float32")  # FP heavy
    high_precision = np.array([[0.9], [0.1], [0.0], [0.0]], "float32")  # FN heavy
    f2 = L.FBetaLoss(beta=2.0)
    f05 = L.FBetaLoss(beta=0.5)
    assert float(to_numpy(f2(y, high_recall))) < float(to_numpy(f2(y, high_precision)))
    assert float(to_numpy(f05(y, high_precision))) < float(to_numpy(f05(y, high_recall)))


def test_batch_weights_must_be_per_sample(rng):
    y, x = R.binary_probs(classes=3)(rng)
    with pytest.raises(ValueError, match="sample_weight"):
        L.FBetaLoss()(y, x, sample_weight=np.ones((12, 3), "float32"))


def test_multiclass_mode_needs_two_classes():
    with pytest.raises(ValueError, match="multiclass"):
        L.focal_loss(np.ones((3, 1)), np.ones((3, 1), "float32"), mode="multiclass")


def test_binary_alpha_must_be_a_probability():
    with pytest.raises(ValueError, match="alpha"):
        L.FocalLoss(alpha=2.0)
    L.FocalLoss(alpha=2.0, mode="multiclass")  # a class weight may exceed 1 there


def test_f_beta_sequence_outputs_take_per_position_weights(rng):
    y = (rng.uniform(size=(4, 5, 3)) < 0.4).astype("float32")
    p = rng.uniform(size=(4, 5, 3)).astype("float32")
    w = rng.uniform(size=(4, 5)).astype("float32")
    flat_y, flat_p, flat_w = y.reshape(-1, 3), p.reshape(-1, 3), w.reshape(-1)
    for average in ("micro", "macro"):
        got = L.FBetaLoss(average=average)(y, p, sample_weight=w)
        np.testing.assert_allclose(to_numpy(got), ref_f_beta(flat_y, flat_p, average=average, sample_weight=flat_w), rtol=1e-5)
        # one weight per sample broadcasts over the positions
        got = L.FBetaLoss(average=average)(y, p, sample_weight=w[:, 0])
        expected = ref_f_beta(flat_y, flat_p, average=average, sample_weight=np.repeat(w[:, 0], 5))
        np.testing.assert_allclose(to_numpy(got), expected, rtol=1e-5)

