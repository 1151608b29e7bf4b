r"""Output layer of the CORAL ordinal-regression loss.

`CoralOutput(num_classes)` returns the `num_classes - 1` logits that
`keras_lossplus.losses.CoralLoss` expects. CORN
(`keras_lossplus.losses.CornLoss`) needs no special layer: its output layer
is a plain `keras.layers.Dense(num_classes - 1)`.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from keras_lossplus.layers.base import register
from keras_lossplus.losses.ordinal import check_num_classes

Tensor = Any

__all__ = ["CoralOutput"]


@register
class CoralOutput(keras.layers.Layer):
    r"""CORAL output layer: one shared weight vector and `K - 1` biases.

    For inputs `x` of shape `(..., D)` it returns the logits `(..., K - 1)`

    $$l_k = w^\top x + b_k, \qquad k = 0, \dots, K - 2$$

    with a single `(D, 1)` kernel (a `Dense(1, use_bias=False)`) shared by
    every threshold. Sharing `w` makes the thresholds' probabilities
    `sigmoid(l_k)` non-increasing in `k` once the biases are ordered
    (rank consistency), which is what CORAL adds to `K - 1` independent
    binary classifiers. Train with `keras_lossplus.losses.CoralLoss` and
    predict with `keras_lossplus.losses.coral_rank(logits)`.

    With `preinit_bias=True` (coral-pytorch's default) the biases start at
    `(K - 1, K - 2, ..., 1) / (K - 1)`; otherwise at 0. The kernel starts
    from `kernel_initializer` (Keras' Glorot-uniform default, where
    coral-pytorch uses PyTorch's `Linear` initialisation).

    For CORN (`keras_lossplus.losses.CornLoss`) use a plain
    `keras.layers.Dense(num_classes - 1)` instead: its tasks have
    independent weights.

    Args:
        num_classes: Number of ordered classes `K`, `>= 2`.
        preinit_bias: Start the biases at descending values in `(0, 1]`.
        kernel_initializer, kernel_regularizer, kernel_constraint: Of the
            shared `(D, 1)` kernel, as in `keras.layers.Dense`.
        **kwargs: Base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Reference:
        Cao, Mirjalili & Raschka, "Rank Consistent Ordinal Regression for
        Neural Networks with Application to Age Estimation", Pattern
        Recognition Letters 2020; coral-pytorch `CoralLayer`.

    Examples:
        >>> layer = CoralOutput(num_classes=5)
        >>> logits = layer(keras.ops.zeros((2, 3)))
        >>> tuple(logits.shape)
        (2, 4)
        >>> print(keras.ops.convert_to_numpy(layer.bias))
        [1.   0.75 0.5  0.25]
    """

    def __init__(
        self,
        num_classes: int,
        preinit_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        kernel_regularizer: Any = None,
        kernel_constraint: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.num_classes = check_num_classes(num_classes)
        self.preinit_bias = bool(preinit_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.kernel_constraint = keras.constraints.get(kernel_constraint)

    def _initial_bias(self, shape: Any, dtype: Any = None) -> Tensor:
        k = self.num_classes - 1
        values = np.arange(k, 0, -1) / k if self.preinit_bias else np.zeros(k)
        return ops.convert_to_tensor(values.reshape(shape), dtype=dtype)

    def build(self, input_shape: Any) -> None:
        input_shape = tuple(input_shape)
        if len(input_shape) < 1 or input_shape[-1] is None:
            raise ValueError(
                f"CoralOutput needs inputs with a known last dimension. Received input_shape={input_shape}"
            )
        self.kernel = self.add_weight(
            shape=(input_shape[-1], 1), initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer, constraint=self.kernel_constraint, name="kernel",
        )
        self.bias = self.add_weight(shape=(self.num_classes - 1,), initializer=self._initial_bias, name="bias")

    def call(self, inputs: Tensor) -> Tensor:
        return ops.matmul(inputs, self.kernel) + self.bias

    def compute_output_shape(self, input_shape: Any) -> tuple:
        return tuple(input_shape)[:-1] + (self.num_classes - 1,)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "preinit_bias": self.preinit_bias,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
            "kernel_constraint": keras.constraints.serialize(self.kernel_constraint),
        }
