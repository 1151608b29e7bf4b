"""The overhead of cross-batch memory per training step: a small encoder
trained with `MultiSimilarityLoss` on the batch alone, and with
`CrossBatchMemory(MultiSimilarityLoss(), memory_size)`.

The encoder is 64 -> Dense 256 relu -> Dense 128, batch 128 (32 classes, 4
samples each), Adam, compiled with `jit_compile=True` on JAX and TensorFlow
(torch: no XLA). A case times `train_step`: the model's own compiled train
function. Variants:

* `in_batch`: the loss as the model's compiled loss (labels as `y`);
* `xbm_<M>`: the loss in a `CrossBatchMemory(memory_size=M)` layer on the
  embeddings (labels as a second input), for each `M` of
  `XBM_BENCH_MEMORY` (default `1024,4096`).

The variants take turns in blocks (as `test_bench_penalties.py`: the load
of a shared machine moves by more than the differences within a second);
the report is the ratio of the medians, `xbm_<M> / in_batch`. Each variant
is checked once: its first step (the queue still empty) gives the same loss
as `in_batch`'s first step from the same weights.

Smoke run: `XBM_BENCH_BLOCKS=1 XBM_BENCH_MEMORY=256 pytest benchmarks/test_bench_xbm.py
--benchmark-disable`.
"""

import os

import keras
import numpy as np
import pytest
from harness import BACKEND, rotated, to_backend, train_step

import keras_lossplus as klp

BLOCKS = int(os.environ.get("XBM_BENCH_BLOCKS", "10"))
MEMORY = [int(m) for m in os.environ.get("XBM_BENCH_MEMORY", "1024,4096").split(",")]
ROUNDS = 5
BATCH, CLASSES, IN_DIM, EMB_DIM = 128, 32, 64, 128
GROUP = "xbm_train_step"
VARIANTS = ["in_batch"] + [f"xbm_{m}" for m in MEMORY]


def _batch():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(BATCH, IN_DIM)).astype("float32")
    labels = rng.permutation(np.repeat(np.arange(CLASSES), BATCH // CLASSES)).astype("int32")
    return x, labels


def build_model(variant):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((IN_DIM,))
    h = keras.layers.Dense(256, activation="relu")(inputs)
    emb = keras.layers.Dense(EMB_DIM)(h)
    jit = BACKEND != "torch"
    if variant == "in_batch":
        model = keras.Model(inputs, emb)
        model.compile(optimizer="adam", loss=klp.losses.MultiSimilarityLoss(), jit_compile=jit)
        return model
    labels = keras.Input((), dtype="int32")
    memory = int(variant.split("_")[1])
    out = klp.layers.CrossBatchMemory(klp.losses.MultiSimilarityLoss(), memory_size=memory)([emb, labels])
    model = keras.Model([inputs, labels], out)
    model.compile(optimizer="adam", loss=None, jit_compile=jit)
    return model


def checked_train_step(variant, first_losses):
    x, labels = _batch()
    model = build_model(variant)
    if variant == "in_batch":
        data = (to_backend(x), to_backend(labels))
    else:
        data = ([to_backend(x), to_backend(labels)], None)
    logs = model.train_on_batch(*data, return_dict=True)  # builds, compiles, first step
    first_losses[variant] = logs["loss"]
    if "in_batch" in first_losses:  # the queue is empty at the first step: the in-batch loss
        assert logs["loss"] == pytest.approx(first_losses["in_batch"], rel=1e-4)
    return train_step(model, *data)


@pytest.fixture(scope="module")
def xbm_steps():
    return {}, {}


@pytest.mark.parametrize("block, variant", [(b, v) for b in range(BLOCKS) for v in rotated(VARIANTS, b)], ids=str)
def test_xbm_train_step(benchmark, xbm_steps, block, variant):
    steps, first_losses = xbm_steps
    if variant not in steps:
        steps[variant] = checked_train_step(variant, first_losses)
    benchmark.group = f"{GROUP} {BACKEND}"
    benchmark.extra_info.update(
        backend=BACKEND, loss=GROUP, implementation=variant, block=block, shape=[BATCH, EMB_DIM],
        measured="one training step (forward, loss, backward, Adam update) of the model's compiled train "
                 "function, encoder 64-256-128, batch 128, MultiSimilarityLoss alone or in CrossBatchMemory; "
                 "XLA jit on jax and tensorflow, eager on torch",
    )
    benchmark.pedantic(steps[variant], rounds=ROUNDS, warmup_rounds=1)
