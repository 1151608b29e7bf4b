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


def stacked_inputs(y_true: Any, y_pred: Any, columns: str, labels: bool = False) -> tuple:
    """Targets `(B,)` and stacked embeddings `(B, m, D)` in the loss's
    compute dtype, for the in-batch losses of sentence embeddings.

    `y_pred[:, 0]` are the anchors, `y_pred[:, 1]` their positives (or the
    second text of a pair), `y_pred[:, 2:]` optional hard negatives.
    `columns` is `"pairs"` (`m == 2` exactly) or `"tuples"` (`m >= 2`).
    `y_true` must have shape `(B,)` or `(B, 1)` (or be `None` when it is not
    read); with `labels=True` it holds integer class labels, checked as by
    `embedding_inputs`. Anything else raises `ValueError` naming the argument.
    """
    check_float_predictions(y_pred)
    y_pred = ops.convert_to_tensor(y_pred)
    y_pred = ops.cast(y_pred, compute_dtype(y_pred.dtype))
    shape = tuple(y_pred.shape)
    expected = "(batch_size, 2, dim)" if columns == "pairs" else "(batch_size, m, dim) with m >= 2"
    width = shape[1] if len(shape) == 3 else None
    if len(shape) != 3 or width is None or width < 2 or (columns == "pairs" and width != 2):
        raise ValueError(
            f"`y_pred` must stack the embeddings of each example on axis 1, shape {expected}: "
            "y_pred[:, 0] the anchors, y_pred[:, 1] the positives"
            + (", y_pred[:, 2:] optional hard negatives" if columns != "pairs" else "")
            + f". Received: y_pred.shape={shape}"
        )
    if y_true is None:
        return None, y_pred
    y_true = ops.convert_to_tensor(y_true)
    true_shape = tuple(y_true.shape)
    if not (len(true_shape) == 1 or (len(true_shape) == 2 and true_shape[1] == 1)):
        raise ValueError(
            "`y_true` must hold one value per example, shape (batch_size,) or (batch_size, 1). "
            f"Received: y_true.shape={true_shape}, y_pred.shape={shape}"
        )
    if shape[0] is not None and true_shape[0] is not None and shape[0] != true_shape[0]:
        raise ValueError(
            "`y_true` and `y_pred` must have the same batch size. "
            f"Received: y_true.shape={true_shape}, y_pred.shape={shape}"
        )
    if labels:
        check_integer_labels(y_true)
    return ops.reshape(y_true, (-1,)), y_pred


def anchor_weights(sample_weight: Any, dtype: str) -> Any:
    """One weight per example `(B,)` from a `sample_weight` of shape `(B,)`,
    `(B, 1)` or `(B, m)` (the first column, the anchor's, is read), or
    `None`."""
    if sample_weight is None:
        return None
    w = ops.cast(ops.convert_to_tensor(sample_weight), dtype)
    if len(w.shape) == 2:
        w = w[:, 0]
    return ops.reshape(w, (-1,))
