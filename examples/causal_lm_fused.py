"""Train a tiny KerasHub Gemma causal LM with keras_lossplus's fused linear
cross-entropy, side by side with the stock loss on the same data, and print
both losses and the memory the logits would have taken.

    KERAS_BACKEND=jax python examples/causal_lm_fused.py [--steps 20]

The text is generated here: sentences of a small arithmetic grammar
("three plus four is seven ."), tokenised by a word vocabulary, so that the
model has something learnable. No download is needed: the model is built
from a small config. Needs `pip install keras-hub`.
"""

import argparse

import keras
import numpy as np

import keras_lossplus as klp

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
VOCAB = ["<pad>", "<bos>", "plus", "is", "."] + WORDS + [f"ten_{w}" for w in WORDS]


def sentences(n: int, length: int, rng: np.random.Generator) -> tuple:
    """Token ids `(n, length + 1)` of "a plus b is c ." sentences, padded, and the padding mask."""
    ids = np.zeros((n, length + 1), "int32")
    for row in range(n):
        a, b = rng.integers(0, 10, size=2)
        c = WORDS[a + b] if a + b < 10 else f"ten_{WORDS[a + b - 10]}"
        words = ["<bos>", WORDS[a], "plus", WORDS[b], "is", c, "."]
        ids[row, : len(words)] = [VOCAB.index(w) for w in words]
    return ids, (ids != 0)


def build(seed: int):
    import keras_hub

    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.GemmaBackbone(
        vocabulary_size=len(VOCAB), num_layers=2, num_query_heads=2, num_key_value_heads=1, hidden_dim=32,
        intermediate_dim=64, head_dim=16)
    return keras_hub.models.GemmaCausalLM(backbone, preprocessor=None)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    ids, mask = sentences(64, 8, rng)
    x = {"token_ids": ids[:, :-1], "padding_mask": mask[:, :-1]}
    y, weights = ids[:, 1:], mask[:, 1:].astype("float32")

    stock = build(seed=1)
    stock.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), weighted_metrics=[])
    fused_lm = build(seed=1)  # the same initial weights
    fused = klp.causal_lm.FusedCausalLM(fused_lm, token_accuracy=True)
    fused.compile(optimizer=keras.optimizers.Adam(3e-3))

    print(f"keras_lossplus fused linear cross-entropy on a tiny Gemma (V={len(VOCAB)}), backend "
          f"{keras.backend.backend()}")
    print(f"{'step':>4}  {'stock loss':>10}  {'fused loss':>10}  {'token acc':>9}")
    for step in range(args.steps):
        a = stock.train_on_batch(x, y, sample_weight=weights, return_dict=True)
        b = fused.train_on_batch(x, y, sample_weight=weights, return_dict=True)
        if step % 5 == 0 or step == args.steps - 1:
            print(f"{step:>4}  {a['loss']:>10.5f}  {b['loss']:>10.5f}  {b['token_accuracy']:>9.3f}")
    gemma_logits = 8192 * 256_000 * 4
    print(f"At Gemma-2-2B's vocabulary (256k) and 8192 tokens, the stock loss's float32 logits alone would take "
          f"{gemma_logits / 2**30:.1f} GiB (and their gradient as much); the fused loss builds one chunk of "
          f"128 x 256k at a time ({128 * 256_000 * 4 / 2**20:.0f} MiB).")


if __name__ == "__main__":
    main()
