"""`MultiOutputModel`: per-output losses and weights into the total loss,
missing labels, every term logged, static and dynamic weighting."""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional

import keras
from keras import ops, tree

from keras_lossplus import backend as klp_backend
from keras_lossplus import keras_internals
from keras_lossplus.layers.logging import _attach_metrics, _update_metrics
from keras_lossplus.losses.base import with_keras_mask
from keras_lossplus.multi_output import weighting as weighting_module
from keras_lossplus.multi_output.gradients import combine_task_gradients, shared_flags, task_variable_ids
from keras_lossplus.multi_output.output_loss import labelled_loss, split_labels
from keras_lossplus.multi_output.targets import (
    model_output_names,
    per_output,
    resolve_ignore_values,
    resolve_losses,
    resolve_weights,
)
from keras_lossplus.multi_output.train_step import multi_task_train_step, replica_losses

_EXTRA_COMPILE_ARGS = ("loss", "loss_weights", "weighting", "ignore_value")


class _StrategyCallback(keras.callbacks.Callback):
    """Gives the weighting strategy each epoch's logs (DWA reads them)."""

    def __init__(self, strategy: Any) -> None:
        super().__init__()
        self.strategy = strategy

    def on_epoch_end(self, epoch: int, logs: Optional[Dict[str, Any]] = None) -> None:
        self.strategy.on_epoch_end(dict(logs or {}))


def _like(structure: Any, values: Dict[str, Any], names: List[str]) -> Any:
    """`values` (keyed by output name) in the container type of `structure`."""
    if isinstance(structure, dict):
        return {key: values.get(key, structure[key]) for key in structure}
    if isinstance(structure, (list, tuple)):
        return type(structure)(values.get(n, s) for n, s in zip(names, structure))
    return values[names[0]]


def _batch_size(x: Any) -> Any:
    first = next((t for t in tree.flatten(x) if t is not None), None)
    return None if first is None else ops.shape(first)[0]


class MultiOutputTraining:
    """Model mix-in with the behaviour of `MultiOutputModel`, for subclassed
    models (`class MyModel(MultiOutputTraining, keras.Model)`) whose `call`
    returns a dict of outputs; put it before `keras.Model` in the bases.

    Reference:
        Keras' `Model.compute_loss` / `train_step` customisation,
        https://keras.io/guides/custom_train_step_in_jax/
    """

    # ----------------------------------------------------------------- compile

    def compile(
        self,
        optimizer: Any = "rmsprop",
        loss: Any = None,
        loss_weights: Any = None,
        metrics: Any = None,
        weighted_metrics: Any = None,
        weighting: Any = "static",
        ignore_value: Any = None,
        **kwargs: Any,
    ) -> None:
        """Like `keras.Model.compile`, plus:

        Args:
            loss: a dict from output name to a loss (name, function or
                `keras.losses.Loss`; `None` for an output without a loss), or
                a list in output order. Every output must be named.
            loss_weights: dict (or list) of weights >= 0, the initial / prior
                weight of each output's loss (1 when left out).
            weighting: a strategy name (`"static"`, `"uncertainty"`, `"dwa"`,
                `"rlw"`, `"famo"`, `"gradnorm"`, `"pcgrad"`, `"cagrad"`,
                `"mgda"`, `"nash_mtl"`, `"imtl"`) or a `keras_lossplus.weighting` object. The name
                `"uncertainty"` infers each task's type (classification or
                regression) from its loss and raises a `ValueError` for a
                loss it does not know; pass
                `keras_lossplus.weighting.Uncertainty(task_types=...)` then.
            ignore_value: a target value meaning "no label" besides `NaN`,
                for every output or as a dict per output.
        """
        names = model_output_names(self)
        if names is None:  # subclassed model: outputs named by the loss dict
            if not isinstance(loss, dict):
                raise ValueError("A subclassed multi-output model needs `loss` as a dict keyed by output name.")
            names = list(loss)
        losses = resolve_losses(loss, names)
        task_names = list(losses)
        prior = resolve_weights(loss_weights, task_names, names)
        ignore = resolve_ignore_values(ignore_value, names)
        strategy = weighting_module.get(weighting, losses=losses)
        strategy.build_tasks(task_names, prior)

        self._klp_untrack_previous_compile()
        super().compile(optimizer=optimizer, loss=None, metrics=metrics, weighted_metrics=weighted_metrics, **kwargs)
        keras_internals.update_compile_config(
            self, loss=loss, loss_weights=loss_weights, weighting=keras.saving.serialize_keras_object(strategy),
            ignore_value=ignore_value,
        )
        self._klp_output_names = names
        self._klp_task_names = task_names
        self._klp_losses = losses
        self._klp_ignore = ignore
        self.loss_weighting = strategy
        self._klp_task_ids = task_variable_ids(self, task_names) if strategy.uses_task_gradients else None
        if strategy.uses_task_gradients:  # strategies with per-parameter state (DB-MTL) size it here
            variables = self.trainable_variables
            flags = shared_flags(variables, self._klp_task_ids)
            strategy.build_shared(sum(math.prod(v.shape) for v, s in zip(variables, flags) if s))
        self._klp_task_metrics = [
            keras.metrics.Mean(name=f"{name}{suffix}")
            for name in task_names
            for suffix in ("_loss", "_weighted_loss", "_weight")
        ]
        _attach_metrics(self)

    def _klp_untrack_previous_compile(self) -> None:
        """A second `compile()` replaces the strategy and the term metrics:
        the old ones must leave the model's variables and metrics."""
        previous = [getattr(self, "loss_weighting", None)] + list(getattr(self, "_klp_task_metrics", None) or [])
        keras_internals.untrack(self, previous)

    def compile_from_config(self, config: Dict[str, Any]) -> None:
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if getattr(self, "optimizer", None) is not None and self.built:
            self.optimizer.build(self.trainable_variables)

    # -------------------------------------------------------------- the terms

    def task_losses(self, y: Any, y_pred: Any, sample_weight: Any = None) -> Any:
        """Each task's (unweighted) loss, stacked in task order, float32."""
        names = self._klp_output_names
        preds = per_output(y_pred, names, "y_pred", required=True)
        if isinstance(y, dict):
            targets = per_output(y, names, "y", required=False)
            missing = [n for n in self._klp_task_names if n not in targets]
            if missing:
                raise ValueError(f"No targets `y` for outputs {missing} that have a loss. Outputs: {names}.")
        else:
            targets = per_output(y, names, "y", required=True)
        weights = {} if sample_weight is None else per_output(sample_weight, names, "sample_weight", required=False)
        values = [
            ops.cast(
                labelled_loss(self._klp_losses[n], targets[n], preds[n], weights.get(n), self._klp_ignore[n]),
                "float32",
            )
            for n in self._klp_task_names
        ]
        return ops.stack(values)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        """Compiled metrics skip missing labels as the losses do: the missing
        targets are zeroed and each output's prediction carries a Keras mask
        of its labelled samples (applied by Keras' mean metrics, weighted or
        not)."""
        if keras_internals.compiled_metrics(self) is not None:  # nothing reads the targets otherwise
            y, y_pred = self._labelled_targets(y, y_pred)
        return super().compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    def _labelled_targets(self, y: Any, y_pred: Any):
        names = self._klp_output_names
        if y is None or (not isinstance(y, (dict, list, tuple)) and len(names) != 1):
            return y, y_pred
        preds = per_output(y_pred, names, "y_pred", required=True)
        targets = per_output(y, names, "y", required=not isinstance(y, dict))
        for name, target in targets.items():
            targets[name], labelled = split_labels(target, preds[name], self._klp_ignore[name])
            if labelled is not None:
                preds[name] = with_keras_mask(preds[name], labelled)
        return _like(y, targets, names), _like(y_pred, preds, names)

    def penalty_total(self, extra_losses: Optional[List[Any]] = None) -> Any:
        """Sum of the `add_loss` terms (`self.losses` unless given)."""
        terms = self.losses if extra_losses is None else extra_losses
        total = ops.zeros((), "float32")
        for term in terms:
            total = total + ops.cast(keras_internals.aggregate_additional_loss(self, term), "float32")
        return total

    def log_terms(self, x: Any, losses: Any, weights: Any) -> None:
        """Update the per-output metrics and the penalty-layer metrics."""
        batch = _batch_size(x)
        values = []
        for k in range(len(self._klp_task_names)):
            values += [losses[k], weights[k] * losses[k], weights[k]]
        for metric, value in zip(self._klp_task_metrics, values):
            metric.update_state(value, sample_weight=batch)
        _update_metrics(self, x)

    def record_step(self, x: Any, losses: Any, weights: Any, penalty: Any) -> Any:
        """Log a custom training step's terms; returns the total loss."""
        total = ops.sum(weights * losses) + penalty
        keras_internals.loss_tracker(self).update_state(total, sample_weight=_batch_size(x))
        self.log_terms(x, losses, weights)
        return total

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        losses, shares = replica_losses(self.task_losses(y, y_pred, sample_weight))
        weights, regularizer = self.loss_weighting.loss_weights(losses, training=training)
        self.log_terms(x, losses, weights)
        return ops.sum(weights * shares) + regularizer / klp_backend.num_replicas() + self.penalty_total()

    # ----------------------------------------------------------- training step

    def train_step(self, *args: Any):
        strategy = self.loss_weighting
        if strategy.uses_task_gradients or strategy.needs_post_step_losses:
            return multi_task_train_step(self, *args)
        return super().train_step(*args)

    def combine_gradients(self, variables: List[Any], task_grads: List[Any], losses: Any, penalty_grads=None):
        """Final gradients (one per variable) and the weights to log, from
        per-task gradients (`task_grads[i]` stacks variable `i`'s `T` task
        gradients); used by the multi-task training step."""
        shared = shared_flags(variables, self._klp_task_ids)
        grads, logged = combine_task_gradients(self.loss_weighting, task_grads, shared, losses, penalty_grads)
        own = self.loss_weighting.own_gradients(losses)
        grads = [ops.cast(own[id(v)], g.dtype) if id(v) in own else g for v, g in zip(variables, grads)]
        return grads, logged

    def fit(self, *args: Any, callbacks: Any = None, **kwargs: Any):
        callbacks = list(callbacks or [])
        if getattr(self, "loss_weighting", None) is not None:
            callbacks.append(_StrategyCallback(self.loss_weighting))
        return super().fit(*args, callbacks=callbacks, **kwargs)


@keras.saving.register_keras_serializable(package="keras_lossplus")
class MultiOutputModel(MultiOutputTraining, keras.Model):
    """A `keras.Model` whose `compile()` combines per-output losses into the
    total with static or dynamic weights, handles missing labels, and logs
    every term.

    `total = sum_k w_k * loss_k + sum of add_loss penalties`, outputs matched
    by name. A `NaN` target (or `ignore_value`) removes that sample from that
    output's loss only. `fit` logs `loss`, `<out>_loss` (unweighted, as
    Keras), `<out>_weighted_loss`, `<out>_weight` and each penalty layer.
    `weighting` picks the strategy (see `keras_lossplus.weighting`).

    Build it like a functional `keras.Model(inputs, outputs)`, or wrap an
    existing functional model with `MultiOutputModel.from_model(model)`.

    Reference:
        Crawshaw. Multi-Task Learning with Deep Neural Networks: A Survey.
        arXiv:2009.09796, 2020.

    Examples:
        >>> import numpy as np
        >>> inputs = keras.Input((4,))
        >>> hidden = keras.layers.Dense(8, activation="relu")(inputs)
        >>> model = MultiOutputModel(inputs, {"a": keras.layers.Dense(1)(hidden), "b": keras.layers.Dense(1)(hidden)})
        >>> model.compile("adam", loss={"a": "mse", "b": "mae"}, loss_weights={"a": 1.0, "b": 0.5})
        >>> y = {"a": np.zeros((8, 1)), "b": np.ones((8, 1))}
        >>> history = model.fit(np.ones((8, 4)), y, verbose=0)
        >>> sorted(history.history)
        ['a_loss', 'a_weight', 'a_weighted_loss', 'b_loss', 'b_weight', 'b_weighted_loss', 'loss']
    """

    @classmethod
    def from_model(cls, model: keras.Model, name: Optional[str] = None) -> "MultiOutputModel":
        """A `MultiOutputModel` over the same layers (and weights) as the
        functional or Sequential `model`."""
        try:
            inputs, outputs = model.input, model.output
        except (AttributeError, ValueError):
            raise TypeError(
                f"from_model needs a functional model with defined inputs and outputs; {type(model).__name__} "
                "has none. For a subclassed model, mix in keras_lossplus.MultiOutputTraining instead."
            ) from None
        return cls(inputs, outputs, name=name or model.name)
