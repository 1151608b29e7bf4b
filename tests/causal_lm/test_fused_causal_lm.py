"""`FusedCausalLM` on KerasHub causal LMs built from small configs (no
download): three training steps on padded random token batches give the
stock `compile(loss=SparseCategoricalCrossentropy(from_logits=True))`
model's per-step losses (and accuracy) and final weights, with its tied
`ReversibleEmbedding`, its padding mask as `sample_weight`, Gemma 2's final
soft cap, and Llama 3's untied output matrix; `evaluate` and `predict`
agree; a `.keras` round trip; bad arguments."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tests.backend_utils import BACKEND, XLA_BACKENDS

keras_hub = pytest.importorskip("keras_hub", reason="KerasHub is not installed (an optional test dependency)")

from keras_lossplus.causal_lm import FusedCausalLM  # noqa: E402

JIT = BACKEND in XLA_BACKENDS
V, T, BATCH, STEPS = 1000, 12, 3, 3
SMALL = dict(vocabulary_size=V, num_layers=2, num_query_heads=2, num_key_value_heads=1, hidden_dim=64,
             intermediate_dim=128)


def _gemma(**extra):
    backbone = keras_hub.models.GemmaBackbone(head_dim=32, **SMALL, **extra)
    return keras_hub.models.GemmaCausalLM(backbone, preprocessor=None)


def _gemma2():  # Gemma 2's architecture: post norms, attention and final logit soft caps, sliding window
    return _gemma(query_head_dim_normalize=False, use_post_ffw_norm=True, use_post_attention_norm=True,
                  attention_logit_soft_cap=50.0, final_logit_soft_cap=30.0, use_sliding_window_attention=True,
                  sliding_window_size=4)


def _llama3():  # an untied output matrix (ReversibleEmbedding.reverse_embeddings)
    return keras_hub.models.Llama3CausalLM(keras_hub.models.Llama3Backbone(**SMALL), preprocessor=None)


def _batches():
    rng = np.random.default_rng(0)
    ids = rng.integers(1, V, (STEPS, BATCH, T + 1)).astype("int32")
    lengths = rng.integers(5, T + 1, (STEPS, BATCH))
    lengths[:, 0] = T  # one full row per batch
    pad = (np.arange(T + 1)[None, None] <= lengths[..., None]).astype("int32")
    ids = ids * pad  # padding id 0
    return [({"token_ids": ids[s, :, :-1], "padding_mask": pad[s, :, :-1]}, ids[s, :, 1:], pad[s, :, 1:])
            for s in range(STEPS)]


CASES = {
    "gemma": (_gemma, dict()),
    "gemma2_soft_cap_ignore_class": (_gemma2, dict(ignore_class=0, token_accuracy=True)),
    "llama3_untied": (_llama3, dict()),
}


@pytest.mark.parametrize("case", list(CASES))
def test_same_losses_and_weights_as_the_stock_model(case, tmp_path):
    make, options = CASES[case]
    keras.utils.set_random_seed(1)
    stock = make()
    lm = make()
    lm.set_weights(stock.get_weights())
    stock.compile(
        optimizer=keras.optimizers.SGD(0.5),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=options.get("ignore_class")),
        weighted_metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")], jit_compile=JIT,
    )
    fused = FusedCausalLM(lm, **options)
    fused.compile(optimizer=keras.optimizers.SGD(0.5), jit_compile=JIT)
    for x, y, sw in _batches():
        expected = stock.train_on_batch(x, y, sample_weight=sw, return_dict=True)
        got = fused.train_on_batch(x, y, sample_weight=sw, return_dict=True)
        np.testing.assert_allclose(got["loss"], expected["loss"], rtol=1e-5)
        if options.get("token_accuracy"):
            np.testing.assert_allclose(got["token_accuracy"], expected["accuracy"], rtol=1e-6)
        assert np.isfinite(got["perplexity"]) and got["perplexity"] > 1.0
    for a, b in zip(lm.get_weights(), stock.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    # evaluate: the same loss from the logits; predict: the stock logits
    expected = stock.evaluate(x, y, sample_weight=sw, verbose=0, return_dict=True)
    got = fused.evaluate(x, y, sample_weight=sw, verbose=0, return_dict=True)
    np.testing.assert_allclose(got["loss"], expected["loss"], rtol=1e-5)
    w = sw * (y != options.get("ignore_class", -1))
    logits = stock.predict(x, verbose=0)
    np.testing.assert_allclose(fused.predict(x, verbose=0), logits, rtol=1e-5, atol=1e-5)
    z = logits.astype("float64")
    nll = np.log(np.exp(z - z.max(-1, keepdims=True)).sum(-1)) + z.max(-1) - np.take_along_axis(z, y[..., None], -1)[..., 0]
    np.testing.assert_allclose(got["perplexity"], np.exp((w * nll).sum() / w.sum()), rtol=1e-4)
    if case == "gemma":  # saved and loaded: the same logits, the options kept
        fused.save(tmp_path / "fused.keras")
        loaded = keras.saving.load_model(tmp_path / "fused.keras")
        assert isinstance(loaded, FusedCausalLM) and loaded.get_config()["chunk_size"] is None
        np.testing.assert_allclose(loaded.predict(x, verbose=0), logits, rtol=1e-5, atol=1e-5)


def test_bad_arguments():
    with pytest.raises(ValueError, match="`causal_lm`"):
        FusedCausalLM(keras.Sequential([keras.layers.Dense(3)]))
    fused = FusedCausalLM(_gemma(), label_smoothing=0.1)
    with pytest.raises(ValueError, match="`loss`"):
        fused.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="`metrics`"):
        fused.compile(optimizer="sgd", metrics=["accuracy"])
    with pytest.raises(ValueError, match="`label_smoothing`"):
        FusedCausalLM(fused.causal_lm, label_smoothing=2.0)
    with pytest.raises((ValueError, TypeError), match="`token_accuracy`"):
        FusedCausalLM(fused.causal_lm, token_accuracy="yes")
