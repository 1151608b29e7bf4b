"""TensorFlow specifics."""

import contextlib
import functools
from typing import Any

import keras
import tensorflow as tf

from keras_lossplus import keras_internals


def is_concrete(x: Any) -> bool:
    return tf.executing_eagerly() and not (isinstance(x, tf.Tensor) and not hasattr(x, "numpy"))


def _replica_context() -> Any:
    context = tf.distribute.get_replica_context()  # None in a cross-replica context
    if context is None or context.num_replicas_in_sync == 1:
        return None
    return context


def num_replicas() -> int:
    context = _replica_context()
    return 1 if context is None else context.num_replicas_in_sync


def replica_id() -> Any:
    context = _replica_context()
    if context is None:
        return None
    return int(tf.get_static_value(context.replica_id_in_sync_group))


def replica_sum(x: Any) -> Any:
    context = _replica_context()
    if context is None:
        return x
    return context.all_reduce(tf.distribute.ReduceOp.SUM, tf.nest.map_structure(tf.stop_gradient, x))


UNEVEN_MESSAGE = (
    "keras_lossplus: cross_replica='gather' needs the same number of samples on every "
    "replica; use a global batch size divisible by the number of replicas (and drop the "
    "last partial batch, e.g. `drop_remainder=True`), or cross_replica='local'"
)


def _check_static_sizes(local: Any, gathered: Any, replicas: int) -> None:
    """Uneven replicas, when the shapes known at trace time already show it
    (otherwise the assertion in the step reports it)."""
    size, total = local.shape[0], gathered.shape[0]
    if size is not None and total is not None and total != size * replicas:
        raise ValueError(f"{UNEVEN_MESSAGE}. This replica holds {size} samples; the gathered batch has {total}, "
                         f"not {size} x {replicas}.")


def gather_replicas(tensors: list) -> Any:
    context = _replica_context()
    if context is None:
        return None
    first = next(t for t in tensors if t is not None)
    local = tf.shape(first)[0]
    replicas = context.num_replicas_in_sync
    offset = local * tf.cast(context.replica_id_in_sync_group, local.dtype)
    total = local * replicas
    sizes = context.all_gather(tf.reshape(local, [1]), axis=0)
    check = tf.debugging.assert_equal(
        sizes, tf.fill(tf.shape(sizes), local),
        message=UNEVEN_MESSAGE,
    )
    out = []
    for t in tensors:
        if t is None:
            out.append(None)
            continue
        with tf.control_dependencies([check]):
            gathered = tf.stop_gradient(context.all_gather(t, axis=0))
        _check_static_sizes(t, gathered, replicas)
        if t.dtype.is_floating:
            # the value is the gathered batch; the gradient reaches this replica's slice only
            pads = [[offset, total - offset - local]] + [[0, 0]] * (len(t.shape) - 1)
            gathered = gathered + tf.pad(t - tf.stop_gradient(t), pads)
        out.append(gathered)
    return out, replicas


def _backward(model: Any, tape: Any, local: Any, terms: list, penalty: Any, weights: Any = None) -> Any:
    """Gradients from the persistent tape: of each task's term (and the
    penalty, if any), or of the weighted sum (recorded on the same tape)."""
    variables = model.trainable_variables  # after the forward pass, which builds a subclassed model

    def grad(target: Any) -> list:
        grads = tape.gradient(target, variables)
        return [tf.zeros(v.shape, v.dtype) if g is None else tf.convert_to_tensor(g) for g, v in zip(grads, variables)]

    if weights is not None:
        with tape:  # records again
            objective = tf.reduce_sum(weights * local) + penalty
        return grad(objective)
    per_task = [grad(term) for term in terms]
    task_grads = [tf.stack([g[i] for g in per_task]) for i in range(len(variables))]
    return task_grads, (grad(penalty) if model.losses else None)


def task_values(model: Any, state: Any, data: Any, use: Any, differentiable: bool = True) -> Any:
    """The forward pass, under a persistent `GradientTape` when
    `differentiable`, then `use` (outside the tape)."""
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    with tf.GradientTape(persistent=True) if differentiable else contextlib.nullcontext() as tape:
        y_pred = model(x, training=True)
        local = model.task_losses(y, y_pred, sample_weight)
        penalty = model.penalty_total()
        terms = [local[k] for k in range(local.shape[0])] if differentiable else None  # sliced under the tape
    backward = functools.partial(_backward, model, tape, local, terms, penalty) if differentiable else None
    return y_pred, use(local, penalty, backward), state


def apply_gradients(model: Any, state: Any, grads: list, then: Any) -> Any:
    """`optimizer.apply_gradients` (which sums the replicas' gradients
    under `tf.distribute`), then `then`."""
    model.optimizer.apply_gradients(zip(grads, model.trainable_variables))
    return then(), state


def _encode(model: Any, chunk: Any) -> Any:
    """`(outputs, penalty)` of one forward pass (the `add_loss` terms it made)."""
    outputs = model(chunk, training=True)
    penalty = tf.zeros((), "float32")
    for term in model.losses:
        penalty = penalty + tf.cast(keras_internals.aggregate_additional_loss(model, term), "float32")
    return outputs, penalty


def encode_chunks(model: Any, state: Any, chunks: Any) -> Any:
    """A `tf.while_loop` over the chunks (the number of chunks may be known
    only when the step runs), outside any tape; the non-trainable variables
    (seed states, batch-norm statistics) are restored afterwards."""
    variables = model.non_trainable_variables
    saved = [tf.identity(v.value) for v in variables]
    first = tf.stop_gradient(_encode(model, chunks[0])[0])  # gives the loop its shapes and dtype
    outputs = tf.TensorArray(first.dtype, size=tf.shape(chunks)[0], element_shape=first.shape).write(0, first)

    def body(k: Any, outputs: Any) -> Any:
        return k + 1, outputs.write(k, tf.stop_gradient(_encode(model, chunks[k])[0]))

    _, outputs = tf.while_loop(lambda k, _: k < tf.shape(chunks)[0], body, (tf.constant(1), outputs))
    stacked = outputs.stack()
    with tf.control_dependencies([stacked]):
        for variable, value in zip(variables, saved):
            variable.assign(value)
    return stacked


def value_and_grad(fn: Any, x: Any) -> Any:
    x = tf.convert_to_tensor(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        value = fn(x)
    grad = tape.gradient(value, x)
    return tf.stop_gradient(value), tf.zeros_like(x) if grad is None else grad


def chunk_gradients(model: Any, state: Any, chunks: Any, cotangents: Any, penalty_weight: Any) -> Any:
    """A `tf.while_loop` over the chunks, one `GradientTape` per chunk."""
    variables = model.trainable_variables
    weight = tf.cast(penalty_weight, "float32")

    def body(k: Any, grads: list, penalty: Any) -> Any:
        with tf.GradientTape() as tape:
            outputs, term = _encode(model, chunks[k])
            objective = tf.reduce_sum(tf.cast(outputs, "float32") * tf.cast(cotangents[k], "float32")) + weight * term
        chunk_grads = tape.gradient(objective, variables)
        grads = [g if c is None else g + tf.cast(c, g.dtype) for g, c in zip(grads, chunk_grads)]
        return k + 1, grads, penalty + term

    init = (tf.constant(0), [tf.zeros(v.shape, v.dtype) for v in variables], tf.zeros((), "float32"))
    _, grads, penalty = tf.while_loop(lambda k, *_: k < tf.shape(chunks)[0], body, init)
    return grads, penalty * weight, state
