"""`LanguageModelHead`: the added loss and its gradients equal the naive
`Dense` (or tied embedding) + `SparseCategoricalCrossentropy(from_logits=True)`
path (soft cap, ignore_class, padding mask), inference logits, `fit` with
`jit_compile` giving the naive model's losses and weights, config, a
`.keras` round trip of a tied model, and bad arguments."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import ops

from keras_lossplus.losses.language import LinearCrossEntropy
from keras_lossplus.layers import LanguageModelHead
from tests.backend_utils import BACKEND, XLA_BACKENDS, to_numpy

JIT = BACKEND in XLA_BACKENDS
B, T, D, V = 2, 5, 8, 37


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    hidden = rng.normal(size=(B, T, D)).astype("float32")
    targets = rng.integers(0, V, (B, T)).astype("int32")
    targets[0, -2:] = 0  # padding id
    mask = np.ones((B, T), "float32")
    mask[0, -2:] = 0.0
    return hidden, targets, mask


def _naive_loss(hidden, kernel, bias, targets, mask, cap=None, ignore_class=None, transpose=False):
    w = ops.transpose(kernel) if transpose else kernel
    logits = ops.matmul(hidden, w) + (0.0 if bias is None else bias)
    if cap is not None:
        logits = cap * ops.tanh(logits / cap)
    sce = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=ignore_class)
    return sce(targets, logits, sample_weight=mask)


def _grads(f, *xs):
    """Value and gradients of the scalar `f(*xs)` with respect to every `x`."""
    if BACKEND == "jax":
        import jax

        return jax.value_and_grad(f, argnums=tuple(range(len(xs))))(*[jax.numpy.asarray(x) for x in xs])
    if BACKEND == "tensorflow":
        import tensorflow as tf

        xs = [tf.convert_to_tensor(x) for x in xs]
        with tf.GradientTape() as tape:
            tape.watch(xs)
            value = f(*xs)
        return value, tape.gradient(value, xs)
    import torch

    xs = [torch.tensor(np.asarray(x), requires_grad=True) for x in xs]
    value = f(*xs)
    value.backward()
    return value.detach(), [x.grad for x in xs]


@pytest.mark.parametrize("cap,ignore_class,use_bias", [(None, None, True), (3.0, 0, False)])
def test_added_loss_and_gradients_equal_the_naive_path(cap, ignore_class, use_bias):
    hidden, targets, mask = _inputs()
    head = LanguageModelHead(V, use_bias=use_bias, logit_soft_cap=cap, ignore_class=ignore_class,
                             bias_initializer="random_normal", chunk_size=4)
    head.build((B, T, D))
    kernel = to_numpy(head.kernel)
    bias = to_numpy(head.bias) if use_bias else None

    def fused_fn(h, w, b=None):
        return LinearCrossEntropy(ignore_class=ignore_class, logit_soft_cap=cap, chunk_size=4)(
            targets, (h, w) if b is None else (h, w, b), sample_weight=mask)

    args = (hidden, kernel) if bias is None else (hidden, kernel, bias)
    v1, g1 = _grads(fused_fn, *args)
    v2, g2 = _grads(lambda h, w, b=None: _naive_loss(h, w, b, targets, mask, cap, ignore_class), *args)
    np.testing.assert_allclose(to_numpy(v1), to_numpy(v2), rtol=1e-5)
    for a, b in zip(g1, g2):
        np.testing.assert_allclose(to_numpy(a), to_numpy(b), rtol=1e-4, atol=1e-6)
    # the layer: the same value through add_loss, its input returned
    out = head(hidden, targets, sample_weight=mask)
    np.testing.assert_array_equal(to_numpy(out), hidden)
    [added] = head.losses
    np.testing.assert_allclose(to_numpy(added), to_numpy(v2), rtol=1e-5)
    # inference: the (capped) logits
    logits = to_numpy(head(hidden))
    ref = hidden @ kernel + (0.0 if bias is None else bias)
    ref = ref if cap is None else cap * np.tanh(ref / cap)
    np.testing.assert_allclose(logits, ref, rtol=1e-5, atol=1e-5)
    ids = to_numpy(head.predicted_ids(hidden))
    np.testing.assert_array_equal(ids, ref.argmax(-1))


def test_tied_head_uses_the_embedding_matrix_and_loss_weight():
    hidden, targets, mask = _inputs(1)
    emb = keras.layers.Embedding(V, D)
    emb.build((None,))
    head = LanguageModelHead(tied_embedding=emb, loss_weight=0.5)
    head(hidden)  # builds
    assert head.vocabulary_size == V and head.kernel is None and len(head.trainable_weights) == 1
    head(hidden, targets, sample_weight=mask)
    ref = _naive_loss(hidden, to_numpy(emb.embeddings), None, targets, mask, transpose=True)
    np.testing.assert_allclose(to_numpy(head.losses[0]), 0.5 * to_numpy(ref), rtol=1e-5)
    np.testing.assert_allclose(to_numpy(head(hidden)), hidden @ to_numpy(emb.embeddings).T, rtol=1e-5, atol=1e-5)
    # a ReversibleEmbedding that is not tied itself: its (D, V) reverse matrix
    rev = keras.layers.ReversibleEmbedding(V, D, tie_weights=False)
    rev.build((None,))
    head = LanguageModelHead(tied_embedding=rev)
    np.testing.assert_allclose(to_numpy(head(hidden)), to_numpy(rev(hidden, reverse=True)), rtol=1e-5, atol=1e-5)


def _naive_and_fused_models():
    """A tiny LM twice with the same weights: Dense + SCCE, and the fused head."""
    tokens = keras.Input((T,), dtype="int32")
    emb = keras.layers.Embedding(V, D, name="emb")
    dense = keras.layers.Dense(V, name="out")
    naive = keras.Model(tokens, dense(keras.layers.Dense(D, activation="tanh", name="mix")(emb(tokens))))
    naive.compile(optimizer=keras.optimizers.SGD(0.5),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=0), jit_compile=JIT)
    tokens2 = keras.Input((T,), dtype="int32")
    targets = keras.Input((T,), dtype="int32")
    mask = keras.Input((T,))
    hidden = keras.layers.Dense(D, activation="tanh", name="mix")(keras.layers.Embedding(V, D, name="emb")(tokens2))
    head = LanguageModelHead(V, use_bias=True, ignore_class=0, chunk_size=8, name="out")
    fused = keras.Model([tokens2, targets, mask], head(hidden, targets, sample_weight=mask))
    fused.compile(optimizer=keras.optimizers.SGD(0.5), loss=None, jit_compile=JIT)
    for layer in ("emb", "mix", "out"):
        fused.get_layer(layer).set_weights(naive.get_layer(layer).get_weights())
    return naive, fused, keras.Model(tokens2, head(hidden))


def test_fit_gives_the_naive_models_losses_and_weights():
    naive, fused, infer = _naive_and_fused_models()
    rng = np.random.default_rng(3)
    ids = rng.integers(1, V, (4, T + 1)).astype("int32")
    ids[1, -3:] = 0
    ids[2, -1:] = 0
    mask = (ids[:, 1:] != 0).astype("float32") * np.array([1.0, 0.5, 1.0, 2.0], "float32")[:, None]
    h1 = naive.fit(ids[:, :-1], ids[:, 1:], sample_weight=mask, batch_size=2, epochs=2, shuffle=False, verbose=0)
    h2 = fused.fit([ids[:, :-1], ids[:, 1:], mask], batch_size=2, epochs=2, shuffle=False, verbose=0)
    np.testing.assert_allclose(h2.history["loss"], h1.history["loss"], rtol=1e-5)
    for a, b in zip(fused.get_weights(), naive.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    e1 = naive.evaluate(ids[:, :-1], ids[:, 1:], sample_weight=mask, verbose=0)
    e2 = fused.evaluate([ids[:, :-1], ids[:, 1:], mask], verbose=0)
    np.testing.assert_allclose(e2, e1, rtol=1e-5)
    np.testing.assert_allclose(infer.predict(ids[:, :-1], verbose=0), naive.predict(ids[:, :-1], verbose=0),
                               rtol=1e-5, atol=1e-5)


@keras.saving.register_keras_serializable(package="keras_lossplus_tests")
class TinyTiedLM(keras.Model):
    """A subclassed LM whose head is tied to its embedding in `__init__`."""

    def __init__(self, vocabulary_size=V, dim=D, **kwargs):
        super().__init__(**kwargs)
        self.vocabulary_size, self.dim = vocabulary_size, dim
        self.embedding = keras.layers.Embedding(vocabulary_size, dim)
        self.mix = keras.layers.Dense(dim, activation="tanh")
        self.embedding.build((None,))
        self.head = LanguageModelHead(tied_embedding=self.embedding, logit_soft_cap=10.0)

    def call(self, inputs):
        hidden = self.mix(self.embedding(inputs["tokens"]))
        return self.head(hidden, inputs.get("targets"), sample_weight=inputs.get("mask"))

    def get_config(self):
        return {**super().get_config(), "vocabulary_size": self.vocabulary_size, "dim": self.dim}


def test_config_round_trip_and_tied_model_saved_and_loaded(tmp_path):
    head = LanguageModelHead(V, use_bias=True, ignore_class=0, label_smoothing=0.1, z_loss=1e-4,
                             logit_soft_cap=30.0, chunk_size=16, loss_weight=2.0)
    config = head.get_config()
    assert LanguageModelHead.from_config(config).get_config() == config
    assert keras.saving.get_registered_name(LanguageModelHead) == "keras_lossplus>LanguageModelHead"
    # a tied head keeps the embedding's name; its config alone cannot rebuild the tie
    model = TinyTiedLM()
    tied_config = model.head.get_config()
    assert tied_config["tied_embedding"] == model.embedding.name
    with pytest.raises(ValueError, match="`tied_embedding`"):
        LanguageModelHead.from_config(tied_config)
    # the subclassed model re-ties in __init__: weights and logits come back
    rng = np.random.default_rng(0)
    ids = rng.integers(0, V, (4, T + 1)).astype("int32")
    data = {"tokens": ids[:, :-1], "targets": ids[:, 1:], "mask": np.ones((4, T), "float32")}
    model.compile(optimizer="adam", loss=None, jit_compile=JIT)
    model.fit(data, batch_size=4, epochs=1, verbose=0)
    loss = model.evaluate(data, batch_size=4, verbose=0)
    logits = model.predict({"tokens": ids[:, :-1]}, verbose=0)
    model.save(tmp_path / "tied.keras")
    loaded = keras.saving.load_model(tmp_path / "tied.keras")
    assert loaded.head.tied_embedding is loaded.embedding
    np.testing.assert_allclose(loaded.predict({"tokens": ids[:, :-1]}, verbose=0), logits, rtol=1e-6)
    np.testing.assert_allclose(loaded.evaluate(data, batch_size=4, verbose=0), loss, rtol=1e-6)


@pytest.mark.parametrize("kwargs,argument", [
    (dict(vocabulary_size=1), "vocabulary_size"),
    (dict(vocabulary_size=2.5), "vocabulary_size"),
    (dict(vocabulary_size=10, label_smoothing=1.5), "label_smoothing"),
    (dict(vocabulary_size=10, z_loss=-1.0), "z_loss"),
    (dict(vocabulary_size=10, logit_soft_cap=0.0), "logit_soft_cap"),
    (dict(vocabulary_size=10, chunk_size=0), "chunk_size"),
    (dict(vocabulary_size=10, loss_weight=-1.0), "loss_weight"),
    (dict(tied_embedding="token_embedding"), "tied_embedding"),
    (dict(tied_embedding=keras.layers.Dense(3)), "tied_embedding"),
    (dict(tied_embedding=keras.layers.Embedding(10, 4), use_bias=True), "use_bias"),
])
def test_bad_arguments_raise_naming_the_argument(kwargs, argument):
    with pytest.raises((ValueError, TypeError), match=f"`{argument}`"):
        LanguageModelHead(**kwargs)


def test_bad_build_raises_naming_the_argument():
    with pytest.raises(ValueError, match="`vocabulary_size`"):
        LanguageModelHead()(np.zeros((2, 3, 4), "float32"))
    emb = keras.layers.Embedding(10, 4)
    with pytest.raises(ValueError, match="`tied_embedding`"):  # not built yet
        LanguageModelHead(tied_embedding=emb)(np.zeros((2, 3, 4), "float32"))
    emb.build((None,))
    with pytest.raises(ValueError, match="`vocabulary_size`"):
        LanguageModelHead(vocabulary_size=11, tied_embedding=emb)(np.zeros((2, 3, 4), "float32"))
