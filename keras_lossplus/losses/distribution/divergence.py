"""The Jensen-Shannon divergence between two probability vectors per sample."""

from __future__ import annotations

from typing import Any, Optional

import keras  # noqa: F401  (the docstring examples use it)
from keras import ops

from keras_lossplus.backend import compiled_on_jax
from keras_lossplus.losses.base import LossPlus, prepare_inputs, register
from keras_lossplus.losses.distribution.common import finite_or_nan, targets_checked
from keras_lossplus.losses.options import Options, flag

Tensor = Any

_EPSILON = 1e-7  # keras.backend.epsilon(): the clip of keras.losses.kl_divergence


def _clip_probability(x: Tensor) -> Tensor:
    """`clip(x, 1e-7, 1)` whose gradient is 1 on the closed interval, its
    bounds included: at a probability of exactly 1 (a one-hot target, a
    saturated softmax) the derivative is the one from inside `[0, 1]`, the
    only side there is. (`ops.clip` is `minimum(maximum(...))` on JAX,
    whose gradient at a tie is split in half.)"""
    x = ops.where(x < _EPSILON, ops.full_like(x, _EPSILON), x)
    return ops.where(x > 1.0, ops.ones_like(x), x)


@Options(from_logits=flag)
@targets_checked
@compiled_on_jax
def jensen_shannon_divergence(y_true: Tensor, y_pred: Tensor, from_logits: bool = False) -> Tensor:
    r"""Jensen-Shannon divergence between two probability vectors per sample.

    $$\mathrm{JS}(p, q) = \tfrac12 \mathrm{KL}(p \,\|\, m) + \tfrac12 \mathrm{KL}(q \,\|\, m),
      \quad m = \tfrac12 (p + q)$$

    over the last axis, natural logarithm, so `0 <= JS <= log 2`. `p` is
    `y_true` and `q` is `y_pred` (after a softmax when `from_logits=True`).
    Like `keras.losses.kl_divergence`, both are clipped to `[1e-7, 1]`
    first, so the value and the gradient stay finite at zero probabilities;
    the vectors are not renormalized (feed distributions). The gradient at
    the bounds is the one from inside `[0, 1]`: the full derivative at a
    probability of exactly 1 and 0 below `1e-7` (where the clip holds the
    value), on every backend. Unlike KL it is symmetric and bounded, and
    finite when the supports differ. It equals
    `scipy.spatial.distance.jensenshannon(p, q) ** 2` (scipy returns the
    square root, the Jensen-Shannon distance).

    A NaN or infinite target raises a `ValueError` naming `y_true` when the
    values are concrete; inside a compiled function that sample's loss is
    NaN.

    Args:
        y_true: Target distributions, `(..., K)`.
        y_pred: Predicted distributions (or logits), `(..., K)`.
        from_logits: Whether `y_pred` holds logits.

    Returns:
        The divergence per sample, `y_pred.shape[:-1]`.

    Reference:
        Lin, "Divergence measures based on the Shannon entropy",
        IEEE Transactions on Information Theory 1991.

    Examples:
        >>> js = jensen_shannon_divergence([[1.0, 0.0], [0.5, 0.5]], [[0.0, 1.0], [0.5, 0.5]])
        >>> print(keras.ops.convert_to_numpy(js).round(4))
        [0.6931 0.    ]
    """
    y_true, y_pred = prepare_inputs(y_true, y_pred)
    if from_logits:
        y_pred = ops.softmax(y_pred, axis=-1)
    p, q = _clip_probability(y_true), _clip_probability(y_pred)
    log_m = ops.log(0.5 * (p + q))
    value = 0.5 * ops.sum(p * (ops.log(p) - log_m) + q * (ops.log(q) - log_m), axis=-1)
    return finite_or_nan(value, y_true, per_sample=True)


@register
class JensenShannonDivergence(LossPlus):
    """Jensen-Shannon divergence `0.5 KL(p || m) + 0.5 KL(q || m)`,
    `m = (p + q) / 2`, between the target and predicted distributions.

    See `jensen_shannon_divergence`. A symmetric, bounded (`<= log 2`)
    alternative to `keras.losses.KLDivergence`.

    Args:
        from_logits: Whether `y_pred` holds logits (a softmax is applied).
        reduction, name, dtype: As for every `keras.losses.Loss`.

    Reference:
        Lin, "Divergence measures based on the Shannon entropy",
        IEEE Transactions on Information Theory 1991.

    Examples:
        >>> loss = JensenShannonDivergence()
        >>> round(float(loss([[1.0, 0.0], [0.5, 0.5]], [[0.0, 1.0], [0.5, 0.5]])), 4)
        0.3466
    """

    fn = staticmethod(jensen_shannon_divergence)

    def __init__(
        self,
        from_logits: bool = False,
        reduction: Optional[str] = "sum_over_batch_size",
        name: Optional[str] = "jensen_shannon_divergence",
        dtype: Any = None,
    ) -> None:
        super().__init__(reduction=reduction, name=name, dtype=dtype, from_logits=from_logits)
