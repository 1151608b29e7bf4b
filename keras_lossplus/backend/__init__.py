"""The only place with backend-specific code.

Each backend has its own module (`jax.py`, `tensorflow.py`, `torch.py`); the
functions here dispatch to the one `keras.backend.backend()` names, importing
it on first use so that only the installed backend is ever imported.
"""

from __future__ import annotations

import functools
import importlib
from types import ModuleType
from typing import Any

import keras

from keras_lossplus.ops import with_gradient_of


def _module() -> ModuleType:
    return importlib.import_module(f"keras_lossplus.backend.{keras.backend.backend()}")


def is_concrete(x: Any) -> bool:
    """Whether `x` holds values now (eager execution), as opposed to a
    symbolic or traced tensor inside a compiled function; value checks that
    raise can only run on concrete tensors.

    Example:
    >>> is_concrete(keras.ops.ones((2,)))
    True
    """
    if isinstance(x, keras.KerasTensor):
        return False
    return _module().is_concrete(x)


def gather_replicas(tensors: list) -> Any:
    """Inside a data-parallel replica (TensorFlow's `tf.distribute`), the
    global batch: `(tensors_gathered, num_replicas)`, each tensor
    all-gathered along axis 0 in replica order, carrying a gradient only
    through this replica's own slice; `None` when the loss already sees the
    whole batch (one replica; JAX, whose `keras.distribution` shards one
    global computation). Raises where gathering is not supported."""
    return _module().gather_replicas(tensors)


def num_replicas() -> int:
    """The number of replicas whose per-replica losses Keras sums the
    gradients of (`tf.distribute`), 1 elsewhere."""
    return _module().num_replicas()


def replica_id() -> Any:
    """This replica's index (`tf.distribute`, more than one replica), or
    `None` outside a data-parallel replica."""
    return _module().replica_id()


def replica_sum(x: Any) -> Any:
    """The sum of `x` (a tensor or a list of tensors) over the data-parallel
    replicas (`tf.distribute`), `x` itself elsewhere. No gradient flows
    through the sum."""
    return _module().replica_sum(x)


def replica_losses(local: Any):
    """`(losses, shares)` from this replica's task losses `local`.

    Under `tf.distribute` each replica computes Keras' share of every task
    loss (its slice's loss / replicas, or the global batch's / replicas for
    a batch-level loss): the shares add up to the global losses over the
    replicas. `losses` holds the global values (what the weighting strategy
    and the logs see) and `shares` the global values / replicas; both carry
    the gradient of this replica's share, which Keras sums over the replicas.
    With one replica both are `local`.
    """
    replicas = num_replicas()
    if replicas == 1:
        return local, local
    total = replica_sum(local)
    return with_gradient_of(total, local), with_gradient_of(total / replicas, local)


def multi_task_train_step(model: Any, *args: Any) -> Any:
    """The training step of a `MultiOutputModel` whose weighting strategy
    needs per-task gradients or the losses after the step: `(data)` on
    TensorFlow and torch, `(state, data)` on JAX, like `Model.train_step`."""
    return _module().multi_task_train_step(model, *args)


def compiled_on_jax(fn: Any) -> Any:
    """Decorate an in-batch loss function `fn(y_true, y_pred, ...,
    sample_weight=None)` so that on JAX it runs as one `jax.jit` function,
    cached per set of (hashable) options.

    Outside a compiled step JAX runs operations one by one and compiles every
    `lax.while_loop` again at each call (its body is a new closure each time);
    the cached compilation makes eager calls (and `jax.grad` of them) fast.
    Under `jit` the inner function is inlined, and on the other backends `fn`
    runs as it is."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if keras.backend.backend() != "jax":
            return fn(*args, **kwargs)
        return _module().call_compiled(fn, *args, **kwargs)

    return wrapper
