"""Forward + backward of the fused linear cross-entropy (`LinearCrossEntropy`,
issue 30) against the naive path: time and the loss's own working memory.

Setting: `tokens` hidden states `(tokens, D)` ~ N(0, 1), a `(D, V)` kernel ~
N(0, 1) / sqrt(D), token ids uniform in `[0, V)`, float32; the loss is the
mean over the tokens, its gradient taken with respect to the hidden states
and the kernel.

* `keras_lossplus`: `LinearCrossEntropy()(labels, (hidden, kernel))`: token
  chunks of about 2^25 logits, each chunk's logits built, used and dropped,
  the gradients written out in the same pass.
* `naive` (peer): `keras.ops.matmul(hidden, kernel)` then Keras'
  `SparseCategoricalCrossentropy(from_logits=True)`, autodiff: the
  `(tokens, V)` logits (and their gradient) in memory.

Steps as in `harness.value_and_grad_step` (`lm_memory.make_step`): XLA jit
on JAX and TensorFlow, eager autograd on torch; variants take turns in
blocks, the order rotated from block to block. In its first block each
variant is checked (value rel. 1e-4; gradients against the naive path's,
when that ran) and its working memory recorded in `extra_info`:

* `working_bytes`: peak growth of one call less the bytes of the gradients
  it returns (hidden, kernel), which both paths must hold
  (`lm_memory.working_bytes`: TensorFlow's allocator peak, torch's CUDA
  one on a GPU, else the resident set; `None` for JAX on a GPU);
* `xla_temp_bytes` (JAX): XLA's temporaries of the compiled program, which
  are exactly that working memory (the report's "XLA temp MiB" column).

Sizes, tokens x D x V (`LINEAR_CE_BENCH_SIZES`, comma-separated, or
`issue` for the issue's three): by default 4096 x 256 x 32k and
2048 x 256 x 128k, a few seconds per call on two CPU cores, with more
tokens than one default chunk holds (1024 at 32k, 256 at 128k), so that
the chunking shows; `issue`:
4096 x 1024 x 32k, 4096 x 1024 x 128k and the Gemma-2-2B head
8192 x 2304 x 256k (`benchmarks/gpu.sh` sets it). A variant that does not
fit (out of memory) is skipped with the error as the reason, and the other
one's `extra_info` says `peer_failed`.

Run with `KERAS_BACKEND=<backend> pytest benchmarks/test_bench_linear_cross_entropy.py --benchmark-only`
or `benchmarks/report.py --suites linear_cross_entropy`; `lm_memory.py` alone
prints JAX's compile-only temporaries at the issue's sizes on any machine.
"""

import os

import numpy as np
import pytest
from harness import BACKEND, rotated, step_of_size, to_backend
from lm_memory import (
    IMPLEMENTATIONS,
    ISSUE_SIZES,
    jax_temp_bytes,
    loss_fn,
    make_step,
    size_name,
    working_bytes,
)

CPU_SIZES = ((4096, 256, 32768), (2048, 256, 131072))


def sizes():
    text = os.environ.get("LINEAR_CE_BENCH_SIZES", "").strip()
    if not text:
        return CPU_SIZES
    if text == "issue":
        return ISSUE_SIZES
    return tuple(tuple(int(x) for x in s.split("x")) for s in text.split(","))


SIZES = sizes()
BLOCKS = 2
ROUNDS = 2
MEASURED = (
    "the mean cross-entropy of `hidden @ kernel` over the tokens and its gradients w.r.t. `hidden` and "
    "`kernel`, float32; fused `LinearCrossEntropy` against the logits + `SparseCategoricalCrossentropy`; "
    "XLA jit on jax and tensorflow, eager autograd on torch"
)


def batch(tokens, dim, vocabulary):
    rng = np.random.default_rng(tokens + dim + vocabulary)
    hidden = rng.normal(size=(tokens, dim)).astype("float32")
    kernel = (rng.normal(size=(dim, vocabulary)) / np.sqrt(dim)).astype("float32")
    labels = rng.integers(0, vocabulary, size=tokens).astype("int32")
    return labels, hidden, kernel


def reference_value(labels, hidden, kernel, rows=512):
    """float64 mean cross-entropy, in row blocks."""
    total = 0.0
    for start in range(0, len(labels), rows):
        z = hidden[start:start + rows].astype("float64") @ kernel.astype("float64")
        top = z.max(axis=1)
        lse = top + np.log(np.exp(z - top[:, None]).sum(axis=1))
        total += float((lse - z[np.arange(len(z)), labels[start:start + rows]]).sum())
    return total / len(labels)


def _is_oom(error):
    text = f"{type(error).__name__}: {error}".lower()
    return any(k in text for k in ("out of memory", "resource_exhausted", "resourceexhausted", "oom",
                                   "cannot allocate", "failed to allocate"))


def build_step(size, implementation, cache):
    tokens, dim, vocabulary = size
    labels, hidden, kernel = batch(*size)
    y, h, k = to_backend(labels), to_backend(hidden), to_backend(kernel)
    step = make_step(loss_fn(implementation), y, h, k)
    try:
        step()  # compiles
        value, dh, dk = step()
    except Exception as error:
        if not _is_oom(error):
            raise
        return None, {"failed": f"{type(error).__name__}: {str(error).splitlines()[0][:300]}"}
    from keras import ops

    value = float(ops.convert_to_numpy(value))
    assert value == pytest.approx(reference_value(labels, hidden, kernel), rel=1e-4)
    grads = [np.asarray(ops.convert_to_numpy(g)) for g in (dh, dk)]
    assert all(np.isfinite(g).all() for g in grads)
    del dh, dk
    other = cache.get((size, "grads"))
    if other is None:
        cache[(size, "grads")] = grads
    else:  # the two paths agree
        for g, o in zip(grads, other):
            np.testing.assert_allclose(g, o, rtol=1e-3, atol=1e-4 * np.abs(o).max())
    grad_bytes = 4 * (tokens * dim + dim * vocabulary)
    info = {"value": value, "working_bytes": working_bytes(step, grad_bytes), "grad_bytes": grad_bytes,
                "xla_temp_bytes": jax_temp_bytes(implementation, *size) if BACKEND == "jax" else None}
    return step, info


@pytest.fixture(scope="module")
def lce_steps():
    """(size, implementation) -> (warmed-up step or None, extra info); only the current size's are kept."""
    return {}


CASES = [
    (size, block, implementation)
    for size in SIZES
    for block in range(BLOCKS)
    for implementation in rotated(IMPLEMENTATIONS, block)
]


@pytest.mark.parametrize("size, block, implementation", CASES, ids=str)
def test_linear_cross_entropy(benchmark, lce_steps, size, block, implementation):
    step, info = step_of_size(lce_steps, size, implementation, lambda: build_step(size, implementation, lce_steps))
    if step is None:
        pytest.skip(f"{implementation} at {size_name(*size)} does not fit: {info['failed']}")
    peer = next(impl for impl in IMPLEMENTATIONS if impl != implementation)
    peer_info = lce_steps.get((size, peer), (None, {}))[1]
    tokens, dim, vocabulary = size
    loss = f"linear_ce {size_name(*size)}"
    benchmark.group = f"{loss} {BACKEND}"
    benchmark.extra_info.update(
        backend=BACKEND, loss=loss, implementation=implementation, block=block, tokens=tokens, dim=dim,
        vocabulary=vocabulary, measured=MEASURED, **info,
        **({"peer_failed": peer_info["failed"]} if "failed" in peer_info else {}),
    )
    benchmark.pedantic(step, rounds=ROUNDS, warmup_rounds=0)
