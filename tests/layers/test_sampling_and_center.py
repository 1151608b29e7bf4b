"""GaussianSampling (VAE KL with beta schedules) and CenterPenalty (class
centers as state updated in the compiled step)."""

import json
from pathlib import Path

import keras
import numpy as np
import pytest

import keras_lossplus as klp
from keras_lossplus import layers as P
from keras_lossplus.schedules import CyclicalSchedule, LinearWarmup
from tests.backend_utils import BACKEND, XLA_BACKENDS, to_numpy
from tests.fresh_load import load_in_fresh_process

ROOT = Path(__file__).resolve().parents[2]
JIT = BACKEND in XLA_BACKENDS


def ref_kl(mean, log_var):
    mean, log_var = np.asarray(mean, "float64"), np.asarray(log_var, "float64")
    return np.mean(-0.5 * np.sum(1 + log_var - mean**2 - np.exp(log_var), axis=-1))


# ------------------------------------------------------------------ GaussianSampling


def test_sampling_kl_and_reparameterisation(rng):
    mean = rng.normal(size=(4000, 2)).astype("float32")
    log_var = np.full((4000, 2), np.log(4.0), "float32")
    layer = P.GaussianSampling(beta=0.5, seed=3)
    z = to_numpy(layer([mean, log_var], training=True))
    np.testing.assert_allclose(to_numpy(layer.losses[0]), 0.5 * ref_kl(mean, log_var), rtol=1e-5)
    noise = (z - mean) / 2.0
    assert abs(noise.mean()) < 0.05 and abs(noise.std() - 1.0) < 0.05
    np.testing.assert_array_equal(to_numpy(layer([mean, log_var], training=False)), mean)
    assert int(to_numpy(layer.iterations)) == 1  # only training calls count


def vae(beta, latent=2, name="sampling"):
    inputs = keras.Input((4,))
    h = keras.layers.Dense(8, activation="tanh", name="enc")(inputs)
    z_mean = keras.layers.Dense(latent, name="z_mean")(h)
    z_log_var = keras.layers.Dense(latent, name="z_log_var")(h)
    z = P.GaussianSampling(beta=beta, seed=1, name=name)([z_mean, z_log_var])
    outputs = keras.layers.Dense(4, name="dec")(z)
    return keras.Model(inputs, outputs)


def encoder_stats(model, x):
    w, b = model.get_layer("enc").get_weights()
    h = np.tanh(x.astype("float64") @ w + b)
    mean = h @ model.get_layer("z_mean").get_weights()[0] + model.get_layer("z_mean").get_weights()[1]
    log_var = h @ model.get_layer("z_log_var").get_weights()[0] + model.get_layer("z_log_var").get_weights()[1]
    return mean, log_var


@pytest.mark.parametrize("schedule,steps,expected", [
    (LinearWarmup(start=0.0, end=1.0, steps=10), 7, 0.7),
    (LinearWarmup(start=0.2, end=1.0, steps=4, delay=2), 5, 0.8),
    (CyclicalSchedule(period=10, ratio=0.5), 12, 0.4),
])
def test_beta_schedule_value_after_k_compiled_steps(schedule, steps, expected, rng):
    x = rng.normal(size=(8 * steps, 4)).astype("float32")
    model = klp.log_penalties(vae(schedule))
    model.compile(optimizer="adam", loss="mse", jit_compile=JIT)
    model.fit(x, x, batch_size=8, epochs=1, verbose=0, shuffle=False)
    layer = model.get_layer("sampling")
    assert int(to_numpy(layer.iterations)) == steps
    np.testing.assert_allclose(to_numpy(layer.current_beta()), expected, rtol=1e-6)
    # evaluate uses the current beta and z = z_mean
    logs = model.evaluate(x, x, batch_size=len(x), verbose=0, return_dict=True)
    mean, log_var = encoder_stats(model, x)
    np.testing.assert_allclose(logs["sampling"], expected * ref_kl(mean, log_var), rtol=1e-4, atol=1e-6)
    assert int(to_numpy(layer.iterations)) == steps  # evaluation does not advance it


def test_schedules_match_their_formulas():
    warm = LinearWarmup(start=0.1, end=0.9, steps=8, delay=3)
    cyc = CyclicalSchedule(period=6, ratio=0.25, start=0.0, end=2.0)
    for k in range(30):
        ramp = min(max((k - 3) / 8, 0.0), 1.0)
        np.testing.assert_allclose(float(to_numpy(warm(k))), 0.1 + 0.8 * ramp, rtol=1e-6)
        np.testing.assert_allclose(float(to_numpy(cyc(k))), 2.0 * min((k % 6) / 6 / 0.25, 1.0), rtol=1e-6)
    assert LinearWarmup.from_config(warm.get_config()).get_config() == warm.get_config()


def test_sampling_with_a_schedule_saves_and_loads(tmp_path, rng):
    x = rng.normal(size=(24, 4)).astype("float32")
    model = vae(LinearWarmup(start=0.0, end=1.0, steps=10))
    model.compile(optimizer="adam", loss="mse")
    model.fit(x, x, batch_size=8, epochs=1, verbose=0)
    expected = float(model.evaluate(x, x, batch_size=len(x), verbose=0))
    model.save(tmp_path / "vae.keras")
    np.savez(tmp_path / "vae.npz", x=x, y=x)
    loaded = load_in_fresh_process(tmp_path)["vae"]
    np.testing.assert_allclose(loaded["evaluate"], expected, rtol=1e-5)
    config = model.get_layer("sampling").get_config()
    assert config["beta"]["class_name"] == "LinearWarmup"
    assert P.GaussianSampling.from_config(config).get_config() == config


def test_sampling_bad_input():
    with pytest.raises(ValueError, match="same shape"):
        P.GaussianSampling()([np.zeros((2, 3), "float32"), np.zeros((2, 4), "float32")])
    with pytest.raises(ValueError, match="two inputs"):
        P.GaussianSampling()(np.zeros((2, 3), "float32"))
    with pytest.raises(ValueError, match="beta"):
        P.GaussianSampling(beta=-1.0)
    with pytest.raises(ValueError, match="beta"):
        P.GaussianSampling(beta=lambda step: 1.0)
    with pytest.raises(ValueError, match="steps"):
        LinearWarmup(steps=0)
    with pytest.raises(ValueError, match="ratio"):
        CyclicalSchedule(ratio=0.0)


# ------------------------------------------------------------------ CenterPenalty


def numpy_center_update(centers, x, labels, alpha):
    centers = centers.astype("float64").copy()
    new = centers.copy()
    for j in range(len(centers)):
        members = labels == j
        delta = (centers[j] - x[members]).sum(0) / (1 + members.sum())
        new[j] = centers[j] - alpha * delta
    return new


def test_center_penalty_value_and_update_rule(rng):
    x = rng.normal(size=(10, 3)).astype("float32")
    labels = rng.integers(0, 4, size=10).astype("int32")
    layer = P.CenterPenalty(num_classes=4, factor=0.3, alpha=0.6)
    layer([x, labels], training=True)
    np.testing.assert_allclose(to_numpy(layer.losses[0]), 0.3 * 0.5 * np.mean((x**2).sum(1)), rtol=1e-5)
    expected = numpy_center_update(np.zeros((4, 3)), x, labels, 0.6)
    np.testing.assert_allclose(to_numpy(layer.centers), expected, rtol=1e-5, atol=1e-7)
    # second call: penalty uses the updated centers, then they move again
    layer([x, labels[:, None]], training=True)
    c = expected[labels]
    np.testing.assert_allclose(to_numpy(layer.losses[0]), 0.3 * 0.5 * np.mean(((x - c) ** 2).sum(1)), rtol=1e-5)
    np.testing.assert_allclose(to_numpy(layer.centers), numpy_center_update(expected, x, labels, 0.6), rtol=1e-5)
    before = to_numpy(layer.centers).copy()
    layer([x, labels], training=False)
    np.testing.assert_array_equal(to_numpy(layer.centers), before)


def center_model(num_classes=3, dim=2):
    emb = keras.Input((dim,), name="emb")
    labels = keras.Input((), dtype="int32", name="labels")
    h = P.CenterPenalty(num_classes=num_classes, factor=0.1, alpha=0.5, name="center")([emb, labels])
    out = keras.layers.Dense(1, name="head")(h)
    return keras.Model([emb, labels], out)


def test_centers_move_to_class_means_in_compiled_steps_and_survive_saving(tmp_path, rng):
    means = np.array([[3.0, 0.0], [0.0, 3.0], [-3.0, -3.0]], "float32")
    labels = rng.integers(0, 3, size=96).astype("int32")
    emb = (means[labels] + 0.1 * rng.normal(size=(96, 2))).astype("float32")
    y = rng.normal(size=(96, 1)).astype("float32")
    model = klp.log_penalties(center_model())
    model.compile(optimizer="sgd", loss="mse", jit_compile=JIT)
    history = model.fit([emb, labels], y, batch_size=32, epochs=8, verbose=0, shuffle=False).history
    centers = to_numpy(model.get_layer("center").centers)
    class_means = np.stack([emb[labels == j].mean(0) for j in range(3)])
    np.testing.assert_allclose(centers, class_means, atol=0.05)
    assert history["center"][-1] < 0.1 * history["center"][0]
    model.save(tmp_path / "center.keras")
    reloaded = keras.saving.load_model(tmp_path / "center.keras")
    np.testing.assert_array_equal(to_numpy(reloaded.get_layer("center").centers), centers)


def test_center_out_of_range_labels_in_a_compiled_step(rng):
    """Inside a compiled step nothing can raise: rows with out-of-range labels
    are left out of the penalty and of the update. Eager training (torch)
    raises instead."""
    emb = rng.normal(size=(8, 2)).astype("float32")
    labels = np.array([0, 1, 2, 7, -1, 0, 1, 2], "int32")
    model = klp.log_penalties(center_model())
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse", jit_compile=JIT)
    if BACKEND == "torch":
        with pytest.raises(ValueError, match=r"\[0, 3\)"):
            model.fit([emb, labels], np.zeros((8, 1), "float32"), batch_size=8, verbose=0)
        return
    history = model.fit([emb, labels], np.zeros((8, 1), "float32"), batch_size=8, verbose=0).history
    valid = (labels >= 0) & (labels < 3)
    np.testing.assert_allclose(history["center"][0], 0.1 * 0.5 * np.mean((emb[valid] ** 2).sum(1)), rtol=1e-5)
    expected = numpy_center_update(np.zeros((3, 2)), emb[valid], labels[valid], 0.5)
    np.testing.assert_allclose(to_numpy(model.get_layer("center").centers), expected, rtol=1e-5, atol=1e-7)


def test_center_bad_input():
    x = np.zeros((3, 2), "float32")
    with pytest.raises(TypeError, match="integer"):
        P.CenterPenalty(num_classes=2)([x, np.array([0.0, 1.0, 1.0], "float32")])
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        P.CenterPenalty(num_classes=2)([x, np.array([0, 1, 2], "int32")])
    with pytest.raises(ValueError, match="num_classes"):
        P.CenterPenalty(num_classes=0)
    with pytest.raises(ValueError, match="alpha"):
        P.CenterPenalty(num_classes=2, alpha=1.5)
    with pytest.raises(ValueError, match="factor"):
        P.CenterPenalty(num_classes=2, factor=-0.1)
    with pytest.raises(ValueError, match="two inputs"):
        P.CenterPenalty(num_classes=2)(x)


def test_a_keras_learning_rate_schedule_works_as_beta():
    schedule = keras.optimizers.schedules.ExponentialDecay(1.0, decay_steps=10, decay_rate=0.5)
    layer = P.GaussianSampling(beta=schedule)
    for _ in range(10):
        layer([np.zeros((2, 2), "float32"), np.zeros((2, 2), "float32")], training=True)
    np.testing.assert_allclose(to_numpy(layer.current_beta()), 0.5, rtol=1e-6)
    again = P.GaussianSampling.from_config(layer.get_config())
    assert type(again.schedule) is type(schedule)


def test_sampling_and_center_accumulate_in_float32_under_mixed_precision(rng):
    mean = rng.normal(size=(6, 3)).astype("float32") * 50  # exp(log_var) overflows float16
    log_var = np.full((6, 3), 12.0, "float32")
    layer = P.GaussianSampling(beta=1.0, dtype="mixed_float16")
    z = layer([mean, log_var], training=True)
    assert keras.backend.standardize_dtype(z.dtype) == "float16"
    value = to_numpy(layer.losses[0])
    assert keras.backend.standardize_dtype(layer.losses[0].dtype) == "float32"
    rounded = to_numpy(keras.ops.cast(keras.ops.cast(mean, "float16"), "float32"))
    np.testing.assert_allclose(value, ref_kl(rounded, log_var), rtol=1e-5)
    center = P.CenterPenalty(num_classes=2, factor=1.0, dtype="mixed_float16")
    x = (rng.normal(size=(4, 3)) * 300).astype("float32")  # squared distances overflow float16
    center([x, np.array([0, 1, 0, 1], "int32")], training=True)
    x16 = to_numpy(keras.ops.cast(keras.ops.cast(x, "float16"), "float32")).astype("float64")
    np.testing.assert_allclose(to_numpy(center.losses[0]), 0.5 * np.mean((x16**2).sum(1)), rtol=1e-5)


def test_sampling_training_only_leaves_evaluation_without_kl():
    layer = P.GaussianSampling(training_only=True)
    layer([np.ones((2, 2), "float32"), np.zeros((2, 2), "float32")], training=False)
    assert layer.losses == []


def test_center_config_round_trip():
    layer = P.CenterPenalty(num_classes=5, factor=0.2, alpha=0.3, training_only=True, name="c")
    config = layer.get_config()
    json.dumps(config)
    assert P.CenterPenalty.from_config(config).get_config() == config
    assert CyclicalSchedule.from_config(CyclicalSchedule(period=7).get_config()).get_config()["period"] == 7
