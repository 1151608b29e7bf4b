"""GradCache's training step, written once for every backend (Gao et al.,
2021): the loss of a whole batch, and its exact gradient, with the encoder's
activations of one chunk alive at a time.

1. `encode_chunks`: the encoder on each chunk, without recording anything for
   a backward pass;
2. the loss on the whole batch of outputs, and its gradient with respect to
   them (`value_and_grad`, cheap: the loss alone);
3. `chunk_gradients`: each chunk through the encoder again, with gradients,
   back-propagating its slice of that gradient (a vector-Jacobian product);
   the parameter gradients add up over the chunks;
4. the optimizer step (`apply_gradients`) and the logs.

The backend-specific pieces are those four functions of
`keras_lossplus.backend` (`lax.scan` on JAX, `tf.while_loop` on
TensorFlow, a loop on torch).
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops, tree

from keras_lossplus import backend as klp_backend
from keras_lossplus import keras_internals
from keras_lossplus.grad_cache.chunks import from_chunks, num_chunks_weight, to_chunks


def _batch_size(x: Any) -> Any:
    return ops.shape(tree.flatten(x)[0])[0]


def grad_cache_train_step(model: Any, *args: Any) -> Any:
    """One training step of a `GradCacheModel`: `(data)` -> logs on
    TensorFlow and torch, `(state, data)` -> `(logs, state)` on JAX, like
    `Model.train_step`."""
    state, data = args if len(args) == 2 else (None, args[0])
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    items, groups = model.items_of(x)
    chunks, total = to_chunks(items, model.chunk_size)

    outputs = klp_backend.encode_chunks(model, state, chunks)
    y_pred = model.group_outputs(from_chunks(outputs, total), groups)

    def batch_loss(y_pred: Any) -> Any:
        return ops.cast(model.batch_loss(y, y_pred, sample_weight), "float32")

    loss, loss_grad = klp_backend.value_and_grad(batch_loss, y_pred)
    cotangents, _ = to_chunks(model.items_of_outputs(loss_grad, groups), chunks.shape[1])  # the same chunks
    grads, penalty, state = klp_backend.chunk_gradients(model, state, chunks, cotangents, num_chunks_weight(chunks))
    total_loss = loss + penalty

    def log() -> Any:
        keras_internals.loss_tracker(model).update_state(total_loss, sample_weight=_batch_size(x))
        return model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    logs, state = klp_backend.apply_gradients(model, state, grads, log)
    return logs if state is None else (logs, state)
