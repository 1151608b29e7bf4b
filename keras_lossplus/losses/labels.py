"""The one check of class-id labels, shared by every label-based loss and layer
(the in-batch and proxy metric-learning losses, the ordinal losses, the
segmentation label maps, the margin heads).

Keras' `Loss.__call__` converts `y_true` to the loss dtype, so class ids
usually arrive as floats; whole floats (`2.0`) are class ids, anything else
(NaN, an infinity, `0.5`) is a mistake upstream (a missing label, one-hot or
soft targets flattened, a label column read as the wrong feature) that would
otherwise be silently cast or rounded into some class.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable

import keras
import numpy as np
from keras import ops

from keras_lossplus import backend as klp_backend


def check_integer_labels(labels: Any, name: str = "y_true", owner: str = "", atol: float = 0.0) -> None:
    """Raise `ValueError` naming `name` when `labels` holds floats that are
    NaN, infinite or not whole numbers.

    Integer dtypes pass without a value check. Values are only checked when
    `labels` is concrete (eager execution, `keras_lossplus.backend.is_concrete`):
    inside a compiled function (`jax.jit`, `tf.function`, `jit_compile=True`)
    a traced tensor has no values, nothing can raise, and bad labels are not
    detected. What they do there depends on the loss: a NaN label equals no
    other label (in an in-batch loss its sample has no positive and counts as
    a negative of every other sample; a proxy loss or margin head matches it
    to no class); the ordinal losses round a non-whole rank to the nearest
    one, and a NaN rank passes no threshold (CORAL reads it as rank 0, CORN
    leaves the sample out of every task, the weighted kappa loss gives it a
    zero one-hot row). Check the labels of a data pipeline once eagerly (or
    with `numpy.isfinite`) when in doubt.

    Args:
        labels: The labels, any shape; a tensor, array or list.
        name: The argument to name in the message (`"y_true"`, `"labels"`).
        owner: Optional prefix naming the caller (`"ArcFace: "`).
        atol: Float noise tolerated around a whole number, for callers that
            round the labels (the ordinal losses: `2.001` is rank 2); 0
            for those that compare them exactly.
    """
    dtype = getattr(labels, "dtype", None)
    if dtype is not None and keras.backend.is_int_dtype(keras.backend.standardize_dtype(dtype)):
        return
    if not isinstance(labels, np.ndarray) and not klp_backend.is_concrete(labels):
        return
    values = np.asarray(ops.convert_to_numpy(labels))
    if not np.issubdtype(values.dtype, np.floating):
        return
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(values) | (np.abs(values - np.round(values)) > atol)
    if np.any(bad):
        raise ValueError(
            f"{owner}`{name}` must hold integer class labels (whole numbers, e.g. 0, 1, 2; integer or float "
            f"dtype). Received {int(np.sum(bad))} invalid value(s) in {name} (shape {values.shape}), "
            f"e.g. {values[bad].ravel()[:5].tolist()}"
        )


def label_checked(fn: Callable) -> Callable:
    """Decorate a loss function `fn(y_true, y_pred, ...)` whose `y_true`
    holds class ids so that `check_integer_labels(y_true)` runs first,
    outside any `compiled_on_jax` compilation below it (inside one, the
    labels would be traced and never checked). Skipped when the call has
    `mining="none"` (explicit tuples: `y_true` is not read)."""
    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        arguments = signature.bind(*args, **kwargs).arguments
        if arguments.get("mining") != "none":
            check_integer_labels(arguments["y_true"])
        return fn(*args, **kwargs)

    return wrapper
