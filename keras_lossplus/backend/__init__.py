"""The only place with backend-specific code.

Each backend has its own module (`jax.py`, `tensorflow.py`, `torch.py`); the
functions here dispatch to the one `keras.backend.backend()` names, importing
it on first use so that only the installed backend is ever imported.
"""

from __future__ import annotations

import functools
import importlib
from types import ModuleType
from typing import Any, Callable, Optional

import keras


def _module() -> ModuleType:
    return importlib.import_module(f"keras_lossplus.backend.{keras.backend.backend()}")


def is_concrete(x: Any) -> bool:
    """Whether `x` holds values now (eager execution), as opposed to a
    symbolic or traced tensor inside a compiled function; value checks that
    raise can only run on concrete tensors.

    Examples:
        >>> is_concrete(keras.ops.ones((2,)))
        True
    """
    if isinstance(x, keras.KerasTensor):
        return False
    return _module().is_concrete(x)


def gather_replicas(tensors: list) -> Any:
    """Inside a data-parallel replica (TensorFlow's `tf.distribute`), the
    global batch: `(tensors_gathered, num_replicas)`, each tensor
    all-gathered along axis 0 in replica order, carrying a gradient only
    through this replica's own slice; `None` when the loss already sees the
    whole batch (one replica; JAX, whose `keras.distribution` shards one
    global computation). Raises where gathering is not supported."""
    return _module().gather_replicas(tensors)


def num_replicas() -> int:
    """The number of replicas whose per-replica losses Keras sums the
    gradients of (`tf.distribute`), 1 elsewhere."""
    return _module().num_replicas()


def replica_id() -> Any:
    """This replica's index (`tf.distribute`, more than one replica), or
    `None` outside a data-parallel replica."""
    return _module().replica_id()


def replica_sum(x: Any) -> Any:
    """The sum of `x` (a tensor or a list of tensors) over the data-parallel
    replicas (`tf.distribute`), `x` itself elsewhere. No gradient flows
    through the sum."""
    return _module().replica_sum(x)


def task_values(model: Any, state: Any, data: Any, use: Any, differentiable: bool = True):
    """One forward pass of a multi-task training step:
    `(y_pred, use(local, penalty, backward), state)`.

    `local` holds this replica's task losses `(T,)` and `penalty` the sum of
    the `add_loss` terms. `use` runs with the model's state in scope (on
    JAX, a `StatelessScope` over `state`; the non-trainable values it
    changes come back in the returned `state`). `backward(weights)` is the
    gradient (one per trainable variable) of `sum(weights * local) +
    penalty`; `backward()` is `(task_grads, penalty_grads)`, `task_grads[i]`
    stacking variable `i`'s `T` task gradients and `penalty_grads` the
    penalty's gradients (`None` when the model has no `add_loss` term).
    With `differentiable=False`, `backward` is `None` and nothing is
    recorded for a backward pass. `state` is the JAX state tuple of
    `Model.train_step`, `None` on TensorFlow and torch."""
    return _module().task_values(model, state, data, use, differentiable)


def apply_gradients(model: Any, state: Any, grads: list, then: Any):
    """The optimizer step of a multi-task training step with `grads` (one
    per trainable variable), then `then()` with the updated variables and
    the metrics in scope: `(then(), state)`."""
    return _module().apply_gradients(model, state, grads, then)


def compiled_on_jax(fn: Any) -> Any:
    """Decorate an in-batch loss function `fn(y_true, y_pred, ...,
    sample_weight=None)` so that on JAX it runs as one `jax.jit` function,
    cached per set of (hashable) options.

    Outside a compiled step JAX runs operations one by one and compiles every
    `lax.while_loop` again at each call (its body is a new closure each time);
    the cached compilation makes eager calls (and `jax.grad` of them) fast.
    Under `jit` the inner function is inlined, and on the other backends `fn`
    runs as it is."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if keras.backend.backend() != "jax":
            return fn(*args, **kwargs)
        return _module().call_compiled(fn, *args, **kwargs)

    return wrapper


def map_chunks(body: Callable, steps: Any, accumulators: tuple, outputs: tuple) -> tuple:
    """Run `body(i, accumulators) -> (accumulators, chunk_outputs)` for `i`
    in `range(steps)`: `(accumulators, stacked)`, `stacked[k]` holding every
    step's `chunk_outputs[k]` along a new first axis (`outputs[k]` is the
    zero buffer of that shape, `(steps, ...)`).

    On JAX and TensorFlow one compiled loop writes each step's outputs into
    the buffers in place, so that only one step's intermediates are alive;
    eager torch runs a Python loop and stacks the outputs.

    Examples:
        >>> acc, (out,) = map_chunks(lambda i, a: (a + 1.0, (a * 2.0,)), 3, 0.0, (keras.ops.zeros((3,)),))
        >>> [float(v) for v in keras.ops.convert_to_numpy(out)]
        [0.0, 2.0, 4.0]
    """
    own = getattr(_module(), "map_chunks", None)
    if own is not None:
        return own(body, steps, accumulators, outputs)
    ops = keras.ops

    def step(i: Any, carry: tuple) -> tuple:
        acc, bufs = carry
        acc, chunk = body(i, acc)
        bufs = tuple(
            ops.slice_update(buf, [i] + [0] * (len(buf.shape) - 1), ops.expand_dims(ops.cast(c, buf.dtype), 0))
            for buf, c in zip(bufs, chunk)
        )
        return acc, bufs

    return ops.fori_loop(0, steps, step, (accumulators, tuple(outputs)))


def add_matmul(acc: Any, a: Any, b: Any, axis: int, block: int) -> Any:
    """`acc + a @ b` for a large accumulator `acc` (a kernel gradient,
    `(D, V)` or `(V, D)`), without an `a @ b` temporary of `acc`'s size:
    eager torch adds in place (`addmm_`; `acc` must be a buffer the caller
    owns); JAX and TensorFlow add `block` entries of `acc`'s `axis` at a
    time (a compiled loop writing each block in place; the last block is
    aligned to the end and masked where it overlaps the one before).

    Examples:
        >>> a, b = keras.ops.ones((2, 3)), keras.ops.ones((3, 5))
        >>> out = add_matmul(keras.ops.zeros((2, 5)), a, b, axis=1, block=2)
        >>> keras.ops.convert_to_numpy(out).tolist()[0]
        [3.0, 3.0, 3.0, 3.0, 3.0]
    """
    own = getattr(_module(), "add_matmul", None)
    if own is not None:
        return own(acc, a, b)
    ops = keras.ops
    size = acc.shape[axis]
    if size <= block:
        return acc + ops.matmul(a, b)
    # a block size that divides `size` (within a factor 2 of `block`) needs no overlap mask
    exact = next((d for d in range(block, block // 2, -1) if size % d == 0), None)
    block = exact or block
    blocks = -(-size // block)
    other = acc.shape[1 - axis]

    def step(j: Any, total: Any) -> Any:
        start = j * block if exact else ops.minimum(j * block, size - block)
        fresh = None if exact else ops.cast(ops.arange(block) + start >= j * block, acc.dtype)  # not added yet
        if axis == 1:
            part = ops.slice(b, [0, start], [b.shape[0], block])
            part = ops.matmul(a, part if fresh is None else part * fresh)
            corner, shape = [0, start], [other, block]
        else:
            part = ops.slice(a, [start, 0], [block, a.shape[1]])
            part = ops.matmul(part if fresh is None else part * ops.expand_dims(fresh, -1), b)
            corner, shape = [start, 0], [block, other]
        return ops.slice_update(total, corner, ops.slice(total, corner, shape) + part)

    return ops.fori_loop(0, blocks, step, acc)


def chunk_loss_and_logit_grad(*args: Any) -> Optional[tuple]:
    """The backend's own kernel for one chunk of the linear cross-entropy
    (`(loss, coef * dloss/dlogits)`, see `backend/torch_lm.py`), or `None`
    where the `keras.ops` code of `losses/language/chunks.py` runs."""
    own = getattr(_module(), "chunk_loss_and_logit_grad", None)
    return None if own is None else own(*args)


def miner_kernel(name: str) -> Optional[Callable]:
    """The backend's own kernel of a built-in triplet miner (`"semihard"`,
    `"all"`), or `None` where the backend-neutral miner is the fast one (XLA).

    A kernel is called as `kernel(pos, neg, valid, d, margin, soft, nonzero)`
    with a block's masks and stop-gradient distances (see
    `keras_lossplus.losses.metric_learning.rows.Rows`) and returns the miner's
    `(value, count, coef)`, or `None` when it does not apply to these inputs.
    Only torch has kernels (`torch_mining.py`): eager torch pays for every
    pass of the neutral miner's loop."""
    return getattr(_module(), "MINER_KERNELS", {}).get(name)


def anchor_masks(row_labels: Any, labels: Any, start: Any) -> Optional[tuple]:
    """The backend's own `(pos, neg, positives, valid)` of
    `keras_lossplus.losses.metric_learning.rows.Rows` for the anchors
    `start, start + 1, ...` (labels `row_labels`) against the whole batch
    (`labels`), outside `memory_references`; `None` where the neutral
    `keras.ops` code is the fast one (XLA fuses it)."""
    masks = getattr(_module(), "anchor_masks", None)
    return None if masks is None else masks(row_labels, labels, start)


def triplet_block(*args: Any) -> Any:
    """The backend's own implementation of a whole block of the mined triplet
    loss with a built-in miner and a named distance, or `None` where there is
    none (or it does not apply). Called as `triplet_block(kind, anchors,
    others, pos, neg, valid, weights, metric, margin, soft,
    nonzero)` (see `keras_lossplus.losses.metric_learning.miners.mined_loss`,
    which it replaces); returns `(sum_a w_a value_a, sum_a w_a count_a)`, the
    first carrying the gradient with respect to `anchors` and `others`."""
    block = getattr(_module(), "triplet_block", None)
    return None if block is None else block(*args)


def class_counts(target: Any, probs: Any, per_image: bool, labels: bool) -> Any:
    """The backend's own soft confusion counts `(TP, sum p, sum t)` per class
    (`(B, C)` per image, else `(C,)`) of a channels-last target (`labels`:
    an integer label map `(B, *spatial)`; else a target shaped like `probs`)
    and class probabilities `(B, *spatial, C)`, each differentiable with
    respect to `probs`; `None` where the backend has none (XLA fuses the
    `keras.ops` version) or it does not apply. Only torch has them
    (`torch_counts.py`)."""
    fn = getattr(_module(), "label_counts" if labels else "soft_counts", None)
    return None if fn is None else fn(target, probs, per_image)


def sinkhorn_log_plan(cost: Any, log_a: Any, log_b: Any, epsilon: float, max_iter: int, log_zero: float) -> Any:
    """The backend's own Sinkhorn iterations: `log P` (no gradient) after
    `max_iter` iterations from the cost matrix and the log masses (`log_zero`
    marks a row or column without mass), or `None` where the backend has none
    (XLA fuses the `keras.ops` log-domain loop). Only torch has one
    (`torch_sinkhorn.py`, stabilized matrix scaling)."""
    fn = getattr(_module(), "sinkhorn_log_plan", None)
    return None if fn is None else fn(cost, log_a, log_b, epsilon, max_iter, log_zero)


def small_eigh(m: Any) -> tuple:
    """`keras.ops.eigh` of a small symmetric matrix (a `T x T` Gram matrix of
    task gradients), by the backend's fastest route: on JAX cyclic Jacobi
    rotations (`keras_lossplus.ops.jacobi_eigh`; XLA:CPU's LAPACK `eigh`
    costs about 2 ms inside a compiled step), elsewhere `keras.ops.eigh`."""
    fn = getattr(_module(), "small_eigh", None)
    return keras.ops.eigh(m) if fn is None else fn(m)


def encode_chunks(model: Any, state: Any, chunks: Any) -> Any:
    """GradCache's first pass: `model(chunks[k], training=True)` for each
    chunk `k` in order, stacked, with nothing recorded for a backward pass
    (constant activation memory) and the model's state left as it was, so
    that `chunk_gradients` replays the same random draws (dropout seeds) and
    makes the non-trainable updates (batch-norm statistics) once.
    `chunks` is `(K, chunk, *item)`; `state` is the JAX state tuple of
    `Model.train_step`, `None` on TensorFlow and torch."""
    return _module().encode_chunks(model, state, chunks)


def value_and_grad(fn: Any, x: Any) -> Any:
    """`(fn(x), d fn / d x)` for a scalar-valued `fn` of one tensor; the
    value carries no gradient."""
    return _module().value_and_grad(fn, x)


def chunk_gradients(model: Any, state: Any, chunks: Any, cotangents: Any, penalty_weight: Any) -> Any:
    """GradCache's second pass: for each chunk in the order of
    `encode_chunks`, the forward pass again, with gradients, and the
    vector-Jacobian product with `cotangents[k]` (the loss's gradient with
    respect to that chunk's outputs), plus `penalty_weight` times the
    gradient of the chunk's `add_loss` terms; summed over the chunks:
    `(grads, penalty, state)`, one gradient per trainable variable,
    `penalty` the weighted sum of the chunks' penalties, `state` with the
    non-trainable values the passes left (JAX; `None` elsewhere)."""
    return _module().chunk_gradients(model, state, chunks, cotangents, penalty_weight)
