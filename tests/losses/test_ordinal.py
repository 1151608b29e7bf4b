"""Ordinal regression: CORAL, CORN and weighted kappa against numpy
transcriptions of coral-pytorch's and tensorflow-addons' formulas, the rank
helpers, the `CoralOutput` layer, a small fit, and the shared contract."""

from __future__ import annotations

import functools

import keras
import numpy as np
import pytest

from keras_lossplus import layers as KL
from keras_lossplus import losses as L
from tests.backend_utils import to_numpy, value_and_grad
from tests.contract import LossCase, contract_suite
from tests.fresh_load import load_in_fresh_process
from tests.losses.references import log_sigmoid, sigmoid, softmax

K = 5  # classes in the contract cases


# ------------------------------------------------------------------ references


def _ranks(y):
    return np.rint(np.asarray(y, "float64")).reshape(-1).astype(int)


def ref_coral(y_true, y_pred, importance_weights=None):
    """coral-pytorch `coral_loss(logits, levels_from_labelbatch(y), importance_weights,
    reduction=None)`."""
    logits = np.asarray(y_pred, "float64")
    levels = (_ranks(y_true)[:, None] > np.arange(logits.shape[1])).astype("float64")
    term = log_sigmoid(logits) * levels + (log_sigmoid(logits) - logits) * (1 - levels)
    if importance_weights is not None:
        term = term * np.asarray(importance_weights, "float64")
    return -term.sum(axis=1)


def ref_corn(y_true, y_pred, sample_weight=None):
    """coral-pytorch `corn_loss`: task k on the samples with y > k - 1, target
    y > k, the total over the number of examples; sample weights scale each
    sample's terms and its count."""
    logits = np.asarray(y_pred, "float64")
    y = _ranks(y_true)
    w = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, "float64").reshape(-1)
    losses, examples = 0.0, 0.0
    for task in range(logits.shape[1]):
        mask = y > task - 1
        if not mask.any():
            continue
        target = (y[mask] > task).astype("float64")
        pred = logits[mask, task]
        term = log_sigmoid(pred) * target + (log_sigmoid(pred) - pred) * (1 - target)
        losses += -(w[mask] * term).sum()
        examples += w[mask].sum()
    return losses / examples if examples > 0 else 0.0


def ref_kappa(y_true, y_pred, num_classes, weightage="quadratic", epsilon=1e-6, sample_weight=None):
    """tensorflow-addons `WeightedKappaLoss.call`, line by line, with every row
    weighted and the batch size replaced by the weight sum."""
    y = np.asarray(y_true, "float64")
    if y.ndim == 1 or y.shape[-1] != num_classes:
        y = np.eye(num_classes)[_ranks(y)]
    p = np.asarray(y_pred, "float64")
    w = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, "float64").reshape(-1)
    if w.sum() == 0:
        return 0.0
    label_vec = np.arange(num_classes, dtype="float64")
    row_label_vec, col_label_vec = label_vec.reshape(1, -1), label_vec.reshape(-1, 1)
    col_mat, row_mat = np.tile(col_label_vec, (1, num_classes)), np.tile(row_label_vec, (num_classes, 1))
    weight_mat = np.abs(col_mat - row_mat) if weightage == "linear" else (col_mat - row_mat) ** 2
    cat_labels = y @ col_label_vec
    cat_label_mat = np.tile(cat_labels, (1, num_classes))
    row_label_mat = np.tile(row_label_vec, (len(y), 1))
    weight = np.abs(cat_label_mat - row_label_mat) if weightage == "linear" else (cat_label_mat - row_label_mat) ** 2
    numerator = (w[:, None] * weight * p).sum()
    label_dist = (w[:, None] * y).sum(axis=0, keepdims=True)
    pred_dist = (w[:, None] * p).sum(axis=0, keepdims=True)
    w_pred_dist = weight_mat @ pred_dist.T
    denominator = (label_dist @ w_pred_dist).sum() / w.sum()
    loss = numerator / denominator if denominator != 0 else 0.0
    return np.log(loss + epsilon)


# ------------------------------------------------------------------ inputs and cases


def ordinal_logits(batch=12, classes=K):
    def make(rng):
        y = rng.integers(0, classes, size=batch).astype("float32")
        return y, (2.0 * rng.normal(size=(batch, classes - 1))).astype("float32")

    return make


def class_probabilities(batch=12, classes=K, one_hot=True):
    def make(rng):
        labels = rng.integers(0, classes, size=batch)
        y = np.eye(classes, dtype="float32")[labels] if one_hot else labels.astype("float32")
        return y, softmax(rng.normal(size=(batch, classes))).astype("float32")

    return make


def _edge(y, p, batch=12):
    """An edge case with the contract inputs' batch size (on JAX every new
    shape is one more compilation)."""
    index = np.arange(batch) % len(y)
    return np.asarray(y, "float32")[index], np.asarray(p, "float32")[index]


_LOGIT_EDGES = {
    "huge": _edge([0, 4, 2, 1], [[100, -100, 100, -100]] * 4),
    "all_lowest": _edge([0], np.zeros((1, K - 1))),
    "all_highest": _edge([K - 1], np.full((1, K - 1), -100.0)),
}
_KAPPA_EDGES = {
    "perfect_one_class": _edge(np.eye(K)[[0]], np.eye(K)[[0]]),
    "perfect": _edge(np.eye(K)[[0, 1, 4]], np.eye(K)[[0, 1, 4]]),
    "uniform": _edge(np.eye(K)[[0, 3, 4]], np.full((3, K), 1.0 / K)),
}
_WEIGHTS = [1.0, 0.5, 2.0, 1.0]

CASES = [
    LossCase(
        id="coral", cls=L.CoralLoss, fn=L.coral_loss, kwargs={"importance_weights": _WEIGHTS},
        reference=functools.partial(ref_coral, importance_weights=_WEIGHTS), make_inputs=ordinal_logits(),
        edge_inputs=_LOGIT_EDGES,
        bad_args=[({"importance_weights": [1.0, -1.0, 1.0, 1.0]}, "importance_weights"),
                  ({"importance_weights": [1.0, 1.0]}, "importance_weights")],
    ),
    LossCase(
        id="corn", cls=L.CornLoss, fn=L.corn_loss, kwargs={}, reference=ref_corn, make_inputs=ordinal_logits(),
        edge_inputs=_LOGIT_EDGES, batch_level=True,
    ),
    LossCase(
        id="kappa_quadratic", cls=L.WeightedKappaLoss, fn=L.weighted_kappa_loss, kwargs={"num_classes": K},
        reference=functools.partial(ref_kappa, num_classes=K), make_inputs=class_probabilities(),
        edge_inputs=_KAPPA_EDGES, batch_level=True, activation="softmax", rtol=2e-5,
        bad_args=[({"weightage": "cubic"}, "weightage"), ({"epsilon": 0.0}, "epsilon"),
                  ({"num_classes": 1}, "num_classes"), ({"num_classes": 3}, "num_classes")],
    ),
    LossCase(
        id="kappa_linear_integer_labels", cls=L.WeightedKappaLoss, fn=L.weighted_kappa_loss,
        kwargs={"num_classes": K, "weightage": "linear", "epsilon": 1e-3},
        reference=functools.partial(ref_kappa, num_classes=K, weightage="linear", epsilon=1e-3),
        make_inputs=class_probabilities(one_hot=False), edge_inputs={}, batch_level=True, activation="softmax",
        rtol=2e-5,
    ),
]

TestOrdinalContract = contract_suite(CASES, fit_ids={"coral", "corn"})


# ------------------------------------------------------------------ beyond the contract


def test_coral_pytorch_examples_rank_helpers_and_label_checks():
    # coral-pytorch's documented examples: coral_loss -> 0.6920 (batch mean),
    # corn_label_from_logits -> [1, 3], proba_to_label -> [2, 0, 5]
    logits = np.array([[2.1, 1.8, -2.1, -1.8], [1.9, -1.0, -1.5, -1.3], [1.9, 1.8, 1.7, 1.6]], "float32")
    assert round(float(L.CoralLoss()([2, 1, 4], logits)), 4) == 0.692
    corn_logits = np.array([[14.152, -6.1942, 0.47710, 0.96850], [65.667, 0.303, 11.500, -4.524]], "float32")
    np.testing.assert_array_equal(to_numpy(L.corn_rank(corn_logits)), [1, 3])
    probas = np.array([[0.934, 0.861, 0.323, 0.492, 0.295], [0.496, 0.485, 0.267, 0.124, 0.058],
                       [0.985, 0.967, 0.920, 0.819, 0.506]])
    np.testing.assert_array_equal(to_numpy(L.coral_rank(np.log(probas / (1 - probas)).astype("float32"))), [2, 0, 5])
    rng = np.random.default_rng(3)
    x = (3 * rng.normal(size=(20, 6))).astype("float32")
    np.testing.assert_array_equal(to_numpy(L.coral_rank(x)), (sigmoid(x) > 0.5).sum(1))
    cumulative = np.cumprod(sigmoid(x), axis=1)
    np.testing.assert_allclose(to_numpy(L.corn_probabilities(x)), cumulative, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(to_numpy(L.corn_rank(x)), (cumulative > 0.5).sum(1))
    assert keras.backend.standardize_dtype(L.corn_rank(x).dtype) == "int32"
    # (B, 1) labels, float labels that hold integers; out-of-range ranks and level vectors are refused
    y = rng.integers(0, 7, size=20).astype("float32")
    np.testing.assert_allclose(to_numpy(L.coral_loss(y[:, None] + 1e-3, x)), ref_coral(y, x), rtol=1e-5)
    np.testing.assert_allclose(to_numpy(L.corn_loss(y[:, None], x)), ref_corn(y, x), rtol=1e-5)
    for fn in (L.coral_loss, L.corn_loss):
        for bad in (np.full(20, 7.0, "float32"), np.full(20, -1.0, "float32")):
            with pytest.raises(ValueError, match="y_true"):
                fn(bad, x)
        with pytest.raises(ValueError, match="y_true"):
            fn(np.ones((20, 6), "float32"), x)
        with pytest.raises(ValueError, match="y_pred"):
            fn(y, x[:, 0])
    with pytest.raises(ValueError, match="y_true"):
        L.WeightedKappaLoss(num_classes=K)(np.full(4, K, "float32"), np.full((4, K), 0.2, "float32"))


def test_kappa_label_forms_logits_and_weights_as_repeated_rows(rng):
    y, p = class_probabilities()(rng)
    labels = y.argmax(1).astype("float32")
    base = to_numpy(L.weighted_kappa_loss(y, p))
    for other in (labels, labels[:, None]):
        np.testing.assert_allclose(to_numpy(L.weighted_kappa_loss(other, p, num_classes=K)), base, rtol=1e-6)
    logits = np.log(p)
    np.testing.assert_allclose(to_numpy(L.weighted_kappa_loss(y, logits, from_logits=True)), base, rtol=1e-5)
    # the TFA docstring's example value
    tfa_y = np.array([[0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]], "float32")
    tfa_p = np.array([[0.1, 0.2, 0.6, 0.1], [0.1, 0.5, 0.3, 0.1], [0.8, 0.05, 0.05, 0.1], [0.01, 0.09, 0.1, 0.8]],
                     "float32")
    np.testing.assert_allclose(float(L.WeightedKappaLoss(num_classes=4)(tfa_y, tfa_p)), -1.1611925, rtol=1e-5)
    # an integer sample weight is the same as repeating the row; all-zero weights give 0
    w = np.array([2, 1, 0, 1, 3, 1, 1, 0, 1, 2, 1, 1], "float32")
    repeat = np.repeat(np.arange(len(w)), w.astype(int))
    yl, pl = ordinal_logits()(rng)
    for fn, (yt, yp) in ((L.weighted_kappa_loss, (y, p)), (L.corn_loss, (yl, pl))):
        np.testing.assert_allclose(
            to_numpy(fn(yt, yp, sample_weight=w)), to_numpy(fn(yt[repeat], yp[repeat])), rtol=1e-5, err_msg=fn.__name__
        )
        value, grad = value_and_grad(lambda z: fn(yt, z, sample_weight=np.zeros_like(w)), yp)
        assert value == 0.0 and np.all(grad == 0.0), fn.__name__


def test_coral_output_layer_config_and_bad_arguments():
    layer = KL.CoralOutput(num_classes=6, name="coral")
    out = layer(np.ones((3, 7), "float32"))
    assert tuple(out.shape) == (3, 5) and tuple(layer.kernel.shape) == (7, 1)
    np.testing.assert_allclose(to_numpy(layer.bias), np.arange(5, 0, -1) / 5, rtol=1e-6)
    # every column is the same projection plus its own bias
    projection = to_numpy(out) - to_numpy(layer.bias)
    np.testing.assert_allclose(projection, np.repeat(projection[:, :1], 5, axis=1), atol=1e-5)
    zero = KL.CoralOutput(num_classes=3, preinit_bias=False, kernel_regularizer="l2")
    zero.build((None, 4))
    np.testing.assert_array_equal(to_numpy(zero.bias), [0.0, 0.0])
    config = zero.get_config()
    again = KL.CoralOutput.from_config(config)
    assert again.get_config() == config and config["num_classes"] == 3 and config["preinit_bias"] is False
    assert keras.saving.get_registered_name(KL.CoralOutput) == "keras_lossplus>CoralOutput"
    assert KL.CoralOutput(num_classes=4).compute_output_shape((None, 8)) == (None, 3)
    mixed = KL.CoralOutput(num_classes=4, dtype="mixed_float16")
    assert keras.backend.standardize_dtype(mixed(np.ones((2, 3), "float32")).dtype) == "float16"
    assert keras.backend.standardize_dtype(mixed.kernel.dtype) == "float32"
    for bad in (1, 2.5, True):
        with pytest.raises(ValueError, match="num_classes"):
            KL.CoralOutput(num_classes=bad)


def _ordinal_data(rng, n=240, classes=K):
    x = rng.normal(size=(n, 4)).astype("float32")
    latent = x @ np.array([1.5, -1.0, 0.5, 2.0]) + 0.3 * rng.normal(size=n)
    y = np.digitize(latent, np.quantile(latent, np.linspace(0, 1, classes + 1)[1:-1])).astype("float32")
    return x, y


def test_coral_and_corn_fit_beat_chance_and_the_coral_model_reloads(rng, tmp_path):
    x, y = _ordinal_data(rng)
    coral = keras.Sequential([keras.Input((4,)), KL.CoralOutput(num_classes=K)])
    corn = keras.Sequential([keras.Input((4,)), keras.layers.Dense(K - 1)])
    for model, loss, rank in ((coral, L.CoralLoss(), L.coral_rank), (corn, L.CornLoss(), L.corn_rank)):
        model.compile(optimizer=keras.optimizers.Adam(0.05), loss=loss)
        model.fit(x, y, batch_size=60, epochs=25, verbose=0)
        accuracy = float(np.mean(to_numpy(rank(model.predict(x, verbose=0))) == y))
        assert accuracy > 0.5, (type(loss).__name__, accuracy)  # chance: 0.2
    bias = to_numpy(coral.layers[0].bias)
    assert np.all(np.diff(bias) < 0)  # the thresholds stay ordered
    # the layer and the loss load back in a process that never constructed them
    coral.save(tmp_path / "coral.keras")
    np.savez(tmp_path / "coral.npz", x=x, y=y)
    reloaded = load_in_fresh_process(tmp_path)["coral"]
    assert reloaded["loss_class"] == "CoralLoss"
    for got, expected in zip(reloaded["weights"], coral.get_weights()):
        np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-6)
    expected = float(coral.evaluate(x, y, batch_size=len(x), verbose=0))
    np.testing.assert_allclose(reloaded["evaluate"], expected, rtol=1e-5, atol=1e-6)
