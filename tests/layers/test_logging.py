"""Each penalty is logged under its layer's name, on every backend, with and
without jit_compile, through the mix-in or `log_penalties`."""

import keras
import numpy as np
import pytest

import keras_lossplus as klp
from keras_lossplus import layers as P
from tests.backend_utils import BACKEND, XLA_BACKENDS

JIT_MODES = [False, True] if BACKEND in XLA_BACKENDS else [False]


class LoggedModel(klp.PenaltyLogging, keras.Model):
    pass


def two_penalty_graph():
    inputs = keras.Input((5,))
    h = keras.layers.Dense(4, name="a")(inputs)
    h = P.L1Penalty(0.01, name="sparse")(h)
    h = keras.layers.Dense(3, activation="sigmoid", name="b")(h)
    h = P.KLSparsityPenalty(0.2, factor=0.1, name="kl")(h)
    return inputs, keras.layers.Dense(1, name="head")(h)


def expected_terms(model, x, y):
    a = x.astype("float64") @ model.get_layer("a").get_weights()[0] + model.get_layer("a").get_weights()[1]
    b = 1 / (1 + np.exp(-(a @ model.get_layer("b").get_weights()[0] + model.get_layer("b").get_weights()[1])))
    out = b @ model.get_layer("head").get_weights()[0] + model.get_layer("head").get_weights()[1]
    rho = np.clip(b.mean(0), 1e-7, 1 - 1e-7)
    kl = 0.1 * np.sum(0.2 * np.log(0.2 / rho) + 0.8 * np.log(0.8 / (1 - rho)))
    return np.mean((out - y) ** 2), 0.01 * np.abs(a).sum(), kl


def _data(rng):
    return rng.normal(size=(12, 5)).astype("float32"), rng.normal(size=(12, 1)).astype("float32")


@pytest.mark.parametrize("jit", JIT_MODES)
@pytest.mark.parametrize("how", ["mixin", "log_penalties"])
def test_every_penalty_is_logged_and_loss_is_their_sum(how, jit, rng):
    x, y = _data(rng)
    inputs, outputs = two_penalty_graph()
    model = LoggedModel(inputs, outputs) if how == "mixin" else klp.log_penalties(keras.Model(inputs, outputs))
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse", jit_compile=jit)
    mse, l1, kl = expected_terms(model, x, y)
    history = model.fit(x, y, batch_size=12, epochs=2, verbose=0, validation_data=(x, y)).history
    assert set(history) == {"loss", "sparse", "kl", "val_loss", "val_sparse", "val_kl"}
    np.testing.assert_allclose([history["sparse"][0], history["kl"][0]], [l1, kl], rtol=2e-5)
    np.testing.assert_allclose(history["loss"][0], mse + l1 + kl, rtol=2e-5)
    mse, l1, kl = expected_terms(model, x, y)
    np.testing.assert_allclose(history["val_loss"][-1], mse + l1 + kl, rtol=2e-5)
    np.testing.assert_allclose([history["val_sparse"][-1], history["val_kl"][-1]], [l1, kl], rtol=2e-5)


def test_epoch_values_are_batch_size_weighted_like_loss(rng):
    """Over several batches of unequal size, the epoch's `loss` is still the
    compiled loss plus the logged penalties (same weighting)."""
    x, y = rng.normal(size=(10, 5)).astype("float32"), rng.normal(size=(10, 1)).astype("float32")
    inputs, outputs = two_penalty_graph()
    model = klp.log_penalties(keras.Model(inputs, outputs))
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse", jit_compile=BACKEND in XLA_BACKENDS)
    history = model.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False).history
    chunks = [(x[i:i + 4], y[i:i + 4]) for i in range(0, 10, 4)]
    terms = np.array([expected_terms(model, cx, cy) for cx, cy in chunks])
    sizes = np.array([len(cx) for cx, _ in chunks])
    mse, l1, kl = (terms * sizes[:, None]).sum(0) / sizes.sum()
    np.testing.assert_allclose([history["loss"][0], history["sparse"][0], history["kl"][0]], [mse + l1 + kl, l1, kl],
                               rtol=2e-5)


def test_without_logging_the_penalty_still_counts_but_is_not_logged(rng):
    x, y = _data(rng)
    inputs, outputs = two_penalty_graph()
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    history = model.fit(x, y, batch_size=12, verbose=0).history
    assert set(history) == {"loss"}
    mse, l1, kl = expected_terms(model, x, y)
    np.testing.assert_allclose(history["loss"][0], mse + l1 + kl, rtol=2e-5)


def test_log_penalties_is_idempotent_and_works_after_a_first_fit(rng):
    x, y = _data(rng)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(2), P.L2Penalty(0.1, name="l2")])
    model.compile(optimizer="sgd", loss="mse", jit_compile=BACKEND in XLA_BACKENDS)
    model.fit(x, np.zeros((12, 2), "float32"), verbose=0)
    klp.log_penalties(klp.log_penalties(model))
    history = model.fit(x, np.zeros((12, 2), "float32"), verbose=0).history
    assert set(history) == {"loss", "l2"}
    assert [m.name for m in model.metrics].count("l2") == 1


def test_penalty_layers_finds_nested_layers():
    inner = keras.Sequential([keras.Input((3,)), P.L1Penalty(name="inner_l1")])
    inputs = keras.Input((3,))
    model = keras.Model(inputs, P.L2Penalty(name="outer_l2")(inner(inputs)))
    assert [layer.name for layer in P.penalty_layers(model)] == ["inner_l1", "outer_l2"]


if BACKEND == "torch":

    def test_torch_jit_compile_logs_penalties(rng):
        """Keras' torch backend compiles `fit(jit_compile=True)` with
        torch.compile; penalties and their logs come out the same."""
        x, y = _data(rng)
        results = []
        for jit in (False, True):
            keras.utils.set_random_seed(0)
            inputs, outputs = two_penalty_graph()
            model = klp.log_penalties(keras.Model(inputs, outputs))
            model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse", jit_compile=jit)
            results.append(model.fit(x, y, batch_size=12, epochs=2, verbose=0).history)
        for key in ("loss", "sparse", "kl"):
            np.testing.assert_allclose(results[1][key], results[0][key], rtol=1e-5)
