"""PyTorch specifics."""

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


def multi_task_train_step(model: Any, data: Any) -> Any:
    """One forward pass, then one `torch.autograd.grad` per task combined by
    the strategy (or one weighted backward pass), the optimizer step and,
    if asked, the losses again on the same batch."""
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    strategy = model.loss_weighting
    y_pred = model(x, training=True)
    model.zero_grad()
    losses = model.task_losses(y, y_pred, sample_weight)
    penalty = model.penalty_total()
    variables = model.trainable_weights[:]
    params = [v.value for v in variables]

    def grad(target: Any) -> list:
        grads = torch.autograd.grad(target, params, retain_graph=True, allow_unused=True)
        return [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params)]

    if strategy.uses_task_gradients:
        per_task = [grad(losses[k]) for k in range(losses.shape[0])]
        task_grads = [torch.stack([g[i] for g in per_task]) for i in range(len(params))]
        penalty_grads = grad(penalty) if model.losses else None
        grads, weights = model.combine_gradients(variables, task_grads, losses.detach(), penalty_grads)
    else:
        weights, _ = strategy.loss_weights(losses)
        grads = grad(torch.sum(weights.detach() * losses) + penalty)
    with torch.no_grad():
        model.optimizer.apply(grads, variables)
        model.record_step(x, losses.detach(), weights.detach(), penalty.detach())  # before the re-evaluation
    logs = model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)
    if strategy.needs_post_step_losses:
        with torch.no_grad():
            strategy.after_step(losses.detach(), model.task_losses(y, model(x, training=True), sample_weight))
    return logs
