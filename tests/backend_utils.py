"""Backend-specific helpers for the tests only: gradients and XLA compilation
on whichever backend `KERAS_BACKEND` selects."""

from __future__ import annotations

from typing import Callable

import keras
import numpy as np

BACKEND = keras.backend.backend()
XLA_BACKENDS = ("jax", "tensorflow")


def to_numpy(x) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(x))


def value_and_grad(f: Callable, x: np.ndarray):
    """Value of the scalar `f(x)` and its gradient with respect to `x`, as numpy."""
    if BACKEND == "jax":
        import jax

        value, grad = jax.value_and_grad(f)(jax.numpy.asarray(x))
    elif BACKEND == "tensorflow":
        import tensorflow as tf

        var = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(var)
            value = f(var)
        grad = tape.gradient(value, var)
        grad = tf.zeros_like(var) if grad is None else grad
    elif BACKEND == "torch":
        import torch

        var = torch.tensor(np.asarray(x), requires_grad=True)
        value = f(var)
        if value.requires_grad:
            value.backward()
        grad = torch.zeros_like(var) if var.grad is None else var.grad
        value = value.detach()
    else:  # pragma: no cover
        raise NotImplementedError(BACKEND)
    return to_numpy(value), to_numpy(grad)


def xla_compile(f: Callable) -> Callable:
    """`jax.jit` on JAX, `tf.function(jit_compile=True)` on TensorFlow
    (without autograph: the losses need none, and autograph's conversion
    cache was seen to hand back another method's conversion, `__repr__` for
    `Loss.__call__`, after hundreds of tests in one process)."""
    if BACKEND == "jax":
        import jax

        return jax.jit(f)
    if BACKEND == "tensorflow":
        import tensorflow as tf

        return tf.function(f, jit_compile=True, autograph=False)
    raise NotImplementedError(f"no XLA compilation on the {BACKEND} backend")


def with_mask(x: np.ndarray, mask: np.ndarray):
    """A backend tensor holding `x` that carries the Keras mask `mask`."""
    from keras.src.backend import set_keras_mask

    tensor = keras.ops.convert_to_tensor(x)
    set_keras_mask(tensor, keras.ops.convert_to_tensor(mask))
    return tensor
