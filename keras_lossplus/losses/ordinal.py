r"""Ordinal regression losses: CORAL, CORN and the weighted kappa loss, with
the helpers that turn CORAL / CORN logits into ranks.

Ranks are the integers `0, 1, ..., K - 1` of `K` ordered classes (ages in
years, star ratings, disease grades).

* CORAL and CORN models output `K - 1` logits per sample, `(B, K - 1)`:
  CORAL's from `keras_lossplus.layers.CoralOutput` (one shared weight
  vector, `K - 1` biases: rank-consistent by construction), CORN's from a
  plain `keras.layers.Dense(K - 1)`. Their `y_true` is the integer rank,
  shape `(B,)` or `(B, 1)` (Keras passes it as floats; it is rounded back).
  Ranks outside `[0, K - 1]`, and NaN, infinite or non-whole ones (farther
  than 0.01 from a whole number), raise
  `ValueError` when the loss runs eagerly; inside a compiled step
  (`jit_compile`, `tf.function`) they cannot raise and act as the nearest
  valid rank (a rank below 0 as 0, above `K - 1` as `K - 1`, `1.4` as 1; a
  NaN rank passes no threshold, see `keras_lossplus.losses.labels`).
* `WeightedKappaLoss` takes class probabilities `(B, K)` (a softmax output)
  and one-hot `y_true` `(B, K)` or integer ranks `(B,)` / `(B, 1)`.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
import keras  # noqa: F401  (the docstring examples use it)
from keras import ops

from keras_lossplus.backend import compiled_on_jax, is_concrete
from keras_lossplus.losses.base import BatchLoss, LossPlus, prepare_inputs, register
from keras_lossplus.losses.labels import check_integer_labels
from keras_lossplus.losses.options import Options, check_float_predictions, choice, flag, float_list, number, optional

Tensor = Any

__all__ = [
    "CoralLoss",
    "CornLoss",
    "WeightedKappaLoss",
    "coral_loss",
    "coral_rank",
    "corn_loss",
    "corn_probabilities",
    "corn_rank",
    "weighted_kappa_loss",
]

KAPPA_WEIGHTAGES = ("linear", "quadratic")
RANK_ATOL = 1e-2  # float noise around a whole rank, rounded away; farther from one, a rank is refused (eagerly)


# --------------------------------------------------------------------------- shared pieces


def _check_logits(y_pred: Tensor, what: str) -> int:
    shape = tuple(y_pred.shape)
    if len(shape) < 2 or shape[-1] is None or shape[-1] < 1:
        raise ValueError(
            f"`y_pred` must hold the {what} logits of each sample, shape (batch_size, num_classes - 1) "
            f"with num_classes >= 2. Received: y_pred.shape={shape}"
        )
    return int(shape[-1])


def _rank_labels(y_true: Tensor, y_pred_shape: tuple, num_classes: int) -> Tensor:
    """Integer ranks (as floats, rounded) of shape `y_pred_shape[:-1]` from
    `y_true` of that shape or with a trailing 1; eager range check."""
    shape = tuple(y_true.shape)
    target = tuple(y_pred_shape[:-1])
    if len(shape) == len(target) + 1 and shape[-1] == 1:
        y_true = ops.squeeze(y_true, axis=-1)
        shape = shape[:-1]
    if len(shape) != len(target) or any(a is not None and b is not None and a != b for a, b in zip(shape, target)):
        raise ValueError(
            "`y_true` must hold one integer rank in [0, num_classes - 1] per sample, shape "
            f"(batch_size,) or (batch_size, 1). Received: y_true.shape={tuple(y_true.shape)} for "
            f"y_pred.shape={tuple(y_pred_shape)}"
        )
    check_integer_labels(y_true, atol=RANK_ATOL)
    y_true = ops.round(y_true)
    if is_concrete(y_true):
        values = ops.convert_to_numpy(y_true)
        if values.size and (values.min() < 0 or values.max() > num_classes - 1):
            raise ValueError(
                f"`y_true` ranks must be in [0, {num_classes - 1}] (num_classes={num_classes}). "
                f"Received ranks from {values.min():g} to {values.max():g}"
            )
    return y_true


def _levels(ranks: Tensor, num_thresholds: int, dtype: Any) -> Tensor:
    """`[y > k]` for `k = 0 .. K - 2`, shape `ranks.shape + (K - 1,)`."""
    thresholds = ops.arange(num_thresholds, dtype=ranks.dtype)
    return ops.cast(ops.expand_dims(ranks, -1) > thresholds, dtype)


def _binary_terms(logits: Tensor, targets: Tensor) -> Tensor:
    """`-[t log sigma(l) + (1 - t) log(1 - sigma(l))]`, with
    `log(1 - sigma(l)) = log_sigmoid(l) - l` (coral-pytorch's form)."""
    log_p = ops.log_sigmoid(logits)
    return -(targets * log_p + (1.0 - targets) * (log_p - logits))


# --------------------------------------------------------------------------- CORAL


@Options(importance_weights=optional(float_list(low=0.0)))
def coral_loss(y_true: Tensor, y_pred: Tensor, importance_weights: Optional[Sequence[float]] = None) -> Tensor:
    r"""CORAL loss per sample: `K - 1` binary cross-entropies, one per
    threshold `y > k`, on logits that share their weights.

    With levels $\lambda_k = [y > k]$ for $k = 0, \dots, K - 2$:

    $$\ell = -\sum_{k} w_k \Bigl[\lambda_k \log\sigma(l_k)
      + (1 - \lambda_k)\bigl(\log\sigma(l_k) - l_k\bigr)\Bigr]$$

    (`log sigma(l) - l = log(1 - sigma(l))`). Equal, per sample, to
    coral-pytorch's `coral_loss(logits, levels_from_labelbatch(y, K),
    importance_weights, reduction=None)`; coral-pytorch's default
    `reduction="mean"` is Keras' `"sum_over_batch_size"`.

    Args:
        y_true: Integer ranks in `[0, K - 1]`, shape `(B,)` or `(B, 1)`.
        y_pred: Logits `(B, K - 1)`, e.g. from `keras_lossplus.layers.CoralOutput`.
        importance_weights: Optional `K - 1` non-negative weights `w_k` of
            the thresholds (default all 1).

    Returns:
        The loss per sample, `(B,)`.

    Reference:
        Cao, Mirjalili & Raschka, "Rank Consistent Ordinal Regression for
        Neural Networks with Application to Age Estimation", Pattern
        Recognition Letters 2020, https://arxiv.org/abs/1901.07884

    Examples:
        >>> y_true = [2, 1, 4]
        >>> logits = [[2.1, 1.8, -2.1, -1.8], [1.9, -1.0, -1.5, -1.3], [1.9, 1.8, 1.7, 1.6]]
        >>> print(keras.ops.convert_to_numpy(coral_loss(y_true, logits)).round(4))
        [0.537  0.8951 0.6441]
    """
    y_true, y_pred = prepare_inputs(y_true, y_pred)
    num_thresholds = _check_logits(y_pred, "CORAL")
    ranks = _rank_labels(y_true, tuple(y_pred.shape), num_thresholds + 1)
    if importance_weights is not None and len(importance_weights) != num_thresholds:
        raise ValueError(
            f"`importance_weights` must hold one weight per threshold, num_classes - 1 = {num_thresholds} "
            f"(y_pred.shape={tuple(y_pred.shape)}). Received {len(importance_weights)}: {importance_weights}"
        )
    return _coral_values(ranks, y_pred, None if importance_weights is None else tuple(importance_weights))


@compiled_on_jax
def _coral_values(y_true: Tensor, y_pred: Tensor, importance_weights: Optional[tuple]) -> Tensor:
    """CORAL's per-sample loss from checked ranks `y_true` and logits."""
    terms = _binary_terms(y_pred, _levels(y_true, y_pred.shape[-1], y_pred.dtype))
    if importance_weights is not None:
        terms = terms * ops.convert_to_tensor(importance_weights, dtype=terms.dtype)
    return ops.sum(terms, axis=-1)


@register
class CoralLoss(LossPlus):
    r"""CORAL loss (Consistent Rank Logits) for ordinal regression.

    The model outputs `K - 1` logits `l_k = w . x + b_k` (one weight vector,
    `K - 1` biases: `keras_lossplus.layers.CoralOutput`), and the loss is the
    sum over thresholds of the binary cross-entropy of `sigma(l_k)` against
    `[y > k]`, weighted by `importance_weights`; see `coral_loss`. Predict
    the rank with `keras_lossplus.losses.coral_rank(logits)`.

    Args:
        importance_weights: Optional `K - 1` non-negative threshold weights.
        reduction, name, dtype: As for every `keras.losses.Loss`.

    Reference:
        Cao, Mirjalili & Raschka, "Rank Consistent Ordinal Regression for
        Neural Networks with Application to Age Estimation", Pattern
        Recognition Letters 2020.

    Examples:
        >>> loss = CoralLoss()
        >>> logits = [[2.1, 1.8, -2.1, -1.8], [1.9, -1.0, -1.5, -1.3], [1.9, 1.8, 1.7, 1.6]]
        >>> round(float(loss([2, 1, 4], logits)), 4)  # coral-pytorch's example: 0.6920
        0.692
    """

    fn = staticmethod(coral_loss)

    def __init__(
        self,
        importance_weights: Optional[Sequence[float]] = None,
        reduction: Optional[str] = "sum_over_batch_size",
        name: Optional[str] = "coral_loss",
        dtype: Any = None,
    ) -> None:
        super().__init__(
            reduction=reduction, name=name, dtype=dtype,
            importance_weights=importance_weights,
        )


def coral_rank(logits: Tensor) -> Tensor:
    """The rank predicted by CORAL logits `(B, K - 1)`: the number of
    thresholds with `sigmoid(l_k) > 0.5` (coral-pytorch's `proba_to_label`
    applied to `sigmoid(logits)`), an `int32` tensor `(B,)`.

    Reference:
        Cao, Mirjalili & Raschka, Pattern Recognition Letters 2020.

    Examples:
        >>> print(keras.ops.convert_to_numpy(coral_rank([[2.0, 0.5, -0.3], [-1.0, -2.0, -3.0]])))
        [2 0]
    """
    logits = ops.convert_to_tensor(logits)
    check_float_predictions(logits)
    return ops.sum(ops.cast(ops.sigmoid(logits) > 0.5, "int32"), axis=-1)


# --------------------------------------------------------------------------- CORN


def corn_loss(y_true: Tensor, y_pred: Tensor, sample_weight: Optional[Tensor] = None) -> Tensor:
    r"""CORN loss over the batch: `K - 1` conditional binary tasks.

    Task `k` (`k = 0 .. K - 2`) learns `P(y > k | y > k - 1)` from the
    samples with `y >= k` only, with target `[y > k]`:

    $$\ell = \frac{\sum_i w_i \sum_{k \le y_i} \mathrm{BCE}(l_{ik}, [y_i > k])}
               {\sum_i w_i \, |\{k \le y_i,\ k \le K - 2\}|}$$

    the mean over all (sample, task) examples, each sample's terms and its
    number of tasks weighted by `sample_weight` `w_i` (default 1). With unit
    weights this is coral-pytorch's `corn_loss(logits, y, K)` (the total
    divided by the number of examples); 0 when every weight is 0. Predict
    with `corn_rank` / `corn_probabilities`.

    Args:
        y_true: Integer ranks in `[0, K - 1]`, shape `(B,)` or `(B, 1)`.
        y_pred: Logits `(B, K - 1)`, from a `keras.layers.Dense(K - 1)`.
        sample_weight: Optional `(B,)` weights of the samples.

    Returns:
        A scalar.

    Reference:
        Shi, Cao & Raschka, "Deep Neural Networks for Rank-Consistent
        Ordinal Regression Based On Conditional Probabilities", Pattern
        Analysis and Applications 2023, https://arxiv.org/abs/2111.08851

    Examples:
        >>> y_true = [0, 1, 2, 2, 3]
        >>> logits = [[-1.0, 0.5, 0.0], [2.0, -1.0, 0.3], [1.5, 1.0, -0.5], [0.2, 0.3, 0.4], [3.0, 2.0, 1.0]]
        >>> round(float(corn_loss(y_true, logits)), 4)
        0.358
    """
    y_true, y_pred = prepare_inputs(y_true, y_pred)
    num_thresholds = _check_logits(y_pred, "CORN")
    ranks = _rank_labels(y_true, tuple(y_pred.shape), num_thresholds + 1)
    return _corn_value(ranks, y_pred, sample_weight)


@compiled_on_jax
def _corn_value(y_true: Tensor, y_pred: Tensor, sample_weight: Optional[Tensor]) -> Tensor:
    """CORN's batch loss from checked ranks `y_true` and logits."""
    ranks = y_true
    num_thresholds = y_pred.shape[-1]
    tasks = ops.arange(num_thresholds, dtype=ranks.dtype)
    in_task = ops.cast(ops.expand_dims(ranks, -1) >= tasks, y_pred.dtype)
    terms = _binary_terms(y_pred, _levels(ranks, num_thresholds, y_pred.dtype))
    if sample_weight is not None:
        w = ops.cast(ops.convert_to_tensor(sample_weight), y_pred.dtype)
        while len(w.shape) > len(ranks.shape):
            w = ops.squeeze(w, axis=-1)
        in_task = in_task * ops.expand_dims(ops.broadcast_to(w, ops.shape(ranks)), -1)
    total = ops.sum(terms * in_task)
    count = ops.sum(in_task)
    positive = count > 0
    return ops.where(positive, total / ops.where(positive, count, ops.ones_like(count)), ops.zeros_like(total))


@register
class CornLoss(BatchLoss):
    r"""CORN loss (Conditional Ordinal Regression for Neural networks).

    The model outputs `K - 1` unconstrained logits (a plain
    `keras.layers.Dense(K - 1)`, no special layer); logit `k` models
    `P(y > k | y > k - 1)` and is trained only on the samples with `y >= k`.
    One value per batch: the mean binary cross-entropy over all (sample,
    task) examples,
    `sum_i w_i sum_{k <= y_i} BCE(l_ik, [y_i > k]) / sum_i w_i #{k <= y_i}`;
    `sample_weight` `w_i` weights each sample's terms and its count. See
    `corn_loss`. Predict with `corn_rank(logits)`.

    Args:
        cross_replica: `"gather"` (default): under `tf.distribute`, the loss of
            the global batch, all-gathered from the replicas; `"local"`: each
            replica's own slice (see `keras_lossplus.losses.BatchLoss`).
        reduction, name, dtype: As for every `keras.losses.Loss` (the value
            is one scalar per batch for every `reduction`).

    Reference:
        Shi, Cao & Raschka, "Deep Neural Networks for Rank-Consistent
        Ordinal Regression Based On Conditional Probabilities", Pattern
        Analysis and Applications 2023.

    Examples:
        >>> loss = CornLoss()
        >>> logits = [[-1.0, 0.5, 0.0], [2.0, -1.0, 0.3], [1.5, 1.0, -0.5], [0.2, 0.3, 0.4], [3.0, 2.0, 1.0]]
        >>> round(float(loss([0, 1, 2, 2, 3], logits)), 4)
        0.358
    """

    fn = staticmethod(corn_loss)

    def __init__(
        self,
        reduction: Optional[str] = "sum_over_batch_size",
        name: Optional[str] = "corn_loss",
        dtype: Any = None,
        cross_replica: str = "gather",
    ) -> None:
        super().__init__(reduction=reduction, name=name, dtype=dtype, cross_replica=cross_replica)


def corn_probabilities(logits: Tensor) -> Tensor:
    """`P(y > k)` for `k = 0 .. K - 2` from CORN logits `(B, K - 1)`: the
    cumulative product of the conditional probabilities `sigmoid(l_k)`
    (non-increasing in `k`).

    Reference:
        Shi, Cao & Raschka, Pattern Analysis and Applications 2023.

    Examples:
        >>> print(keras.ops.convert_to_numpy(corn_probabilities([[0.0, 0.0, 100.0]])))
        [[0.5  0.25 0.25]]
    """
    logits = ops.convert_to_tensor(logits)
    check_float_predictions(logits)
    return ops.cumprod(ops.sigmoid(logits), axis=-1)


def corn_rank(logits: Tensor) -> Tensor:
    """The rank predicted by CORN logits `(B, K - 1)`: the number of `k`
    with `P(y > k) > 0.5` (coral-pytorch's `corn_label_from_logits`), an
    `int32` tensor `(B,)`.

    Reference:
        Shi, Cao & Raschka, Pattern Analysis and Applications 2023.

    Examples:
        >>> logits = [[14.152, -6.1942, 0.47710, 0.96850], [65.667, 0.303, 11.500, -4.524]]
        >>> print(keras.ops.convert_to_numpy(corn_rank(logits)))
        [1 3]
    """
    return ops.sum(ops.cast(corn_probabilities(logits) > 0.5, "int32"), axis=-1)


# --------------------------------------------------------------------------- weighted kappa


def class_count(name: str, value: Any) -> int:
    """A number of classes: an integer `>= 2`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 2:
        raise ValueError(f"Argument `{name}` must be an integer >= 2. Received: {name}={value!r}")
    return int(value)


def check_num_classes(num_classes: Any) -> int:
    """`num_classes` checked by `class_count` (for `keras_lossplus.layers.CoralOutput`)."""
    return class_count("num_classes", num_classes)


@Options(weightage=choice(*KAPPA_WEIGHTAGES), epsilon=number(low=0.0, low_open=True),
         num_classes=optional(class_count), from_logits=flag)
def weighted_kappa_loss(
    y_true: Tensor,
    y_pred: Tensor,
    num_classes: Optional[int] = None,
    weightage: str = "quadratic",
    epsilon: float = 1e-6,
    from_logits: bool = False,
    sample_weight: Optional[Tensor] = None,
) -> Tensor:
    r"""Weighted kappa loss over the batch (tensorflow-addons' formula).

    With `p` the predicted class probabilities `(B, C)`, `y` the one-hot
    labels, `c_i` sample `i`'s class, `W_{ab} = |a - b|` (`"linear"`) or
    `(a - b)^2` (`"quadratic"`) and sample weights `w_i` (default 1):

    $$\ell = \log\Bigl(\frac{\sum_i w_i \sum_j W_{c_i j} p_{ij}}
      {\frac{1}{\sum_i w_i} \sum_{a, b} W_{ab} \bigl(\sum_i w_i y_{ia}\bigr)
      \bigl(\sum_i w_i p_{ib}\bigr)} + \epsilon\Bigr)$$

    the log of `1 - kappa` (a soft, weighted Cohen's kappa) plus `epsilon`:
    `log(epsilon)` for perfect agreement, about 0 for chance agreement
    (`kappa = 0`), `log 2` for `kappa = -1`.
    With unit weights this equals `tfa.losses.WeightedKappaLoss` (a ratio
    whose denominator is 0 counts as 0, as TFA's `divide_no_nan`); with all
    weights 0 the loss is 0. TFA replaces `epsilon=0` by `1e-7`; here
    `epsilon` must be `> 0`.

    Args:
        y_true: One-hot (or soft) labels `(B, C)`, or integer classes `(B,)` / `(B, 1)`.
        y_pred: Class probabilities `(B, C)` (or logits with `from_logits=True`).
        num_classes: `C`; defaults to `y_pred.shape[-1]`, must equal it.
        weightage: `"quadratic"` or `"linear"`.
        epsilon: `> 0`, added inside the log.
        from_logits: Apply a softmax to `y_pred` first.
        sample_weight: Optional `(B,)` weights of the samples.

    Returns:
        A scalar.

    Reference:
        de la Torre, Puig & Valls, "Weighted kappa loss function for
        multi-class classification of ordinal data in deep learning",
        Pattern Recognition Letters 2018; tensorflow-addons
        `WeightedKappaLoss`.

    Examples:
        >>> y_true = [[0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]]
        >>> y_pred = [[0.1, 0.2, 0.6, 0.1], [0.1, 0.5, 0.3, 0.1], [0.8, 0.05, 0.05, 0.1], [0.01, 0.09, 0.1, 0.8]]
        >>> round(float(weighted_kappa_loss(y_true, y_pred, num_classes=4)), 4)
        -1.1612
    """
    y_true, y_pred = prepare_inputs(y_true, y_pred)
    if len(y_pred.shape) != 2 or y_pred.shape[-1] is None:
        raise ValueError(
            "`y_pred` must hold class probabilities of shape (batch_size, num_classes). "
            f"Received: y_pred.shape={tuple(y_pred.shape)}"
        )
    size = int(y_pred.shape[-1])
    num_classes = size if num_classes is None else num_classes
    if size != num_classes:
        raise ValueError(
            f"`y_pred` must have num_classes={num_classes} columns. Received: y_pred.shape={tuple(y_pred.shape)}"
        )
    classes = ops.arange(num_classes, dtype=y_pred.dtype)
    if len(y_true.shape) == 2 and y_true.shape[-1] == num_classes:
        one_hot = y_true
    else:
        labels = _rank_labels(y_true, tuple(y_pred.shape), num_classes)
        # a comparison, not ops.one_hot: an out-of-range class gives a zero row on every backend
        one_hot = ops.cast(ops.equal(ops.expand_dims(labels, -1), classes), y_pred.dtype)
    return _kappa_value(one_hot, y_pred, sample_weight, weightage, epsilon, from_logits)


@compiled_on_jax
def _kappa_value(
    y_true: Tensor, y_pred: Tensor, sample_weight: Optional[Tensor], weightage: str, epsilon: float, from_logits: bool
) -> Tensor:
    """The weighted kappa loss from one-hot `y_true` and checked options."""
    one_hot = y_true
    classes = ops.arange(y_pred.shape[-1], dtype=y_pred.dtype)
    if from_logits:
        y_pred = ops.softmax(y_pred, axis=-1)
    if sample_weight is None:
        w = ops.ones_like(y_pred[:, 0])
    else:
        w = ops.cast(ops.convert_to_tensor(sample_weight), y_pred.dtype)
        w = ops.broadcast_to(ops.reshape(w, (-1,)) if len(w.shape) > 1 else w, ops.shape(y_pred[:, 0]))
    w_col = ops.expand_dims(w, -1)
    true_class = ops.sum(one_hot * classes, axis=-1, keepdims=True)  # TFA's y_true @ [0, 1, ..., C - 1]
    gap = true_class - classes
    weight = ops.abs(gap) if weightage == "linear" else ops.square(gap)
    numerator = ops.sum(w_col * weight * y_pred)
    class_gap = ops.expand_dims(classes, -1) - classes
    weight_matrix = ops.abs(class_gap) if weightage == "linear" else ops.square(class_gap)
    label_dist = ops.sum(w_col * one_hot, axis=0)
    pred_dist = ops.sum(w_col * y_pred, axis=0)
    total_weight = ops.sum(w)
    has_weight = total_weight > 0
    expected = ops.sum(ops.expand_dims(label_dist, -1) * weight_matrix * pred_dist)
    denominator = expected / ops.where(has_weight, total_weight, ops.ones_like(total_weight))
    positive = denominator > 0
    ratio = ops.where(positive, numerator / ops.where(positive, denominator, ops.ones_like(denominator)), 0.0)
    loss = ops.log(ratio + epsilon)
    return ops.where(has_weight, loss, ops.zeros_like(loss))


@register
class WeightedKappaLoss(BatchLoss):
    r"""Weighted kappa loss: the log of one minus a soft, weighted Cohen's
    kappa over the batch (tensorflow-addons' `WeightedKappaLoss`).

    `y_pred` holds class probabilities `(B, num_classes)` (a softmax output,
    or logits with `from_logits=True`); `y_true` one-hot labels or integer
    classes `(B,)` / `(B, 1)`. One value per batch; `sample_weight` weights
    the rows of every sum and replaces the batch size by the weight sum.
    The value is `log(O / E + epsilon) = log(1 - kappa + epsilon)`, with `O`
    the weighted disagreement of predictions and labels and `E` its
    expectation under independent marginals; see `weighted_kappa_loss`.

    Args:
        num_classes: Number of ordered classes, `>= 2`.
        weightage: `"quadratic"` or `"linear"` disagreement weights.
        epsilon: `> 0`, added inside the log.
        from_logits: Apply a softmax to `y_pred` first.
        cross_replica: `"gather"` (default): under `tf.distribute`, the loss of
            the global batch, all-gathered from the replicas; `"local"`: each
            replica's own slice (see `keras_lossplus.losses.BatchLoss`).
        reduction, name, dtype: As for every `keras.losses.Loss` (the value
            is one scalar per batch for every `reduction`).

    Reference:
        de la Torre, Puig & Valls, "Weighted kappa loss function for
        multi-class classification of ordinal data in deep learning",
        Pattern Recognition Letters 2018.

    Examples:
        >>> loss = WeightedKappaLoss(num_classes=4)
        >>> y_true = [[0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]]
        >>> y_pred = [[0.1, 0.2, 0.6, 0.1], [0.1, 0.5, 0.3, 0.1], [0.8, 0.05, 0.05, 0.1], [0.01, 0.09, 0.1, 0.8]]
        >>> round(float(loss(y_true, y_pred)), 4)
        -1.1612
    """

    fn = staticmethod(weighted_kappa_loss)

    def __init__(
        self,
        num_classes: int,
        weightage: str = "quadratic",
        epsilon: float = 1e-6,
        from_logits: bool = False,
        reduction: Optional[str] = "sum_over_batch_size",
        name: Optional[str] = "weighted_kappa_loss",
        dtype: Any = None,
        cross_replica: str = "gather",
    ) -> None:
        if num_classes is None:  # the function may infer it from `y_pred` (its spec lets None through); the class may not
            class_count("num_classes", num_classes)  # raises, naming the argument
        super().__init__(
            reduction=reduction, name=name, dtype=dtype, cross_replica=cross_replica, num_classes=num_classes,
            weightage=weightage, epsilon=epsilon, from_logits=from_logits,
        )
