"""The pieces the sigmoid and softmax classification losses share (and the
segmentation losses' pixel-wise cross-entropy): logit-space binary
cross-entropy, softmax log-probabilities, label smoothing and Keras' clip."""

from __future__ import annotations

from typing import Any

from keras import ops

Tensor = Any


EPSILON = 1e-7  # keras.backend.epsilon(): the clip Keras' losses apply to probabilities


def sigmoid_terms(y_true: Tensor, y_pred: Tensor, from_logits: bool) -> tuple:
    """Element-wise binary cross-entropy, `1 - p_t` and `p` for sigmoid
    outputs.

    From logits this costs one `exp` and one `log1p`: with `a = |x|` and
    `e = exp(-a)`, `bce = max(x, 0) - x * y + log1p(e)`,
    `sigmoid(x) = (1 or e) / (1 + e)` and `sigmoid(-x) = (e or 1) / (1 + e)`,
    so `1 - p_t = y sigmoid(-x) + (1 - y) sigmoid(x)` has no cancellation.
    `|x|` and `max(x, 0)` are selections on the one condition `x >= 0`, so
    that their derivatives at `x = 0` come from the same side and add up to
    the true ones (`d bce / dx = 1/2 - y`, `d sigmoid / dx = 1/4`); separate
    `relu` and `abs` subgradients at 0 do not.
    From probabilities it follows Keras: `p` clipped to `[1e-7, 1 - 1e-7]` in
    the logarithms.
    """
    if from_logits:
        nonneg = y_pred >= 0
        e = ops.exp(-ops.where(nonneg, y_pred, -y_pred))
        bce = ops.where(nonneg, y_pred, ops.zeros_like(y_pred)) - y_pred * y_true + ops.log1p(e)
        # one division shared by both sigmoids, after the selects of their
        # numerators (selecting between divided values was measured 2x slower
        # under TF's XLA)
        r = 1.0 / (1.0 + e)
        ones = ops.ones_like(e)
        p = ops.where(nonneg, ones, e) * r
        q = ops.where(nonneg, e, ones) * r
        return bce, y_true * q + (1.0 - y_true) * p, p
    p = y_pred
    clipped = ops.clip(p, EPSILON, 1.0 - EPSILON)
    bce = -(y_true * ops.log(clipped) + (1.0 - y_true) * ops.log(1.0 - clipped))
    # 1 - p_t = y (1 - p) + (1 - y) p, never negative for y and p in [0, 1].
    one_minus_pt = ops.maximum(y_true * (1.0 - p) + (1.0 - y_true) * p, 0.0)
    return bce, one_minus_pt, p


def softmax_terms(y_pred: Tensor, from_logits: bool) -> tuple:
    """`(log p, p)` over the last axis; probabilities are renormalised and
    clipped as Keras' categorical losses do, with the sum floored at `1e-7`
    (a row of zeros, where Keras' `0 / 0` gives NaN, reads as `p = 1e-7`
    everywhere: finite, with a zero gradient, as in the clip's flat part)."""
    if from_logits:
        # One exp shared by log p and p (log_softmax followed by exp costs a
        # second pass forward and backward; measured 2x slower under jax.jit).
        # The shift by the row max is constant for the gradient.
        z = y_pred - ops.stop_gradient(ops.max(y_pred, axis=-1, keepdims=True))
        s = ops.exp(z)
        total = ops.sum(s, axis=-1, keepdims=True)
        return z - ops.log(total), s / total
    p = y_pred / ops.maximum(ops.sum(y_pred, axis=-1, keepdims=True), EPSILON)
    p = ops.clip(p, EPSILON, 1.0 - EPSILON)
    return ops.log(p), p


def smooth_labels(y_true: Tensor, label_smoothing: float, num_classes: float) -> Tensor:
    if not label_smoothing:
        return y_true
    return y_true * (1.0 - label_smoothing) + label_smoothing / num_classes
