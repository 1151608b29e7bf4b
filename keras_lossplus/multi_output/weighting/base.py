"""The base of every loss-weighting strategy, and lookup by name.

A strategy is a `keras.layers.Layer` that `MultiOutputModel.compile()`
attaches to the model, so that its state (learnable log-variances, running
loss averages, random seeds, ...) is tracked, trained where it is trainable,
and saved with the model. It is told its task names and the user's
`loss_weights` (the *prior* weights) by `build_tasks()`, and then answers:

* `loss_weights(losses, training)` -> `(weights, regularizer)`: the weight of
  each task's loss in the total and an extra term (0 for most), so that
  `total = sum(weights * losses) + regularizer + penalties`;
* for gradient-level strategies (`uses_task_gradients = True`),
  `combine_gradients(grads, losses)` -> `(direction, head_weights,
  logged_weights)` from the per-task gradients of the shared variables;
* `own_gradients(losses)`: the gradients of the strategy's own trainable
  variables in a gradient-level step (IMTL's loss scales);
* `on_epoch_end(logs)` and `after_step(losses, new_losses)` hooks for the
  strategies that need them.
"""

from __future__ import annotations

from typing import Any, Dict, List, Sequence, Tuple

import keras
from keras import ops

from keras_lossplus import keras_internals

Tensor = Any


class WeightingStrategy(keras.layers.Layer):
    """Base class of the loss-weighting strategies (a `Layer` holding state).

    Subclasses override `create_state`, `loss_weights` and, for gradient
    methods, `combine_gradients`.
    """

    uses_task_gradients = False
    needs_post_step_losses = False
    min_tasks = 1

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("name", "loss_weighting")
        super().__init__(**kwargs)
        self.task_names: List[str] = []
        self.prior: List[float] = []

    @property
    def num_tasks(self) -> int:
        return len(self.task_names)

    def build_tasks(self, task_names: Sequence[str], prior: Sequence[float]) -> None:
        """Set the tasks and their prior weights, and create the state."""
        if len(task_names) < self.min_tasks:
            raise ValueError(
                f"Weighting `{type(self).__name__}` needs at least {self.min_tasks} outputs with a loss; "
                f"the model has {len(task_names)}: {list(task_names)}"
            )
        self.task_names = list(task_names)
        self.prior = [float(w) for w in prior]
        self.create_state(len(self.task_names))
        self.built = True

    def build(self, input_shape: Any = None) -> None:  # state comes from build_tasks
        self.built = True

    @classmethod
    def from_losses(cls, losses: Dict[str, Any]) -> "WeightingStrategy":
        """The strategy that `compile(weighting="<name>")` builds for these
        resolved losses (output name -> `keras.losses.Loss`): the defaults,
        unless a strategy reads something from the losses (`Uncertainty`)."""
        return cls()

    def create_state(self, num_tasks: int) -> None:
        """Create the strategy's variables; none by default."""

    def build_shared(self, num_shared: int) -> None:
        """Told, for gradient-level strategies, the number of shared
        parameters `P` (the width of the `(T, P)` gradient matrix); only
        strategies with per-parameter state (DB-MTL) use it."""

    def state_weight(self, name: str, shape: tuple) -> keras.Variable:
        """A non-trainable float state variable starting at 0."""
        return self.add_weight(shape=shape, initializer="zeros", name=name, trainable=False)

    def prior_tensor(self) -> Tensor:
        return ops.convert_to_tensor(self.prior, dtype="float32")

    def loss_weights(self, losses: Tensor, training: bool = True) -> Tuple[Tensor, Tensor]:
        """Weights of the task losses (shape `(T,)`) and a regularizer term."""
        return self.prior_tensor(), ops.zeros((), "float32")

    def combine_gradients(self, grads: Tensor, losses: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """From the `(T, P)` per-task gradients of the shared variables and
        the `(T,)` task losses: the `(P,)` update direction, the `(T,)`
        weights of the task-specific variables' gradients, and the `(T,)`
        weights to log."""
        raise NotImplementedError(f"{type(self).__name__} is not a gradient-level strategy")

    def own_gradients(self, losses: Tensor) -> Dict[int, Tensor]:
        """For gradient-level strategies with trainable state of their own
        (IMTL's loss scales), which the task losses do not depend on: the
        gradient of each such variable, keyed by `id(variable)`, given the
        `(T,)` task losses. None by default."""
        return {}

    def on_epoch_end(self, logs: Dict[str, float]) -> None:
        """Called by `fit` after each epoch with the epoch's logs."""

    def after_step(self, losses: Tensor, new_losses: Tensor) -> None:
        """Called after the optimizer step with the task losses before and
        after it, on the same batch (only if `needs_post_step_losses`)."""

    def _state_variables(self) -> list:
        """Variables saved with the model: Keras' own plus the random
        generators' states, so that a reloaded strategy draws on where it
        stopped."""
        generators = [g.state for g in keras_internals.seed_generators(self)]
        return keras_internals.own_variables(self) + generators

    def save_own_variables(self, store: Any) -> None:
        for i, variable in enumerate(self._state_variables()):
            store[f"{i}"] = variable

    def load_own_variables(self, store: Any) -> None:
        variables = self._state_variables()
        if len(store.keys()) != len(variables):
            raise ValueError(
                f"{type(self).__name__} expects {len(variables)} saved variables, the file has {len(store.keys())}"
            )
        for i, variable in enumerate(variables):
            variable.assign(store[f"{i}"])

    def call(self, inputs: Any) -> Any:
        raise TypeError(f"{type(self).__name__} is attached by MultiOutputModel.compile(); it is not called on inputs")

    def get_config(self) -> Dict[str, Any]:
        config = super().get_config()
        for key in ("trainable", "dtype"):
            config.pop(key, None)
        return config


def register(cls: type) -> type:
    return keras.saving.register_keras_serializable(package="keras_lossplus")(cls)


_REGISTRY: Dict[str, type] = {}


def named(*names: str):
    """Class decorator: register for saving and under the given names."""

    def wrap(cls: type) -> type:
        for name in names:
            _REGISTRY[name] = cls
        return register(cls)

    return wrap


def get(identifier: Any, losses: Any = None) -> WeightingStrategy:
    """A strategy from a name (`"static"`, `"uncertainty"`, `"dwa"`, `"rlw"`,
    `"famo"`, `"gradnorm"`, `"pcgrad"`, `"cagrad"`, `"mgda"`, `"nash_mtl"`,
    `"imtl"`, `"gradvac"`, `"aligned_mtl"`, `"db_mtl"`), a config dict,
    or a `WeightingStrategy` instance (returned as is). With `losses` (a dict
    from output name to the resolved `keras.losses.Loss`, as `compile()`
    passes it), a name builds `cls.from_losses(losses)`: `"uncertainty"`
    then infers each task's type from its loss.

    Examples:
        >>> type(get("pcgrad")).__name__
        'PCGrad'
    """
    if isinstance(identifier, WeightingStrategy):
        return identifier
    if isinstance(identifier, dict):
        strategy = keras.saving.deserialize_keras_object(identifier)
        if isinstance(strategy, WeightingStrategy):
            return strategy
    if isinstance(identifier, str) and identifier.lower() in _REGISTRY:
        cls = _REGISTRY[identifier.lower()]
        return cls() if losses is None else cls.from_losses(losses)
    raise ValueError(
        f"Invalid value for argument `weighting`. Expected one of {tuple(sorted(_REGISTRY))} "
        f"or a keras_lossplus.weighting strategy. Received: weighting={identifier!r}"
    )

