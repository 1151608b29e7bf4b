"""PyTorch specifics."""

import contextlib
import functools
from typing import Any

import keras
import torch

from keras_lossplus import keras_internals
from keras_lossplus.backend.single_replica import num_replicas, replica_id, replica_sum  # noqa: F401
from keras_lossplus.backend.torch_counts import label_counts, soft_counts  # noqa: F401
from keras_lossplus.backend.torch_eager import is_compiling
from keras_lossplus.backend.torch_lm import chunk_loss_and_logit_grad  # noqa: F401
from keras_lossplus.backend.torch_mining import all_triplets, semihard_triplets
from keras_lossplus.backend.torch_triplet import anchor_masks, triplet_block  # noqa: F401
from keras_lossplus.backend.torch_sinkhorn import sinkhorn_log_plan  # noqa: F401

MINER_KERNELS = {"semihard": semihard_triplets, "all": all_triplets}


def is_concrete(x: Any) -> bool:
    return not is_compiling()


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


def _encode(model: Any, chunk: Any) -> Any:
    """`(outputs, penalty)` of one forward pass (the `add_loss` terms it made)."""
    outputs = model(chunk, training=True)
    penalty = torch.zeros((), dtype=torch.float32, device=outputs.device)
    for term in model.losses:
        penalty = penalty + keras_internals.aggregate_additional_loss(model, term).to(torch.float32)
    return outputs, penalty


def _rng_states() -> Any:
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    return torch.get_rng_state(), cuda


def _set_rng_states(states: Any) -> None:
    cpu, cuda = states
    torch.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state_all(cuda)


def encode_chunks(model: Any, state: Any, chunks: Any) -> Any:
    """A loop under `torch.no_grad`; the non-trainable variables (seed
    states, batch-norm statistics) and torch's global random state (which
    `Dropout` without a seed draws from) are restored afterwards."""
    variables = model.non_trainable_variables
    saved = [v.value.clone() for v in variables]
    rng = _rng_states()
    with torch.no_grad():
        outputs = torch.stack([_encode(model, chunks[k])[0] for k in range(chunks.shape[0])])
        for variable, value in zip(variables, saved):
            variable.assign(value)
    _set_rng_states(rng)
    return outputs


def value_and_grad(fn: Any, x: Any) -> Any:
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        value = fn(x)
        (grad,) = torch.autograd.grad(value, x, allow_unused=True)
    return value.detach(), torch.zeros_like(x) if grad is None else grad


def chunk_gradients(model: Any, state: Any, chunks: Any, cotangents: Any, penalty_weight: Any) -> Any:
    """A loop; each chunk's graph is freed by its `torch.autograd.grad`."""
    params = [v.value for v in model.trainable_weights]
    grads = [torch.zeros_like(p) for p in params]
    penalty = torch.zeros((), dtype=torch.float32)
    weight = float(penalty_weight)
    for k in range(chunks.shape[0]):
        outputs, term = _encode(model, chunks[k])
        objective = torch.sum(outputs.to(torch.float32) * cotangents[k].to(torch.float32)) + weight * term
        chunk_grads = torch.autograd.grad(objective, params, allow_unused=True)
        grads = [g if c is None else g + c for g, c in zip(grads, chunk_grads)]
        penalty = penalty + term.detach()
    return grads, penalty * weight, state


def map_chunks(body: Any, steps: Any, accumulators: Any, outputs: Any) -> Any:
    """A Python loop whose outputs are stacked at the end (Keras' torch
    `slice_update` would copy the whole buffer at every step)."""
    chunks = []
    for i in range(int(steps)):
        accumulators, chunk = body(i, accumulators)
        chunks.append(chunk)
    stacked = tuple(torch.stack([torch.as_tensor(c[k], device=outputs[k].device) for c in chunks]).to(outputs[k].dtype)
                    for k in range(len(outputs)))
    return accumulators, stacked


def add_matmul(acc: Any, a: Any, b: Any) -> Any:
    """In place: `acc += a @ b` (no temporary of `acc`'s size)."""
    return acc.addmm_(a, b)
