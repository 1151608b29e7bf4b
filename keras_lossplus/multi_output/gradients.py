"""Backend-neutral half of gradient-level weighting: which variables the
tasks share, and turning per-task gradients into one gradient per variable.
The training step that computes the per-task gradients is
`keras_lossplus.multi_output.train_step`; its one backend-specific piece
(one backward pass per task) is `task_values` in `keras_lossplus/backend/`."""

from __future__ import annotations

import math
from typing import Any, List, Optional, Sequence, Set

import keras
from keras import ops

Tensor = Any


def task_variable_ids(model: keras.Model, task_names: Sequence[str]) -> Optional[List[Set[int]]]:
    """For a functional model, the ids of the trainable variables each task's
    output depends on (traced through the graph); `None` otherwise."""
    try:
        structure = model.output
    except (AttributeError, ValueError):
        return None
    if isinstance(structure, dict):
        tensors = [structure[name] for name in task_names]
    else:
        flat = list(model.outputs)
        tensors = [flat[list(model.output_names).index(name)] for name in task_names]
    return [{id(v) for v in keras.Model(model.input, tensor).trainable_variables} for tensor in tensors]


def shared_flags(variables: Sequence[Any], task_ids: Optional[List[Set[int]]]) -> List[bool]:
    """Whether each variable is shared by two or more tasks (every variable,
    when the graph is unknown)."""
    if task_ids is None:
        return [True] * len(variables)
    return [sum(id(v) in ids for ids in task_ids) >= 2 for v in variables]


def combine_task_gradients(
    strategy: Any,
    task_grads: Sequence[Tensor],
    shared: Sequence[bool],
    losses: Tensor,
    penalty_grads: Optional[Sequence[Tensor]] = None,
):
    """One gradient per variable from per-task gradients.

    `task_grads[i]` holds the `T` task gradients of variable `i` stacked on
    axis 0. Shared variables get `strategy.combine_gradients` of their
    flattened, concatenated gradients; the others the task gradients
    weighted by the strategy's head weights. Penalty (`add_loss`) gradients
    are added unchanged. Returns the gradients and the weights to log.
    """
    num_tasks = int(losses.shape[0])
    flat = [ops.reshape(ops.cast(g, "float32"), (num_tasks, -1)) for g, s in zip(task_grads, shared) if s]
    if flat:
        direction, head_weights, logged = strategy.combine_gradients(ops.concatenate(flat, axis=1), losses)
    else:
        head_weights = logged = strategy.loss_weights(losses)[0]
    out, offset = [], 0
    for index, (grad, is_shared) in enumerate(zip(task_grads, shared)):
        shape = tuple(grad.shape[1:])
        if is_shared:
            size = math.prod(shape)
            piece = ops.reshape(direction[offset : offset + size], shape)
            offset += size
        else:
            piece = ops.tensordot(head_weights, ops.cast(grad, "float32"), axes=1)
        if penalty_grads is not None:
            piece = piece + ops.cast(penalty_grads[index], "float32")
        out.append(ops.cast(piece, grad.dtype))
    return out, logged
