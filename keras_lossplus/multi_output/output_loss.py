"""One output's loss the way `model.compile(loss=...)` computes it, plus
missing labels.

`resolve_loss` turns what a user passes for one output (a name such as
`"mse"`, a function, or a `keras.losses.Loss`) into a `Loss` object exactly
as `compile()` does. `labelled_loss` calls it with Keras' own reduction,
`sample_weight` and mask semantics, and removes the samples whose target is
missing (`NaN`, or equal to `ignore_value`) from that output only: the
result is the loss over the labelled samples, so `"sum_over_batch_size"`
becomes the mean over them, and a batch with no labelled sample gives 0 and a
zero gradient. When every target is labelled the value is Keras' own.
"""

from __future__ import annotations

from typing import Any, Optional

import keras
from keras import ops

from keras_lossplus import backend as klp_backend
from keras_lossplus import keras_internals
from keras_lossplus.losses.base import BatchLoss, get_keras_mask

Tensor = Any


def resolve_loss(identifier: Any, name: str = "loss") -> keras.losses.Loss:
    """The `keras.losses.Loss` that `compile(loss=identifier)` would use.

    Strings and functions are looked up with `keras.losses.get` and wrapped
    the way `compile()` wraps them (reduction `"sum_over_batch_size"`).

    Examples:
        >>> resolve_loss("mse").name
        'mse'
    """
    if isinstance(identifier, keras.losses.Loss):
        return identifier
    try:
        fn = keras.losses.get(identifier)
    except (ValueError, TypeError) as error:
        raise ValueError(f"Unknown loss for `{name}`: {identifier!r} ({error})") from None
    if isinstance(fn, keras.losses.Loss):
        return fn
    if not callable(fn):
        raise TypeError(f"`{name}` must be a loss name, a function or a keras.losses.Loss. Received: {identifier!r}")
    label = identifier if isinstance(identifier, str) else getattr(fn, "__name__", "loss")
    return keras_internals.wrap_loss_function(fn, name=label)


def split_labels(y_true: Tensor, y_pred: Tensor, ignore_value: Optional[float] = None):
    """`(y_clean, labelled)`: the targets with missing values (`NaN`, or
    `ignore_value`) replaced by 0, and a float mask of the labelled samples
    shaped like the loss values (`y_true` without its last axis when it has
    `y_pred`'s rank; a row with any missing value is missing). `labelled` is
    `None` when no target can be missing (integer labels, no `ignore_value`).

    Examples:
        >>> import numpy as np
        >>> _, labelled = split_labels(np.array([[1.0], [np.nan]], "float32"), np.zeros((2, 1), "float32"))
        >>> [float(v) for v in labelled]
        [1.0, 0.0]
    """
    y_true = ops.convert_to_tensor(y_true)
    is_float = "float" in str(y_true.dtype)
    if not is_float and ignore_value is None:
        return y_true, None
    valid = ops.isfinite(y_true) if is_float else ops.ones_like(y_true, dtype="bool")
    if ignore_value is not None:
        valid = ops.logical_and(valid, ops.not_equal(y_true, ops.cast(ignore_value, y_true.dtype)))
    y_clean = ops.where(valid, y_true, ops.zeros_like(y_true))
    if len(y_true.shape) == len(y_pred.shape) and len(y_true.shape) > 1:
        valid = ops.all(valid, axis=-1)
    return y_clean, ops.cast(valid, "float32")


def _broadcast_weight(sample_weight: Tensor, rank: int) -> Tensor:
    weight = ops.convert_to_tensor(sample_weight, dtype="float32")
    while len(weight.shape) > rank and weight.shape[-1] == 1:
        weight = ops.squeeze(weight, axis=-1)
    while len(weight.shape) < rank:
        weight = ops.expand_dims(weight, axis=-1)
    return weight


def labelled_loss(
    loss: keras.losses.Loss,
    y_true: Tensor,
    y_pred: Tensor,
    sample_weight: Optional[Tensor] = None,
    ignore_value: Optional[float] = None,
) -> Tensor:
    """`loss(y_true, y_pred, sample_weight)` over the samples whose target is
    labelled (not `NaN`, not `ignore_value`).

    A target of several values (a row) counts as missing when any of its
    values is. With reduction `"sum_over_batch_size"` the result is the mean
    over labelled samples (and positions, under a Keras mask); `"sum"` and
    `"mean_with_sample_weight"` simply leave the missing samples out.

    Examples:
        >>> import numpy as np
        >>> y_true = np.array([[1.0], [np.nan], [3.0]], "float32")
        >>> y_pred = np.array([[2.0], [9.0], [3.0]], "float32")
        >>> float(labelled_loss(resolve_loss("mse"), y_true, y_pred))
        0.5
    """
    y_pred = ops.convert_to_tensor(y_pred)
    y_clean, valid = split_labels(y_true, y_pred, ignore_value)
    if valid is None:
        return loss(y_clean, y_pred, sample_weight)
    weight = valid if sample_weight is None else valid * _broadcast_weight(sample_weight, len(valid.shape))
    value = loss(y_clean, y_pred, weight)
    if loss.reduction != "sum_over_batch_size" or isinstance(loss, BatchLoss):
        return value  # a batch-level loss applies the weights in its own formula
    keras_mask = get_keras_mask(y_pred)
    if keras_mask is None:
        total = ops.cast(ops.size(valid), "float32")
        labelled = ops.sum(valid)
    else:
        keras_mask = ops.cast(ops.reshape(keras_mask, ops.shape(valid)), "float32")
        total = ops.sum(keras_mask)
        labelled = ops.sum(valid * keras_mask)
    # under tf.distribute Keras divided this replica's sum by its own count and by the replicas:
    # rescale to the count of labelled samples over all replicas
    replicas = klp_backend.num_replicas()
    if replicas > 1:
        total, labelled = total * replicas, klp_backend.replica_sum(labelled)
    scale = total / ops.maximum(labelled, 1.0)
    return value * ops.cast(scale, value.dtype)
