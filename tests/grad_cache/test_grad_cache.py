"""`GradCacheModel`: the loss and every parameter gradient of a chunked step
equal those of Keras' own full-batch step (1e-5), on both input conventions,
compiled (XLA on JAX and TensorFlow, also eager TensorFlow) and on torch;
`fit` for two steps lands on the same weights; dropout's draws are replayed
(against Keras' step over the same chunks in the same order);
saving; bad arguments.

The full-batch reference is the same model class with Keras' own
`train_step` (`FullBatch`): same `call`, same loss, one forward and one
backward over the whole batch. With SGD, a step's gradient is
`(w_before - w_after) / learning_rate`.

Convention (b) (pairs, `x` of shape `(N, m, *item)`) is tested with the
package's `MultipleNegativesRankingLoss`, checked here against numpy."""

import numpy as np
import pytest

import keras
import keras_lossplus as klp
from tests.backend_utils import BACKEND, XLA_BACKENDS

JITS = [True, False] if BACKEND == "tensorflow" else [BACKEND in XLA_BACKENDS]
LR = 0.5
ITEM, OUT = 6, 8


class FullBatch(klp.GradCacheModel):
    """The reference: Keras' own training step over the whole batch."""

    train_step = keras.Model.train_step


class ChunkedCall(FullBatch):
    """Keras' own step over a `call` that runs the encoder chunk by chunk,
    in order: the same random draws as GradCache's first pass."""

    def call(self, x, training=None):
        c = self.chunk_size
        return keras.ops.concatenate([self.encoder(x[i : i + c], training=training) for i in range(0, x.shape[0], c)])


def ref_mnrl(y_pred, scale=20.0):
    y = np.asarray(y_pred, "float64")
    unit = y / np.sqrt((y**2).sum(-1, keepdims=True) + 1e-12)
    cands = np.concatenate([unit[:, j] for j in range(1, y.shape[1])])
    logits = scale * unit[:, 0] @ cands.T
    logits -= logits.max(1, keepdims=True)
    log_p = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    return -np.mean(np.diag(log_p[:, : len(y)]))


def encoder(dropout=0.0, dropout_seed=3):
    keras.utils.set_random_seed(1)
    layers = [keras.Input((ITEM,)), keras.layers.Dense(16, activation="tanh", kernel_regularizer="l2")]
    if dropout:
        layers.append(keras.layers.Dropout(dropout, seed=dropout_seed))
    return keras.Sequential(layers + [keras.layers.Dense(OUT)])


def pair(cls_loss, chunk_size, jit, reference=FullBatch, **encoder_args):
    """`(grad_cache_model, reference_model)` with the same variables."""
    models = []
    for cls in (klp.GradCacheModel, reference):
        model = cls(encoder(**encoder_args), chunk_size=chunk_size)
        model.compile(optimizer=keras.optimizers.SGD(LR), loss=cls_loss(), jit_compile=jit)
        models.append(model)
    for a, b in zip(models[0].variables, models[1].variables):
        b.assign(np.array(keras.ops.convert_to_numpy(a.value)))  # a copy: JAX donates the buffers
    return models


def weights(model):
    return [np.asarray(keras.ops.convert_to_numpy(v.value)) for v in model.trainable_variables]


def data(kind, n, rng):
    if kind == "pairs":
        anchors = rng.normal(size=(n, ITEM))
        x = np.stack([anchors, anchors + 0.3 * rng.normal(size=(n, ITEM)), rng.normal(size=(n, ITEM))], axis=1)
        return x.astype("float32"), np.zeros((n,), "float32")
    return rng.normal(size=(n, ITEM)).astype("float32"), (np.arange(n) % 4).astype("float32")


LOSSES = {
    "supcon": klp.losses.SupConLoss,
    "ntxent": lambda: klp.losses.NTXentLoss(temperature=0.5),
    "triplet": klp.losses.TripletLoss,
    "pairs": klp.losses.MultipleNegativesRankingLoss,
}


def assert_same_step(kind, n, chunk_size, jit, reference=FullBatch, **encoder_args):
    x, y = data(kind, n, np.random.default_rng(0))
    ours, full = pair(LOSSES[kind], chunk_size, jit, reference, **encoder_args)
    before = weights(ours)
    keras.utils.set_random_seed(5)  # torch's global generator, for a dropout without seed
    loss = ours.train_on_batch(x, y)
    keras.utils.set_random_seed(5)
    expected = full.train_on_batch(x, y)
    np.testing.assert_allclose(loss, expected, rtol=1e-5, atol=1e-5)
    for w0, w_ours, w_full in zip(before, weights(ours), weights(full)):
        np.testing.assert_allclose((w0 - w_ours) / LR, (w0 - w_full) / LR, rtol=1e-5, atol=1e-5)
        assert np.abs(w0 - w_full).max() > 0  # every variable gets a gradient
    return ours, x


@pytest.mark.parametrize("jit", JITS)
@pytest.mark.parametrize("kind", ["supcon", "pairs"])
def test_loss_and_gradients_equal_the_full_batch(kind, jit):
    assert_same_step(kind, 16, 4, jit)


@pytest.mark.parametrize("kind", ["ntxent", "triplet"])
def test_other_in_batch_losses(kind):
    assert_same_step(kind, 16, 4, JITS[0])


@pytest.mark.parametrize("jit", JITS[:1])
@pytest.mark.parametrize("n, chunk_size", [(18, 4), (6, 8)], ids=["padded_last_chunk", "batch_below_chunk"])
def test_batches_that_the_chunk_size_does_not_divide(n, chunk_size, jit):
    assert_same_step("supcon", n, chunk_size, jit)


def test_pairs_loss_matches_numpy():
    y_pred = np.random.default_rng(1).normal(size=(5, 3, 4)).astype("float32")
    loss = klp.losses.MultipleNegativesRankingLoss()
    value = float(keras.ops.convert_to_numpy(loss(np.zeros((5,), "float32"), keras.ops.convert_to_tensor(y_pred))))
    np.testing.assert_allclose(value, ref_mnrl(y_pred), rtol=1e-5)


@pytest.mark.parametrize("dropout_seed", [3] + ([None] if BACKEND == "torch" else []))
def test_dropout_draws_are_replayed_in_the_second_pass(dropout_seed):
    """The reference runs the encoder on the same chunks in the same order
    (same masks as GradCache's first pass): if the second pass drew new
    masks, the gradient would not be that of the loss. On torch a `Dropout`
    without a seed draws from torch's global generator, replayed too."""
    assert_same_step("supcon", 16, 4, JITS[0], reference=ChunkedCall, dropout=0.5, dropout_seed=dropout_seed)


@pytest.mark.parametrize("jit", JITS[:1])
def test_fit_lands_on_the_full_batch_weights(jit):
    """Three steps: 16, 16 and 4 examples of 3 items (48, 48 and 12 items,
    chunks of 5: a padded last chunk in each step; on TensorFlow the batch
    size is known only when the step runs)."""
    x, y = data("pairs", 36, np.random.default_rng(2))
    ours, full = pair(LOSSES["pairs"], 5, jit)
    history = ours.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    expected = full.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    np.testing.assert_allclose(history.history["loss"], expected.history["loss"], rtol=1e-5, atol=1e-5)
    for a, b in zip(weights(ours), weights(full)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    assert ours.predict(x, verbose=0).shape == (36, 3, OUT)


def test_save_and_load(tmp_path):
    x, y = data("supcon", 16, np.random.default_rng(3))
    model = klp.GradCacheModel(encoder(), chunk_size=4, name="gc")
    model.compile(optimizer=keras.optimizers.SGD(LR), loss=klp.losses.SupConLoss(), jit_compile=JITS[0])
    model.fit(x, y, batch_size=16, verbose=0)
    path = tmp_path / "gc.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, klp.GradCacheModel) and loaded.chunk_size == 4 and loaded.name == "gc"
    assert loaded.get_config()["chunk_size"] == 4
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(loaded.evaluate(x, y, verbose=0), model.evaluate(x, y, verbose=0), rtol=1e-6)
    loaded.fit(x, y, batch_size=16, verbose=0)  # the optimizer and the loss came back too
    model.fit(x, y, batch_size=16, verbose=0)
    for a, b in zip(weights(loaded), weights(model)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("chunk_size", [0, -2, 2.5, True, "4", None])
def test_bad_chunk_size_raises_naming_it(chunk_size):
    with pytest.raises(ValueError, match="chunk_size"):
        klp.GradCacheModel(encoder(), chunk_size=chunk_size)


def test_bad_encoder_and_inputs_raise():
    with pytest.raises(TypeError, match="encoder"):
        klp.GradCacheModel(lambda x: x, chunk_size=4)
    model = klp.GradCacheModel(encoder(), chunk_size=4)
    with pytest.raises(ValueError, match=r"\(N, \*item\) or \(N, m, \*item\)"):
        model(np.zeros((2, 3, 4, ITEM), "float32"))
    with pytest.raises(TypeError, match="one input tensor"):
        model({"a": np.zeros((2, ITEM), "float32")})
    model.compile(optimizer="sgd", loss=None)
    with pytest.raises(ValueError, match="needs a `loss`"):
        model.train_on_batch(np.zeros((4, ITEM), "float32"), np.zeros((4,), "float32"))


def test_loss_scaling_is_refused_naming_the_alternative():
    model = klp.GradCacheModel(encoder(), chunk_size=4)
    model.compile(optimizer=keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD()), loss="mse")
    with pytest.raises(ValueError, match="mixed_bfloat16"):
        model.train_on_batch(np.zeros((4, ITEM), "float32"), np.zeros((4, OUT), "float32"))


def test_mixed_bfloat16_encoder():
    """bfloat16 embeddings: the loss (float32) and the step stay finite and
    close to the full batch's."""
    x, y = data("supcon", 16, np.random.default_rng(4))
    models = []
    for cls in (klp.GradCacheModel, FullBatch):
        keras.utils.set_random_seed(1)
        enc = keras.Sequential([keras.Input((ITEM,)), keras.layers.Dense(16, activation="tanh", dtype="mixed_bfloat16"),
                                keras.layers.Dense(OUT, dtype="mixed_bfloat16")])
        model = cls(enc, chunk_size=4)
        model.compile(optimizer=keras.optimizers.SGD(LR), loss=klp.losses.SupConLoss(), jit_compile=JITS[0])
        models.append((float(np.asarray(model.train_on_batch(x, y))), weights(model)))
    (loss, w), (expected, w_full) = models
    assert np.isfinite(loss) and abs(loss - expected) < 1e-2 * abs(expected)
    for a, b in zip(w, w_full):
        assert np.isfinite(a).all()
        np.testing.assert_allclose(a, b, atol=2e-2)


@pytest.mark.parametrize("kind", ["supcon", "pairs"])
def test_fit_with_a_batch_below_the_chunk_size_raises_naming_it(kind):
    x, y = data(kind, 8, np.random.default_rng(0))
    model = klp.GradCacheModel(encoder(), chunk_size=8)
    model.compile(optimizer="sgd", loss=LOSSES[kind]())
    with pytest.raises(ValueError, match=r"`chunk_size`=8 is larger than a batch"):
        model.fit(x, y, batch_size=2 if kind == "pairs" else 4, verbose=0)
    model.fit(x, y, batch_size=4 if kind == "pairs" else 8, epochs=1, verbose=0)  # 8 items: one chunk, allowed
