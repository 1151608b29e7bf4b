"""Labels and embeddings in, checked: the calling convention of every in-batch
metric-learning loss, and the explicit tuples of `mining="none"`."""

from __future__ import annotations

from typing import Any

from keras import ops

from keras_lossplus.losses.labels import check_integer_labels
from keras_lossplus.losses.options import check_float_predictions
from keras_lossplus.ops import compute_dtype, l2_normalize

Tensor = Any


def embedding_inputs(y_true: Any, y_pred: Any, normalize: bool = False) -> tuple:
    """Labels `(B,)` and embeddings `(B, D)` in the loss's compute dtype.

    `y_true` must have shape `(B,)` or `(B, 1)` and `y_pred` shape `(B, D)`;
    anything else raises `ValueError` naming the argument, as do NaN,
    infinite or non-whole float labels when the loss runs eagerly (see
    `keras_lossplus.losses.labels.check_integer_labels`; under jit they are
    not detected). With `normalize=True` the embeddings are L2-normalized.
    """
    check_float_predictions(y_pred)
    y_pred = ops.convert_to_tensor(y_pred)
    y_pred = ops.cast(y_pred, compute_dtype(y_pred.dtype))
    if len(y_pred.shape) != 2:
        raise ValueError(
            "`y_pred` must hold one embedding per sample, shape (batch_size, dim). "
            f"Received: y_pred.shape={tuple(y_pred.shape)}"
        )
    y_true = ops.convert_to_tensor(y_true)
    shape = tuple(y_true.shape)
    if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
        raise ValueError(
            "`y_true` must hold one integer class label per sample, shape (batch_size,) or "
            f"(batch_size, 1). Received: y_true.shape={shape}"
            + ("; for one-hot labels pass their class ids, argmax(y_true, axis=-1)" if len(shape) == 2 else "")
        )
    batch, labels_batch = y_pred.shape[0], shape[0]
    if batch is not None and labels_batch is not None and batch != labels_batch:
        raise ValueError(
            "`y_true` and `y_pred` must have the same batch size. "
            f"Received: y_true.shape={shape}, y_pred.shape={tuple(y_pred.shape)}"
        )
    check_integer_labels(y_true)
    labels = ops.reshape(y_true, (-1,))
    if normalize:
        y_pred = l2_normalize(y_pred)
    return labels, y_pred


def split_columns(y_pred: Any, parts: int, layout: str) -> list:
    """Split explicit tuples `[a | p | n ...]` concatenated on the last axis."""
    check_float_predictions(y_pred)
    y_pred = ops.convert_to_tensor(y_pred)
    y_pred = ops.cast(y_pred, compute_dtype(y_pred.dtype))
    width = y_pred.shape[-1]
    if len(y_pred.shape) != 2 or width is None or width % parts:
        raise ValueError(
            f"With mining='none', `y_pred` must be explicit tuples {layout} concatenated on "
            f"the last axis: shape (batch_size, {parts} * dim). Received: y_pred.shape={tuple(y_pred.shape)}"
        )
    return ops.split(y_pred, parts, axis=-1)
