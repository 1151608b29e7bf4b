"""Backend-neutral timing of a loss's forward + backward pass, and of a
model's training step.

`value_and_grad_step(loss_fn, y_true, y_pred)` returns a zero-argument
callable that computes the loss and its gradient with respect to `y_pred` on
the backend that `KERAS_BACKEND` selects, and returns only once both are
computed:

* JAX: `jax.jit(jax.value_and_grad(...))`, then `jax.block_until_ready`.
* TensorFlow: a `GradientTape` inside `tf.function(jit_compile=True)`. Eager
  TensorFlow runs function calls synchronously (the default), so both outputs
  are computed when the call returns; `.numpy()` on the scalar loss makes
  sure of it without copying the gradient (a 16 MB copy costs ~2 ms).
* torch: plain eager autograd (`torch.autograd.grad`); torch has no XLA.
  On a CUDA device the step ends with `torch.cuda.synchronize()`.

The callable is compiled and run once (the warm-up) before it is returned, so
the first timed call measures the compiled program, not the tracing.

`loss_fn(y_true, y_pred)` must return a scalar: a `keras.losses.Loss`
instance, a function on `keras.ops`, or a peer's function on the backend's
own arrays (optax on JAX).

`train_step(model, x, y)` returns a zero-argument callable that runs one
step of the model's own compiled train function (`model.train_function`:
forward, loss, backward and optimizer update, XLA-compiled when the model
was compiled with `jit_compile=True`) on a fixed, pre-converted batch, the
way `fit`'s inner loop calls it, without `fit`'s callbacks, progress bar
and data pipeline. On JAX the state (variables, optimizer and metric
slots) is carried from step to step outside the model, as `fit` does
between syncs, rather than written back into every variable after each
step as `train_on_batch` does. On TensorFlow and torch it is the call that
`train_on_batch` makes (the same compiled one-step function that `fit`
runs, without `fit`'s `tf.data` iterator loop).

Peak memory is not measured: these losses are element-wise passes over
inputs whose size is known, `tracemalloc` does not see XLA's buffers, and
only JAX reports a compiled program's temporaries; `xla_temp_bytes` gives
that one where it is available.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import keras
import numpy as np

BACKEND = keras.backend.backend()


def device() -> dict:
    """What the current backend computes on: `{"kind": "gpu" | "cpu", "name": ...}`
    (the GPU's name, e.g. "NVIDIA H100 80GB HBM3"; "CPU" otherwise)."""
    name = None
    try:
        if BACKEND == "jax":
            import jax

            first = jax.devices()[0]
            name = first.device_kind if first.platform == "gpu" else None
        elif BACKEND == "tensorflow":
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
            if gpus:
                name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
        elif BACKEND == "torch":
            import torch

            name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception:  # pragma: no cover - a broken GPU runtime: report the CPU
        name = None
    return {"kind": "gpu", "name": name} if name else {"kind": "cpu", "name": "CPU"}


def to_backend(x: np.ndarray) -> Any:
    """A tensor of the current backend holding `x` (created outside the timing)."""
    return keras.ops.convert_to_tensor(x)


def _jax_step(loss_fn: Callable, y_true: Any, y_pred: Any) -> tuple:
    import jax

    compiled = jax.jit(jax.value_and_grad(loss_fn, argnums=1))

    def step():
        return jax.block_until_ready(compiled(y_true, y_pred))

    return step, compiled


def _tf_step(loss_fn: Callable, y_true: Any, y_pred: Any) -> tuple:
    import tensorflow as tf

    @tf.function(jit_compile=True)
    def compiled(y_true, y_pred):
        with tf.GradientTape() as tape:
            tape.watch(y_pred)
            value = loss_fn(y_true, y_pred)
        return value, tape.gradient(value, y_pred)

    def step():
        value, grad = compiled(y_true, y_pred)
        return value.numpy(), grad

    return step, compiled


def _torch_step(loss_fn: Callable, y_true: Any, y_pred: Any) -> tuple:
    import torch

    leaf = y_pred.detach().requires_grad_(True)

    cuda = leaf.is_cuda  # CUDA kernels run asynchronously: wait for them

    def step():
        value = loss_fn(y_true, leaf)
        (grad,) = torch.autograd.grad(value, leaf)
        if cuda:
            torch.cuda.synchronize()
        return value.detach(), grad

    return step, None


_STEPS = {"jax": _jax_step, "tensorflow": _tf_step, "torch": _torch_step}


def value_and_grad_step(loss_fn: Callable, y_true: Any, y_pred: Any, warmup: int = 2) -> Callable:
    """A blocking, compiled `() -> (loss, d loss / d y_pred)`, already warmed up.

    Args:
        loss_fn: `(y_true, y_pred) -> scalar` on the current backend.
        y_true, y_pred: Backend tensors (see `to_backend`).
        warmup: Calls made before returning; the first one compiles.
    """
    if BACKEND not in _STEPS:  # pragma: no cover
        raise NotImplementedError(f"no benchmark harness for the {BACKEND} backend")
    step, _ = _STEPS[BACKEND](loss_fn, y_true, y_pred)
    for _ in range(warmup):
        step()
    return step


def train_step(model: keras.Model, x: Any, y: Any, warmup: int = 2) -> Callable:
    """A blocking `() -> logs` running one step of `model.train_function` on
    the batch `(x, y)` (backend tensors), already warmed up.

    Call `model.train_on_batch(x, y)` first: it builds the model, its
    optimizer and metrics, and compiles `model.train_function`. On JAX the
    model's variables are stale after this (the state lives in the callable).
    """
    model.make_train_function()
    data = (x, y, None)  # what `train_on_batch` passes: no retracing
    if BACKEND == "jax":
        import jax

        state = model._get_jax_state(  # what `fit` passes to the train function
            trainable_variables=True, non_trainable_variables=True,
            optimizer_variables=True, metrics_variables=True,
        )

        def run():
            nonlocal state
            logs, state = jax.block_until_ready(model.train_function(state, iter([data])))
            return logs

    else:  # TensorFlow and torch run a function call synchronously

        def run():
            return model.train_function([data])

    def step():
        return {name: float(keras.ops.convert_to_numpy(v)) for name, v in run().items()}

    for _ in range(warmup):
        step()
    return step


def xla_temp_bytes(loss_fn: Callable, y_true: Any, y_pred: Any) -> Optional[int]:
    """Bytes of temporaries in the compiled forward + backward program (JAX
    only, where XLA reports it; `None` elsewhere)."""
    if BACKEND != "jax":
        return None
    _, compiled = _jax_step(loss_fn, y_true, y_pred)
    try:
        analysis = compiled.lower(y_true, y_pred).compile().memory_analysis()
    except Exception:  # pragma: no cover - not every jaxlib reports it
        return None
    return None if analysis is None else int(analysis.temp_size_in_bytes)


def as_numpy(result: tuple) -> tuple:
    """A step's `(value, grad)` as `(float, numpy array)`, to check them."""
    value, grad = (np.asarray(keras.ops.convert_to_numpy(x)) for x in result)
    return float(value), grad


def rotated(items, k):
    """`items` starting at index `k % len(items)`, so that no variant always runs first."""
    items = list(items)
    k %= len(items)
    return items[k:] + items[:k]


def step_of_size(cache: dict, size: Any, implementation: str, build: Callable) -> Any:
    """The cached `(step, info)` of `(size, implementation)`, built by
    `build()` on first use; the entries of other sizes are freed first, so
    that only one size's compiled steps (and their buffers) are alive."""
    key = size, implementation
    if key not in cache:
        for old in [k for k in cache if k[0] != size]:
            del cache[old]
        cache[key] = build()
    return cache[key]
