"""Poly-1 loss (Leng et al. 2022)."""

from __future__ import annotations

from typing import Any, Optional

import keras  # noqa: F401  (the docstring examples use it)
from keras import ops

from keras_lossplus.losses.base import LossPlus, prepare_inputs, register
from keras_lossplus.losses.classification.terms import softmax_terms
from keras_lossplus.losses.options import Options, flag, number

Tensor = Any


@Options(epsilon=number(low=-1.0), from_logits=flag)
def poly_loss(y_true: Tensor, y_pred: Tensor, epsilon: float = 1.0, from_logits: bool = False) -> Tensor:
    r"""Poly-1 loss (Leng et al., 2022): cross-entropy plus `epsilon` times
    the first polynomial term.

    $$\ell = -\sum_c y_c \log p_c + \epsilon \sum_c y_c\,(1 - p_c)$$

    For one-hot `y_true` the second term is the paper's `epsilon (1 - p_t)`;
    for soft targets it is `epsilon (sum_c y_c - sum_c y_c p_c)`, as optax
    computes it. From logits it equals
    `optax.losses.poly_loss_cross_entropy(y_pred, y_true, epsilon=epsilon)`.
    From probabilities `y_pred` is renormalised and clipped to
    `[1e-7, 1 - 1e-7]` as in Keras' `categorical_crossentropy`, with the
    row's sum floored at `1e-7`: a row of exact zeros (Keras: NaN) gives the
    clipped value `-log(1e-7) + epsilon (1 - 1e-7)` per unit of target, with
    a zero gradient.

    Args:
        y_true: Target distributions (one-hot or soft), shape `(..., C)`.
        y_pred: Probabilities (default, as for Keras' cross-entropies), or
            logits with `from_logits=True` (the paper's and optax's form).
        epsilon: Coefficient of `(1 - p_t)`; the paper recommends 1 to 2 for
            classification and -1 for detection. Must be `>= -1`, below
            which the loss is no longer bounded below.
        from_logits: Whether `y_pred` holds logits.

    Returns:
        The loss per sample, shape `y_pred.shape[:-1]`.

    Reference:
        Leng et al., "PolyLoss: A Polynomial Expansion Perspective of
        Classification Loss Functions", ICLR 2022,
        https://arxiv.org/abs/2204.12511

    Examples:
        >>> y_true = [[0.0, 1.0, 0.0]]
        >>> logits = [[1.0, 2.0, 0.5]]
        >>> print(keras.ops.convert_to_numpy(poly_loss(y_true, logits, epsilon=1.0, from_logits=True)).round(4))
        [0.8358]
    """
    y_true, y_pred = prepare_inputs(y_true, y_pred)
    log_p, p = softmax_terms(y_pred, from_logits)
    ce = -ops.sum(y_true * log_p, axis=-1)
    return ce + epsilon * ops.sum(y_true * (1.0 - p), axis=-1)


@register
class PolyLoss(LossPlus):
    """Poly-1 loss (Leng et al., 2022) for softmax classification.

    See `poly_loss`. With `epsilon=0` it is
    `keras.losses.CategoricalCrossentropy`; from logits it equals
    `optax.losses.poly_loss_cross_entropy`.

    Args:
        epsilon: Coefficient of the first polynomial term `(1 - p_t)`, `>= -1`.
        from_logits: Whether `y_pred` holds logits (default `False`, as for
            every Keras loss; the paper and optax write it on logits).
        reduction, name, dtype: As for every `keras.losses.Loss`.

    Reference:
        Leng et al., "PolyLoss: A Polynomial Expansion Perspective of
        Classification Loss Functions", ICLR 2022,
        https://arxiv.org/abs/2204.12511

    Examples:
        >>> loss = PolyLoss(epsilon=1.0, from_logits=True)
        >>> round(float(loss([[0.0, 1.0, 0.0]], [[1.0, 2.0, 0.5]])), 4)
        0.8358
    """

    fn = staticmethod(poly_loss)

    def __init__(
        self,
        epsilon: float = 1.0,
        from_logits: bool = False,
        reduction: Optional[str] = "sum_over_batch_size",
        name: Optional[str] = "poly_loss",
        dtype: Any = None,
    ) -> None:
        super().__init__(reduction=reduction, name=name, dtype=dtype, epsilon=epsilon, from_logits=from_logits)
