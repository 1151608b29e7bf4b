"""Strategies that weight the task losses from their values: Static,
Uncertainty, DWA, RLW and FAMO. None of them needs per-task gradients, so the
model trains with Keras' own `train_step` (FAMO adds a re-evaluation of the
losses after each step)."""

from __future__ import annotations

import math
from typing import Any, Dict, Optional, Tuple, Union

import keras
from keras import ops

from keras_lossplus import keras_internals
from keras_lossplus.losses import classification as _classification
from keras_lossplus.losses import ordinal as _ordinal
from keras_lossplus.losses import regression as _regression
from keras_lossplus.losses.options import check_choice, check_number
from keras_lossplus.multi_output.weighting.base import WeightingStrategy, named

Tensor = Any


@named("static")
class Static(WeightingStrategy):
    """Fixed weights: `total = sum_k w_k * loss_k`, the weights being the
    `loss_weights` given to `compile()` (1 for each output by default).
    Equals `keras.Model.compile(loss=..., loss_weights=...)`.

    Reference:
        Keras `Model.compile(loss_weights=...)`.

    Examples:
        >>> strategy = Static()
        >>> strategy.build_tasks(["a", "b"], [1.0, 0.5])
        >>> [float(w) for w in strategy.loss_weights(keras.ops.ones((2,)))[0]]
        [1.0, 0.5]
    """


_FORMS = ("regression", "classification")

# Keras' losses by function (its loss classes wrap these functions, and `compile("name")` resolves to them)
_KERAS_TASK_TYPES = {
    "classification": (
        "binary_crossentropy", "binary_focal_crossentropy", "categorical_crossentropy",
        "categorical_focal_crossentropy", "sparse_categorical_crossentropy",
        "hinge", "squared_hinge", "categorical_hinge", "kl_divergence",
    ),
    "regression": (
        "mean_squared_error", "mean_absolute_error", "mean_absolute_percentage_error",
        "mean_squared_logarithmic_error", "huber", "log_cosh",
    ),
}


def _package_losses(module: Any, extra: tuple = ()) -> list:
    """The loss classes and loss functions of one of our loss modules."""
    members = [getattr(module, name) for name in list(module.__all__) + list(extra)]
    return [m for m in members if (isinstance(m, type) and issubclass(m, keras.losses.Loss))
            or (callable(m) and getattr(m, "__name__", "").endswith("_loss"))]


def _known_task_types() -> Dict[Any, str]:
    known = {getattr(keras.losses, fn): kind for kind, fns in _KERAS_TASK_TYPES.items() for fn in fns}
    ordinal = ("CoralLoss", "CornLoss", "coral_loss", "corn_loss")
    known.update({obj: "classification" for obj in _package_losses(_classification)})
    known.update({getattr(_ordinal, name): "classification" for name in ordinal})
    known.update({obj: "regression" for obj in _package_losses(_regression)})
    return known


def loss_task_type(loss: Any) -> Optional[str]:
    """`"classification"`, `"regression"` or `None` (unknown) for a resolved
    loss (a `keras.losses.Loss`, as `compile()` resolves names and functions).

    Classification: Keras' (binary, categorical, sparse categorical)
    cross-entropy and their focal variants, the hinge losses and
    `KLDivergence` (a cross-entropy against soft labels, up to a constant);
    keras_lossplus' classification losses and `CoralLoss` / `CornLoss`.
    Regression: Keras' `MeanSquaredError`, `MeanAbsoluteError`,
    `MeanAbsolutePercentageError`, `MeanSquaredLogarithmicError`, `Huber`,
    `LogCosh`, and keras_lossplus' regression losses. Subclasses count as
    their base. Anything else (Poisson, cosine similarity, metric-learning,
    ranking, segmentation, distribution losses, your own) is unknown.

    Examples:
        >>> from keras_lossplus.multi_output.output_loss import resolve_loss
        >>> loss_task_type(resolve_loss("mse")), loss_task_type(keras.losses.BinaryCrossentropy())
        ('regression', 'classification')
    """
    known = _known_task_types()
    for cls in type(loss).__mro__:
        if cls in known:
            return known[cls]
    fn = keras_internals.wrapped_loss_function(loss)
    return None if fn is None else known.get(fn)


@named("uncertainty")
class Uncertainty(WeightingStrategy):
    """Homoscedastic uncertainty weighting (Kendall, Gal & Cipolla, 2018).

    Each task has a learnable log-variance `s_k = log(sigma_k^2)`, trained
    with the model. A regression task adds `0.5 * exp(-s_k) * loss_k +
    0.5 * s_k` to the total (Gaussian likelihood), a classification task
    `exp(-s_k) * loss_k + 0.5 * s_k` (scaled softmax). The `loss_weights`
    given to `compile()` are the initial effective weights
    (`s_k` starts at `log(c_k / w_k)`, `c_k` 0.5 or 1), so they must be > 0.

    By name, `compile(weighting="uncertainty")` infers each task's type from
    its loss (see `loss_task_type`: cross-entropy-like losses are
    classification, MSE / MAE / Huber / LogCosh and our robust regression
    losses are regression) and raises a `ValueError` for a loss it does not
    know, rather than guess; pass `Uncertainty(task_types=...)` then. An
    `Uncertainty(...)` object keeps the `task_types` it was given.

    Args:
        task_types: `"regression"` (default) or `"classification"` for every
            task, or a dict from output name to one of them (outputs left out
            are regression).

    Reference:
        Kendall, Gal, Cipolla. Multi-Task Learning Using Uncertainty to Weigh
        Losses for Scene Geometry and Semantics. CVPR 2018.

    Examples:
        >>> strategy = Uncertainty()
        >>> strategy.build_tasks(["a", "b"], [1.0, 1.0])
        >>> weights, regularizer = strategy.loss_weights(keras.ops.ones((2,)))
        >>> [round(float(w), 4) for w in weights], round(float(regularizer), 4)
        ([1.0, 1.0], -0.6931)
    """

    def __init__(self, task_types: Union[str, Dict[str, str]] = "regression", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(task_types, dict):
            for value in task_types.values():
                check_choice("task_types", value, _FORMS)
        else:
            check_choice("task_types", task_types, _FORMS)
        self.task_types = task_types

    @classmethod
    def from_losses(cls, losses: Dict[str, Any]) -> "Uncertainty":
        """`Uncertainty(task_types=...)` with each task's type inferred from its
        resolved loss (`loss_task_type`); a `ValueError` for an unknown loss.

        Examples:
            >>> strategy = Uncertainty.from_losses({"a": keras.losses.CategoricalCrossentropy(),
            ...                                     "b": keras.losses.Huber()})
            >>> strategy.task_types
            {'a': 'classification', 'b': 'regression'}
        """
        types, unknown = {}, []
        for name, loss in losses.items():
            kind = loss_task_type(loss)
            if kind is None:
                fn = keras_internals.wrapped_loss_function(loss)
                unknown.append(f"{name!r} ({getattr(fn, '__name__', None) or type(loss).__name__})")
            types[name] = kind
        if unknown:
            raise ValueError(
                f'weighting="uncertainty" cannot tell whether the loss of output(s) {", ".join(unknown)} is a '
                "classification or a regression loss. Pass the task types yourself: "
                "weighting=keras_lossplus.weighting.Uncertainty(task_types={output: 'classification' or "
                "'regression', ...})."
            )
        return cls(task_types=types)

    def _scales(self) -> list:
        types = self.task_types
        if isinstance(types, dict):
            unknown = sorted(set(types) - set(self.task_names))
            if unknown:
                raise ValueError(f"`task_types` names unknown outputs {unknown}; outputs: {self.task_names}")
            return [1.0 if types.get(n, "regression") == "classification" else 0.5 for n in self.task_names]
        return [1.0 if types == "classification" else 0.5] * self.num_tasks

    def create_state(self, num_tasks: int) -> None:
        for name, weight in zip(self.task_names, self.prior):
            if weight <= 0:
                raise ValueError(
                    f"Uncertainty weighting needs positive `loss_weights` (initial weights); "
                    f"received loss_weights[{name!r}]={weight}"
                )
        initial = [math.log(c / w) for c, w in zip(self._scales(), self.prior)]
        self.log_variances = self.add_weight(
            shape=(num_tasks,), initializer=keras.initializers.Constant(initial), name="log_variances"
        )

    def loss_weights(self, losses: Tensor, training: bool = True) -> Tuple[Tensor, Tensor]:
        s = ops.cast(self.log_variances, "float32")
        weights = ops.convert_to_tensor(self._scales(), "float32") * ops.exp(-s)
        return weights, 0.5 * ops.sum(s)

    def get_config(self) -> Dict[str, Any]:
        return {**super().get_config(), "task_types": self.task_types}


@named("dwa")
class DWA(WeightingStrategy):
    """Dynamic Weight Average (Liu, Johns & Davison, 2019).

    From the third epoch on, task `k` gets weight
    `w_k * T * softmax(r / temperature)_k` with `r_k = L_k(t-1) / L_k(t-2)`,
    the ratio of its average training loss over the two previous epochs
    (`w_k` the prior `loss_weights`); the first two epochs use the prior
    weights. The epoch averages are the logged `<output>_loss` values, read
    at the end of each epoch of `fit`.

    Args:
        temperature: softness of the weights (> 0); the paper uses 2.

    Reference:
        Liu, Johns, Davison. End-to-End Multi-Task Learning with Attention.
        CVPR 2019.

    Examples:
        >>> strategy = DWA(temperature=2.0)
        >>> strategy.build_tasks(["a", "b"], [1.0, 1.0])
        >>> strategy.on_epoch_end({"a_loss": 1.0, "b_loss": 1.0})
        >>> strategy.on_epoch_end({"a_loss": 0.5, "b_loss": 1.0})
        >>> [round(float(w), 4) for w in strategy.loss_weights(keras.ops.ones((2,)))[0]]
        [0.8756, 1.1244]
    """

    def __init__(self, temperature: float = 2.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.temperature = check_number("temperature", temperature, low=0.0, low_open=True)

    def create_state(self, num_tasks: int) -> None:
        self.last_losses = self.state_weight("last_losses", (num_tasks,))
        self.previous_losses = self.state_weight("previous_losses", (num_tasks,))
        self.epochs_seen = self.state_weight("epochs_seen", ())

    def loss_weights(self, losses: Tensor, training: bool = True) -> Tuple[Tensor, Tensor]:
        last = ops.cast(self.last_losses, "float32")
        previous = ops.cast(self.previous_losses, "float32")
        ratio = last / ops.where(previous > 0, previous, 1.0)
        dynamic = self.num_tasks * ops.softmax(ratio / self.temperature)
        ready = ops.cast(self.epochs_seen, "float32") >= 2
        return self.prior_tensor() * ops.where(ready, dynamic, ops.ones_like(dynamic)), ops.zeros((), "float32")

    def on_epoch_end(self, logs: Dict[str, float]) -> None:
        missing = [f"{n}_loss" for n in self.task_names if f"{n}_loss" not in logs]
        if missing:
            raise KeyError(f"DWA needs the epoch's task losses {missing} in the logs; got {sorted(logs)}")
        self.previous_losses.assign(ops.convert_to_tensor(self.last_losses))
        self.last_losses.assign(ops.convert_to_tensor([float(logs[f"{n}_loss"]) for n in self.task_names], "float32"))
        self.epochs_seen.assign(ops.convert_to_tensor(self.epochs_seen) + 1.0)

    def get_config(self) -> Dict[str, Any]:
        return {**super().get_config(), "temperature": self.temperature}


@named("rlw")
class RLW(WeightingStrategy):
    """Random Loss Weighting (Lin et al., 2021): at each training step the
    weights are `w_k * softmax(z)_k` with `z ~ N(0, 1)^T` drawn afresh
    (`w_k` the prior `loss_weights`). Evaluation uses their expectation,
    `w_k / T`.

    Args:
        seed: seed of the weights' random generator (its state is saved).

    Reference:
        Lin, Ye, Xu, Shi, Zhang. Reasonable Effectiveness of Random Weighting:
        A Litmus Test for Multi-Task Learning. TMLR 2022 (arXiv:2111.10603).

    Examples:
        >>> strategy = RLW(seed=1)
        >>> strategy.build_tasks(["a", "b"], [1.0, 1.0])
        >>> round(float(keras.ops.sum(strategy.loss_weights(keras.ops.ones((2,)))[0])), 4)
        1.0
    """

    def __init__(self, seed: Optional[int] = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError(f"Argument `seed` must be an int or None. Received: seed={seed!r}")
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed, name="rlw_seed")

    def loss_weights(self, losses: Tensor, training: bool = True) -> Tuple[Tensor, Tensor]:
        if not training:
            return self.prior_tensor() / self.num_tasks, ops.zeros((), "float32")
        z = keras.random.normal((self.num_tasks,), seed=self.seed_generator)
        return self.prior_tensor() * ops.softmax(z), ops.zeros((), "float32")

    def get_config(self) -> Dict[str, Any]:
        return {**super().get_config(), "seed": self.seed}


@named("famo")
class FAMO(WeightingStrategy):
    """Fast Adaptive Multitask Optimization (Liu et al., 2023).

    Task weights `z = softmax(xi)` come from logits `xi`. The model follows
    the gradient of `sum_k z_k / c * log(w_k * L_k + eps)` with
    `c = sum_k z_k / (w_k * L_k + eps)`, i.e. task weights
    `z_k / (c * (L_k + eps / w_k))`. After each optimizer step the losses
    are evaluated again on the same batch and the logits take one Adam step
    (learning rate `learning_rate`, L2 decay `gamma`, as in the authors'
    code) along the gradient of the log-loss decrease
    `log L_k(before) - log L_k(after)` through the softmax. Costs one
    extra forward pass per step.

    Args:
        learning_rate: Adam learning rate of the logits (authors: 0.025).
        gamma: weight decay of the logits (authors: 0.01).
        epsilon: added to the losses inside the logarithm.

    Reference:
        Liu, Liang, Feng, Stone, Liu. FAMO: Fast Adaptive Multitask
        Optimization. NeurIPS 2023.

    Examples:
        >>> strategy = FAMO()
        >>> strategy.build_tasks(["a", "b"], [1.0, 1.0])
        >>> [round(float(w), 4) for w in strategy.loss_weights(keras.ops.convert_to_tensor([1.0, 4.0]))[0]]
        [0.8, 0.2]
    """

    needs_post_step_losses = True
    beta_1, beta_2, adam_epsilon = 0.9, 0.999, 1e-8

    def __init__(self, learning_rate: float = 0.025, gamma: float = 0.01, epsilon: float = 1e-8, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.learning_rate = check_number("learning_rate", learning_rate, low=0.0, low_open=True)
        self.gamma = check_number("gamma", gamma, low=0.0)
        self.epsilon = check_number("epsilon", epsilon, low=0.0, low_open=True)

    def create_state(self, num_tasks: int) -> None:
        self.logits = self.state_weight("logits", (num_tasks,))
        self.adam_m = self.state_weight("adam_m", (num_tasks,))
        self.adam_v = self.state_weight("adam_v", (num_tasks,))
        self.adam_steps = self.state_weight("adam_steps", ())

    def _shifted(self, losses: Tensor) -> Tensor:
        return self.prior_tensor() * ops.cast(losses, "float32") + self.epsilon

    def loss_weights(self, losses: Tensor, training: bool = True) -> Tuple[Tensor, Tensor]:
        z = ops.softmax(ops.cast(self.logits, "float32"))
        shifted = ops.stop_gradient(self._shifted(losses))
        c = ops.sum(z / shifted)
        return self.prior_tensor() * z / (c * shifted), ops.zeros((), "float32")

    def after_step(self, losses: Tensor, new_losses: Tensor) -> None:
        delta = ops.log(self._shifted(losses)) - ops.log(self._shifted(new_losses))
        xi = ops.cast(self.logits, "float32")
        z = ops.softmax(xi)
        grad = z * (delta - ops.sum(z * delta)) + self.gamma * xi  # softmax VJP + torch-style L2 decay
        step = ops.cast(self.adam_steps, "float32") + 1.0
        m = self.beta_1 * ops.cast(self.adam_m, "float32") + (1 - self.beta_1) * grad
        v = self.beta_2 * ops.cast(self.adam_v, "float32") + (1 - self.beta_2) * grad * grad
        m_hat = m / (1 - self.beta_1**step)
        v_hat = v / (1 - self.beta_2**step)
        self.logits.assign(xi - self.learning_rate * m_hat / (ops.sqrt(v_hat) + self.adam_epsilon))
        self.adam_m.assign(m)
        self.adam_v.assign(v)
        self.adam_steps.assign(step)

    def get_config(self) -> Dict[str, Any]:
        return {
            **super().get_config(),
            "learning_rate": self.learning_rate,
            "gamma": self.gamma,
            "epsilon": self.epsilon,
        }
