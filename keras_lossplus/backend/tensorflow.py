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
        message=(
            "keras_lossplus: cross_replica='gather' needs the same number of samples on every "
            "replica; use a global batch size divisible by the number of replicas (and drop the "
            "last partial batch, e.g. `drop_remainder=True`), or cross_replica='local'"
        ),
    )
    out = []
    for t in tensors:
        if t is None:
            out.append(None)
            continue
        with tf.control_dependencies([check]):
            gathered = tf.stop_gradient(context.all_gather(t, axis=0))
        if t.dtype.is_floating:
            # the value is the gathered batch; the gradient reaches this replica's slice only
            pads = [[offset, total - offset - local]] + [[0, 0]] * (len(t.shape) - 1)
            gathered = gathered + tf.pad(t - tf.stop_gradient(t), pads)
        out.append(gathered)
    return out, replicas


def multi_task_train_step(model: Any, data: Any) -> Any:
    """One forward pass under a persistent tape, then one backward pass per
    task combined by the strategy (or one weighted backward pass), the
    optimizer step and, if asked, the losses again on the same batch."""
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    strategy = model.loss_weighting

    with tf.GradientTape(persistent=True) as tape:
        y_pred = model(x, training=True)
        losses = model.task_losses(y, y_pred, sample_weight)
        penalty = model.penalty_total()
        task_terms = [losses[k] for k in range(losses.shape[0])]  # sliced under the tape
        if not strategy.uses_task_gradients:
            weights, _ = strategy.loss_weights(losses)
            objective = tf.reduce_sum(tf.stop_gradient(weights) * losses) + penalty
    variables = model.trainable_variables  # after the forward pass, which builds a subclassed model

    def grad(target: Any) -> list:
        grads = tape.gradient(target, variables)
        return [tf.zeros(v.shape, v.dtype) if g is None else tf.convert_to_tensor(g) for g, v in zip(grads, variables)]

    if strategy.uses_task_gradients:
        per_task = [grad(term) for term in task_terms]
        task_grads = [tf.stack([g[i] for g in per_task]) for i in range(len(variables))]
        penalty_grads = grad(penalty) if model.losses else None
        grads, weights = model.combine_gradients(variables, task_grads, losses, penalty_grads)
    else:
        grads = grad(objective)
    del tape
    model.optimizer.apply_gradients(zip(grads, variables))
    model.record_step(x, losses, weights, penalty)  # before the re-evaluation overwrites penalty values
    logs = model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)
    if strategy.needs_post_step_losses:
        strategy.after_step(losses, model.task_losses(y, model(x, training=True), sample_weight))
    return logs
