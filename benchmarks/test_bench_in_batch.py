"""Forward + backward of `MultipleNegativesRankingLoss` against a plain
cross-entropy over the similarity matrix (issue 19).

Setting: B anchor-positive pairs (and, for `triplets`, one hard negative per
anchor), embeddings N(0, 1) float32, D = 128, positives = anchor + noise;
B = 256 and 1024.

* ours: `MultipleNegativesRankingLoss(scale=20.0)` on the stacked
  `(B, m, D)` embeddings;
* `plain` (the baseline, in the same process and on the same backend): the
  textbook recipe, `keras.utils.normalize` of anchors and candidates, the
  `B x (m - 1) B` matrix `20 * cos`, and
  `keras.losses.SparseCategoricalCrossentropy(from_logits=True)` with targets
  `arange(B)`. The same value (checked to 1e-5 in each variant's first block).

Both timed by `harness.value_and_grad_step` (XLA jit on JAX and TensorFlow,
eager autograd on torch). Variants take turns, `BLOCKS` blocks of `ROUNDS`
rounds each, the order rotated from block to block (`harness.rotated`); the
ratio is ours / plain of the medians.

`INBATCH_BENCH_BATCH_SIZES` (comma-separated) times only those B (smoke
runs: `INBATCH_BENCH_BATCH_SIZES=32 pytest benchmarks/test_bench_in_batch.py
--benchmark-disable`).

Run with `KERAS_BACKEND=<backend> pytest benchmarks/test_bench_in_batch.py --benchmark-only`.
"""

import os

import keras
import numpy as np
import pytest
from harness import BACKEND, as_numpy, rotated, to_backend, value_and_grad_step

from keras_lossplus import losses as L

BATCH_SIZES = tuple(int(b) for b in os.environ.get("INBATCH_BENCH_BATCH_SIZES", "").split(",") if b) or (256, 1024)
DIM, SCALE = 128, 20.0
COLUMNS = {"pairs": 2, "triplets": 3}
BLOCKS, ROUNDS = 5, 5
IMPLEMENTATIONS = ("keras_lossplus", "plain")

MEASURED = (
    "the loss and its gradient w.r.t. the stacked embeddings (B, m, 128), N(0, 1) float32; both: XLA jit on jax "
    "and tensorflow, eager autograd on torch; plain: SparseCategoricalCrossentropy(from_logits=True) on 20 * cos"
)


def stacked_batch(batch_size, columns, seed=0):
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(batch_size, columns, DIM)).astype("float32")
    emb[:, 1] = emb[:, 0] + 3.0 * emb[:, 1]  # cos(anchor, positive) about 0.3
    return np.zeros(batch_size, "float32"), emb


def plain_loss(y_true, y_pred):
    """Cross-entropy over `scale * cos(anchor_i, candidate_j)`, target `i`."""
    ops = keras.ops
    anchors = keras.utils.normalize(y_pred[:, 0], axis=-1)
    candidates = ops.reshape(ops.transpose(y_pred[:, 1:], (1, 0, 2)), (-1, DIM))
    logits = SCALE * ops.matmul(anchors, ops.transpose(keras.utils.normalize(candidates, axis=-1)))
    targets = ops.arange(ops.shape(y_pred)[0])
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)(targets, logits)


def build_step(kind, batch_size, implementation):
    y_true, y_pred = stacked_batch(batch_size, COLUMNS[kind])
    loss = L.MultipleNegativesRankingLoss(scale=SCALE) if implementation == "keras_lossplus" else plain_loss
    step = value_and_grad_step(loss, to_backend(y_true), to_backend(y_pred))
    value, grad = as_numpy(step())
    expected, _ = as_numpy(value_and_grad_step(plain_loss, to_backend(y_true), to_backend(y_pred), warmup=0)())
    np.testing.assert_allclose(value, expected, rtol=1e-5, atol=1e-6)
    assert np.isfinite(grad).all()
    return step


CASES = [
    (kind, batch_size, block, implementation)
    for kind in COLUMNS
    for batch_size in BATCH_SIZES
    for block in range(BLOCKS)
    for implementation in rotated(IMPLEMENTATIONS, block)
]


@pytest.fixture(scope="module")
def steps():
    return {}


@pytest.mark.parametrize("kind, batch_size, block, implementation", CASES, ids=str)
def test_mnrl(benchmark, steps, kind, batch_size, block, implementation):
    key = kind, batch_size, implementation
    if key not in steps:
        steps[key] = build_step(kind, batch_size, implementation)
    benchmark.group = f"mnrl_{kind} B={batch_size} {BACKEND}"
    benchmark.extra_info.update(
        backend=BACKEND, loss=f"mnrl_{kind} B={batch_size}", implementation=implementation, block=block,
        batch_size=batch_size, shape=[batch_size, COLUMNS[kind], DIM], measured=MEASURED,
    )
    benchmark.pedantic(steps[key], rounds=ROUNDS, warmup_rounds=1)
