"""JAX specifics."""

import functools
import inspect
from typing import Any

import jax
import jax.numpy as jnp
import keras

from keras_lossplus import keras_internals
from keras_lossplus.backend.single_replica import num_replicas, replica_id, replica_sum  # noqa: F401
from keras_lossplus.ops import jacobi_eigh as small_eigh  # noqa: F401  (see backend.small_eigh)


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


def _backward(vjp: Any, values: Any, has_penalty: bool, weights: Any = None) -> Any:
    """The VJP with the weights (and 1 for the penalty) as cotangent, or,
    without weights, `jax.vmap` over it with one-hot cotangents: one
    backward pass per task (and the penalty's, if any)."""
    num_tasks = values.shape[0] - 1
    if weights is not None:
        (grads,) = vjp(jnp.concatenate([weights, jnp.ones((1,), values.dtype)]).astype(values.dtype))
        return grads
    rows = jnp.eye(num_tasks + 1, dtype=values.dtype)[: num_tasks + int(has_penalty)]
    (grads,) = jax.vmap(vjp)(rows)
    return [g[:num_tasks] for g in grads], ([g[num_tasks] for g in grads] if has_penalty else None)


def task_values(model: Any, state: Any, data: Any, use: Any, differentiable: bool = True) -> Any:
    """Stateless: the forward pass (under `jax.vjp` when `differentiable`)
    on `state`'s values, then `use` in a `StatelessScope` over the
    trainable and the new non-trainable values."""
    trainable, non_trainable, optimizer_vars, metrics_vars = state
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    has_penalty = []
    kwargs = {"training": True} if keras_internals.call_has_training_arg(model) else {}

    def forward(train_values: Any, non_train_values: Any) -> Any:
        y_pred, non_train_values, extra = model.stateless_call(
            train_values, non_train_values, x, return_losses=True, **kwargs
        )
        has_penalty.append(bool(extra))
        values = jnp.concatenate([model.task_losses(y, y_pred, sample_weight), model.penalty_total(extra)[None]])
        return values, (y_pred, non_train_values)

    if differentiable:
        values, vjp, (y_pred, non_trainable) = jax.vjp(lambda t: forward(t, non_trainable), trainable, has_aux=True)
        backward = functools.partial(_backward, vjp, values, has_penalty[0])
    else:
        values, (y_pred, non_trainable) = forward(trainable, non_trainable)
        backward = None
    with _scoped(model, trainable, non_trainable) as scope:
        out = use(values[:-1], values[-1], backward)
    non_trainable = _current(scope, model.non_trainable_variables, non_trainable)
    return y_pred, out, (trainable, non_trainable, optimizer_vars, metrics_vars)


def apply_gradients(model: Any, state: Any, grads: list, then: Any) -> Any:
    """Stateless: `optimizer.stateless_apply`, then `then` in a
    `StatelessScope` that also holds the metrics' values."""
    trainable, non_trainable, optimizer_vars, metrics_vars = state
    trainable, optimizer_vars = model.optimizer.stateless_apply(optimizer_vars, grads, trainable)
    with _scoped(model, trainable, non_trainable, metrics_vars) as scope:
        out = then()
    metrics_vars = _current(scope, model.metrics_variables, metrics_vars)
    return out, (trainable, non_trainable, optimizer_vars, metrics_vars)


# the tensor arguments (every other argument is a static option); `hidden`, `kernel`, `bias`, `weights`:
# the linear cross-entropy's
_TENSORS = ("y_true", "y_pred", "sample_weight", "hidden", "kernel", "bias", "weights")


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


def _encode(model: Any, trainable: Any, non_trainable: Any, chunk: Any) -> Any:
    """`(outputs, penalty, non_trainable)` of one stateless forward pass."""
    kwargs = {"training": True} if keras_internals.call_has_training_arg(model) else {}
    outputs, non_trainable, losses = model.stateless_call(trainable, non_trainable, chunk, return_losses=True,
                                                          **kwargs)
    penalty = jnp.zeros((), "float32")
    for term in losses:
        penalty = penalty + keras_internals.aggregate_additional_loss(model, term).astype("float32")
    return outputs, penalty, list(non_trainable)


def encode_chunks(model: Any, state: Any, chunks: Any) -> Any:
    """`lax.scan` over the chunks, threading the non-trainable values (the
    seed states) from chunk to chunk; the values it ends with are dropped,
    so the second pass starts from the same ones."""
    trainable, non_trainable = state[0], list(state[1])

    def body(carry: Any, chunk: Any) -> Any:
        outputs, _, carry = _encode(model, trainable, carry, chunk)
        return carry, jax.lax.stop_gradient(outputs)

    _, outputs = jax.lax.scan(body, non_trainable, chunks)
    return outputs


def value_and_grad(fn: Any, x: Any) -> Any:
    return jax.value_and_grad(fn)(x)


def chunk_gradients(model: Any, state: Any, chunks: Any, cotangents: Any, penalty_weight: Any) -> Any:
    """`lax.scan` over `(chunk, cotangent)` pairs; each step is one
    `jax.vjp` of the stateless forward pass, so one chunk's activations are
    alive at a time."""
    trainable, non_trainable, optimizer_vars, metrics_vars = state
    weight = jnp.asarray(penalty_weight, "float32")

    def body(carry: Any, xs: Any) -> Any:
        grads, non_train, penalty = carry
        chunk, cotangent = xs

        def forward(train_values: Any) -> Any:
            outputs, term, new = _encode(model, train_values, non_train, chunk)
            return (outputs, term), new

        (outputs, term), vjp, new = jax.vjp(forward, trainable, has_aux=True)
        (chunk_grads,) = vjp((cotangent.astype(outputs.dtype), weight))
        return ([g + c for g, c in zip(grads, chunk_grads)], new, penalty + term), None

    init = ([jnp.zeros_like(t) for t in trainable], list(non_trainable), jnp.zeros((), "float32"))
    (grads, non_trainable, penalty), _ = jax.lax.scan(body, init, (chunks, cotangents))
    return grads, penalty * weight, (trainable, non_trainable, optimizer_vars, metrics_vars)
