"""Class-balanced re-weighting by the effective number of samples
(Cui et al., 2019), wrapping any per-sample loss."""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import keras
import numpy as np
from keras import ops

from keras_lossplus.losses.base import BatchLoss, LossPlus, prepare_inputs, register
from keras_lossplus.losses.labels import check_integer_labels
from keras_lossplus.losses.options import Options, number, unchecked

Tensor = Any


def _check_counts(name: str, samples_per_class: Any) -> list:
    try:
        counts = np.asarray(samples_per_class, dtype="float64")
    except (TypeError, ValueError):
        counts = None
    if counts is None or counts.ndim != 1 or counts.size < 2 or not np.all(np.isfinite(counts)) or np.any(counts <= 0):
        raise ValueError(
            f"Argument `{name}` must be a list of at least 2 positive counts, one "
            f"per class. Received: {name}={samples_per_class!r}"
        )
    return [float(c) for c in counts]


def _check_base_loss(name: str, base_loss: Any) -> Any:
    if isinstance(base_loss, BatchLoss):
        raise ValueError(
            f"Argument `{name}` must be a per-sample loss; batch-level losses such as "
            f"{type(base_loss).__name__} have no per-sample values to weight."
        )
    if not callable(base_loss):
        raise TypeError(
            f"Argument `{name}` must be a per-sample loss function or `keras.losses.Loss`. "
            f"Received: {name}={base_loss!r}"
        )
    return base_loss


_WEIGHT_OPTIONS = dict(samples_per_class=_check_counts, beta=number(low=0.0, high=1.0, high_open=True))


@Options(**_WEIGHT_OPTIONS)
def class_balanced_weights(samples_per_class: Sequence[float], beta: float = 0.999) -> np.ndarray:
    r"""Per-class weights `(1 - beta) / (1 - beta ** n_c)`, scaled to sum to
    the number of classes.

    `beta = 0` gives equal weights; `beta -> 1` gives inverse frequency.

    Reference:
        Cui et al., "Class-Balanced Loss Based on Effective Number of
        Samples", CVPR 2019, https://arxiv.org/abs/1901.05555

    Examples:
        >>> print(class_balanced_weights([900, 100], beta=0.99).round(4))
        [0.776 1.224]
    """
    counts = np.asarray(samples_per_class, dtype="float64")
    weights = (1.0 - beta) / (1.0 - np.power(beta, counts))
    return weights / weights.sum() * len(counts)


def _sample_weights(y_true: Tensor, class_weights: Tensor) -> Tensor:
    """One weight per sample from its label(s): the weight of its class for
    sparse or binary labels, `sum_c y_c w_c` for one-hot or soft labels."""
    num_classes = class_weights.shape[0]
    last = y_true.shape[-1] if len(y_true.shape) else None
    if last == num_classes:
        return ops.sum(y_true * class_weights, axis=-1)
    if len(y_true.shape) and last == 1:
        y_true = ops.squeeze(y_true, axis=-1)
    if num_classes == 2:
        # binary targets (possibly soft): interpolate between the two classes.
        return y_true * class_weights[1] + (1.0 - y_true) * class_weights[0]
    check_integer_labels(y_true)  # class ids (eagerly; see keras_lossplus.losses.labels)
    index = ops.cast(ops.round(y_true), "int32")
    return ops.take(class_weights, index)


@Options(base_loss=_check_base_loss, **_WEIGHT_OPTIONS)
def class_balanced_loss(
    y_true: Tensor,
    y_pred: Tensor,
    base_loss: Callable[..., Tensor],
    samples_per_class: Sequence[float],
    beta: float = 0.999,
) -> Tensor:
    r"""Class-balanced loss (Cui et al., 2019): `base_loss` weighted per
    sample by the inverse effective number of samples of its class.

    $$w_c = \frac{1 - \beta}{1 - \beta^{n_c}}\ \text{(scaled so }
      \textstyle\sum_c w_c = C), \qquad \ell_i = w_{y_i}\,
      \mathrm{base}(y_i, \hat y_i)$$

    The class of a sample is read from `y_true`: one-hot or soft labels with
    `C` columns give `sum_c y_c w_c`; a single column gives the weight of the
    class index it holds (for `C = 2`, binary targets, soft ones
    interpolated). Multi-hot rows get the sum of their classes' weights.

    Args:
        y_true: Labels, as described above.
        y_pred: Predictions for `base_loss`.
        base_loss: A per-sample loss: a function `(y_true, y_pred) -> values`
            or a `keras.losses.Loss` instance (its reduction is not used).
        samples_per_class: Training-set count of each class (all `> 0`).
        beta: In `[0, 1)`; the paper uses 0.9 to 0.9999.

    Returns:
        `base_loss`'s per-sample values, re-weighted.

    Reference:
        Cui et al., "Class-Balanced Loss Based on Effective Number of
        Samples", CVPR 2019, https://arxiv.org/abs/1901.05555

    Examples:
        >>> from keras_lossplus.losses import focal_loss
        >>> values = class_balanced_loss([[1.0], [0.0]], [[0.4], [0.4]], focal_loss, [900, 100], beta=0.99)
        >>> print(keras.ops.convert_to_numpy(values).round(4))
        [0.4037 0.0634]
    """
    weights = unchecked(class_balanced_weights)(samples_per_class, beta)
    fn = base_loss.call if isinstance(base_loss, keras.losses.Loss) else base_loss
    y_true, y_pred = prepare_inputs(y_true, y_pred)
    w = _sample_weights(y_true, ops.convert_to_tensor(weights, dtype=y_pred.dtype))  # checks class ids first
    values = fn(y_true, y_pred)
    return ops.cast(values, y_pred.dtype) * w


@register
class ClassBalancedLoss(LossPlus):
    """Class-balanced wrapper (Cui et al., 2019) for any per-sample loss of
    keras_lossplus or Keras.

    See `class_balanced_loss`. Each sample's loss is multiplied by the
    class-balanced weight of its class, computed once from
    `samples_per_class`; reduction and `sample_weight` then apply as usual.

    Args:
        base_loss: A per-sample `keras.losses.Loss` (e.g. `FocalLoss(...)`,
            `keras.losses.BinaryCrossentropy()`). Batch-level losses are
            refused: they have no per-sample values to weight.
        samples_per_class: Training-set count of each class.
        beta: In `[0, 1)`.
        reduction, name, dtype: As for every `keras.losses.Loss`.

    Reference:
        Cui et al., "Class-Balanced Loss Based on Effective Number of
        Samples", CVPR 2019, https://arxiv.org/abs/1901.05555

    Examples:
        >>> from keras_lossplus.losses import FocalLoss
        >>> loss = ClassBalancedLoss(FocalLoss(gamma=2.0), samples_per_class=[900, 100], beta=0.99)
        >>> round(float(loss([[1.0], [0.0]], [[0.4], [0.4]])), 4)
        0.2336
    """

    fn = staticmethod(class_balanced_loss)

    def __init__(
        self,
        base_loss: keras.losses.Loss,
        samples_per_class: Sequence[float],
        beta: float = 0.999,
        reduction: Optional[str] = "sum_over_batch_size",
        name: Optional[str] = "class_balanced_loss",
        dtype: Any = None,
    ) -> None:
        if isinstance(base_loss, dict):
            base_loss = keras.saving.deserialize_keras_object(base_loss)
        _check_base_loss("base_loss", base_loss)
        if not isinstance(base_loss, keras.losses.Loss):  # the class saves it: a function will not do
            raise ValueError(
                "Argument `base_loss` must be a per-sample `keras.losses.Loss` instance such as "
                f"`FocalLoss()`. Received: base_loss={base_loss!r}"
            )
        super().__init__(reduction=reduction, name=name, dtype=dtype, samples_per_class=samples_per_class, beta=beta)
        self.base_loss = base_loss

    def call(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        return self._fn(y_true, y_pred, self.base_loss, **self._options)

    def get_config(self) -> dict:
        config = super().get_config()
        config["base_loss"] = keras.saving.serialize_keras_object(self.base_loss)
        return config
