"""Every private Keras API that keras_lossplus relies on, in one place.

Keras 3 keeps a few things we need outside its public API: the Keras mask of
a tensor, the wrapper `compile()` puts around a loss function, a model's
tracker, loss tracker, compiled metrics and compile config, and a few layer
internals. Each is read here through one small accessor (with a fallback to
the older location or a public equivalent where one exists), and the private
methods that our classes override are listed in `OVERRIDDEN_LAYER_METHODS`.
`tests/test_keras_internals.py` pins each of them against the installed
Keras and checks that no other module of the package touches a Keras
internal, so a Keras upgrade that moves one fails there, in one place.

This module imports nothing of keras_lossplus. The versions quoted are the
first Keras release that has the internal (the package needs Keras >= 3.10;
checked up to 3.15).
"""

from __future__ import annotations

import inspect
from typing import Any, Iterable, List, Optional

import keras

# Private `keras.layers.Layer` methods that `keras_lossplus.layers.PenaltyLayer` overrides (calling
# `super()`) to keep `add_loss` terms per replica under tf.distribute; both since Keras 3.0.
OVERRIDDEN_LAYER_METHODS = ("_get_own_losses", "_clear_losses")

try:  # since Keras 3.6: masks of tensors that take no attributes (JAX arrays) are kept aside
    from keras.src.backend import get_keras_mask as _get_keras_mask
    from keras.src.backend import set_keras_mask as _set_keras_mask
except ImportError:  # pragma: no cover - Keras < 3.6 kept the mask as a tensor attribute
    _get_keras_mask = _set_keras_mask = None

try:  # since Keras 3.0 (keras/src/ layout since 3.2)
    from keras.src.losses.losses import LossFunctionWrapper as _LossFunctionWrapper
except ImportError:  # pragma: no cover - a future layout: an equivalent wrapper of our own
    _LossFunctionWrapper = None


def get_keras_mask(x: Any) -> Optional[Any]:
    """The Keras mask carried by `x` (`keras.src.backend.get_keras_mask`, Keras >= 3.6), or `None`."""
    if _get_keras_mask is None:  # pragma: no cover
        return getattr(x, "_keras_mask", None)
    return _get_keras_mask(x)


def set_keras_mask(x: Any, mask: Any) -> None:
    """Attach the Keras mask `mask` to `x` in place (`keras.src.backend.set_keras_mask`, Keras >= 3.6)."""
    if _set_keras_mask is None:  # pragma: no cover
        x._keras_mask = mask
    else:
        _set_keras_mask(x, mask)


if _LossFunctionWrapper is not None:
    LossFunctionWrapper = _LossFunctionWrapper
else:  # pragma: no cover

    class LossFunctionWrapper(keras.losses.Loss):
        """Stand-in for Keras' wrapper: `fn(y_true, y_pred, **kwargs)` per sample."""

        def __init__(self, fn, reduction="sum_over_batch_size", name=None, dtype=None, **kwargs):
            super().__init__(name=name, reduction=reduction, dtype=dtype)
            self.fn, self._fn_kwargs = fn, kwargs

        def call(self, y_true, y_pred):
            return self.fn(y_true, y_pred, **self._fn_kwargs)


def wrap_loss_function(fn: Any, name: str) -> keras.losses.Loss:
    """`fn` wrapped as `compile(loss=fn)` wraps it (`keras.src.losses.losses.LossFunctionWrapper`, Keras >= 3.0)."""
    return LossFunctionWrapper(fn, name=name)


def wrapped_loss_function(loss: Any) -> Optional[Any]:
    """The function inside a `LossFunctionWrapper`, the base of Keras' built-in loss classes too
    (its `fn` attribute, Keras >= 3.0), else `None`."""
    return loss.fn if isinstance(loss, LossFunctionWrapper) else None


def loss_dtype_policy_name(loss: keras.losses.Loss) -> str:
    """The name of a loss's dtype policy (`Loss._dtype_policy`, Keras >= 3.3; before: its dtype)."""
    policy = getattr(loss, "_dtype_policy", None)
    return loss.dtype if policy is None else policy.name


def call_has_training_arg(layer: keras.layers.Layer) -> bool:
    """Whether `layer.call` takes `training` (`Layer._call_has_training_arg`, Keras >= 3.0)."""
    value = getattr(layer, "_call_has_training_arg", None)
    if value is None:  # pragma: no cover - the public signature says the same
        value = "training" in inspect.signature(layer.call).parameters
    return bool(value)


def flatten_layers(layer: keras.layers.Layer, include_self: bool = False) -> List[keras.layers.Layer]:
    """Every layer nested in `layer`, depth first (`Layer._flatten_layers`, Keras >= 3.0)."""
    if hasattr(layer, "_flatten_layers"):
        return list(layer._flatten_layers(include_self=include_self))
    found = [layer] if include_self else []  # pragma: no cover - public `layers` of nested models
    for child in getattr(layer, "layers", []):  # pragma: no cover
        found += flatten_layers(child, include_self=True)
    return found  # pragma: no cover


def untrack(layer: keras.layers.Layer, objects: Iterable[Any]) -> None:
    """Remove `objects` (variables, layers, metrics) from `layer`'s tracker, even a locked one
    (`Layer._tracker` with `locked` / `unlock` / `untrack` / `lock`, Keras >= 3.0)."""
    tracker = layer._tracker
    locked = tracker.locked
    tracker.unlock()
    for obj in objects:
        if obj is not None:
            tracker.untrack(obj)
    if locked:
        tracker.lock()


def update_compile_config(model: keras.Model, **entries: Any) -> None:
    """Add `entries` to what `model.get_compile_config()` saves (`Model._compile_config.config`, Keras >= 3.0)."""
    model._compile_config.config.update(entries)


def compiled_metrics(model: keras.Model) -> Optional[Any]:
    """The metrics container `compile(metrics=...)` built, or `None` (`Model._compile_metrics`, Keras >= 3.0)."""
    return model._compile_metrics


def compiled_loss(model: keras.Model) -> Optional[Any]:
    """The loss container `compile(loss=...)` built, or `None` (`Model._compile_loss`, Keras >= 3.0):
    `compiled_loss(model)(y, y_pred, sample_weight)` is `compute_loss` without the `add_loss` terms."""
    return model._compile_loss


def loss_tracker(model: keras.Model) -> keras.metrics.Metric:
    """The `Mean` metric `fit` logs as `loss` (`Model._loss_tracker`, Keras >= 3.0)."""
    return model._loss_tracker


def aggregate_additional_loss(model: keras.Model, loss: Any) -> Any:
    """One `add_loss` term summed the way `Model.compute_loss` sums it
    (`Model._aggregate_additional_loss`, Keras >= 3.8; before: a plain sum)."""
    if hasattr(model, "_aggregate_additional_loss"):
        return model._aggregate_additional_loss(loss)
    loss = keras.ops.convert_to_tensor(loss)  # pragma: no cover
    if not keras.backend.is_float_dtype(loss.dtype):  # pragma: no cover
        loss = keras.ops.cast(loss, keras.backend.floatx())
    return keras.ops.sum(loss)  # pragma: no cover


def own_variables(layer: keras.layers.Layer) -> list:
    """The variables a layer itself created, trainable then non-trainable, without its sublayers'
    (`Layer._trainable_variables` / `_non_trainable_variables`, Keras >= 3.0; what
    `Layer.save_own_variables` saves)."""
    return list(layer._trainable_variables) + list(layer._non_trainable_variables)


def seed_generators(layer: keras.layers.Layer) -> list:
    """The `keras.random.SeedGenerator`s a layer itself tracks (`Layer._seed_generators`, Keras >= 3.0)."""
    return list(layer._seed_generators)


def producing_call(tensor: Any) -> Optional[tuple]:
    """`(layer, inputs, kwargs)` of the layer call that produced a symbolic
    `KerasTensor` of a functional model (its `_keras_history` and the layer's
    `_inbound_nodes`, Keras >= 3.0): the layer, the `KerasTensor`s it was
    called on, and the call's keyword arguments; `None` for a tensor without
    history."""
    history = getattr(tensor, "_keras_history", None)
    if history is None:
        return None
    layer, node_index, _ = history
    node = layer._inbound_nodes[node_index]
    return layer, list(node.arguments.keras_tensors), dict(node.arguments.kwargs)
