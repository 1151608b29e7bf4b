"""Cross-batch memory (Wang et al. 2020): an in-batch metric-learning loss
computed against a queue of past embeddings kept as non-trainable state."""

from __future__ import annotations

import inspect
from typing import Any, Optional

import keras
import numpy as np
from keras import ops

from keras_lossplus.layers.base import (
    PenaltyLayer,
    as_float32,
    register,
    two_input_shapes,
)
from keras_lossplus.losses.labels import check_integer_labels
from keras_lossplus.losses.metric_learning import (
    BatchContrastiveLoss,
    MultiSimilarityLoss,
    NPairLoss,
    NTXentLoss,
    SoftNearestNeighborLoss,
    SupConLoss,
    TripletLoss,
)
from keras_lossplus.losses.metric_learning.references import memory_references

Tensor = Any

SUPPORTED_LOSSES = (
    BatchContrastiveLoss, MultiSimilarityLoss, NPairLoss, NTXentLoss, SoftNearestNeighborLoss, SupConLoss, TripletLoss,
)
"""The in-batch losses whose anchors can be compared with a memory (each
reads only anchor-to-reference terms; `LiftedStructureLoss` and
`QuadrupletLoss` also need every reference's own negatives)."""


def _check_loss(loss: Any) -> Any:
    if isinstance(loss, dict):  # a serialized loss, from a config
        loss = keras.saving.deserialize_keras_object(loss)
    if not isinstance(loss, SUPPORTED_LOSSES):
        names = ", ".join(cls.__name__ for cls in SUPPORTED_LOSSES)
        raise TypeError(
            "Argument `loss` must be an in-batch metric-learning loss of keras_lossplus that takes "
            f"(labels, embeddings): one of {names}. Received: loss={loss!r}"
        )
    if loss._options.get("mining") == "none":
        raise ValueError(
            "Argument `loss` must mine its triplets in the batch: a TripletLoss with mining='none' takes "
            f"explicit triplets, which a memory cannot extend. Received: loss={loss!r}"
        )
    return loss


def _check_count(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"Argument `{name}` must be an integer >= {low}. Received: {name}={value!r}")
    return int(value)


@register
class CrossBatchMemory(PenaltyLayer):
    r"""Cross-batch memory (XBM): an in-batch loss whose anchors, the current
    batch, are also compared with the embeddings of past batches.

    Takes `[embeddings, labels]` (embeddings `(B, D)`, integer labels `(B,)`
    or `(B, 1)`), returns the embeddings unchanged and adds `loss` with
    `add_loss`. The layer keeps a queue of the last `memory_size`
    embeddings and labels (non-trainable state, saved with the model and
    updated inside the compiled training step). At each training step it

    1. writes the batch into the queue (a ring buffer: the oldest entries are
       overwritten; the stored embeddings carry no gradient), then
    2. adds `loss` with the batch's rows as anchors and the queue's filled
       entries as references, each anchor's own entry left out:

    $$\mathcal{L} = \mathcal{L}_{\text{loss}}\big(\text{anchors } x_{1..B},\
      \text{references } \{x_{1..B}\} \cup \text{memory}\big)$$

    This is pytorch-metric-learning's `CrossBatchMemory(loss, memory_size)`
    (the same values), except for the gradient: the batch's own rows, as
    references, also carry their gradient (as in the plain in-batch loss),
    where pytorch-metric-learning compares the anchors with detached copies.

    During the first `warmup_steps` training steps the queue is filled but
    not used (the loss is the plain in-batch loss), since embeddings of an
    untrained network drift too fast to be useful references (the paper
    starts the memory after 1000 iterations). Outside training (`evaluate`,
    `predict`), the loss is the plain in-batch loss and the queue does not
    change.

    Supported losses (each compares an anchor with references only):
    `BatchContrastiveLoss`, `TripletLoss` (semi-hard, hard or all mining),
    `MultiSimilarityLoss`, `NPairLoss`, `NTXentLoss`, `SupConLoss`,
    `SoftNearestNeighborLoss`. The work per step is `O(B x memory_size)`.
    Under `tf.distribute` the replicas' batches are gathered (as for the
    losses' `cross_replica="gather"`); that path is not tested.

    State (non-trainable variables): `memory` `(memory_size, D)` float32,
    `memory_labels` `(memory_size,)` int32, `pointer` (the next slot to
    write), `filled` (slots holding an entry) and `steps` (training steps
    seen, counted up to `warmup_steps`). The loss of each call is in
    `penalty_value` (logged by `keras_lossplus.PenaltyLogging`).

    Args:
        loss: The in-batch loss, e.g. `klp.losses.TripletLoss(mining="all")`.
        memory_size: Number of past embeddings kept, `>=` the batch size.
        warmup_steps: Training steps during which the queue is filled but not
            used, `>= 0`.
        training_only: Add the loss only in training (not in `evaluate`).
        **kwargs: Standard layer arguments (`name`, ...).

    Reference:
        Wang, Zhang, Huang & Scott, "Cross-Batch Memory for Embedding
        Learning", CVPR 2020; pytorch-metric-learning `CrossBatchMemory`.

    Examples:
        >>> from keras_lossplus.losses import BatchContrastiveLoss
        >>> layer = CrossBatchMemory(BatchContrastiveLoss(), memory_size=4)
        >>> labels = keras.ops.convert_to_tensor([0, 1])
        >>> x = keras.ops.convert_to_tensor([[0.0, 0.0], [0.0, 0.5]])
        >>> _ = layer([x, labels], training=True)  # no positive pair in the batch alone
        >>> round(float(layer.penalty_value), 4)
        0.0
        >>> _ = layer([x + 1.0, labels], training=True)  # positives: the first batch, in the queue
        >>> round(float(layer.penalty_value), 4)
        1.9142
        >>> int(layer.pointer), int(layer.filled)
        (0, 4)
    """

    batch_reduction = "batch"  # the queue takes the whole batch

    def __init__(self, loss: Any, memory_size: int = 1024, warmup_steps: int = 0, training_only: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(training_only=training_only, **kwargs)
        self.loss = _check_loss(loss)
        self.memory_size = _check_count("memory_size", memory_size, 1)
        self.warmup_steps = _check_count("warmup_steps", warmup_steps, 0)
        self._use_memory = False

    def build(self, input_shape: Any) -> None:
        emb_shape, _ = two_input_shapes(self, input_shape, "embeddings, labels")
        if len(emb_shape) != 2 or emb_shape[-1] is None:
            raise ValueError(f"CrossBatchMemory expects embeddings of shape (batch, dim). Received {emb_shape}")
        self._check_batch(emb_shape[0])

        def state(name, shape, dtype):
            return self.add_weight(name=name, shape=shape, dtype=dtype, initializer="zeros", trainable=False,
                                   autocast=False, aggregation="only_first_replica")

        self.memory = state("memory", (self.memory_size, emb_shape[-1]), "float32")
        self.memory_labels = state("memory_labels", (self.memory_size,), "int32")
        self.pointer = state("pointer", (), "int32")  # the next slot to write
        self.filled = state("filled", (), "int32")  # slots holding an embedding, up to memory_size
        self.steps = state("steps", (), "int32")  # training steps seen, counted up to warmup_steps

    def _check_batch(self, batch: Optional[int]) -> None:
        if batch is not None and batch > self.memory_size:
            raise ValueError(
                f"Argument `memory_size` ({self.memory_size}) must be at least the batch size ({batch}): the "
                "queue holds the current batch and the batches before it."
            )

    def _labels(self, labels: Any) -> Tensor:
        labels = ops.convert_to_tensor(labels)
        check_integer_labels(labels, name="labels", owner="CrossBatchMemory")
        return ops.cast(ops.reshape(labels, (-1,)), "int32")

    def call(self, inputs: Any, training: Optional[bool] = None) -> Tensor:
        embeddings, labels = inputs
        self._check_batch(embeddings.shape[0])
        object.__setattr__(self, "_use_memory", bool(training))  # read by penalty(), not tracked
        return super().call((embeddings, self._labels(labels)), training=training)

    def penalty(self, inputs: Any) -> Tensor:
        embeddings, labels = inputs
        if not self._use_memory:
            return self.loss._fn(labels, as_float32(embeddings), sample_weight=None, **self.loss._options)
        return self.memory_loss(embeddings, labels)

    def memory_loss(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """The loss of the batch against the queue as it will be once the
        batch is written into it (the value the next training step adds;
        nothing is written)."""
        x = as_float32(embeddings)
        labels = ops.cast(ops.reshape(labels, (-1,)), "int32")
        batch = x.shape[0] if x.shape[0] is not None else ops.shape(x)[0]
        # the queue's filled slots, but for those the batch overwrites (its own entries, left out)
        slots = ops.arange(self.memory_size, dtype="int32")
        kept = ops.logical_and(slots < self.filled, ops.mod(slots - self.pointer, self.memory_size) >= batch)
        in_use = ops.logical_and(kept, self.steps >= self.warmup_steps)
        # an unused slot gets a label no anchor has, so that no miner counts it as a positive
        unused_label = ops.min(labels) - 1
        references = ops.concatenate([x, ops.stop_gradient(ops.cast(self.memory, x.dtype))], axis=0)
        reference_labels = ops.concatenate([labels, ops.where(in_use, ops.convert_to_tensor(self.memory_labels), unused_label)], axis=0)
        valid = ops.concatenate([ops.ones((batch,), "bool"), in_use], axis=0)
        # the loss function itself, not its cached jax.jit (which would keep the first call's `valid`)
        fn = inspect.unwrap(type(self.loss).fn)
        with memory_references(batch, valid):
            return fn(reference_labels, references, sample_weight=None, **self.loss._options)

    def after_penalty(self, inputs: Any, training: Optional[bool]) -> None:
        if training:
            self._write(*inputs)

    def _write(self, embeddings: Tensor, labels: Tensor) -> None:
        x = ops.stop_gradient(ops.cast(embeddings, self.memory.dtype))
        batch = x.shape[0] if x.shape[0] is not None else ops.shape(x)[0]
        slots = ops.expand_dims(ops.mod(self.pointer + ops.arange(batch, dtype="int32"), self.memory_size), 1)
        self.memory.assign(ops.scatter_update(ops.convert_to_tensor(self.memory), slots, x))
        self.memory_labels.assign(ops.scatter_update(ops.convert_to_tensor(self.memory_labels), slots, labels))
        self.pointer.assign(ops.mod(self.pointer + batch, self.memory_size))
        self.filled.assign(ops.minimum(self.filled + batch, self.memory_size))
        self.steps.assign(ops.minimum(self.steps + 1, self.warmup_steps))

    def outputs(self, inputs: Any, training: Optional[bool]) -> Tensor:
        return inputs[0]

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape[0]

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "loss": keras.saving.serialize_keras_object(self.loss),
            "memory_size": self.memory_size,
            "warmup_steps": self.warmup_steps,
        }
