"""The one validation path for the options of every loss.

Each loss function declares its options once, with `Options`:

    @Options(margin=number(low=0.0), mining=choice("semihard", "hard"), soft=flag)
    def triplet_loss(y_true, y_pred, margin=1.0, mining="semihard", soft=False): ...

The decorated function checks (and normalises: `1` becomes `1.0`, a tuple a
list) the options it is called with, then runs. Its class shares the same
spec: `LossPlus.__init__` checks the constructor's options once, through
`fn.options`, and every call of the loss then runs the unchecked function
`fn.unchecked`. A bad option raises the same `ValueError` / `TypeError`,
naming the argument and what is allowed, whichever way the loss is used.

The building blocks (`choice`, `number`, `flag`, `optional`,
`positive_int`, `float_list`) return checks `check(name, value) -> value`;
any function of that form can stand in a spec.
"""

from __future__ import annotations

import functools
import inspect
import math
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

import keras
import numpy as np

Check = Callable[[str, Any], Any]


# --------------------------------------------------------------------------- checks


def check_choice(name: str, value: Any, allowed: Sequence[Any]) -> None:
    """Raise `ValueError` naming `name` unless `value` is one of `allowed`."""
    if value not in allowed:
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected one of {tuple(allowed)}. "
            f"Received: {name}={value!r}"
        )


def check_number(
    name: str,
    value: Any,
    *,
    low: Optional[float] = None,
    high: Optional[float] = None,
    low_open: bool = False,
    high_open: bool = False,
    allow_inf: bool = False,
) -> float:
    """Check that `value` is a real number in the given range and return it as
    a float; raise `ValueError` (bad value) or `TypeError` (not a number)
    naming `name` otherwise."""
    lo = "-inf" if low is None else f"{low}"
    hi = "inf" if high is None else f"{high}"
    interval = ("(" if low_open or low is None else "[") + f"{lo}, {hi}" + (
        ")" if high_open or high is None else "]"
    )
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        within = "" if low is None and high is None else f" in {interval}"
        raise TypeError(f"Argument `{name}` must be a number{within}. Received: {name}={value!r}")
    value = float(value)
    if math.isnan(value) or (math.isinf(value) and not allow_inf):
        raise ValueError(f"Argument `{name}` must be a finite number. Received: {name}={value!r}")
    lo_bad = low is not None and (value <= low if low_open else value < low)
    hi_bad = high is not None and (value >= high if high_open else value > high)
    if lo_bad or hi_bad:
        raise ValueError(
            f"Argument `{name}` must be in {interval}. Received: {name}={value!r}"
        )
    return value


def to_float_list(name: str, values: Iterable[Any]) -> list:
    """A JSON-friendly list of floats from a list, tuple or 1-D array."""
    try:
        arr = np.asarray(values, dtype="float64")
    except (TypeError, ValueError):
        arr = np.zeros((0,))
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(
            f"Argument `{name}` must be a number or a non-empty 1-D list of numbers. "
            f"Received: {name}={values!r}"
        )
    return [float(v) for v in arr]


def check_float_predictions(y_pred: Any) -> None:
    """Raise `TypeError` unless `y_pred` holds floating-point values.

    Integer predictions almost always mean that labels and predictions were
    swapped or that an argmax was fed to a loss; both give silently wrong
    gradients (none at all), so they are refused.
    """
    dtype = getattr(y_pred, "dtype", None)
    if dtype is None:
        dtype = np.asarray(y_pred).dtype
    dtype = keras.backend.standardize_dtype(dtype)
    if not keras.backend.is_float_dtype(dtype):
        raise TypeError(
            "Argument `y_pred` must be a floating-point tensor (probabilities, logits or "
            f"predicted values). Received: y_pred with dtype={dtype}"
        )


# --------------------------------------------------------------------------- building blocks of a spec


def choice(*allowed: Any) -> Check:
    """One of `allowed`."""

    def check(name: str, value: Any) -> Any:
        check_choice(name, value, allowed)
        return value

    return check


def number(**bounds: Any) -> Check:
    """A real number, returned as a float; `bounds` as for `check_number`."""
    return functools.partial(_number, bounds=bounds)


def _number(name: str, value: Any, bounds: Mapping[str, Any]) -> float:
    return check_number(name, value, **bounds)


def flag(name: str, value: Any) -> bool:
    """`True` or `False` (a string such as `"False"` is refused, not read as true)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"Argument `{name}` must be True or False. Received: {name}={value!r}")
    return bool(value)


def positive_int(name: str, value: Any) -> int:
    """An integer `>= 1`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"Argument `{name}` must be a positive integer. Received: {name}={value!r}")
    return int(value)


def optional(check: Check) -> Check:
    """`None`, or what `check` accepts."""

    def checked(name: str, value: Any) -> Any:
        return None if value is None else check(name, value)

    return checked


def float_list(**bounds: Any) -> Check:
    """A non-empty list of numbers, each within `bounds`; returned as a list of floats."""

    def check(name: str, value: Any) -> list:
        return [check_number(name, v, **bounds) for v in to_float_list(name, value)]

    return check


def number_or_list(**bounds: Any) -> Check:
    """One number, or a non-empty list of them (returned as a list), each within `bounds`."""
    one, many = number(**bounds), float_list(**bounds)

    def check(name: str, value: Any) -> Any:
        if isinstance(value, (list, tuple)) or hasattr(value, "__array__"):
            return many(name, value)
        return one(name, value)

    return check


chunk_size = optional(positive_int)
"""`None` or a positive number of anchors per block."""


class Component:
    """Base of the objects a loss takes as an option next to a name (the
    metric-learning distances, miners and reducers): saved in the loss's
    config with `keras.saving.serialize_keras_object` (see
    `saved_option`) and restored by the option's check
    (`component_or_choice`). Subclasses with constructor arguments return
    them from `get_config`."""

    def get_config(self) -> dict:
        return {}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "Component":
        return cls(**config)


def saved_option(value: Any) -> Any:
    """An option as a loss's `get_config` returns it: a `Component`
    serialized, anything else unchanged."""
    return keras.saving.serialize_keras_object(value) if isinstance(value, Component) else value


def component_or_choice(kind: type, allowed: Sequence[str]) -> Check:
    """One of the names `allowed`, an instance of `kind` (a `Component`
    class), or the saved config of one (deserialized): an unknown name
    raises `ValueError` naming the option and the names and the class, any
    other value `TypeError`."""

    def check(name: str, value: Any) -> Any:
        if isinstance(value, Mapping) and "class_name" in value:
            value = keras.saving.deserialize_keras_object(dict(value))
        if isinstance(value, kind):
            return value
        if isinstance(value, str):
            if value not in allowed:
                raise ValueError(
                    f"Invalid value for argument `{name}`. Expected one of {tuple(allowed)}. "
                    f"Received: {name}={value!r} (it also takes a `{kind.__name__}` object)"
                )
            return value
        raise TypeError(
            f"Argument `{name}` must be one of {tuple(allowed)} or a `{kind.__name__}` object. "
            f"Received: {name}={value!r} of type {type(value).__name__}"
        )

    return check


# --------------------------------------------------------------------------- the spec


class Options:
    """The checks of a loss's options, shared by its function and its class.

    `Options(name=check, ...)` decorates the function; `joint`, if given,
    is called with every option once the single checks have run, for rules
    that tie options together (`alpha <= 1` unless `mode="multiclass"`), and
    returns them (possibly normalised). Options without a check pass
    unchanged.
    """

    def __init__(self, joint: Optional[Callable[[dict], dict]] = None, **checks: Check) -> None:
        self.checks = checks
        self.joint = joint

    def check(self, options: Mapping[str, Any]) -> dict:
        """`options` checked and normalised (the same dict for the function
        and the class)."""
        out = dict(options)
        for name, check in self.checks.items():
            if name in out:
                out[name] = check(name, out[name])
        return self.joint(out) if self.joint is not None else out

    def __call__(self, fn: Callable) -> Callable:
        signature = inspect.signature(fn)
        names = [p for p in signature.parameters if p in self.checks or (self.joint and p not in _TENSORS)]

        @functools.wraps(fn)
        def checked(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            bound.arguments.update(self.check({k: bound.arguments[k] for k in names}))
            return fn(*bound.args, **bound.kwargs)

        checked.options = self
        checked.unchecked = fn
        return checked


_TENSORS = ("y_true", "y_pred", "sample_weight")


def unchecked(fn: Callable) -> Callable:
    """The function behind a loss function's option checks (the function
    itself when it declares none)."""
    return getattr(fn, "unchecked", fn)
