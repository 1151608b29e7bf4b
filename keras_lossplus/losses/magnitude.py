"""Inputs too large for a loss's squares: the one check of the losses whose
value is quadratic in their inputs (squared distances, dot products,
squared residuals) and so cannot be represented once the inputs pass
`squares_bound` (`1.7e13` in float32: a square is then `3e26`, and sums of
up to `1e12` squares still fit).

Such an input is a mistake upstream (embeddings that were never normalized
and blew up, a distance column read as something else); the loss's true
value (`1e60` for a distance of `1e30`) does not exist in the dtype.

* Eagerly (the values are concrete), the loss refuses it: a `ValueError`
  naming the argument, its largest magnitude and the bound.
* Inside a compiled function (`jax.jit`, `tf.function`, `jit_compile=True`)
  nothing can raise. The input is clipped to the bound for the value, and
  its gradient is passed through unchanged, so the loss stays finite and
  training gets a finite gradient that points back into range, instead of
  an `inf` or `NaN` that would poison every weight.

Losses that normalize their embeddings (cosine similarity, `normalize=True`)
have no such bound and skip the check. The quadratic penalty layers (L2,
elastic net, decorrelation, variance-covariance, center, the Gaussian KL)
check their input the same way (`bounded`).
"""

from __future__ import annotations

import functools
import inspect
import math
from typing import Any, Callable, Optional

import keras
import numpy as np
from keras import ops

from keras_lossplus import backend as klp_backend
from keras_lossplus.ops import compute_dtype, largest_finite

Tensor = Any
_POWERS = {2: "squares (or products)", 4: "fourth powers"}
ROOM = 1e12  # the number of terms a sum of the largest accepted inputs' powers may have


def squares_bound(dtype: Any = "float32", power: float = 2) -> float:
    """The largest input magnitude a loss computing in `dtype` accepts when
    its value grows as the input to the `power` (2 for squares, 4 for a
    penalty on squared covariances): `(largest / 1e12) ** (1 / power)`,
    which leaves room for sums of up to `1e12` such terms.

    Examples:
        >>> f"{squares_bound('float32'):.2g}", f"{squares_bound('float32', power=4):.2g}"
        ('1.7e+13', '4.2e+06')
    """
    return (largest_finite(compute_dtype(dtype)) / ROOM) ** (1.0 / power)


def check_magnitude(x: Any, name: str, owner: str = "", hint: str = "", power: float = 2,
                    bound: Optional[float] = None) -> None:
    """Raise `ValueError` naming `name` when concrete `x` holds a value
    beyond `bound` (default `squares_bound(dtype, power)`: a loss whose own
    growth is known passes its own) or a non-finite one; nothing for a
    traced `x`. `hint` ends the message: what to do about it."""
    if not isinstance(x, (np.ndarray, list, tuple, float, int)) and not klp_backend.is_concrete(x):
        return
    values = np.asarray(ops.convert_to_numpy(x) if not isinstance(x, (list, tuple, float, int)) else x)
    if values.size == 0 or not np.issubdtype(values.dtype, np.floating):
        return
    dtype = compute_dtype(values.dtype)
    if np.any(np.isnan(values)):
        raise ValueError(
            f"{owner}`{name}` holds NaN values ({int(np.sum(np.isnan(values)))} of {values.size}); the loss of a "
            "NaN is undefined. Find where the NaN comes from upstream (a missing value in the data, a "
            "diverged layer). (Under jit a NaN is not refused: the loss and its gradient are NaN.)"
        )
    bound = squares_bound(values.dtype, power) if bound is None else bound
    biggest = float(np.max(np.abs(values)))
    if not biggest <= bound:
        held = "infinite values" if math.isinf(biggest) else f"values of magnitude up to {biggest:.3g}"
        raise ValueError(
            f"{owner}`{name}` holds {held}; this loss takes their "
            f"{_POWERS.get(power, f'powers of {power:g}')}, which overflow {dtype} beyond "
            f"{bound:.3g}. {hint or f'Rescale `{name}`.'} "
            "(Under jit such values are clipped to the bound, with the gradient passed through.)"
        )


def clip_magnitude(x: Tensor, power: float = 2, bound: Optional[float] = None) -> Tensor:
    """`x` clipped to `+-bound` (default `squares_bound(dtype, power)`) in
    value, with the gradient of `x` itself (1 everywhere, also beyond the
    bound)."""
    x = ops.convert_to_tensor(x)
    if not keras.backend.is_float_dtype(x.dtype):
        return x  # refused later by the loss's own input check
    bound = squares_bound(x.dtype, power) if bound is None else bound
    beyond = ops.abs(x) > bound
    passed = ops.stop_gradient(ops.clip(x, -bound, bound)) + (x - ops.stop_gradient(x))
    return ops.where(beyond, passed, x)


def bounded(x: Any, name: str, owner: str = "", hint: str = "", power: int = 2) -> Tensor:
    """`x` checked (`check_magnitude`) and clipped (`clip_magnitude`): the
    two steps in one, for a layer's input."""
    check_magnitude(x, name, owner, hint, power)
    return clip_magnitude(x, power)


def magnitude_checked(*names: str, when: Optional[Callable[[dict], bool]] = None, hint: str = "") -> Callable:
    """Decorate a loss function so that its arguments `names` are checked
    (`check_magnitude`, with `hint`) and clipped (`clip_magnitude`) before
    it runs, outside any `compiled_on_jax` compilation below it.
    `when(arguments)` (the call's bound arguments with their defaults) says
    whether the call needs it (e.g. not when the embeddings are normalized)."""

    def decorate(fn: Callable) -> Callable:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            if when is None or when(bound.arguments):
                for name in names:
                    check_magnitude(bound.arguments[name], name, f"{fn.__name__}: ", hint)
                    bound.arguments[name] = clip_magnitude(bound.arguments[name])
            return fn(*bound.args, **bound.kwargs)

        return wrapper

    return decorate
