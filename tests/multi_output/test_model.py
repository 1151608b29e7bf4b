"""MultiOutputModel: the total loss, name mapping, missing labels, logging,
saving and bad input, on every backend."""

import copy

import keras
import numpy as np
import pytest

import keras_lossplus as klp
from tests.backend_utils import BACKEND, to_numpy
from tests.multi_output.helpers import JIT, LOSSES, WEIGHTS, build, data, weights_of

GRADIENT_METHODS = ["gradnorm", "pcgrad", "cagrad", "mgda", "nash_mtl", "imtl", "gradvac", "aligned_mtl", "db_mtl"]
ALL_METHODS = ["static", "uncertainty", "dwa", "rlw", "famo"] + GRADIENT_METHODS


def compile_both(ours, plain, optimizer=lambda: keras.optimizers.SGD(0.1), **kwargs):
    ours.compile(optimizer(), loss=LOSSES, loss_weights=WEIGHTS, jit_compile=JIT, **kwargs)
    plain.compile(optimizer(), loss=LOSSES, loss_weights=WEIGHTS, jit_compile=JIT)


# ------------------------------------------------------------- equals Keras


@pytest.mark.parametrize("with_sample_weight", [False, True])
def test_static_equals_keras_compile_over_five_steps(rng, with_sample_weight):
    x, y = data(rng, 20)
    sample_weight = {"reg": rng.uniform(size=20), "cls": rng.uniform(size=20), "bin": np.ones(20)}
    ours, plain = build(klp.MultiOutputModel, penalty=True), build(keras.Model, penalty=True)
    compile_both(ours, plain)
    kwargs = {"sample_weight": sample_weight} if with_sample_weight else {}
    # the loss value on a batch
    np.testing.assert_allclose(
        ours.evaluate(x, y, verbose=0, return_dict=True, **kwargs)["loss"],
        plain.evaluate(x, y, verbose=0, return_dict=True, **kwargs)["loss"],
        rtol=1e-6,
    )
    # the gradient: one SGD step of learning rate 1 moves each weight by -gradient
    before = weights_of(ours)
    one_ours, one_plain = build(klp.MultiOutputModel, penalty=True), build(keras.Model, penalty=True)
    compile_both(one_ours, one_plain, optimizer=lambda: keras.optimizers.SGD(1.0))
    one_ours.train_on_batch(x, y, **kwargs)
    one_plain.train_on_batch(x, y, **kwargs)
    for a, b, w0 in zip(weights_of(one_ours), weights_of(one_plain), before):
        np.testing.assert_allclose(w0 - a, w0 - b, rtol=1e-6, atol=1e-6)
    # weights and logged losses after 5 steps
    h_ours = ours.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0, **kwargs).history
    h_plain = plain.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0, **kwargs).history
    for a, b in zip(weights_of(ours), weights_of(plain)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    for key in ("loss", "reg_loss", "cls_loss", "bin_loss"):
        np.testing.assert_allclose(h_ours[key], h_plain[key], rtol=1e-6, err_msg=key)


def test_list_outputs_dict_loss_mapped_by_output_name(rng):
    x, y = data(rng)
    ours, plain = build(klp.MultiOutputModel, outputs="list"), build(keras.Model, outputs="list")
    loss, weights = dict(LOSSES), dict(WEIGHTS)
    compile_both(ours, plain)  # dict losses for a list-output model: keyed by the output layers' names
    assert loss == LOSSES and weights == WEIGHTS  # the user's dicts are not mutated
    y_list = [y["reg"], y["cls"], y["bin"]]
    a = ours.evaluate(x, y_list, verbose=0, return_dict=True)
    b = plain.evaluate(x, y_list, verbose=0, return_dict=True)
    np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-6)
    c = ours.evaluate(x, y, verbose=0, return_dict=True)  # dict targets for list outputs, by name
    np.testing.assert_allclose(c["loss"], b["loss"], rtol=1e-6)


def test_from_model_and_subclassed_mixin(rng):
    x, y = data(rng)
    plain = build(keras.Model)
    wrapped = klp.MultiOutputModel.from_model(plain)
    assert [v.path for v in wrapped.trainable_variables] == [v.path for v in plain.trainable_variables]
    wrapped.compile("sgd", loss=LOSSES, loss_weights=WEIGHTS)
    plain.compile("sgd", loss=LOSSES, loss_weights=WEIGHTS)
    np.testing.assert_allclose(wrapped.evaluate(x, y, verbose=0)[0], plain.evaluate(x, y, verbose=0)[0], rtol=1e-6)

    class TwoHeads(klp.MultiOutputTraining, keras.Model):
        def __init__(self):
            super().__init__()
            self.trunk = keras.layers.Dense(4)
            self.a = keras.layers.Dense(2)
            self.b = keras.layers.Dense(1)

        def call(self, inputs):
            h = self.trunk(inputs)
            return {"reg": self.a(h), "bin": self.b(h)}

    model = TwoHeads()
    model.compile("sgd", loss={"reg": "mse", "bin": LOSSES["bin"]}, weighting="pcgrad")
    history = model.fit(x, {"reg": y["reg"], "bin": y["bin"]}, epochs=1, verbose=0).history
    assert {"reg_loss", "bin_loss", "reg_weight"} <= set(history)
    assert np.isfinite(history["loss"]).all()
    with pytest.raises(TypeError, match="functional"):
        klp.MultiOutputModel.from_model(TwoHeads())


# ------------------------------------------------------------ missing labels


def test_nan_targets_leave_only_that_output(rng):
    x, y = data(rng, 12)
    y_nan = copy.deepcopy(y)
    y_nan["reg"][::3] = np.nan  # 4 of 12 unlabelled
    y_nan["reg"][1, 0] = np.nan  # one value of a row missing: the row is unlabelled
    labelled = np.isfinite(y_nan["reg"]).all(axis=1)
    model = build(klp.MultiOutputModel)
    model.compile("sgd", loss=LOSSES, loss_weights=WEIGHTS)
    logs = model.evaluate(x, y_nan, batch_size=12, verbose=0, return_dict=True)
    pred = to_numpy(model(x)["reg"])
    expected = np.mean(np.mean((pred - y["reg"]) ** 2, axis=1)[labelled])
    np.testing.assert_allclose(logs["reg_loss"], expected, rtol=1e-5)
    full = model.evaluate(x, y, batch_size=12, verbose=0, return_dict=True)
    np.testing.assert_allclose(logs["cls_loss"], full["cls_loss"], rtol=1e-6)  # other outputs untouched
    np.testing.assert_allclose(logs["bin_loss"], full["bin_loss"], rtol=1e-6)


def test_batch_level_loss_with_missing_labels_is_that_of_the_labelled_samples(rng):
    # a batch-level loss applies the labelled mask in its own formula: no further rescaling
    from keras_lossplus.multi_output.output_loss import labelled_loss

    y = (rng.uniform(size=(12, 1)) > 0.5).astype("float32")
    pred = rng.uniform(0.05, 0.95, size=(12, 1)).astype("float32")
    y_nan = y.copy()
    y_nan[::3] = np.nan
    labelled = np.isfinite(y_nan[:, 0])
    loss = klp.losses.FBetaLoss(beta=2.0)
    np.testing.assert_allclose(to_numpy(labelled_loss(loss, y_nan, pred)), to_numpy(loss(y[labelled], pred[labelled])),
                               rtol=1e-5)


def test_missing_labels_with_sample_weight_and_ignore_value(rng):
    x, y = data(rng, 12)
    y["cls"][:5] = -1
    sw = rng.uniform(0.5, 2.0, size=12)
    model = build(klp.MultiOutputModel)
    model.compile(
        "sgd",
        loss=LOSSES,
        ignore_value={"cls": -1},
        loss_weights=WEIGHTS,
    )
    logs = model.evaluate(x, y, sample_weight={"reg": np.ones(12), "cls": sw, "bin": np.ones(12)}, batch_size=12, verbose=0, return_dict=True)
    logits = to_numpy(model(x)["cls"]).astype("float64")
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    ce = -logp[np.arange(12), np.maximum(y["cls"], 0)]
    keep = y["cls"] >= 0
    np.testing.assert_allclose(logs["cls_loss"], np.sum((ce * sw)[keep]) / keep.sum(), rtol=1e-5)


@pytest.mark.parametrize("weighting", ["static", "uncertainty", "pcgrad"])
def test_a_batch_without_labels_gives_zero_and_finite_training(rng, weighting):
    x, y = data(rng, 8)
    y["reg"][:] = np.nan
    model = build(klp.MultiOutputModel)
    model.compile(keras.optimizers.SGD(0.1), loss=LOSSES, weighting=weighting, jit_compile=JIT)
    history = model.fit(x, y, batch_size=8, epochs=2, verbose=0).history
    assert history["reg_loss"] == [0.0, 0.0]
    assert all(np.isfinite(w).all() for w in weights_of(model))
    assert np.isfinite(history["loss"]).all()


# -------------------------------------------------------------------- logging


@pytest.mark.parametrize("jit", [False, True] if JIT else [False])
@pytest.mark.parametrize("weighting", ["static", "uncertainty", "pcgrad", "famo"])
def test_history_logs_every_term(rng, jit, weighting):
    x, y = data(rng, 16)
    model = build(klp.MultiOutputModel, penalty=True)
    model.compile(
        keras.optimizers.SGD(0.05),
        loss=LOSSES,
        loss_weights=WEIGHTS,
        weighting=weighting,
        metrics={"cls": ["accuracy"]},
        jit_compile=jit,
    )
    history = model.fit(x, y, batch_size=16, epochs=2, verbose=0, validation_data=(x, y)).history
    names = ["reg", "cls", "bin"]
    expected = {"loss", "l1", "cls_accuracy"} | {f"{n}{s}" for n in names for s in ("_loss", "_weighted_loss", "_weight")}
    assert expected <= set(history), sorted(history)
    assert {f"val_{k}" for k in expected} <= set(history)
    # one batch per epoch: the total is the sum of the weighted terms and the penalty
    for epoch in range(2):
        parts = sum(history[f"{n}_weighted_loss"][epoch] for n in names) + history["l1"][epoch]
        if weighting == "uncertainty":
            s = to_numpy(model.loss_weighting.log_variances)  # regularizer logged in loss only
            parts = parts if epoch else parts  # s moves: compare the last epoch below
        if weighting != "uncertainty":
            np.testing.assert_allclose(history["loss"][epoch], parts, rtol=1e-5)
        for n in names:
            np.testing.assert_allclose(
                history[f"{n}_weighted_loss"][epoch], history[f"{n}_weight"][epoch] * history[f"{n}_loss"][epoch], rtol=1e-5
            )
    if weighting == "static":
        assert history["cls_weight"] == [0.5, 0.5]


# -------------------------------------------------------- saving and state


@pytest.mark.parametrize("weighting", ["uncertainty", "dwa", "gradnorm", "famo", "rlw"])
def test_weighting_state_survives_save_and_load(rng, tmp_path, weighting):
    x, y = data(rng, 16)
    model = build(klp.MultiOutputModel)
    model.compile(keras.optimizers.Adam(0.05), loss=LOSSES, loss_weights=WEIGHTS, weighting=weighting, jit_compile=JIT)
    model.fit(x, y, batch_size=8, epochs=3, verbose=0)
    state = [np.asarray(v.numpy()) for v in model.loss_weighting.variables]
    assert state, "the strategy has state"
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded.loss_weighting) is type(model.loss_weighting)
    for a, b in zip(state, [np.asarray(v.numpy()) for v in loaded.loss_weighting.variables]):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(
        loaded.evaluate(x, y, verbose=0, batch_size=16), model.evaluate(x, y, verbose=0, batch_size=16), rtol=1e-5
    )
    loaded.fit(x, y, batch_size=8, epochs=1, verbose=0)  # training goes on
    if weighting != "rlw":
        moved = [np.asarray(v.numpy()) for v in loaded.loss_weighting.variables]
        assert any(not np.array_equal(a, b) for a, b in zip(state, moved))


def test_uncertainty_log_variances_are_trained(rng):
    x, y = data(rng, 16)
    model = build(klp.MultiOutputModel)
    model.compile(keras.optimizers.SGD(0.1), loss=LOSSES, weighting="uncertainty", jit_compile=JIT)
    assert any("log_variances" in v.path for v in model.trainable_variables)
    s0 = model.loss_weighting.log_variances.numpy().copy()
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    losses = None
    # by name, the task types come from the losses: mse regression, the two cross-entropies classification
    assert model.loss_weighting.task_types == {"reg": "regression", "cls": "classification", "bin": "classification"}
    c = np.array([0.5, 1.0, 1.0])
    np.testing.assert_allclose(s0, np.log(c), rtol=1e-6)  # initial weights c e^-s = 1
    # SGD on c e^-s L + 0.5 s: ds = -0.1 * (0.5 - c e^-s L), L measured before the step
    ev = build(klp.MultiOutputModel)
    ev.compile("sgd", loss=LOSSES)
    losses = ev.evaluate(x, y, verbose=0, return_dict=True, batch_size=16)
    expected = s0 - 0.1 * np.array([0.5 - c[k] * np.exp(-s0[k]) * losses[f"{n}_loss"] for k, n in enumerate(["reg", "cls", "bin"])])
    np.testing.assert_allclose(model.loss_weighting.log_variances.numpy(), expected, rtol=1e-5, atol=1e-6)
    weights = model.fit(x, y, batch_size=16, epochs=1, verbose=0).history
    s1 = model.loss_weighting.log_variances.numpy()
    for k, n in enumerate(["reg", "cls", "bin"]):  # logged weights: c e^-s, from the step's variables
        assert weights[f"{n}_weight"][0] == pytest.approx(c[k] * np.exp(-expected[k]), rel=1e-5), n
    assert not np.allclose(s1, expected)


def test_uncertainty_by_name_refuses_an_unknown_loss():
    model = build(klp.MultiOutputModel)
    with pytest.raises(ValueError, match=r"'reg' \(poisson\).*Uncertainty\(task_types="):
        model.compile("sgd", loss={**LOSSES, "reg": "poisson"}, weighting="uncertainty")
    model.compile("sgd", loss={**LOSSES, "reg": "poisson"}, weighting=klp.weighting.Uncertainty(task_types={"cls": "classification"}))
    assert model.loss_weighting.task_types == {"cls": "classification"}


# ------------------------------------------------------------------ bad input


def test_bad_compile_arguments_raise_clear_errors():
    model = build(klp.MultiOutputModel)
    with pytest.raises(ValueError, match="weighting"):
        model.compile("sgd", loss=LOSSES, weighting="nash")
    with pytest.raises(ValueError, match=r"loss_weights\['cls'\]"):
        model.compile("sgd", loss=LOSSES, loss_weights={"cls": -1.0})
    with pytest.raises(ValueError, match=r"unknown outputs \['nope'\]"):
        model.compile("sgd", loss=LOSSES, loss_weights={"nope": 1.0})
    with pytest.raises(ValueError, match=r"unknown outputs \['nope'\]"):
        model.compile("sgd", loss={**LOSSES, "nope": "mse"})
    with pytest.raises(ValueError, match=r"no entry for outputs \['bin'\]"):
        model.compile("sgd", loss={"reg": "mse", "cls": LOSSES["cls"]})
    with pytest.raises(ValueError, match="Unknown loss"):
        model.compile("sgd", loss={**LOSSES, "reg": "not_a_loss"})
    with pytest.raises(ValueError, match="ignore_value"):
        model.compile("sgd", loss=LOSSES, ignore_value={"cls": float("nan")})
    model.compile("sgd", loss={**LOSSES, "bin": None})  # an output without a loss is fine when said
    single = keras.Input((3,))
    one = klp.MultiOutputModel(single, {"only": keras.layers.Dense(1)(single)})
    for method in GRADIENT_METHODS:
        with pytest.raises(ValueError, match="at least 2"):
            one.compile("sgd", loss={"only": "mse"}, weighting=method)


def test_missing_targets_raise(rng):
    x, y = data(rng)
    model = build(klp.MultiOutputModel)
    model.compile("sgd", loss=LOSSES)
    with pytest.raises(ValueError, match=r"outputs \['bin'\]"):
        model.evaluate(x, {"reg": y["reg"], "cls": y["cls"]}, verbose=0)


def test_compiled_metrics_skip_missing_labels():
    inputs = keras.Input((1,))
    outputs = {
        "a": keras.layers.Dense(1, activation="sigmoid", name="a", kernel_initializer="zeros")(inputs),
        "b": keras.layers.Dense(1, name="b", kernel_initializer="zeros")(inputs),
    }
    model = klp.MultiOutputModel(inputs, outputs)
    model.compile("sgd", loss={"a": "binary_crossentropy", "b": "mse"}, metrics={"a": ["accuracy"], "b": ["mae"]})
    x = np.zeros((4, 1), "float32")  # a predicts 0.5 -> class 0; b predicts 0
    y = {"a": np.array([[0.0], [0.0], [np.nan], [np.nan]], "float32"), "b": np.array([[1.0], [1.0], [1.0], [np.nan]], "float32")}
    logs = model.evaluate(x, y, verbose=0, return_dict=True)
    assert logs["a_accuracy"] == 1.0  # the two labelled samples are right
    np.testing.assert_allclose(logs["b_mae"], 1.0, rtol=1e-6)
    np.testing.assert_allclose(logs["b_loss"], 1.0, rtol=1e-6)


def test_compiling_again_replaces_the_strategy(rng):
    x, y = data(rng, 8)
    model = build(klp.MultiOutputModel)
    model.compile("sgd", loss=LOSSES, weighting="uncertainty")
    model.compile("sgd", loss=LOSSES, weighting="dwa")
    assert not any("log_variances" in v.path for v in model.variables)
    assert sum(m.name == "reg_loss" for m in model.metrics) <= 1
    history = model.fit(x, y, verbose=0, epochs=1).history
    assert np.isfinite(history["reg_loss"]).all()
