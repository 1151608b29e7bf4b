"""Log each penalty layer's value in `fit` / `evaluate` history, on every
backend, with and without `jit_compile`.

Keras logs the total loss, and the compiled loss of each output, but not the
terms that layers add with `add_loss`. A metric updated inside a layer's
`call()` fails on JAX (metric variables are outside the forward pass's
stateless scope there), whereas `Model.compute_loss` runs with the metric
variables in scope on all three backends. So logging lives in the model:

* subclassed models mix in `PenaltyLogging`
  (`class MyModel(PenaltyLogging, keras.Model)`), which works for the
  functional form `MyModel(inputs, outputs)` too;
* any existing model (Sequential, functional, subclassed) gets the same
  behaviour from `log_penalties(model)`, called before `fit`.

Each `PenaltyLayer` records its latest value in its `penalty_value`
variable; `compute_loss` reads it after the forward pass and updates one
`keras.metrics.Mean` per layer, named after the layer and weighted by the
batch size exactly as Keras weights `loss`, so that the epoch's `loss`
equals the compiled loss plus the sum of the logged penalties.
"""

from __future__ import annotations

import inspect
import types
from typing import Any, List

import keras
from keras import ops, tree

from keras_lossplus import keras_internals
from keras_lossplus.layers.base import PenaltyLayer

_METRICS_ATTR = "_klp_penalty_metrics"


def penalty_layers(model: keras.layers.Layer) -> List[PenaltyLayer]:
    """Every `PenaltyLayer` inside `model`, nested models included, in order.

    Examples:
        >>> from keras_lossplus.layers import L1Penalty
        >>> model = keras.Sequential([keras.Input((2,)), L1Penalty(0.1, name="l1")])
        >>> [layer.name for layer in penalty_layers(model)]
        ['l1']
    """
    layers = keras_internals.flatten_layers(model, include_self=False)
    return [layer for layer in layers if isinstance(layer, PenaltyLayer)]


def _attach_metrics(model: keras.Model) -> None:
    """One `Mean` metric per penalty layer, tracked by the model (so Keras
    lists, resets and logs it); layers that already have one are skipped."""
    tracked = getattr(model, _METRICS_ATTR, None)
    names = {m.name for m in tracked or []}
    new = [keras.metrics.Mean(name=layer.name) for layer in penalty_layers(model) if layer.name not in names]
    if tracked is None:
        setattr(model, _METRICS_ATTR, new)
    else:
        for metric in new:
            tracked.append(metric)


def _update_metrics(model: keras.Model, x: Any) -> None:
    metrics = {m.name: m for m in getattr(model, _METRICS_ATTR, [])}
    if not metrics:
        return
    first = next((t for t in tree.flatten(x) if t is not None), None)
    batch_size = None if first is None else ops.shape(first)[0]
    for layer in penalty_layers(model):
        metric = metrics.get(layer.name)
        if metric is not None:
            metric.update_state(ops.convert_to_tensor(layer.penalty_value), sample_weight=batch_size)


class PenaltyLogging:
    """Model mix-in: logs every penalty layer's value under the layer's name.

    Put it before `keras.Model` in the bases. Metrics are created in
    `compile()`; `compute_loss` updates them after the forward pass.

    Reference:
        Keras' `Model.compute_loss` customization, https://keras.io/api/models/model_training_apis/

    Examples:
        >>> from keras_lossplus.layers import L1Penalty
        >>> class LoggedModel(PenaltyLogging, keras.Model):
        ...     pass
        >>> inputs = keras.Input((3,))
        >>> model = LoggedModel(inputs, L1Penalty(0.1, name="l1")(keras.layers.Dense(2)(inputs)))
        >>> model.compile(optimizer="sgd", loss="mse")
        >>> history = model.fit(keras.ops.ones((4, 3)), keras.ops.zeros((4, 2)), verbose=0)
        >>> sorted(history.history)
        ['l1', 'loss']
    """

    def compile(self, *args: Any, **kwargs: Any) -> None:
        super().compile(*args, **kwargs)
        _attach_metrics(self)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        loss = super().compute_loss(x, y, y_pred, sample_weight, training=training)
        _update_metrics(self, x)
        return loss


def log_penalties(model: keras.Model) -> keras.Model:
    """Make an existing model log each penalty layer under its name.

    Patches this one model's `compute_loss` (instance attribute; the class is
    untouched) and creates the metrics. Call it after `compile()` or before,
    but before `fit()`; it returns the same model. It is not saved with the
    model: call it again after `keras.saving.load_model`.

    Examples:
        >>> from keras_lossplus.layers import L1Penalty
        >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2), L1Penalty(0.1, name="l1")])
        >>> model = log_penalties(model)
        >>> model.compile(optimizer="sgd", loss="mse")
        >>> history = model.fit(keras.ops.ones((4, 3)), keras.ops.zeros((4, 2)), verbose=0)
        >>> sorted(history.history)
        ['l1', 'loss']
    """
    if isinstance(model, PenaltyLogging):
        _attach_metrics(model)
        return model
    if not getattr(model, "_klp_logs_penalties", False):
        original = model.compute_loss
        takes_training = "training" in inspect.signature(original).parameters

        def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
            extra = {"training": training} if takes_training else {}
            loss = original(x, y, y_pred, sample_weight, **extra)
            _update_metrics(self, x)
            return loss

        model.compute_loss = types.MethodType(compute_loss, model)
        model._klp_logs_penalties = True
    _attach_metrics(model)
    for name in ("train_function", "test_function"):
        if getattr(model, name, None) is not None:
            setattr(model, name, None)  # rebuilt with the new metrics
    return model
