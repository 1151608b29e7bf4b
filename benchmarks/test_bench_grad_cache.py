"""One training step of an MLP encoder with an in-batch loss over N items:
`keras_lossplus.GradCacheModel` (chunks of `CHUNK` items) against the same
model trained on the whole batch at once (Keras' own `train_step`), issue 19
item 2.

Setting: items of 256 float32 features, N(0, 1); encoder Dense 1024 relu x 3
-> Dense 128 (about 2.4 M parameters); `NTXentLoss(temperature=0.1,
chunk_size=256)` (its own row blocks: the loss's work is O(256 N), not
O(N^2)) on labels `arange(N) % (N / 4)` (4 items per class); SGD; N in `BATCH_SIZES` (256, 1024, 4096;
`GRAD_CACHE_BENCH_SIZES="64 128"` for a smoke run), chunks of `CHUNK = 256`
items (`GRAD_CACHE_BENCH_CHUNK`); `jit_compile=True` on JAX and TensorFlow,
eager on torch. Variants:

* `full_batch` (the peer): `GradCacheModel` with Keras' own `train_step`
  (the same `call` and loss, one forward and one backward over N items);
* `keras_lossplus+grad_cache`: `GradCacheModel(encoder, chunk_size=CHUNK)`.

Each variant is timed by `harness.train_step` (the model's compiled train
function on a fixed batch); the variants take turns, `BLOCKS` blocks of
`ROUNDS` rounds, the order rotated from block to block. Before timing, the
first step of both is checked to give the same loss and the same updated
weights (rel. 1e-4).

Memory, recorded in `extra_info`:

* JAX: `xla_temp_mib`, the temporaries of the compiled train step
  (`jax.jit(model.train_step).lower(state, data).compile().memory_analysis()`,
  deterministic): the activations kept for the backward pass and the loss's
  work. The full batch's grows with N; GradCache's holds one chunk's
  activations plus the `(N, 128)` embeddings and the loss's work.
  `python benchmarks/test_bench_grad_cache.py --memory 1024 4096 16384`
  prints this figure for both at more sizes (compiled, not run), with the
  loss's own value and gradient on `(N, 128)` embeddings alone (`loss
  alone`, what any whole-batch step needs) and each step's excess over it;
  `test_memory_flat_in_n` checks it at the suite's sizes (JAX; it runs
  without `--benchmark-only`);
* every backend: `peak_rss_mib`, the growth of the process's resident set
  over two steps (high-water mark reset first, as `metric_memory.py`
  measures it); noisier (allocator caches), and the only figure on torch.

Run with `KERAS_BACKEND=<backend> pytest benchmarks/test_bench_grad_cache.py --benchmark-only`
or `benchmarks/report.py --suites grad_cache`.
"""

import argparse
import os

import keras
import numpy as np
import pytest
from harness import BACKEND, rotated, to_backend, train_step
from metric_memory import measure

import keras_lossplus as klp

BATCH_SIZES = [int(b) for b in os.environ.get("GRAD_CACHE_BENCH_SIZES", "256 1024 4096").split()]
CHUNK = int(os.environ.get("GRAD_CACHE_BENCH_CHUNK", "256"))
BLOCKS, ROUNDS = 3, 3
FEATURES, HIDDEN, DEPTH, OUT = 256, 1024, 3, 128
PEER, OURS = "full_batch", "keras_lossplus+grad_cache"
IMPLEMENTATIONS = (PEER, OURS)
MIB = 2**20


class FullBatch(klp.GradCacheModel):
    """The peer: Keras' own training step over the whole batch."""

    train_step = keras.Model.train_step


def build(implementation, n):
    keras.utils.set_random_seed(0)  # same initial weights for both
    layers = [keras.Input((FEATURES,))]
    layers += [keras.layers.Dense(HIDDEN, activation="relu") for _ in range(DEPTH)]
    encoder = keras.Sequential(layers + [keras.layers.Dense(OUT)])
    cls = FullBatch if implementation == PEER else klp.GradCacheModel
    model = cls(encoder, chunk_size=min(CHUNK, n))
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss=klp.losses.NTXentLoss(temperature=0.1, chunk_size=256),
                  jit_compile=BACKEND != "torch")
    return model


def batch(n):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, FEATURES)).astype("float32")
    return x, (np.arange(n) % max(1, n // 4)).astype("float32")


def xla_temp_mib(model, x, y):
    """The compiled train step's temporaries (JAX only)."""
    if BACKEND != "jax":
        return None
    import jax

    state = model._get_jax_state(trainable_variables=True, non_trainable_variables=True,
                                 optimizer_variables=True, metrics_variables=True)
    analysis = jax.jit(model.train_step).lower(state, (x, y, None)).compile().memory_analysis()
    return None if analysis is None else round(analysis.temp_size_in_bytes / MIB, 2)


def weights(model):
    return [np.asarray(keras.ops.convert_to_numpy(v.value)) for v in model.trainable_variables]


def build_steps(n):
    """Both variants' warmed-up steps and memory figures, after checking that
    their first steps agree."""
    x, y = batch(n)
    xb, yb = to_backend(x), to_backend(y)
    out, first = {}, {}
    for implementation in IMPLEMENTATIONS:
        model = build(implementation, n)
        first[implementation] = (float(np.asarray(model.train_on_batch(xb, yb))), weights(model))
        info = dict(xla_temp_mib=xla_temp_mib(model, xb, yb))  # after the first step has built the optimizer
        step = train_step(model, xb, yb)
        info["peak_rss_mib"] = round(measure(step)["peak"] / MIB, 1)
        out[implementation] = step, info
    (loss_ours, w_ours), (loss_peer, w_peer) = first[OURS], first[PEER]
    assert loss_ours == pytest.approx(loss_peer, rel=1e-4)
    for a, b in zip(w_ours, w_peer):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    return out


CASES = [(n, block, impl) for n in BATCH_SIZES for block in range(BLOCKS) for impl in rotated(IMPLEMENTATIONS, block)]


@pytest.fixture(scope="module")
def grad_cache_steps():
    return {}


@pytest.mark.parametrize("n, block, implementation", CASES, ids=str)
def test_grad_cache_train_step(benchmark, grad_cache_steps, n, block, implementation):
    if n not in grad_cache_steps:
        grad_cache_steps.clear()  # free the previous N's models
        grad_cache_steps[n] = build_steps(n)
    step, info = grad_cache_steps[n][implementation]
    benchmark.group = f"grad_cache N={n} {BACKEND}"
    benchmark.extra_info.update(
        backend=BACKEND, loss=f"grad_cache N={n}", implementation=implementation, block=block, batch_size=n,
        chunk_size=min(CHUNK, n), hidden=HIDDEN, depth=DEPTH, **info,
    )
    benchmark.pedantic(step, rounds=ROUNDS, warmup_rounds=1)


def loss_alone_mib(model, y, n):
    """The temporaries of the loss's value and gradient on `(n, OUT)`
    embeddings alone (JAX): what any step over the whole batch needs."""
    import jax

    embeddings = to_backend(np.zeros((n, OUT), "float32"))
    compiled = jax.jit(jax.value_and_grad(lambda e: model.batch_loss(y, e))).lower(embeddings).compile()
    return round(compiled.memory_analysis().temp_size_in_bytes / MIB, 2)


def memory_mib(n):
    """`{implementation: xla_temp_mib, "loss_alone": ...}` of the compiled
    train step at N = n (JAX)."""
    x, y = (to_backend(a) for a in batch(n))
    out = {}
    for implementation in IMPLEMENTATIONS:
        model = build(implementation, n)
        model.optimizer.build(model.trainable_variables)
        out[implementation] = xla_temp_mib(model, x, y)
    out["loss_alone"] = loss_alone_mib(model, y, n)
    return out


@pytest.mark.skipif(BACKEND != "jax", reason="XLA's memory analysis: JAX only")
def test_memory_flat_in_n():
    """Beyond the loss's own work, GradCache's temporaries stay at one
    chunk's while the full batch's grow with N."""
    small, large = max(min(BATCH_SIZES), CHUNK), max(BATCH_SIZES)
    if large < 4 * small:
        pytest.skip("needs sizes that span a factor of 4 above the chunk size")
    lo, hi = memory_mib(small), memory_mib(large)
    # the encoder's share (beyond the loss), at the large and the small N; GradCache's carries a fixed
    # overhead (the gradient accumulator of the chunk loop), so compare the growths
    encoder = {impl: (hi[impl] - hi["loss_alone"], lo[impl] - lo["loss_alone"]) for impl in IMPLEMENTATIONS}
    growth = {impl: large_n - small_n for impl, (large_n, small_n) in encoder.items()}
    assert encoder[PEER][0] > 2 * encoder[PEER][1], (lo, hi)  # grows with N
    assert growth[OURS] < 0.25 * growth[PEER], (lo, hi)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="XLA temporaries of the train step per N (JAX)")
    parser.add_argument("--memory", type=int, nargs="+", default=[1024, 4096, 16384])
    args = parser.parse_args()
    print(f"| N | chunk | {PEER} MiB | {OURS} MiB | loss alone MiB | {PEER} - loss | {OURS} - loss |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for n in args.memory:
        f = memory_mib(n)
        print(f"| {n} | {min(CHUNK, n)} | {f[PEER]} | {f[OURS]} | {f['loss_alone']} | "
              f"{f[PEER] - f['loss_alone']:.2f} | {f[OURS] - f['loss_alone']:.2f} |", flush=True)
