"""TensorFlow specifics."""

from typing import Any

import keras
import tensorflow as tf


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


def multi_task_train_step(model: Any, data: Any) -> Any:
    """One forward pass under a persistent tape, then one backward pass per
    task combined by the strategy (or one weighted backward pass), the
    optimizer step and, if asked, the losses again on the same batch.

    Under `tf.distribute` the strategy sees the global losses and, for
    gradient-level strategies, the task gradients summed over the replicas;
    each replica then applies its share (1 / replicas) of the combined
    gradient, which Keras' optimizer sums over the replicas."""
    from keras_lossplus.backend import replica_losses  # the backend-neutral half

    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    strategy = model.loss_weighting
    replicas = num_replicas()

    with tf.GradientTape(persistent=True) as tape:
        y_pred = model(x, training=True)
        local = model.task_losses(y, y_pred, sample_weight)
        losses, shares = replica_losses(local)
        penalty = model.penalty_total()
        task_terms = [local[k] for k in range(local.shape[0])]  # sliced under the tape
        if not strategy.uses_task_gradients:
            weights, _ = strategy.loss_weights(losses)
            objective = tf.reduce_sum(tf.stop_gradient(weights) * shares) + penalty
    variables = model.trainable_variables  # after the forward pass, which builds a subclassed model

    def grad(target: Any) -> list:
        grads = tape.gradient(target, variables)
        return [tf.zeros(v.shape, v.dtype) if g is None else tf.convert_to_tensor(g) for g, v in zip(grads, variables)]

    if strategy.uses_task_gradients:
        per_task = replica_sum([grad(term) for term in task_terms])  # global task gradients
        task_grads = [tf.stack([g[i] for g in per_task]) for i in range(len(variables))]
        penalty_grads = replica_sum(grad(penalty)) if model.losses else None
        grads, weights = model.combine_gradients(variables, task_grads, tf.stop_gradient(losses), penalty_grads)
        if replicas > 1:
            grads = [g / tf.cast(replicas, g.dtype) for g in grads]
    else:
        grads = grad(objective)
    del tape
    model.optimizer.apply_gradients(zip(grads, variables))
    # logged before the re-evaluation overwrites the penalty values
    model.record_step(x, tf.stop_gradient(losses), weights, replica_sum(penalty))
    logs = model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)
    if strategy.needs_post_step_losses:
        new_losses = replica_losses(model.task_losses(y, model(x, training=True), sample_weight))[0]
        strategy.after_step(tf.stop_gradient(losses), tf.stop_gradient(new_losses))
    return logs
