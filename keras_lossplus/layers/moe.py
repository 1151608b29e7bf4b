"""Penalty layers for large models: the output z-loss (PaLM) and the
mixture-of-experts router penalties (Switch Transformer / GShard load
balancing, ST-MoE router z-loss).

```python
logits = klp.layers.ZLossPenalty(1e-4)(logits)                 # (batch, seq, vocab)
router_logits = klp.layers.LoadBalancingPenalty(8, top_k=2)(router_logits)
router_logits = klp.layers.RouterZLossPenalty(1e-3)(router_logits)
```

Each layer returns its input unchanged and adds its penalty with `add_loss`,
computed in float32 (also for float16 / bfloat16 logits), and is logged under
its name by `PenaltyLogging` / `log_penalties` like every penalty layer.
Tokens are every position but the last axis, which holds the logits.

A padding mask (`mask=`, shaped like the logits without their last axis; a
Keras mask, e.g. from `Embedding(mask_zero=True)`, arrives there on its own)
restricts every mean over tokens to the unmasked ones; its values weigh the
tokens (0 / 1 for a padding mask). A batch whose tokens are all masked
gives a penalty of 0 with a gradient of 0.

The pure functions `z_loss` and `load_balancing_loss` compute the same
values without the factor.
"""

from __future__ import annotations

from typing import Any

import keras  # noqa: F401  (the docstring examples use it)
import numpy as np
from keras import ops

from keras_lossplus.layers.base import (
    Factor,
    PenaltyLayer,
    as_float32,
    factor_variable,
    register,
    variable_value,
)
from keras_lossplus.losses.magnitude import bounded

Tensor = Any

_DIVERGED = "Logits this large have diverged; lower the learning rate or normalize the layer's input."
_TINY = 1e-9  # the floor of the mask's total (KerasHub's): an all-masked batch gives 0 / 1e-9 = 0


# ------------------------------------------------------------------ shared pieces


def _check_experts(num_experts: Any, top_k: Any) -> tuple:
    """`(num_experts, top_k)` as ints, or a `ValueError` naming the argument."""
    for name, value in (("num_experts", num_experts), ("top_k", top_k)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"Argument `{name}` must be an integer >= 1. Received: {name}={value!r}")
    if top_k > num_experts:
        raise ValueError(
            f"Argument `top_k` must be at most `num_experts` ({num_experts}): each token picks top_k distinct "
            f"experts. Received: top_k={top_k!r}"
        )
    return int(num_experts), int(top_k)


def _token_weights(logits: Tensor, mask: Tensor | None) -> Tensor | None:
    """The mask as one weight per token (flat, in the logits' dtype), or
    None; a `ValueError` naming `mask` when its shape is not the logits'
    shape without their last axis."""
    if mask is None:
        return None
    mask = ops.convert_to_tensor(mask)
    tokens, shape = tuple(logits.shape[:-1]), tuple(mask.shape)
    if len(shape) != len(tokens) or any(a is not None and b is not None and a != b for a, b in zip(shape, tokens)):
        raise ValueError(
            f"Argument `mask` must have the shape of the logits without their last axis, {tokens}. "
            f"Received: mask of shape {shape}"
        )
    return ops.reshape(ops.cast(mask, logits.dtype), (-1,))


def _token_mean(values: Tensor, weights: Tensor | None) -> Tensor:
    """The mean of the flat per-token `values`, weighted by `weights` (0
    when every weight is 0, with a gradient of 0)."""
    if weights is None:
        return ops.mean(values)
    return ops.sum(values * weights) / ops.maximum(ops.sum(weights), _TINY)


def _z_loss(logits: Tensor, mask: Tensor | None = None) -> Tensor:
    """The mean over tokens of `logsumexp(logits)^2`, unchecked: the one
    formula of `z_loss`, `ZLossPenalty` and `RouterZLossPenalty`."""
    weights = _token_weights(logits, mask)
    lse = ops.reshape(ops.logsumexp(logits, axis=-1), (-1,))
    return _token_mean(ops.square(lse), weights)


def _load_balancing(router_logits: Tensor, num_experts: int, top_k: int, mask: Tensor | None = None) -> Tensor:
    """KerasHub's `compute_load_balancing_loss`, unchecked, on logits of any rank."""
    weights = _token_weights(router_logits, mask)
    logits = ops.reshape(router_logits, (-1, num_experts))
    probs = ops.softmax(logits, axis=-1)
    # top-k of the logits: the ranking of the exact probabilities. KerasHub ranks the rounded probabilities,
    # which tie where the softmax underflows (experts ~100 below the best one both get 0 in float32)
    _, selected = ops.top_k(logits, k=top_k)
    dispatched = ops.sum(ops.one_hot(selected, num_experts, dtype=probs.dtype), axis=1) / float(top_k)  # (N, E)
    if weights is None:
        fraction, probability = ops.mean(dispatched, axis=0), ops.mean(probs, axis=0)
    else:
        total = ops.maximum(ops.sum(weights), _TINY)
        fraction = ops.sum(dispatched * weights[:, None], axis=0) / total
        probability = ops.sum(probs * weights[:, None], axis=0) / total
    return float(num_experts) * ops.sum(fraction * probability)


# ------------------------------------------------------------------ pure functions


def z_loss(logits: Tensor, mask: Tensor | None = None) -> Tensor:
    r"""The z-loss of logits (last axis): the mean over tokens of the squared
    log-partition function, without a factor.

    $$\frac{1}{N}\sum_{n} \Bigl(\log \sum_{v} e^{s_{n,v}}\Bigr)^2$$

    Computed in float32 for half-precision logits, with a stable
    log-sum-exp. `mask` (the logits' shape without the last axis) restricts
    the mean to the unmasked tokens; all masked gives 0.

    Args:
        logits: Logits `(..., V)`.
        mask: Optional token mask or weights `(...)`.

    Returns:
        A scalar.

    Reference:
        Chowdhery et al., "PaLM: Scaling Language Modeling with Pathways",
        2022, https://arxiv.org/abs/2204.02311 (section 5).

    Examples:
        >>> logits = keras.ops.zeros((2, 3, 4))  # log(4)^2 at every token
        >>> round(float(z_loss(logits)), 4)
        1.9218
    """
    x = bounded(as_float32(logits), "logits", "z_loss: ", _DIVERGED)
    return _z_loss(x, mask)


def load_balancing_loss(router_logits: Tensor, num_experts: int, top_k: int = 2,
                        mask: Tensor | None = None) -> Tensor:
    r"""The auxiliary load-balancing loss of a top-k mixture-of-experts
    router (Switch Transformer, GShard), without a factor: the value of
    KerasHub's `compute_load_balancing_loss` (Mixtral, Qwen-MoE).

    $$E \sum_{e=1}^{E} f_e\, P_e, \qquad
      f_e = \frac{1}{N k}\sum_n [e \in \operatorname{top}_k(p_n)], \quad
      P_e = \frac{1}{N}\sum_n p_{n,e}$$

    with `p_n = softmax(router_logits_n)`. It is 1 when the tokens spread
    evenly over the experts (for every `top_k`: the dispatch fractions are
    averaged over the `k` slots, as KerasHub does) and up to `E` when every
    token goes to the same experts. Only `P` carries a gradient (the
    top-k choice is piecewise constant).

    Args:
        router_logits: Router logits `(..., num_experts)`; every leading
            position is a token (KerasHub passes `(batch * seq, E)`).
        num_experts: The number of experts `E` (the last axis).
        top_k: Experts chosen per token, `1 <= top_k <= num_experts`.
        mask: Optional token mask or weights `(...)` (KerasHub's
            `attention_mask`, flattened): `f` and `P` are means over the
            unmasked tokens; all masked gives 0.

    Returns:
        A scalar.

    Reference:
        Fedus et al., "Switch Transformers", JMLR 2022,
        https://arxiv.org/abs/2101.03961 (eq. 4); Lepikhin et al., "GShard",
        2020; KerasHub `keras_hub/src/models/mixtral/mixtral_decoder.py`.

    Examples:
        >>> logits = keras.ops.convert_to_tensor([[4.0, 0.0], [0.0, 4.0]])
        >>> round(float(load_balancing_loss(logits, num_experts=2, top_k=1)), 4)
        1.0
    """
    num_experts, top_k = _check_experts(num_experts, top_k)
    x = as_float32(router_logits)
    if x.shape[-1] is not None and x.shape[-1] != num_experts:
        raise ValueError(
            f"Argument `num_experts` ({num_experts}) must equal the last axis of `router_logits`. "
            f"Received: router_logits of shape {tuple(x.shape)}"
        )
    return _load_balancing(x, num_experts, top_k, mask)


# ------------------------------------------------------------------ layers


class _MaskedLogitsPenalty(PenaltyLayer):
    """A penalty on logits with an optional token mask (`mask=` or the
    input's Keras mask), which it passes on unchanged."""

    def __init__(self, factor: Factor, training_only: bool = False, **kwargs: Any) -> None:
        super().__init__(training_only=training_only, **kwargs)
        self.factor = factor_variable(self, "factor", factor)
        self.supports_masking = True

    def call(self, inputs: Any, mask: Any | None = None, training: bool | None = None) -> Any:
        if mask is None:
            return super().call(inputs, training=training)
        # one float mask travels with the logits (gathered with them under tf.distribute)
        return super().call((inputs, ops.cast(mask, "float32")), training=training)

    def outputs(self, inputs: Any, training: bool | None) -> Any:
        return inputs[0] if isinstance(inputs, tuple) else inputs

    def penalty(self, inputs: Any) -> Tensor:
        logits, mask = inputs if isinstance(inputs, tuple) else (inputs, None)
        return self.factor * self.term(as_float32(logits), mask)

    def term(self, logits: Tensor, mask: Tensor | None) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def get_config(self) -> dict:
        return {**super().get_config(), "factor": variable_value(self.factor)}


class _ZLoss(_MaskedLogitsPenalty):
    """`factor * z_loss(inputs, mask)`, refusing logits whose square overflows."""

    def term(self, logits: Tensor, mask: Tensor | None) -> Tensor:
        return _z_loss(bounded(logits, "inputs", f"{type(self).__name__}: ", _DIVERGED), mask)


@register
class ZLossPenalty(_ZLoss):
    r"""PaLM's output z-loss: adds `factor` times the mean over tokens of
    `logsumexp(logits)^2`, which keeps the softmax's normaliser near 1
    (`log Z` near 0) and so stabilises large-model training; returns the
    logits unchanged.

    $$\mathcal{L} = \beta\,\frac{1}{N}\sum_n \Bigl(\log\sum_v e^{s_{n,v}}\Bigr)^2$$

    Place it on the output logits `(..., V)` (classes on the last axis;
    every leading position is a token, averaged). A padding mask (`mask=`,
    shaped `(...)`, or the logits' Keras mask) averages over the unmasked
    tokens only; an all-masked batch adds 0. Logits of magnitude beyond
    `1.7e13` (whose square overflows float32) are refused eagerly, naming
    `inputs`, and clipped under jit. Under data parallelism each replica's
    mean is averaged, as Keras averages its losses.

    Args:
        factor: `>= 0` (PaLM: `1e-4`), a number or a non-trainable scalar
            `keras.Variable`.
        training_only: Add the penalty only in training.

    Reference:
        Chowdhery et al., "PaLM: Scaling Language Modeling with Pathways",
        2022, https://arxiv.org/abs/2204.02311 (section 5, "z_loss").

    Examples:
        >>> layer = ZLossPenalty(factor=1.0)
        >>> logits = keras.ops.convert_to_tensor([[[0.0, 0.0], [1e4, 1e4]]])
        >>> _ = layer(logits, mask=keras.ops.convert_to_tensor([[True, False]]))
        >>> [round(float(v), 4) for v in layer.losses]  # log(2)^2, the masked token left out
        [0.4805]
    """

    def __init__(self, factor: Factor = 1e-4, training_only: bool = False, **kwargs: Any) -> None:
        super().__init__(factor, training_only=training_only, **kwargs)


@register
class RouterZLossPenalty(_ZLoss):
    r"""ST-MoE's router z-loss: adds `factor` times the mean over tokens of
    `logsumexp(router_logits)^2`, which keeps a mixture-of-experts router's
    logits small (round-off in the router's exponentials is a main cause of
    instability in sparse models); returns the router logits unchanged.

    $$\mathcal{L}_z = c_z\,\frac{1}{B}\sum_{i=1}^{B}
      \Bigl(\log\sum_{j=1}^{E} e^{x_{ij}}\Bigr)^2$$

    The formula is `ZLossPenalty`'s (one shared implementation) on router
    logits `(..., num_experts)`; the defaults are ST-MoE's. Masks as in
    `ZLossPenalty`.

    Args:
        factor: `>= 0` (`c_z`; ST-MoE: `1e-3`), a number or a non-trainable
            scalar `keras.Variable`.
        training_only: Add the penalty only in training.

    Reference:
        Zoph et al., "ST-MoE: Designing Stable and Transferable Sparse Expert
        Models", 2022, https://arxiv.org/abs/2202.08906 (eq. 5).

    Examples:
        >>> layer = RouterZLossPenalty(factor=1.0)
        >>> _ = layer(keras.ops.zeros((3, 4)))
        >>> [round(float(v), 4) for v in layer.losses]  # log(4)^2
        [1.9218]
    """

    def __init__(self, factor: Factor = 1e-3, training_only: bool = False, **kwargs: Any) -> None:
        super().__init__(factor, training_only=training_only, **kwargs)


@register
class LoadBalancingPenalty(_MaskedLogitsPenalty):
    r"""The Switch Transformer / GShard auxiliary load-balancing loss of a
    top-k mixture-of-experts router: adds `factor * load_balancing_loss(
    router_logits, num_experts, top_k, mask)`; returns the router logits
    unchanged.

    $$\mathcal{L} = \alpha\, E \sum_{e=1}^{E} f_e\, P_e$$

    with `f_e` the fraction of the tokens' `top_k` slots dispatched to
    expert `e` and `P_e` the mean router probability of `e` (see
    `load_balancing_loss`). The value equals KerasHub's
    `compute_load_balancing_loss(router_logits, num_experts, top_k,
    attention_mask)` (Mixtral, Qwen-MoE), the mask being its attention
    mask; KerasHub's Mixtral adds `router_aux_loss_coef *` that value
    (default 0.02) in training only, so `factor=router_aux_loss_coef,
    training_only=True` reproduces it. Use one layer per MoE layer (KerasHub
    adds one term per decoder block). The whole batch's `f` and `P` are
    used under data parallelism.

    Args:
        num_experts: The number of experts (the input's last axis), `>= 1`.
        top_k: Experts chosen per token, `1 <= top_k <= num_experts`.
        factor: `>= 0` (`alpha`; Switch Transformer: `1e-2`), a number or a
            non-trainable scalar `keras.Variable`.
        training_only: Add the penalty only in training.

    Reference:
        Fedus et al., "Switch Transformers: Scaling to Trillion Parameter
        Models with Simple and Efficient Sparsity", JMLR 2022,
        https://arxiv.org/abs/2101.03961 (eq. 4); Lepikhin et al., "GShard",
        2020, https://arxiv.org/abs/2006.16668.

    Examples:
        >>> layer = LoadBalancingPenalty(num_experts=2, top_k=1, factor=1.0)
        >>> logits = keras.ops.convert_to_tensor([[4.0, 0.0], [4.0, 0.0]])
        >>> _ = layer(logits)  # every token on expert 0: 2 * 1.0 * 0.982
        >>> [round(float(v), 4) for v in layer.losses]
        [1.964]
    """

    batch_reduction = "batch"  # f and P are means over the whole batch, multiplied

    def __init__(self, num_experts: int, top_k: int = 2, factor: Factor = 0.01, training_only: bool = False,
                 **kwargs: Any) -> None:
        num_experts, top_k = _check_experts(num_experts, top_k)
        super().__init__(factor, training_only=training_only, **kwargs)
        self.num_experts, self.top_k = num_experts, top_k

    def build(self, input_shape: Any) -> None:
        if input_shape[-1] is not None and input_shape[-1] != self.num_experts:
            raise ValueError(
                f"Argument `num_experts` ({self.num_experts}) must equal the last axis of the router logits. "
                f"Received: input_shape={tuple(input_shape)}"
            )

    def term(self, logits: Tensor, mask: Tensor | None) -> Tensor:
        return _load_balancing(logits, self.num_experts, self.top_k, mask)

    def get_config(self) -> dict:
        return {**super().get_config(), "num_experts": self.num_experts, "top_k": self.top_k}
