r"""Proxy-based metric-learning losses: Proxy-Anchor and ProxyNCA.

Both take integer labels `y_true` `(B,)` or `(B, 1)` and, as `y_pred`, the
`(B, num_classes)` output of the matching proxy layer
(`keras_lossplus.layers.ProxyAnchor`: cosine similarities;
`keras_lossplus.layers.ProxyNCA`: minus squared distances). The proxies
themselves are the layer's weights, so they are trained, saved and loaded
with the model.
"""

from __future__ import annotations

from typing import Any, Optional

from keras import ops

from keras_lossplus.losses.base import BatchLoss, LossPlus, register
from keras_lossplus.losses.metric_learning.inputs import embedding_inputs
from keras_lossplus.losses.options import Options, number
from keras_lossplus.ops import masked_logsumexp

Tensor = Any

__all__ = ["ProxyAnchorLoss", "ProxyNCALoss", "proxy_anchor_loss", "proxy_nca_loss"]


def _proxy_inputs(y_true: Any, y_pred: Any) -> tuple:
    """Labels `(B,)` and the `(B, C)` proxy matrix, and the `(B, C)` boolean
    mask of each sample's own proxy (all false for an out-of-range label)."""
    labels, y_pred = embedding_inputs(y_true, y_pred)
    # compared in the labels' dtype, not cast to int32 first: a NaN label (not detected under jit)
    # matches no proxy on every backend
    classes = ops.arange(y_pred.shape[-1], dtype=labels.dtype)
    own = ops.equal(ops.expand_dims(labels, 1), ops.expand_dims(classes, 0))
    return ops.cast(labels, "int32"), y_pred, own


# --------------------------------------------------------------------------- Proxy-Anchor


@Options(margin=number(), alpha=number(low=0.0, low_open=True))
def proxy_anchor_loss(
    y_true: Tensor,
    y_pred: Tensor,
    margin: float = 0.1,
    alpha: float = 32.0,
    sample_weight: Optional[Tensor] = None,
) -> Tensor:
    r"""Proxy-Anchor loss (Kim et al. 2020) from sample-to-proxy similarities.

    With $s_{ip}$ the similarity of sample $i$ to proxy $p$ (`y_pred`,
    usually the cosine from `keras_lossplus.layers.ProxyAnchor`), $P^+$ the
    proxies with at least one sample of their class in the batch and $C$ the
    number of proxies:

    $$\ell = \frac{1}{|P^+|}\sum_{p \in P^+}\log\Big(1 + \sum_{i: y_i = p} e^{-\alpha(s_{ip} - \delta)}\Big)
      + \frac{1}{C}\sum_{p}\log\Big(1 + \sum_{i: y_i \ne p} e^{\alpha(s_{ip} + \delta)}\Big)$$

    computed with masked log-sum-exp (finite for any `alpha` and any
    similarities). This is pytorch-metric-learning's `ProxyAnchorLoss`.

    `sample_weight` `w_i >= 0` multiplies sample $i$'s terms inside both
    sums ($e^{\dots} \to w_i e^{\dots}$): weight 2 counts a sample twice,
    weight 0 removes it (and a proxy whose only positives have weight 0
    leaves $P^+$). Without weights the result is the unweighted loss.

    Args:
        y_true: Integer labels `(B,)` or `(B, 1)`, in `[0, C)`.
        y_pred: Similarities `(B, C)`.
        margin: The margin `delta`.
        alpha: The scale `alpha`, `> 0`.
        sample_weight: Optional `(B,)` non-negative sample weights.

    Returns:
        A scalar (0, with gradient 0, for an empty or all-zero-weight batch).

    Reference:
        Kim et al., "Proxy Anchor Loss for Deep Metric Learning", CVPR 2020,
        https://arxiv.org/abs/2003.13911

    Examples:
        >>> sims = [[0.9, -0.2], [0.1, 0.8], [0.5, 0.3]]
        >>> round(float(proxy_anchor_loss([0, 1, 0], sims)), 4)
        9.6008
    """
    _, s, pos = _proxy_inputs(y_true, y_pred)
    neg = ops.logical_not(pos)
    log_w = ops.zeros_like(s)
    if sample_weight is not None:
        w = ops.reshape(ops.cast(ops.convert_to_tensor(sample_weight), s.dtype), (-1, 1))
        valid = w > 0
        pos = ops.logical_and(pos, valid)
        neg = ops.logical_and(neg, valid)
        log_w = log_w + ops.log(ops.where(valid, w, ops.ones_like(w)))

    def term(logits: Tensor, mask: Tensor) -> Tensor:  # log(1 + sum_mask exp(logits)) per proxy
        lse = masked_logsumexp(logits + log_w, mask, axis=0)
        return ops.where(ops.any(mask, axis=0), ops.softplus(lse), ops.zeros_like(lse))

    pos_term = term(-alpha * (s - margin), pos)
    neg_term = term(alpha * (s + margin), neg)
    with_pos = ops.sum(ops.cast(ops.any(pos, axis=0), s.dtype))
    num_proxies = ops.cast(ops.shape(s)[-1], s.dtype)
    return ops.divide_no_nan(ops.sum(pos_term), with_pos) + ops.sum(neg_term) / num_proxies


@register
class ProxyAnchorLoss(BatchLoss):
    """Proxy-Anchor loss over a batch of sample-to-proxy similarities.

    Use with the `keras_lossplus.layers.ProxyAnchor` layer, whose output
    (cosine similarities `(B, num_classes)`) is `y_pred`; see
    `proxy_anchor_loss` for the formula and what `sample_weight` means.
    One value per batch, the same for every `reduction`.

    Args:
        margin, alpha: See `proxy_anchor_loss` (pytorch-metric-learning's
            defaults, 0.1 and 32).
        cross_replica: `"gather"` (default): under `tf.distribute`, the loss of
            the global batch, all-gathered from the replicas; `"local"`: each
            replica's own slice (see `keras_lossplus.losses.BatchLoss`).
        reduction, name, dtype: As for every `keras.losses.Loss`.

    Reference:
        Kim et al., "Proxy Anchor Loss for Deep Metric Learning", CVPR 2020,
        https://arxiv.org/abs/2003.13911

    Examples:
        >>> loss = ProxyAnchorLoss()
        >>> round(float(loss([0, 1, 0], [[0.9, -0.2], [0.1, 0.8], [0.5, 0.3]])), 4)
        9.6008
    """

    fn = staticmethod(proxy_anchor_loss)

    def __init__(
        self,
        margin: float = 0.1,
        alpha: float = 32.0,
        reduction: Optional[str] = "sum_over_batch_size",
        name: Optional[str] = "proxy_anchor_loss",
        dtype: Any = None,
        cross_replica: str = "gather",
    ) -> None:
        super().__init__(
            reduction=reduction, name=name, dtype=dtype, cross_replica=cross_replica,
            margin=margin, alpha=alpha,
        )


# --------------------------------------------------------------------------- ProxyNCA


@Options(softmax_scale=number(low=0.0, low_open=True))
def proxy_nca_loss(
    y_true: Tensor,
    y_pred: Tensor,
    softmax_scale: float = 1.0,
    sample_weight: Optional[Tensor] = None,
) -> Tensor:
    r"""ProxyNCA loss (Movshovitz-Attias et al. 2017), per sample.

    With $z_{ip}$ the `y_pred` entry of sample $i$ and proxy $p$ (minus the
    squared distance, from `keras_lossplus.layers.ProxyNCA`) and
    $\tau$ = `softmax_scale`:

    $$\ell_i = -\log\frac{e^{\tau z_{iy_i}}}{\sum_p e^{\tau z_{ip}}}$$

    the cross-entropy of the softmax over all proxies (the paper's and
    pytorch-metric-learning's `ProxyNCALoss(softmax_scale=...)`, computed with
    a stable log-softmax). A sample whose label is out of range gets 0.

    Args:
        y_true: Integer labels `(B,)` or `(B, 1)`.
        y_pred: `(B, C)` scores of each sample against each proxy.
        softmax_scale: The scale `tau` of the softmax, `> 0`.
        sample_weight: Unused here; the class applies it as Keras does.

    Returns:
        Per-sample losses `(B,)`.

    Reference:
        Movshovitz-Attias et al., "No Fuss Distance Metric Learning using
        Proxies", ICCV 2017, https://arxiv.org/abs/1703.07464

    Examples:
        >>> z = [[0.0, -2.0], [-1.0, -1.0]]
        >>> [round(float(v), 4) for v in proxy_nca_loss([0, 1], z)]
        [0.1269, 0.6931]
    """
    _, z, own = _proxy_inputs(y_true, y_pred)
    # log_softmax(tau * z), shifted by the row maximum before the scale:
    # XLA's CPU compiler fuses `tau * z - max(tau * z)` into one FMA whose
    # error at |tau * z| ~ 1e30 (1e23) underflows every exp of the row
    # (log 0 = -inf); `tau * (z - max z)` is exactly 0 at the maximum.
    shifted = softmax_scale * (z - ops.stop_gradient(ops.max(z, axis=-1, keepdims=True)))
    log_p = shifted - ops.logsumexp(shifted, axis=-1, keepdims=True)
    losses = -ops.sum(ops.where(own, log_p, ops.zeros_like(log_p)), axis=-1)
    if sample_weight is not None:
        losses = losses * ops.reshape(ops.cast(ops.convert_to_tensor(sample_weight), losses.dtype), (-1,))
    return losses


@register
class ProxyNCALoss(LossPlus):
    """ProxyNCA loss: cross-entropy of each sample over all proxies.

    Use with the `keras_lossplus.layers.ProxyNCA` layer, whose output is
    `y_pred`; see `proxy_nca_loss`. Per-sample values, so `reduction`,
    `sample_weight` and masks behave as in every Keras loss.

    Args:
        softmax_scale: See `proxy_nca_loss`.
        reduction, name, dtype: As for every `keras.losses.Loss`.

    Reference:
        Movshovitz-Attias et al., "No Fuss Distance Metric Learning using
        Proxies", ICCV 2017, https://arxiv.org/abs/1703.07464

    Examples:
        >>> loss = ProxyNCALoss()
        >>> round(float(loss([0, 1], [[0.0, -2.0], [-1.0, -1.0]])), 4)
        0.41
    """

    fn = staticmethod(proxy_nca_loss)

    def __init__(
        self,
        softmax_scale: float = 1.0,
        reduction: Optional[str] = "sum_over_batch_size",
        name: Optional[str] = "proxy_nca_loss",
        dtype: Any = None,
    ) -> None:
        super().__init__(reduction=reduction, name=name, dtype=dtype, softmax_scale=softmax_scale)
