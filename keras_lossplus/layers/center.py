"""Center loss (Wen et al., 2016) as a penalty layer with its class centers
as non-trainable state updated inside the compiled step."""

from __future__ import annotations

from typing import Any, Optional

import keras
import numpy as np
from keras import ops

from keras_lossplus import backend as klp_backend
from keras_lossplus.layers.base import (
    replica_local_weight,
    Factor,
    PenaltyLayer,
    as_float32,
    factor_variable,
    register,
    two_input_shapes,
    variable_value,
)
from keras_lossplus.losses.magnitude import bounded
from keras_lossplus.losses.options import check_number

Tensor = Any


@register
class CenterPenalty(PenaltyLayer):
    r"""Center loss: pulls each embedding towards its class center.

    Takes `[embeddings, labels]` (embeddings `(B, D)`, integer labels `(B,)`
    or `(B, 1)`), returns the embeddings unchanged and adds

    $$\lambda\ \frac{1}{2N}\sum_i \lVert x_i - c_{y_i}\rVert^2$$

    (the paper sums over the batch; this averages, so `factor` does not
    depend on the batch size). In training the centers, non-trainable
    `(num_classes, D)` state saved with the model, then move by the paper's
    rule:

    $$c_j \leftarrow c_j - \alpha\,\frac{\sum_i [y_i = j](c_j - x_i)}
      {1 + \sum_i [y_i = j]}$$

    Labels must be integers. Out-of-range labels raise `ValueError` when the
    layer runs eagerly; inside a compiled step (where nothing can raise) rows
    with such labels are left out of the penalty and of the center update.

    Args:
        num_classes: Number of classes, `>= 1`.
        factor: `>= 0` (`lambda` in the paper).
        alpha: Center learning rate in `[0, 1]`.
        training_only: Add the penalty only in training (the centers only
            ever move in training).

    Reference:
        Wen et al., "A Discriminative Feature Learning Approach for Deep Face
        Recognition", ECCV 2016.

    Examples:
        >>> layer = CenterPenalty(num_classes=2, factor=1.0)
        >>> x = keras.ops.convert_to_tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> _ = layer([x, keras.ops.convert_to_tensor([0, 1])])
        >>> [float(v) for v in layer.losses]
        [0.5]
    """

    batch_reduction = "batch"  # the center update uses the whole batch

    def __init__(self, num_classes: int, factor: Factor = 0.01, alpha: float = 0.5, training_only: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(training_only=training_only, **kwargs)
        if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
            raise ValueError(f"Argument `num_classes` must be an integer >= 1. Received: num_classes={num_classes!r}")
        self.num_classes = int(num_classes)
        self.factor = factor_variable(self, "factor", factor)
        self.alpha = check_number("alpha", alpha, low=0.0, high=1.0)

    def build(self, input_shape: Any) -> None:
        emb_shape, _ = two_input_shapes(self, input_shape, "embeddings, labels")
        if len(emb_shape) != 2 or emb_shape[-1] is None:
            raise ValueError(f"CenterPenalty expects embeddings of shape (batch, dim). Received {emb_shape}")
        # every replica moves its copy by the same, global-batch update
        self.centers = replica_local_weight(self, "centers", (self.num_classes, emb_shape[-1]))

    def _labels(self, labels: Any) -> Tensor:
        labels = ops.convert_to_tensor(labels)
        if not keras.backend.is_int_dtype(keras.backend.standardize_dtype(labels.dtype)):
            raise TypeError(
                "CenterPenalty needs integer class labels: its second input, `labels`, must have an integer "
                f"dtype. Received: labels with dtype={keras.backend.standardize_dtype(labels.dtype)}; declare "
                "the input with dtype='int32'."
            )
        labels = ops.reshape(labels, (-1,))
        if klp_backend.is_concrete(labels):
            values = ops.convert_to_numpy(labels)
            if values.size and (values.min() < 0 or values.max() >= self.num_classes):
                raise ValueError(
                    f"CenterPenalty labels must be in [0, {self.num_classes}). Received labels from "
                    f"{values.min()} to {values.max()}"
                )
        return labels

    def _one_hot(self, labels: Tensor, dtype: str) -> Tensor:
        # A comparison, not ops.one_hot: out-of-range labels give a zero row on every backend.
        classes = ops.arange(self.num_classes, dtype=labels.dtype)
        return ops.cast(ops.equal(ops.expand_dims(labels, 1), ops.expand_dims(classes, 0)), dtype)

    def penalty(self, inputs: Any) -> Tensor:
        embeddings, one_hot = inputs
        x = bounded(as_float32(embeddings), "embeddings", "CenterPenalty: ",
                    hint="Normalize the embeddings or lower the learning rate.")
        one_hot = ops.cast(one_hot, x.dtype)
        own_center = ops.matmul(one_hot, ops.cast(self.centers, x.dtype))
        valid = ops.sum(one_hot, axis=1)
        squared = ops.sum(ops.square(x - own_center), axis=1) * valid
        return self.factor * (0.5 * ops.divide_no_nan(ops.sum(squared), ops.sum(valid)))

    def call(self, inputs: Any, training: Optional[bool] = None) -> Tensor:
        # labels are checked and one-hot encoded once, for the penalty and the update
        embeddings = inputs[0]
        one_hot = self._one_hot(self._labels(inputs[1]), "float32")
        return super().call((embeddings, one_hot), training=training)

    def after_penalty(self, inputs: Any, training: Optional[bool]) -> None:
        if training:
            self._update_centers(*inputs)

    def _update_centers(self, embeddings: Tensor, one_hot: Tensor) -> None:
        centers = ops.convert_to_tensor(self.centers)
        x = ops.stop_gradient(ops.cast(embeddings, centers.dtype))
        one_hot = ops.cast(one_hot, centers.dtype)
        counts = ops.expand_dims(ops.sum(one_hot, axis=0), 1)  # (K, 1)
        sums = ops.matmul(ops.transpose(one_hot), x)  # (K, D)
        delta = (counts * centers - sums) / (1.0 + counts)
        self.centers.assign(centers - self.alpha * delta)

    def outputs(self, inputs: Any, training: Optional[bool]) -> Tensor:
        return inputs[0]

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape[0]

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "factor": variable_value(self.factor),
            "alpha": self.alpha,
        }
