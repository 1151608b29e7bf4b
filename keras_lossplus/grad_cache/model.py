"""`GradCacheModel`: an encoder trained with an in-batch loss over the whole
batch, the encoder run chunk by chunk (GradCache)."""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import keras
from keras import ops

from keras_lossplus import keras_internals
from keras_lossplus.grad_cache.train_step import grad_cache_train_step


def _check_chunk_size(chunk_size: Any) -> int:
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"`chunk_size` must be a positive integer (items per encoder call); got {chunk_size!r}.")
    return int(chunk_size)


def _item_rank(encoder: keras.layers.Layer) -> Optional[int]:
    """The rank of one item (without the batch axis), when the encoder has
    a single known input (functional or Sequential with an `Input`)."""
    try:
        inputs = encoder.inputs
    except (AttributeError, ValueError):
        return None
    if not inputs or len(inputs) != 1:
        return None
    return len(inputs[0].shape) - 1


@keras.saving.register_keras_serializable(package="keras_lossplus")
class GradCacheModel(keras.Model):
    """Trains `encoder` with an in-batch loss (contrastive, InfoNCE,
    multiple negatives ranking, SupCon, triplet...) over the whole batch
    while at most `chunk_size` items go through the encoder with their
    activations kept: the memory of a batch of `chunk_size`, the loss and
    gradient of the whole batch (GradCache).

    A training step (batch of `T` items, `K = ceil(T / chunk_size)` chunks):

    1. `e_k = encoder(x_k)` for each chunk `x_k`, nothing kept for a
       backward pass;
    2. `L = loss(y, concat(e_1..e_K))` and `g = dL / de`, the loss's
       gradient with respect to the embeddings;
    3. for each chunk, `encoder(x_k)` again with gradients and the
       vector-Jacobian product `g_k^T de_k / dtheta`; the sum over the chunks
       is `dL / dtheta` (the chain rule: `L` depends on `theta` only through
       the embeddings);
    4. the optimizer step with that gradient.

    The encoder runs twice (about 1.2-2x the time of a full-batch step);
    activation memory is that of one chunk plus the `(T, D)` embeddings.

    Inputs, told apart by their rank (the encoder's input rank must be
    known: a functional or Sequential encoder with an `Input`):

    * `x` of shape `(N, *item)`: the encoder gives `y_pred` `(N, *out)`;
      `y` is what the loss takes (labels `(N,)` for `SupConLoss`,
      `NTXentLoss`, `TripletLoss`...);
    * `x` of shape `(N, m, *item)`, `m` items per example (anchor,
      positive, hard negatives; sentence-transformers' convention): the
      encoder runs on the `N * m` items and `y_pred` is `(N, m, *out)`.

    `chunk_size` counts items (encoder rows): with pairs, `chunk_size=8`
    holds 4 examples. A batch that `chunk_size` does not divide gets a last
    chunk padded with zeros, whose outputs are dropped before the loss (so
    they take no part in the loss or the gradient). A batch smaller than
    `chunk_size` (the last batch of an epoch) runs as one chunk: refusing it
    would make `fit` fail at the end of every epoch whose size the batch
    size does not divide; the memory is never more than that of
    `chunk_size` items. `fit(batch_size=...)` with a batch of fewer items
    than `chunk_size` raises a `ValueError` naming `chunk_size`.

    `compile`, `fit`, `evaluate` and `predict` are Keras': only the training
    step changes; `evaluate` and `predict` run the encoder on the whole
    batch, without gradients (`predict` gives the embeddings). `add_loss`
    terms of the encoder (weight or activity regularizers) enter as the mean
    of the chunks' terms, which equals the whole batch's for Keras'
    regularizers (an activity regularizer is divided by the batch size).

    Randomness: the second pass replays the first pass's random draws
    (JAX and TensorFlow: the seed states of `Dropout` and other seeded
    layers are restored; torch: the seed states and torch's global random
    state), so a dropout encoder gets the exact gradient of the loss of the
    embeddings the first pass computed; the masks differ from those of a
    full-batch step (drawn per chunk), as any other sequence of draws would.
    Batch normalization sees per-chunk statistics (as in the paper's
    setting; prefer layer normalization in the encoder); its moving
    statistics are updated once per chunk, by the second pass. Loss scaling
    (a `LossScaleOptimizer`, which Keras uses under `mixed_float16`) raises
    a `ValueError` at the first step; `mixed_bfloat16` works.

    Args:
        encoder: a `keras.Model` or layer mapping `(B, *item)` to `(B, *out)`,
            one tensor input and output.
        chunk_size: positive int, the number of items per encoder call.
        name: the model's name.

    Reference:
        Gao, Zhang, Han, Callan. Scaling Deep Contrastive Learning Batch Size
        under Memory Limited Setup. RepL4NLP 2021, arXiv:2101.06983;
        sentence-transformers' `CachedMultipleNegativesRankingLoss`.

    Examples:
        >>> import numpy as np
        >>> import keras_lossplus as klp
        >>> encoder = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4)])
        >>> model = GradCacheModel(encoder, chunk_size=4)
        >>> model.compile(optimizer="sgd", loss=klp.losses.SupConLoss())
        >>> x = np.random.default_rng(0).normal(size=(16, 6)).astype("float32")
        >>> history = model.fit(x, np.arange(16) % 4, batch_size=16, verbose=0)
        >>> model.predict(x, verbose=0).shape
        (16, 4)
    """

    def __init__(self, encoder: keras.layers.Layer, chunk_size: int = 32, name: Optional[str] = None,
                 **kwargs: Any) -> None:
        if not isinstance(encoder, keras.layers.Layer):
            raise TypeError(f"`encoder` must be a keras.Model or keras.layers.Layer; got {type(encoder).__name__}.")
        chunk_size = _check_chunk_size(chunk_size)
        super().__init__(name=name, **kwargs)
        self.encoder = encoder
        self.chunk_size = chunk_size
        self._klp_item_rank = _item_rank(encoder)
        if encoder.built:
            self.built = True

    # ------------------------------------------------------------ the items

    def items_of(self, x: Any) -> Tuple[Any, Optional[int]]:
        """`(items, m)`: the encoder's rows and the items per example (`None`
        for `(N, *item)` inputs)."""
        if isinstance(x, (dict, list, tuple)):
            raise TypeError(f"{type(self).__name__} takes one input tensor (N, *item) or (N, m, *item); "
                            f"got a {type(x).__name__}.")
        rank = self._klp_item_rank
        if rank is None or len(x.shape) == rank + 1:
            return x, None
        if len(x.shape) != rank + 2:
            raise ValueError(f"The encoder takes items of rank {rank}: `x` must be (N, *item) or (N, m, *item), "
                             f"of rank {rank + 1} or {rank + 2}; got shape {tuple(x.shape)}.")
        groups = x.shape[1]
        return ops.reshape(x, (-1,) + tuple(x.shape[2:])), groups

    @staticmethod
    def group_outputs(outputs: Any, groups: Optional[int]) -> Any:
        """The encoder's outputs `(N * m, *out)` as `(N, m, *out)`."""
        return outputs if groups is None else ops.reshape(outputs, (-1, groups) + tuple(outputs.shape[1:]))

    @staticmethod
    def items_of_outputs(y_pred: Any, groups: Optional[int]) -> Any:
        """`(N, m, *out)` back to the encoder's rows `(N * m, *out)`."""
        return y_pred if groups is None else ops.reshape(y_pred, (-1,) + tuple(y_pred.shape[2:]))

    def fit(self, x: Any = None, y: Any = None, batch_size: Optional[int] = None, **kwargs: Any) -> Any:
        """Keras' `fit`; refuses a `batch_size` whose items all fit in one
        chunk (GradCache would then save nothing: a mistake in `chunk_size`)."""
        if batch_size is not None and hasattr(x, "shape") and self._klp_item_rank is not None:
            groups = x.shape[1] if len(x.shape) == self._klp_item_rank + 2 else 1
            if batch_size * groups < self.chunk_size:
                raise ValueError(
                    f"`chunk_size`={self.chunk_size} is larger than a batch ({batch_size} examples x {groups} "
                    f"items = {batch_size * groups} items): every step would be one chunk and GradCache would "
                    "save no memory. Pass a `chunk_size` below the batch's number of items (or train the "
                    "encoder with a plain Model)."
                )
        return super().fit(x, y, batch_size=batch_size, **kwargs)

    def call(self, x: Any, training: Any = None) -> Any:
        items, groups = self.items_of(x)
        return self.group_outputs(self.encoder(items, training=training), groups)

    def build(self, input_shape: Any = None) -> None:
        if not self.encoder.built and input_shape is not None:
            shape = tuple(input_shape)
            rank = self._klp_item_rank
            if rank is not None and len(shape) == rank + 2:
                shape = (None,) + shape[2:]
            self.encoder.build(shape)
        self.built = True

    # ----------------------------------------------------------- the step

    def batch_loss(self, y: Any, y_pred: Any, sample_weight: Any = None) -> Any:
        """The compiled loss of the whole batch (without `add_loss` terms)."""
        loss = keras_internals.compiled_loss(self)
        if loss is None:
            raise ValueError(f"{type(self).__name__} needs a `loss` in `compile()`.")
        return loss(y, y_pred, sample_weight)

    def train_step(self, *args: Any) -> Any:
        if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
            # (checked here, not in an overridden compile(): that would stop Keras compiling a loaded model)
            raise ValueError(f"{type(self).__name__} does not support loss scaling (a LossScaleOptimizer, which "
                             "Keras uses under the 'mixed_float16' policy); use the 'mixed_bfloat16' policy or "
                             "'float32'.")
        return grad_cache_train_step(self, *args)

    # ------------------------------------------------------------- saving

    def get_config(self) -> Dict[str, Any]:
        return {
            "encoder": keras.saving.serialize_keras_object(self.encoder),
            "chunk_size": self.chunk_size,
            "name": self.name,
            "trainable": self.trainable,
        }

    @classmethod
    def from_config(cls, config: Dict[str, Any], custom_objects: Any = None) -> "GradCacheModel":
        config = dict(config)
        encoder = keras.saving.deserialize_keras_object(config.pop("encoder"), custom_objects=custom_objects)
        return cls(encoder, **config)
