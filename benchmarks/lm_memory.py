"""Forward + backward steps and working memory of a language-model head's
loss, fused (`LinearCrossEntropy`) or naive (`hidden @ kernel`, then Keras'
`SparseCategoricalCrossentropy(from_logits=True)`), for
`test_bench_linear_cross_entropy.py` (issue 30).

* `loss_fn(implementation)`: `(labels, hidden, kernel) -> scalar`.
* `make_step(loss_fn, labels, hidden, kernel)`: a blocking
  `() -> (value, d_hidden, d_kernel)`: `jax.jit(jax.value_and_grad(...,
  argnums=(1, 2)))` on JAX, a `GradientTape` in
  `tf.function(jit_compile=True)` on TensorFlow, eager autograd on torch
  (`torch.cuda.synchronize()` on a GPU), as `harness.value_and_grad_step`
  does for one input.
* `working_bytes(step, grad_bytes)`: the loss's own working memory, the
  peak growth of one call less the bytes of the gradients it returns (which
  both paths must hold): TensorFlow's allocator peak
  (`tf.config.experimental.get_memory_info`, on the CPU too: its allocator
  keeps freed memory, so the resident set would not grow), torch's CUDA
  allocator peak on a GPU, on the CPU the growth of the resident set (JAX,
  torch: `metric_memory.measure`, high-water mark reset through
  `/proc/self/clear_refs`); `None` for JAX on a GPU (JAX keeps one peak
  per process), where `jax_temp_bytes` is the figure.
* `jax_temp_bytes(implementation, tokens, dim, vocabulary)`: the
  temporaries of the compiled JAX forward + backward
  (`.lower(...).compile().memory_analysis().temp_size_in_bytes`: exactly the
  working memory, outputs and inputs excluded), from abstract inputs
  (`jax.ShapeDtypeStruct`): compiled, never run, so that any size can be
  measured on any machine (the Gemma-2-2B head on a CPU).

    KERAS_BACKEND=jax .venv/bin/python benchmarks/lm_memory.py   # compile-only table of the issue's sizes
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras

BACKEND = keras.backend.backend()
MIB = 2**20
IMPLEMENTATIONS = ("keras_lossplus", "naive")
# the issue's sizes, tokens x D x V: 32k and 128k vocabularies, the Gemma-2-2B head
ISSUE_SIZES = ((4096, 1024, 32768), (4096, 1024, 131072), (8192, 2304, 262144))


def loss_fn(implementation: str) -> Callable:
    """`(labels, hidden, kernel) -> scalar`, the mean over the tokens."""
    if implementation == "naive":
        cross_entropy = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

        def naive(labels, hidden, kernel):
            return cross_entropy(labels, keras.ops.matmul(hidden, kernel))

        return naive
    from keras_lossplus.losses import LinearCrossEntropy

    fused = LinearCrossEntropy()

    def ours(labels, hidden, kernel):
        return fused(labels, (hidden, kernel))

    return ours


def on_gpu() -> bool:
    from harness import device

    return device()["kind"] == "gpu"


def make_step(fn: Callable, labels: Any, hidden: Any, kernel: Any) -> Callable:
    """A blocking `() -> (value, d_hidden, d_kernel)` (not yet called)."""
    if BACKEND == "jax":
        import jax

        compiled = jax.jit(jax.value_and_grad(fn, argnums=(1, 2)))

        def step():
            value, (dh, dk) = jax.block_until_ready(compiled(labels, hidden, kernel))
            return value, dh, dk

        return step
    if BACKEND == "tensorflow":
        import tensorflow as tf

        @tf.function(jit_compile=True)
        def compiled(labels, hidden, kernel):
            with tf.GradientTape() as tape:
                tape.watch((hidden, kernel))
                value = fn(labels, hidden, kernel)
            dh, dk = tape.gradient(value, (hidden, kernel))
            return value, dh, dk

        def step():
            value, dh, dk = compiled(labels, hidden, kernel)
            return value.numpy(), dh, dk

        return step
    import torch

    h = hidden.detach().requires_grad_(True)
    k = kernel.detach().requires_grad_(True)
    cuda = h.is_cuda

    def step():
        value = fn(labels, h, k)
        dh, dk = torch.autograd.grad(value, (h, k))
        if cuda:
            torch.cuda.synchronize()
        return value.detach(), dh, dk

    return step


def _device_in_use_and_peak(reset: bool, device: str = "GPU:0") -> tuple:
    """`(bytes in use, peak bytes)` of the allocator: TensorFlow's for
    `device` (its CPU allocator too), torch's CUDA one."""
    if BACKEND == "tensorflow":
        import tensorflow as tf

        if reset:
            tf.config.experimental.reset_memory_stats(device)
        info = tf.config.experimental.get_memory_info(device)
        return info["current"], info["peak"]
    import torch

    if reset:
        torch.cuda.reset_peak_memory_stats()
    return torch.cuda.memory_allocated(), torch.cuda.max_memory_allocated()


def working_bytes(step: Callable, grad_bytes: int) -> int | None:
    """Peak growth of one `step()` less `grad_bytes` (the returned
    gradients); `None` for JAX on a GPU (see `jax_temp_bytes`)."""
    gpu = on_gpu()
    if BACKEND == "tensorflow" or (gpu and BACKEND == "torch"):
        device = "GPU:0" if gpu else "CPU:0"
        base, _ = _device_in_use_and_peak(reset=True, device=device)
        out = step()
        _, peak = _device_in_use_and_peak(reset=False, device=device)
        del out
        return max(0, peak - base - grad_bytes)
    if gpu:  # JAX: one peak per process
        return None
    from metric_memory import measure

    return max(0, measure(step, runs=1)["peak"] - grad_bytes)


def jax_temp_bytes(implementation: str, tokens: int, dim: int, vocabulary: int, dtype: str = "float32") -> int:
    """XLA's temporaries of the compiled forward + backward (JAX only), from
    abstract inputs: compiled for the default device, not run."""
    import jax

    fn = loss_fn(implementation)
    args = (jax.ShapeDtypeStruct((tokens,), "int32"), jax.ShapeDtypeStruct((tokens, dim), dtype),
            jax.ShapeDtypeStruct((dim, vocabulary), dtype))
    compiled = jax.jit(jax.value_and_grad(fn, argnums=(1, 2))).lower(*args).compile()
    return int(compiled.memory_analysis().temp_size_in_bytes)


def size_name(tokens: int, dim: int, vocabulary: int) -> str:
    return f"{tokens}x{dim}x{vocabulary // 1024}k"


def main() -> None:
    import jax

    print(f"JAX {jax.__version__} on {jax.devices()[0].platform}: XLA temporaries of one forward + backward "
          "(compile only), MiB")
    print("| tokens x D x V | fused | naive | naive / fused |")
    print("|---|---:|---:|---:|")
    for tokens, dim, vocabulary in ISSUE_SIZES:
        fused, naive = (jax_temp_bytes(i, tokens, dim, vocabulary) for i in IMPLEMENTATIONS)
        print(f"| {size_name(tokens, dim, vocabulary)} | {fused / MIB:.0f} | {naive / MIB:.0f} "
              f"| {naive / fused:.1f} |")


if __name__ == "__main__":
    main()
