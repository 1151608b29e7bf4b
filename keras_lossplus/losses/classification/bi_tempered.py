"""Bi-tempered logistic loss (Amid et al., 2019), robust to label noise.

The tempered softmax's normaliser has no closed form: it is found with a
fixed number of fixed-point iterations (`t2 > 1`) or bisection steps
(`t2 < 1`), unrolled in Python so that it compiles with XLA. Its gradient is
the exact implicit one (the "escort" distribution), as in the authors' code,
rather than a derivative through the unrolled iterations.
"""

from __future__ import annotations

from typing import Any, Optional

import keras  # noqa: F401  (the docstring examples use it)
from keras import ops

from keras_lossplus.losses.base import LossPlus, prepare_inputs, register
from keras_lossplus.losses.options import Options, number, positive_int
from keras_lossplus.ops import safe_pow

Tensor = Any


def _log_t(u: Tensor, t: float) -> Tensor:
    """Tempered logarithm `(u ** (1 - t) - 1) / (1 - t)` for `u > 0`."""
    if t == 1.0:
        return ops.log(u)
    return (safe_pow(u, 1.0 - t) - 1.0) / (1.0 - t)


def _exp_t(u: Tensor, t: float) -> Tensor:
    """Tempered exponential `relu(1 + (1 - t) u) ** (1 / (1 - t))`."""
    if t == 1.0:
        return ops.exp(u)
    return safe_pow(ops.relu(1.0 + (1.0 - t) * u), 1.0 / (1.0 - t))


def _normalization_value(activations: Tensor, t: float, num_iters: int) -> Tensor:
    """The value of the normaliser `lambda` with `sum(exp_t(a - lambda)) = 1`."""
    mu = ops.max(activations, axis=-1, keepdims=True)
    a0 = activations - mu
    if t == 1.0:
        return ops.log(ops.sum(ops.exp(a0), axis=-1, keepdims=True)) + mu
    if t > 1.0:
        a = a0
        for _ in range(num_iters):
            partition = ops.sum(_exp_t(a, t), axis=-1, keepdims=True)
            a = a0 * ops.power(partition, 1.0 - t)
        partition = ops.sum(_exp_t(a, t), axis=-1, keepdims=True)
        return -_log_t(1.0 / partition, t) + mu
    # t < 1: bisection on lambda, the support of exp_t being finite.
    effective_dim = ops.sum(ops.cast(a0 > -1.0 / (1.0 - t), a0.dtype), axis=-1, keepdims=True)
    lower = ops.zeros_like(mu)
    upper = -_log_t(1.0 / effective_dim, t)
    for _ in range(num_iters):
        mid = (upper + lower) / 2.0
        total = ops.sum(_exp_t(a0 - mid, t), axis=-1, keepdims=True)
        below = total < 1.0
        lower = ops.where(below, lower, mid)
        upper = ops.where(below, mid, upper)
    return (upper + lower) / 2.0 + mu


def _shifted_activations(activations: Tensor, t: float, num_iters: int) -> Tensor:
    """`a - lambda(a)`, whose value uses the iterated normaliser and whose
    gradient through `lambda` is the exact implicit one: `d lambda / d a` is
    the escort distribution `p**t / sum(p**t)`, carried by a term whose value
    is 0."""
    value = ops.stop_gradient(_normalization_value(activations, t, num_iters))
    probs = ops.stop_gradient(_exp_t(activations - value, t))
    escort = safe_pow(probs, t)
    escort = escort / ops.sum(escort, axis=-1, keepdims=True)
    moving = ops.sum(escort * (activations - ops.stop_gradient(activations)), axis=-1, keepdims=True)
    return activations - (value + moving)


def _log_exp_t(u: Tensor, t: float) -> Tensor:
    """`log(exp_t(u, t))` without forming `exp_t` (exact for very negative
    `u`); clamped to `log(1e-30)` where `exp_t` is 0 (`t < 1`)."""
    if t == 1.0:
        return u
    base = ops.maximum(1.0 + (1.0 - t) * u, 1e-30 ** (1.0 - t))
    return ops.log(base) / (1.0 - t)


def tempered_softmax(activations: Tensor, t: float = 1.0, num_iters: int = 5) -> Tensor:
    """Tempered softmax `exp_t(a - lambda(a), t)` over the last axis.

    `t = 1` is the softmax; `t > 1` has heavier tails; `t < 1` has finite
    support. The gradient through the normaliser `lambda` is the exact
    implicit one.

    Reference:
        Amid et al., "Robust Bi-Tempered Logistic Loss Based on Bregman
        Divergences", NeurIPS 2019, https://arxiv.org/abs/1906.03361

    Examples:
        >>> p = tempered_softmax(keras.ops.convert_to_tensor([[1.0, 2.0, 3.0]]), t=1.5)
        >>> round(float(keras.ops.sum(p)), 4)
        1.0
    """
    activations = ops.convert_to_tensor(activations)
    return _exp_t(_shifted_activations(activations, t, num_iters), t)


@Options(
    t1=number(low=0.0, high=1.0),
    t2=number(low=0.0, low_open=True),
    label_smoothing=number(low=0.0, high=1.0, high_open=True),
    num_iters=positive_int,
)
def bi_tempered_logistic_loss(
    y_true: Tensor,
    y_pred: Tensor,
    t1: float = 0.8,
    t2: float = 1.2,
    label_smoothing: float = 0.0,
    num_iters: int = 5,
) -> Tensor:
    r"""Bi-tempered logistic loss (Amid et al., 2019), per sample.

    With the tempered softmax `p = exp_t2(a - lambda(a))` and the tempered
    logarithm `log_t(u) = (u^(1-t) - 1) / (1 - t)`:

    $$\ell = \sum_c \Bigl[y_c\bigl(\log_{t_1}(y_c + 10^{-10}) -
      \log_{t_1} p_c\bigr) - \tfrac{1}{2 - t_1}\bigl(y_c^{2 - t_1} -
      p_c^{2 - t_1}\bigr)\Bigr]$$

    `t1 < 1` bounds the loss (robust to mislabelled examples far from the
    boundary); `t2 > 1` gives the softmax heavier tails (robust to noise near
    it). `t1 = t2 = 1` is the softmax cross-entropy (minus the label entropy).

    Args:
        y_true: Target distributions (one-hot or soft), shape `(..., C)`.
        y_pred: Activations (logits), shape `(..., C)`.
        t1: Temperature of the logarithm, in `[0, 1]`.
        t2: Temperature of the exponential, `> 0`; values below 1 use
            bisection (give more `num_iters`, e.g. 20).
        label_smoothing: In `[0, 1)`, the authors' form: the true class keeps
            `1 - label_smoothing` and the rest is spread over the other
            `C - 1` classes (Keras' form spreads over all `C`).
        num_iters: Iterations of the normaliser's solver.

    Returns:
        The loss per sample, shape `y_pred.shape[:-1]`.

    Reference:
        Amid et al., "Robust Bi-Tempered Logistic Loss Based on Bregman
        Divergences", NeurIPS 2019, https://arxiv.org/abs/1906.03361

    Examples:
        >>> y_true = [[0.0, 1.0, 0.0]]
        >>> logits = [[1.0, 2.0, 0.5]]
        >>> print(keras.ops.convert_to_numpy(bi_tempered_logistic_loss(y_true, logits, t1=1.0, t2=1.0)).round(4))
        [0.4644]
    """
    y_true, y_pred = prepare_inputs(y_true, y_pred)
    if label_smoothing > 0.0:
        num_classes = float(y_pred.shape[-1])
        y_true = (1.0 - num_classes / (num_classes - 1.0) * label_smoothing) * y_true + (
            label_smoothing / (num_classes - 1.0)
        )
    shifted = _shifted_activations(y_pred, t2, num_iters)
    probs = _exp_t(shifted, t2)
    if t1 == 1.0:
        log_probs = _log_exp_t(shifted, t2)
        log_labels = ops.log(y_true + 1e-10)
    else:
        log_probs = _log_t(probs, t1)
        log_labels = _log_t(y_true + 1e-10, t1)
    first = (log_labels - log_probs) * y_true
    second = (safe_pow(y_true, 2.0 - t1) - safe_pow(probs, 2.0 - t1)) / (2.0 - t1)
    return ops.sum(first - second, axis=-1)


@register
class BiTemperedLogisticLoss(LossPlus):
    """Bi-tempered logistic loss (Amid et al., 2019): a drop-in replacement
    for softmax cross-entropy that is robust to label noise.

    See `bi_tempered_logistic_loss`. `y_pred` holds activations (logits).

    Args:
        t1: Temperature of the logarithm in `[0, 1]` (`< 1` bounds the loss).
        t2: Temperature of the exponential, `> 0` (`> 1` heavy tails).
        label_smoothing: In `[0, 1)`, the authors' form.
        num_iters: Iterations of the normaliser's solver (5 is the authors'
            default for `t2 > 1`; use more for `t2 < 1`).
        reduction, name, dtype: As for every `keras.losses.Loss`.

    Reference:
        Amid et al., "Robust Bi-Tempered Logistic Loss Based on Bregman
        Divergences", NeurIPS 2019, https://arxiv.org/abs/1906.03361

    Examples:
        >>> loss = BiTemperedLogisticLoss(t1=0.8, t2=1.2)
        >>> round(float(loss([[0.0, 1.0, 0.0]], [[1.0, 2.0, 0.5]])), 4)
        0.3824
    """

    fn = staticmethod(bi_tempered_logistic_loss)

    def __init__(
        self,
        t1: float = 0.8,
        t2: float = 1.2,
        label_smoothing: float = 0.0,
        num_iters: int = 5,
        reduction: Optional[str] = "sum_over_batch_size",
        name: Optional[str] = "bi_tempered_logistic_loss",
        dtype: Any = None,
    ) -> None:
        super().__init__(
            reduction=reduction,
            name=name,
            dtype=dtype,
            t1=t1, t2=t2, label_smoothing=label_smoothing, num_iters=num_iters,
        )
