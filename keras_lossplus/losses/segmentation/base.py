"""What every segmentation loss shares: the checks of the common options, the layout of
`y_true` / `y_pred` (modes, channels-first, ignored pixels), the soft
confusion counts, pixel-wise cross-entropy, and the loss base class that
switches between a per-image and a whole-batch loss.

Layout, after `prepare`: everything is channels-last,

* `raw`: `y_pred` as given (probabilities, or logits with `from_logits`),
  shape `(B, *spatial, C)`;
* `target`: the target as probabilities per channel, same shape (one-hot
  for `"multiclass"`, 0/1 for `"binary"` / `"multilabel"`);
* `valid`: 1 where a pixel (or, in `"multilabel"` mode, an entry) counts and
  0 where its label is `ignore_index`, shape `(B, *spatial, 1)` or
  `(B, *spatial, C)`, or `None` when nothing is ignored.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np
from keras import ops

from keras_lossplus import backend as klp_backend
from keras_lossplus.losses.base import BatchLoss, LossPlus, prepare_inputs
from keras_lossplus.losses.classification.terms import sigmoid_terms, softmax_terms
from keras_lossplus.losses.labels import check_integer_labels
from keras_lossplus.losses.options import choice, flag, number, optional
from keras_lossplus.losses.segmentation.scores import EPS, SCORING_ARGS
from keras_lossplus.ops import safe_pow

Tensor = Any

MODES = ("binary", "multiclass", "multilabel")
DATA_FORMATS = ("channels_last", "channels_first")


# --------------------------------------------------------------------------- arguments


def label_index(name: str, value: Any) -> int:
    """An integer label (any sign: `-1`, `255`), returned as an `int`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"Argument `{name}` must be an integer label or None. Received: {name}={value!r}")
    return int(value)


COMMON = {
    "mode": choice(*MODES),
    "data_format": choice(*DATA_FORMATS),
    "ignore_index": optional(label_index),
    "per_image": flag,
    "smooth": number(low=0.0),
    "from_logits": flag,
}
"""The checks of the options every segmentation loss takes (`smooth`: all
but the Lovasz loss), merged into each loss's `Options`."""


def _check_shapes(y_true: Tensor, y_pred: Tensor, mode: str, data_format: str) -> None:
    rank = len(y_pred.shape)
    if rank not in (3, 4, 5):
        raise ValueError(
            "Segmentation losses take `y_pred` of shape (batch, *spatial, channels) with 1 to 3 "
            f"spatial axes (rank 3 to 5; data_format={data_format!r}). Received y_pred.shape={tuple(y_pred.shape)}"
        )
    channels = y_pred.shape[-1] if data_format == "channels_last" else y_pred.shape[1]
    if channels is not None:
        if mode == "binary" and channels != 1:
            raise ValueError(
                f"mode='binary' needs one channel in `y_pred`; received {channels} channels "
                f"(y_pred.shape={tuple(y_pred.shape)}, data_format={data_format!r}). Use mode='multiclass' "
                "(softmax over the channels) or mode='multilabel' (one sigmoid per channel)."
            )
        if mode == "multiclass" and channels < 2:
            raise ValueError(
                f"mode='multiclass' needs at least 2 channels in `y_pred`; received {channels} "
                f"(y_pred.shape={tuple(y_pred.shape)}). Use mode='binary' for one channel."
            )
    if len(y_true.shape) not in (rank, rank - 1):
        raise ValueError(
            f"`y_true` must have the rank of `y_pred` ({rank}, with a channel axis) or one less "
            f"(a label map). Received y_true.shape={tuple(y_true.shape)}, y_pred.shape={tuple(y_pred.shape)}"
        )
    if mode == "multilabel" and len(y_true.shape) != rank:
        raise ValueError(
            "mode='multilabel' needs `y_true` with one 0/1 channel per class, the shape of `y_pred`. "
            f"Received y_true.shape={tuple(y_true.shape)}, y_pred.shape={tuple(y_pred.shape)}"
        )


def check_labels(y_true: Any, mode: str, channels: Optional[int], ignore_index: Optional[int]) -> None:
    """Eagerly (when `y_true` holds values, not inside a compiled function)
    refuse labels that are neither a class nor `ignore_index` (NaN, infinite
    and, for a label map, non-whole values included: the message of
    `keras_lossplus.losses.labels.check_integer_labels`)."""
    if not klp_backend.is_concrete(y_true):
        return
    values = np.asarray(ops.convert_to_numpy(y_true))
    if ignore_index is not None:
        values = values[values != ignore_index]
    if mode == "multiclass":
        check_integer_labels(values)
        if channels is None:
            return
        bad = (values < 0) | (values >= channels) | (values != np.round(values))
        allowed = f"integers in [0, {channels - 1}]"
    else:
        bad = ~np.isfinite(values) | (values < 0) | (values > 1)
        allowed = "values in [0, 1]"
    if np.any(bad):
        extra = f" or ignore_index={ignore_index}" if ignore_index is not None else ""
        raise ValueError(
            f"`y_true` must hold {allowed}{extra} for mode={mode!r}. "
            f"Received e.g. {values[bad].ravel()[:5].tolist()}"
        )


# --------------------------------------------------------------------------- layout


def _last(x: Tensor, data_format: str) -> Tensor:
    return ops.moveaxis(x, 1, -1) if data_format == "channels_first" else x


def is_label_map(y_true: Tensor, y_pred: Tensor, mode: str, data_format: str) -> bool:
    """Whether `y_true` is a `"multiclass"` label map (no channel axis, or one
    channel), from the static shapes."""
    if mode != "multiclass":
        return False
    if len(y_true.shape) != len(y_pred.shape):
        return True
    return y_true.shape[-1 if data_format == "channels_last" else 1] == 1


def _target_layout(y_true: Tensor, y_pred: Tensor, mode: str, data_format: str) -> tuple:
    """`(raw, y_true, with_channel, labels)`: both channels-last, whether
    `y_true` has a channel axis, and its class labels `(B, *spatial)` (rounded)
    when it is a `"multiclass"` label map, else `None`."""
    raw = _last(y_pred, data_format)
    with_channel = len(y_true.shape) == len(y_pred.shape)
    if with_channel:
        y_true = _last(y_true, data_format)
    labels = None
    if mode == "multiclass" and (not with_channel or y_true.shape[-1] == 1):
        labels = ops.round(ops.squeeze(y_true, -1) if with_channel else y_true)
    return raw, y_true, with_channel, labels


def prepare(y_true: Tensor, y_pred: Tensor, mode: str, ignore_index: Optional[int], data_format: str) -> tuple:
    """`(raw, target, valid)` channels-last (see the module docstring); the
    shapes were checked by `run`."""
    raw, y_true, with_channel, labels = _target_layout(y_true, y_pred, mode, data_format)
    channels = raw.shape[-1]
    label_map = labels is not None
    if mode == "multiclass" and with_channel and not label_map and y_true.shape[-1] != channels:
        raise ValueError(
            "mode='multiclass' takes `y_true` as a label map (batch, *spatial) or (..., 1), or one-hot "
            f"with one channel per class ({channels}). Received y_true.shape={tuple(y_true.shape)}"
        )
    if label_map:
        valid = None
        if ignore_index is not None:
            keep = ops.not_equal(labels, float(ignore_index))
            labels = ops.where(keep, labels, ops.zeros_like(labels))
            valid = ops.expand_dims(ops.cast(keep, raw.dtype), -1)
        # a comparison with the class indices: 3-4x faster than ops.one_hot on torch, the same under XLA
        classes = ops.arange(channels, dtype=labels.dtype)
        target = ops.cast(ops.equal(ops.expand_dims(labels, -1), classes), raw.dtype)
        return raw, target, valid
    if mode == "multiclass" and ignore_index is not None:
        raise ValueError(
            "`ignore_index` applies to label maps; with one-hot `y_true` give ignored pixels "
            "a zero `sample_weight` (or a Keras mask) instead. Received ignore_index="
            f"{ignore_index} and y_true.shape={tuple(y_true.shape)}"
        )
    if not with_channel:
        y_true = ops.expand_dims(y_true, -1)
    if ignore_index is None:
        return raw, y_true, None
    keep = ops.not_equal(y_true, float(ignore_index))
    valid = ops.cast(keep, raw.dtype)
    return raw, ops.where(keep, y_true, ops.zeros_like(y_true)), valid


def probabilities(raw: Tensor, mode: str, from_logits: bool) -> Tensor:
    """Class probabilities from `raw` (softmax over the channels for
    `"multiclass"`, a sigmoid per entry otherwise)."""
    if not from_logits:
        return raw
    return ops.softmax(raw, axis=-1) if mode == "multiclass" else ops.sigmoid(raw)


def pixel_weights(valid: Optional[Tensor], sample_weight: Optional[Tensor], raw: Tensor) -> Optional[Tensor]:
    """Per-pixel weights, broadcastable to `raw`: the ignore mask times the
    sample weights (`(B,)`, or `(B, *spatial)` for a per-pixel weight or
    Keras mask); `None` (every pixel counts once) when there are neither,
    which saves full-size multiplications."""
    if sample_weight is None:
        return valid
    w = ops.cast(sample_weight, raw.dtype)
    rank = len(raw.shape)
    if len(w.shape) == rank - 1:
        w = ops.expand_dims(w, -1)
    while len(w.shape) < rank:
        w = ops.expand_dims(w, -1)
    return w if valid is None else valid * w


def reduce_axes(rank: int, per_image: bool) -> tuple:
    """The axes a per-class count sums over: the spatial ones per image, and
    the batch too otherwise."""
    return tuple(range(1 if per_image else 0, rank - 1))


# --------------------------------------------------------------------------- counts and means


def weighted(x: Tensor, weights: Optional[Tensor]) -> Tensor:
    return x if weights is None else weights * x


def soft_counts(target: Tensor, probs: Tensor, weights: Optional[Tensor], axes: tuple, squared: bool = False,
                soft_labels: bool = False) -> tuple:
    """Weighted soft true positives, false positives, false negatives and
    the target's support per class: shape `(B, C)` per image or `(C,)`.

    `squared` (V-Net, MONAI's `squared_pred`): `FP = sum p^2 - TP`,
    `FN = sum y^2 - TP`, so that `2 TP + FP + FN = sum p^2 + sum y^2`.
    `soft_labels` (segmentation_models_pytorch's counts, MONAI's
    `soft_label`): `TP = (sum p + sum y - sum |p - y|) / 2`, which is
    `sum min(p, y)`, the same as `sum p y` for 0/1 targets."""
    wt = weighted(target, weights)
    support = ops.sum(wt, axis=axes)
    if squared:
        tp = ops.sum(wt * probs, axis=axes)
        predicted, actual = ops.sum(weighted(probs * probs, weights), axis=axes), ops.sum(wt * target, axis=axes)
        return tp, predicted - tp, actual - tp, support
    predicted = ops.sum(weighted(probs, weights), axis=axes)
    if soft_labels:
        # |p - y| with the gradient sign(p - y), 0 at ties on every backend (JAX's `abs` gives 1 there)
        difference = probs - target
        difference = difference * ops.stop_gradient(ops.sign(difference))
        tp = 0.5 * (predicted + support - ops.sum(weighted(difference, weights), axis=axes))
    else:
        tp = ops.sum(wt * probs, axis=axes)
    return tp, predicted - tp, support - tp, support


def safe_ratio(numerator: Tensor, denominator: Tensor) -> Tensor:
    """`numerator / max(denominator, 1e-7)`, as segmentation_models_pytorch
    clamps its overlap denominators."""
    return numerator / ops.maximum(denominator, EPS)


def weighted_mean(values: Tensor, weights: Optional[Tensor], axes: tuple) -> Tensor:
    """Weighted mean of `values` over `axes` (and the channel axis), 0 where
    every weight is 0."""
    axes = axes + (len(values.shape) - 1,)
    if weights is None:
        return ops.mean(values, axis=axes)
    weights = ops.broadcast_to(weights, ops.shape(values))
    total = ops.sum(weights, axis=axes)
    return ops.sum(weights * values, axis=axes) / ops.maximum(total, EPS) * ops.cast(total > 0, values.dtype)


def pixel_crossentropy(raw: Tensor, target: Tensor, mode: str, from_logits: bool, gamma: float = 0.0,
                       alpha: Any = None) -> Tensor:
    """(Focal) cross-entropy per pixel (`"multiclass"`: summed over the
    classes, shape `(B, *spatial, 1)`) or per entry (sigmoid modes)."""
    if mode == "multiclass":
        log_p, p = softmax_terms(raw, from_logits)
        terms = -target * log_p * safe_pow(1.0 - p, gamma)
        if alpha is not None:
            terms = terms * alpha
        return ops.sum(terms, axis=-1, keepdims=True)
    bce, one_minus_pt, _ = sigmoid_terms(target, raw, from_logits)
    terms = safe_pow(one_minus_pt, gamma) * bce
    if alpha is not None:
        terms = terms * (target * alpha + (1.0 - target) * (1.0 - alpha))
    return terms


# --------------------------------------------------------------------------- functions and classes


def run(core: Callable, y_true: Any, y_pred: Any, sample_weight: Any, *, mode: str, ignore_index: Any,
        per_image: bool, data_format: str, **options: Any) -> Tensor:
    """Convert the inputs, check their layout and (eagerly) the labels, and
    call the (compiled on JAX) `core`; the options were checked by the
    function's `Options` spec."""
    if per_image and sample_weight is not None:
        raise ValueError(
            "With per_image=True the loss has one value per image and `sample_weight` is applied by "
            "the reduction: pass it to the Loss object (or weigh the returned values), not to the function."
        )
    y_true, y_pred = prepare_inputs(y_true, y_pred)
    channels = y_pred.shape[-1] if data_format == "channels_last" else y_pred.shape[1]
    _check_shapes(y_true, y_pred, mode, data_format)
    true_channels = y_true.shape[-1] if data_format == "channels_last" else y_true.shape[1]
    one_hot = mode == "multiclass" and len(y_true.shape) == len(y_pred.shape) and true_channels == channels
    if not one_hot:  # one-hot (or soft) targets have no label values to check
        check_labels(y_true, mode, channels, ignore_index)
    if sample_weight is not None:
        sample_weight = ops.cast(ops.convert_to_tensor(sample_weight), y_pred.dtype)
    return core(y_true, y_pred, mode=mode, ignore_index=ignore_index, per_image=per_image,
                data_format=data_format, sample_weight=sample_weight, **options)


class SegmentationLoss(BatchLoss):
    """Base of the segmentation losses: with `per_image=True` the function
    returns one value per image and Keras applies `reduction`,
    `sample_weight` and masks as for any per-sample loss; with
    `per_image=False` (the default) the loss is computed over the whole batch
    and the weights (`sample_weight` per image, or a per-pixel weight or
    Keras mask of shape `(B, *spatial)`) weigh every pixel's contribution.
    Either way the unchecked function runs: `LossPlus.call` (per image) and
    `BatchLoss._replicated` (whole batch) call `self._fn`."""

    def __call__(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> Tensor:
        if self._options.get("per_image"):
            return LossPlus.__call__(self, y_true, y_pred, sample_weight=sample_weight)
        return super().__call__(y_true, y_pred, sample_weight=sample_weight)


COMMON_ARGS = """        mode: `"binary"`, `"multiclass"` or `"multilabel"`.
        from_logits: Whether `y_pred` holds logits.
        ignore_index: Label of pixels that count nowhere, or `None`.
        per_image: One value per image (`True`) or for the whole batch.
        smooth: Added to numerator and denominator, `>= 0`; the overlap
            losses also take a pair `(numerator, denominator)` (MONAI's
            `smooth_nr`, `smooth_dr`).
        data_format: `"channels_last"` or `"channels_first"`."""


def _backend_counts(y_true, y_pred, mode, from_logits, per_image, data_format):
    """`(TP, FP, FN, support)` by the backend's own kernel
    (`klp_backend.class_counts`: no one-hot or product tensors on torch) for
    inputs without weights or ignored labels; `None` where there is none."""
    raw, y_true, with_channel, labels = _target_layout(y_true, y_pred, mode, data_format)
    if labels is not None:
        target = ops.cast(labels, "int32")
    else:
        target = y_true if with_channel else ops.expand_dims(y_true, -1)
        if target.shape[-1] != raw.shape[-1]:
            return None  # `prepare` says what is wrong
    counts = klp_backend.class_counts(target, probabilities(raw, mode, from_logits), per_image, labels is not None)
    if counts is None:
        return None
    tp, predicted, support = counts
    return tp, predicted - tp, support - tp, support


def confusion_counts(y_true, y_pred, mode, from_logits, ignore_index, per_image, data_format, sample_weight,
                     keep_target=True, squared=False, soft_labels=False):
    """Soft confusion counts per class (`soft_counts`) and the pieces the
    compound losses reuse (`None` with `keep_target=False`, which lets the
    backend's own kernel compute the plain counts when there are no weights
    or ignored labels)."""
    if not (keep_target or squared or soft_labels) and sample_weight is None and ignore_index is None:
        counts = _backend_counts(y_true, y_pred, mode, from_logits, per_image, data_format)
        if counts is not None:
            return counts, None
    raw, target, valid = prepare(y_true, y_pred, mode, ignore_index, data_format)
    weights = pixel_weights(valid, sample_weight, raw)
    axes = reduce_axes(len(raw.shape), per_image)
    counts = soft_counts(target, probabilities(raw, mode, from_logits), weights, axes, squared, soft_labels)
    return counts, (raw, target, weights, axes)


class OverlapLoss(SegmentationLoss):
    """Shared constructor: every option is checked once, by the function's
    `Options` spec, in `LossPlus.__init__`; a subclass passes its own
    arguments with `super().__init__(**arguments(locals()))`."""

    def __init__(self, *, reduction: Any, name: Any, dtype: Any, cross_replica: str = "gather",
                 **options: Any) -> None:
        super().__init__(reduction=reduction, name=name, dtype=dtype, cross_replica=cross_replica, **options)


def arguments(frame: dict) -> dict:
    """A constructor's arguments, from its `locals()`."""
    return {k: v for k, v in frame.items() if k not in ("self", "__class__")}


CLASS_ARGS = """        mode, from_logits, ignore_index, per_image, smooth, data_format: See
            `keras_lossplus.losses.segmentation`.
        cross_replica: With `per_image=False`, `"gather"` (default): under
            `tf.distribute`, the loss of the global batch, all-gathered from the
            replicas; `"local"`: each replica's own slice (see
            `keras_lossplus.losses.BatchLoss`).
        reduction, name, dtype: As for every `keras.losses.Loss` (with
            `per_image=False` the loss is one value per batch: every
            reduction returns it)."""


def document(*objects: Any) -> None:
    """Fill the shared argument lists into the docstrings of segmentation
    functions (`{common}`), classes (`{args}`) and of the losses with the
    scoring options (`{scoring}`)."""
    for obj in objects:
        obj.__doc__ = (obj.__doc__.replace("{common}", COMMON_ARGS).replace("{args}", CLASS_ARGS)
                       .replace("{scoring}", SCORING_ARGS))
