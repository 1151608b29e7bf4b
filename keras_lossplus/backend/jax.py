"""JAX specifics."""

import functools
import inspect
from typing import Any

import jax
import jax.numpy as jnp
import keras

from keras_lossplus.backend.single_replica import num_replicas, replica_id, replica_sum  # noqa: F401


def is_concrete(x: Any) -> bool:
    return not isinstance(x, jax.core.Tracer)


def gather_replicas(tensors: list) -> Any:
    # keras.distribution (DataParallel, ModelParallel) shards one global
    # jit-compiled computation: the loss already sees the global batch
    return None


def _scoped(model: Any, trainable: Any, non_trainable: Any, metrics: Any = None) -> Any:
    mapping = list(zip(model.trainable_variables, trainable)) + list(zip(model.non_trainable_variables, non_trainable))
    if metrics is not None:
        mapping += list(zip(model.metrics_variables, metrics))
    return keras.StatelessScope(state_mapping=mapping)


def _current(scope: Any, variables: Any, values: Any) -> list:
    out = []
    for variable, value in zip(variables, values):
        new = scope.get_current_value(variable)
        out.append(value if new is None else new)
    return out


def multi_task_train_step(model: Any, state: Any, data: Any) -> Any:
    """Stateless training step: one forward pass, then either one backward
    pass per task (`jax.vmap` over the VJP with one-hot cotangents) combined
    by the strategy, or one VJP with the strategy's weights as cotangent;
    then the optimizer step and, if asked, the losses again on the batch."""
    trainable, non_trainable, optimizer_vars, metrics_vars = state
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    strategy = model.loss_weighting
    num_tasks = len(model._klp_task_names)
    has_penalty = []
    kwargs = {"training": True} if model._call_has_training_arg else {}

    def forward(train_values: Any, non_train_values: Any) -> Any:
        y_pred, non_train_values, extra = model.stateless_call(
            train_values, non_train_values, x, return_losses=True, **kwargs
        )
        has_penalty.append(bool(extra))
        values = jnp.concatenate([model.task_losses(y, y_pred, sample_weight), model.penalty_total(extra)[None]])
        return values, (y_pred, non_train_values)

    values, vjp, (y_pred, non_trainable) = jax.vjp(lambda t: forward(t, non_trainable), trainable, has_aux=True)
    losses, penalty = values[:num_tasks], values[num_tasks]
    with _scoped(model, trainable, non_trainable) as scope:
        if strategy.uses_task_gradients:
            rows = jnp.eye(num_tasks + 1, dtype=values.dtype)[: num_tasks + int(has_penalty[0])]
            (grads,) = jax.vmap(vjp)(rows)
            penalty_grads = [g[num_tasks] for g in grads] if has_penalty[0] else None
            grads, weights = model.combine_gradients(
                model.trainable_variables, [g[:num_tasks] for g in grads], losses, penalty_grads
            )
        else:
            weights, _ = strategy.loss_weights(losses)
            (grads,) = vjp(jnp.concatenate([weights, jnp.ones((1,), values.dtype)]).astype(values.dtype))
    non_trainable = _current(scope, model.non_trainable_variables, non_trainable)
    trainable, optimizer_vars = model.optimizer.stateless_apply(optimizer_vars, grads, trainable)

    with _scoped(model, trainable, non_trainable, metrics_vars) as scope:
        model.record_step(x, losses, weights, penalty)  # before the re-evaluation overwrites penalty values
        logs = model.compute_metrics(x, y, y_pred, sample_weight)
    metrics_vars = _current(scope, model.metrics_variables, metrics_vars)

    if strategy.needs_post_step_losses:
        new_values, (_, non_trainable) = forward(trainable, non_trainable)
        with _scoped(model, trainable, non_trainable) as scope:
            strategy.after_step(losses, new_values[:num_tasks])
        non_trainable = _current(scope, model.non_trainable_variables, non_trainable)
    return logs, (trainable, non_trainable, optimizer_vars, metrics_vars)


_TENSORS = ("y_true", "y_pred", "sample_weight")


@functools.lru_cache(maxsize=None)
def _jitted(fn: Any, static: tuple) -> Any:
    return jax.jit(fn, static_argnames=static)


def call_compiled(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """`fn(*args, **kwargs)` through a cached `jax.jit` whose static
    arguments are all of `fn`'s options (everything but the tensors); falls
    back to a plain call when an option is not hashable (a tensor margin)."""
    bound = inspect.signature(fn).bind(*args, **kwargs)
    tensors = {k: v for k, v in bound.arguments.items() if k in _TENSORS}
    options = {k: v for k, v in bound.arguments.items() if k not in _TENSORS}
    try:
        hash(tuple(options.values()))
    except TypeError:
        return fn(*args, **kwargs)
    if any(isinstance(v, keras.KerasTensor) for v in tensors.values()):
        return fn(*args, **kwargs)
    tensors = {k: v if v is None else keras.ops.convert_to_tensor(v) for k, v in tensors.items()}
    return _jitted(fn, tuple(sorted(options)))(**tensors, **options)
