"""The training step of a `MultiOutputModel` whose weighting strategy needs
per-task gradients or the losses after the step, written once for every
backend, and the task losses of one data-parallel replica.

The step is: one forward pass, then either one backward pass per task
(combined by the strategy) or one backward pass of the weighted sum of the
task losses; the optimizer step; the logs; and, if the strategy asks, the
task losses again on the same batch. The backend-specific pieces are two
functions of `keras_lossplus.backend`: `task_values` (the forward pass and
the backward passes, with the model's state in scope) and `apply_gradients`
(the optimizer step).
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from keras_lossplus import backend as klp_backend
from keras_lossplus.ops import with_gradient_of


def replica_losses(local: Any):
    """`(losses, shares)` from this replica's task losses `local`.

    Under `tf.distribute` each replica computes Keras' share of every task
    loss (its slice's loss / replicas, or the global batch's / replicas for
    a batch-level loss): the shares add up to the global losses over the
    replicas. `losses` holds the global values (what the weighting strategy
    and the logs see) and `shares` the global values / replicas; both carry
    the gradient of this replica's share, which Keras sums over the replicas.
    With one replica both are `local`.

    Examples:
        >>> local = keras.ops.convert_to_tensor([0.5, 2.0])
        >>> losses, shares = replica_losses(local)  # one replica
        >>> losses is local and shares is local
        True
    """
    replicas = klp_backend.num_replicas()
    if replicas == 1:
        return local, local
    total = klp_backend.replica_sum(local)
    return with_gradient_of(total, local), with_gradient_of(total / replicas, local)


def _global(local: Any) -> Any:
    """The global task losses, as constants."""
    return ops.stop_gradient(replica_losses(local)[0])


def _combined_gradients(model: Any, losses: Any, backward: Any):
    """`(grads, weights)`: one gradient per trainable variable and the task
    weights to log, from the strategy.

    A gradient-level strategy combines the task gradients summed over the
    replicas; each replica then applies its share (1 / replicas) of the
    result, which Keras' optimizer sums over the replicas. Any other
    strategy weights the task losses, and the gradient is that of the
    weighted sum plus the penalty."""
    strategy = model.loss_weighting
    if not strategy.uses_task_gradients:
        weights, _ = strategy.loss_weights(losses)
        return backward(ops.stop_gradient(weights)), weights
    task_grads, penalty_grads = backward()
    task_grads = klp_backend.replica_sum(task_grads)  # global task gradients
    if penalty_grads is not None:
        penalty_grads = klp_backend.replica_sum(penalty_grads)
    grads, weights = model.combine_gradients(model.trainable_variables, task_grads, losses, penalty_grads)
    replicas = klp_backend.num_replicas()
    if replicas > 1:
        grads = [g / ops.cast(replicas, g.dtype) for g in grads]
    return grads, weights


def multi_task_train_step(model: Any, *args: Any) -> Any:
    """One training step: `(data)` -> logs on TensorFlow and torch,
    `(state, data)` -> `(logs, state)` on JAX, like `Model.train_step`.

    Under `tf.distribute` the strategy sees the global losses and, for
    gradient-level strategies, the task gradients summed over the replicas.
    """
    state, data = args if len(args) == 2 else (None, args[0])
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    strategy = model.loss_weighting

    def gradients(local: Any, penalty: Any, backward: Any):
        losses = _global(local)
        grads, weights = _combined_gradients(model, losses, backward)
        return grads, losses, ops.stop_gradient(weights), ops.stop_gradient(penalty)

    y_pred, (grads, losses, weights, penalty), state = klp_backend.task_values(model, state, data, gradients)

    def log() -> Any:
        # before the re-evaluation overwrites the penalty values
        model.record_step(x, losses, weights, klp_backend.replica_sum(penalty))
        return model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    logs, state = klp_backend.apply_gradients(model, state, grads, log)
    if strategy.needs_post_step_losses:
        def after(local: Any, penalty: Any, backward: Any) -> None:
            strategy.after_step(losses, _global(local))

        _, _, state = klp_backend.task_values(model, state, data, after, differentiable=False)
    return logs if state is None else (logs, state)
