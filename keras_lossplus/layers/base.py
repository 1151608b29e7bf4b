"""The base of every penalty layer: factors, `training_only`, float32
accumulation, and the value each call records for logging.

A penalty layer computes a scalar penalty from its inputs in `call()`, adds it
to the model's total loss with `self.add_loss`, and returns its input (or its
documented output) unchanged. It also writes the value into a scalar
non-trainable variable, `penalty_value`: a plain variable update, which every
backend carries out of a compiled step (JAX returns it with the other
non-trainable state). `keras_lossplus.layers.PenaltyLogging` reads it in
`compute_loss` to log each penalty under the layer's name.
"""

from __future__ import annotations

from typing import Any, Optional, Union

import keras
from keras import ops

from keras_lossplus.losses.base import check_number
from keras_lossplus.ops import compute_dtype

Tensor = Any
Factor = Union[float, keras.Variable]


def register(cls):
    """Register a layer for `.keras` saving under the package's name."""
    return keras.saving.register_keras_serializable(package="keras_lossplus")(cls)


def factor_variable(layer: keras.layers.Layer, name: str, value: Factor, **bounds: Any) -> keras.Variable:
    """A scalar non-trainable float32 variable holding a penalty factor.

    `value` may be a number (validated against `bounds`, `low=0` by default)
    or a `keras.Variable` the user keeps and changes between epochs; such a
    variable must be non-trainable, since training would drive a penalty's
    factor to zero.
    """
    if isinstance(value, keras.Variable):
        if value.trainable:
            raise ValueError(
                f"Argument `{name}` is a trainable keras.Variable; create it with "
                f"trainable=False (a trained penalty factor would shrink to 0). Received: {value!r}"
            )
        if tuple(value.shape) != ():
            raise ValueError(f"Argument `{name}` must be a scalar. Received shape {tuple(value.shape)}")
        return value
    bounds.setdefault("low", 0.0)
    value = check_number(name, value, **bounds)
    return layer.add_weight(
        shape=(), initializer=keras.initializers.Constant(value), dtype="float32",
        trainable=False, autocast=False, name=name,
    )


def two_input_shapes(layer: keras.layers.Layer, input_shape: Any, names: str) -> tuple:
    """The two shapes of a layer that takes a pair of inputs, or a
    `ValueError` naming them."""
    pair = isinstance(input_shape, (list, tuple)) and len(input_shape) == 2
    if not pair or not all(isinstance(s, (list, tuple)) for s in input_shape):
        raise ValueError(
            f"{type(layer).__name__} takes two inputs, [{names}]. Received input_shape={input_shape}"
        )
    return tuple(input_shape[0]), tuple(input_shape[1])


def variable_value(variable: keras.Variable) -> float:
    """The current value of a scalar variable as a Python float (for configs)."""
    return float(ops.convert_to_numpy(variable))


def as_float32(x: Tensor) -> Tensor:
    """`x` in the dtype penalties accumulate in: float32 for half-precision
    activations (mixed precision), unchanged otherwise."""
    x = ops.convert_to_tensor(x)
    dtype = compute_dtype(x.dtype)
    return x if keras.backend.standardize_dtype(x.dtype) == dtype else ops.cast(x, dtype)


@register
class PenaltyLayer(keras.layers.Layer):
    """Base of the layers that add a penalty to the loss with `add_loss`.

    Subclasses implement `penalty(inputs) -> scalar` (computed in float32)
    and, if their output is not their input, `outputs(inputs, training)`.
    The penalty counts in training and in `evaluate` (as Keras' own
    regularizers do, so `val_loss` stays comparable to `loss`) unless
    `training_only=True`. Each call also stores the value in the
    non-trainable scalar `penalty_value`, which `PenaltyLogging` logs.

    Args:
        training_only: Add the penalty only when `training=True`.
        **kwargs: Standard layer arguments (`name`, `dtype`, ...).

    Reference:
        Keras' `Layer.add_loss`, https://keras.io/api/losses/#the-addloss-api

    Example:
    >>> class MaxPenalty(PenaltyLayer):
    ...     def penalty(self, inputs):
    ...         return keras.ops.max(keras.ops.abs(inputs))
    >>> layer = MaxPenalty()
    >>> _ = layer(keras.ops.convert_to_tensor([[1.0, -3.0]]))
    >>> [float(v) for v in layer.losses], float(layer.penalty_value)
    ([3.0], 3.0)
    """

    def __init__(self, training_only: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.training_only = bool(training_only)
        self.penalty_value = self.add_weight(
            shape=(), initializer="zeros", dtype="float32", trainable=False,
            autocast=False, aggregation="mean", name="penalty_value",
        )

    def penalty(self, inputs: Any) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def outputs(self, inputs: Any, training: Optional[bool]) -> Any:
        """What the layer returns; its input by default."""
        return inputs

    def call(self, inputs: Any, training: Optional[bool] = None) -> Any:
        outputs = self.outputs(inputs, training)
        if self.training_only and not training:
            self.penalty_value.assign(ops.zeros((), "float32"))
            return outputs
        value = ops.cast(self.penalty(inputs), "float32")
        self.add_loss(value)
        self.penalty_value.assign(ops.stop_gradient(value))
        return outputs

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict:
        config = super().get_config()
        config["training_only"] = self.training_only
        return config
