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
from keras import ops, tree

from keras_lossplus import backend as klp_backend
from keras_lossplus.losses.options import check_number
from keras_lossplus.ops import compute_dtype, with_gradient_of

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
    if isinstance(value, (str, bytes)):  # "1e-4" read from a config file, say
        raise TypeError(
            f"Argument `{name}` must be a number or a non-trainable scalar keras.Variable, not a string. "
            f"Received: {name}={value!r}"
        )
    value = check_number(name, value, **bounds)
    return layer.add_weight(
        shape=(), initializer=keras.initializers.Constant(value), dtype="float32",
        trainable=False, autocast=False, name=name,
    )


def replica_local_weight(layer: keras.layers.Layer, name: str, shape: tuple = (), initializer: Any = "zeros"):
    """A non-trainable float32 variable that a layer assigns in `call()`.

    Under `tf.distribute` each replica updates its own copy (read outside the
    replicas: their mean), as Keras' metric variables do. A synchronised
    variable would make every replica wait for the others in the middle of
    the forward pass, and the replicas' `add_loss` terms then get mixed up
    (each replica ends up reading another one's `model.losses`).
    """
    with keras.name_scope(layer.name, caller=layer):
        return keras.Variable(
            initializer=keras.initializers.get(initializer), shape=shape, dtype="float32", trainable=False,
            autocast=False, aggregation="mean", synchronization="on_read", name=name,
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


class ReplicaLosses:
    """A layer mix-in that keeps its `add_loss` terms per replica.

    Under tf.distribute the replicas run the same layer objects in threads
    that take turns at each collective (the gather of a batch-level loss or
    penalty, a global count). Keras keeps add_loss terms in one list per
    layer and clears it when a replica's forward pass starts, so a replica
    that resumes after a collective would read another replica's terms.
    """

    def add_loss(self, loss: Any) -> None:
        replica = klp_backend.replica_id()
        if replica is None:
            return super().add_loss(loss)
        self._replica_losses().setdefault(replica, []).extend(tree.flatten(loss))

    # _get_own_losses / _clear_losses are private Keras methods: listed, and pinned by a test, in
    # keras_lossplus.keras_internals.OVERRIDDEN_LAYER_METHODS
    def _get_own_losses(self) -> list:
        own = super()._get_own_losses()
        replica = klp_backend.replica_id()
        return own if replica is None else own + list(self._replica_losses().get(replica, []))

    def _clear_losses(self) -> None:
        super()._clear_losses()
        replica = klp_backend.replica_id()
        if replica is not None:
            self._replica_losses().pop(replica, None)

    def _replica_losses(self) -> dict:
        store = self.__dict__.get("_klp_replica_losses")
        if store is None:  # an untracked attribute: Keras' tracker would wrap a dict set the usual way
            store = {}
            object.__setattr__(self, "_klp_replica_losses", store)
        return store


@register
class PenaltyLayer(ReplicaLosses, keras.layers.Layer):
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

    Examples:
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
        self.penalty_value = replica_local_weight(self, "penalty_value")

    def penalty(self, inputs: Any) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def outputs(self, inputs: Any, training: Optional[bool]) -> Any:
        """What the layer returns; its input by default."""
        return inputs

    # How the penalty of a batch splits over data-parallel replicas (tf.distribute):
    # "mean": a mean over samples (each replica's slice, averaged by Keras);
    # "sum": a sum over samples (the replicas' values add up);
    # "batch": needs the whole batch (inputs all-gathered, like BatchLoss).
    batch_reduction = "mean"

    def call(self, inputs: Any, training: Optional[bool] = None) -> Any:
        outputs = self.outputs(inputs, training)
        if self.training_only and not training:
            self.penalty_value.assign(ops.zeros((), "float32"))
            return outputs
        inputs, replicas = self._replica_inputs(inputs)
        value = ops.cast(self.penalty(inputs), "float32")
        term = value
        if replicas > 1 and self.batch_reduction == "batch":
            # the global batch's penalty; Keras divides an add_loss term by the replicas and sums their
            # gradients, each of which flows through the replica's own slice
            term = with_gradient_of(value, replicas * value)
        elif replicas > 1 and self.batch_reduction == "sum":
            value = term = value * replicas  # logged: the replicas' mean; added: this replica's sum
        self.add_loss(term)
        self.penalty_value.assign(ops.stop_gradient(value))
        self.after_penalty(inputs, training)
        return outputs

    def _replica_inputs(self, inputs: Any) -> tuple:
        """`(inputs, replicas)`: under `tf.distribute`, a batch-level
        penalty's inputs gathered from every replica."""
        replicas = klp_backend.num_replicas()
        if replicas > 1 and self.batch_reduction == "batch":
            flat, replicas = klp_backend.gather_replicas(tree.flatten(inputs))
            inputs = tree.pack_sequence_as(inputs, flat)
        return inputs, replicas

    def after_penalty(self, inputs: Any, training: Optional[bool]) -> None:
        """Called with the penalty's inputs (the global batch's, for a
        batch-level penalty under `tf.distribute`) after the penalty."""

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict:
        config = super().get_config()
        config["training_only"] = self.training_only
        return config
