"""PyTorch specifics."""

import contextlib
import functools
from typing import Any

import keras
import torch

from keras_lossplus.backend.single_replica import num_replicas, replica_id, replica_sum  # noqa: F401


def is_concrete(x: Any) -> bool:
    compiling = getattr(getattr(torch, "compiler", None), "is_compiling", None)
    return not (compiling is not None and compiling())


def _world_size() -> int:
    dist = getattr(torch, "distributed", None)
    if dist is None or not dist.is_available() or not dist.is_initialized():
        return 1
    return dist.get_world_size()


def gather_replicas(tensors: list) -> Any:
    if _world_size() > 1:
        raise NotImplementedError(
            "cross_replica='gather' is not supported under torch.distributed (Keras 3 has no "
            "data-parallel training on the torch backend; a process group of "
            f"{_world_size()} was found). Pass cross_replica='local' to compute the loss on each "
            "process's own batch, or train with the JAX or TensorFlow backend."
        )
    return None


def _backward(model: Any, losses: Any, penalty: Any, weights: Any = None) -> Any:
    """`torch.autograd.grad` of each task's loss (and the penalty, if any),
    or of the weighted sum."""
    params = [v.value for v in model.trainable_weights]

    def grad(target: Any) -> list:
        grads = torch.autograd.grad(target, params, retain_graph=True, allow_unused=True)
        return [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params)]

    if weights is not None:
        return grad(torch.sum(weights * losses) + penalty)
    per_task = [grad(losses[k]) for k in range(losses.shape[0])]
    task_grads = [torch.stack([g[i] for g in per_task]) for i in range(len(params))]
    return task_grads, (grad(penalty) if model.losses else None)


def task_values(model: Any, state: Any, data: Any, use: Any, differentiable: bool = True) -> Any:
    """The forward pass and `use`, under `torch.no_grad` unless
    `differentiable`."""
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    with contextlib.nullcontext() if differentiable else torch.no_grad():
        y_pred = model(x, training=True)
        if differentiable:
            model.zero_grad()
        losses = model.task_losses(y, y_pred, sample_weight)
        penalty = model.penalty_total()
        backward = functools.partial(_backward, model, losses, penalty) if differentiable else None
        return y_pred, use(losses, penalty, backward), state


def apply_gradients(model: Any, state: Any, grads: list, then: Any) -> Any:
    """`optimizer.apply` under `torch.no_grad`, then `then`."""
    with torch.no_grad():
        model.optimizer.apply(grads, model.trainable_weights[:])
    return then(), state
