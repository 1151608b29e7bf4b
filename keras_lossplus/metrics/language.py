r"""Language-model metrics that need no logits tensor: `TokenAccuracy` and
`Perplexity`.

Both take `y_pred` as `keras_lossplus.losses.LinearCrossEntropy` does,
`(hidden, kernel)` or `(hidden, kernel, bias)` (or a dict with those keys):
the accuracy from the chunked `linear_argmax`, the perplexity from the
chunked `linear_cross_entropy`, so that neither builds the
`(tokens, vocabulary)` logits. They also take what a model may already
have: predicted token ids (int) or logits `(..., V)` for the accuracy,
per-token losses (`y_true`'s shape) or logits for the perplexity.

Each keeps a weighted sum and the sum of the weights over the tokens
(`sample_weight`, e.g. a padding mask, times the `ignore_class` mask):

    accuracy   = sum(w * [argmax == y]) / sum(w)
    perplexity = exp(sum(w * nll) / sum(w))

(0 and 1 before any token counted). Note that Keras' default loss
reduction (`sum_over_batch_size`) divides by every position, padding
included, so `exp(loss)` is not the perplexity of a padded batch; this is.
"""

from __future__ import annotations

from typing import Any, Optional

import keras
from keras import ops

from keras_lossplus.losses.language import linear_argmax, linear_cross_entropy
from keras_lossplus.losses.language.linear_cross_entropy import class_id, token_weights
from keras_lossplus.losses.options import Options, chunk_size as chunk_size_check, flag, number, optional

Tensor = Any

__all__ = ["Perplexity", "TokenAccuracy"]


def register(cls: type) -> type:
    return keras.saving.register_keras_serializable(package="keras_lossplus")(cls)


_OPTIONS = Options(
    ignore_class=class_id,
    logit_soft_cap=optional(number(low=0.0, low_open=True)),
    chunk_size=chunk_size_check,
    transpose_kernel=flag,
)


def _linear_inputs(y_pred: Any) -> Optional[tuple]:
    """`(hidden, kernel, bias)` when `y_pred` is such a tuple or dict, else None."""
    if isinstance(y_pred, dict):
        if not {"hidden", "kernel"} <= set(y_pred) or set(y_pred) - {"hidden", "kernel", "bias"}:
            raise ValueError(f"`y_pred` as a dict takes the keys 'hidden', 'kernel' and optionally 'bias'. "
                             f"Received keys: {sorted(y_pred)}")
        return y_pred["hidden"], y_pred["kernel"], y_pred.get("bias")
    if isinstance(y_pred, (tuple, list)):
        if len(y_pred) not in (2, 3):
            raise ValueError(f"`y_pred` as a tuple must be (hidden, kernel) or (hidden, kernel, bias). "
                             f"Received {len(y_pred)} items.")
        return tuple(y_pred) + (None,) * (3 - len(y_pred))
    return None


class _TokenMean(keras.metrics.Metric):
    """A weighted mean over tokens: `total` and `count` variables."""

    def __init__(self, ignore_class: Optional[int] = None, logit_soft_cap: Optional[float] = None,
                 chunk_size: Optional[int] = None, transpose_kernel: bool = False,
                 name: Optional[str] = None, dtype: Any = None) -> None:
        super().__init__(name=name, dtype=dtype)
        self._options = _OPTIONS.check(dict(ignore_class=ignore_class, logit_soft_cap=logit_soft_cap,
                                            chunk_size=chunk_size, transpose_kernel=transpose_kernel))
        self.total = self.add_variable(shape=(), initializer="zeros", dtype="float32", name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", dtype="float32", name="count")

    def _weights(self, y_true: Tensor, sample_weight: Any) -> Tensor:
        return token_weights(y_true, sample_weight, self._options["ignore_class"])

    def _values(self, y_true: Tensor, y_pred: Any) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        """Count a batch: integer token ids `y_true`, `y_pred` as in the
        module docstring, `sample_weight` `(batch,)` or `y_true`'s shape."""
        y_true = ops.convert_to_tensor(y_true)
        if "float" in keras.backend.standardize_dtype(y_true.dtype):
            y_true = ops.cast(y_true, "int32")
        values = ops.cast(ops.stop_gradient(self._values(y_true, y_pred)), "float32")
        w = self._weights(y_true, sample_weight)
        self.update_from_sums(ops.sum(values * w), ops.sum(w))

    def update_from_sums(self, weighted_sum: Any, weight: Any) -> None:
        """Add a batch given as `sum(w * value)` and `sum(w)` (a model that
        computes the per-token sum anyway, e.g. `FusedCausalLM`, passes it)."""
        self.total.assign_add(ops.cast(weighted_sum, "float32"))
        self.count.assign_add(ops.cast(weight, "float32"))

    def _mean(self) -> Tensor:
        return ops.divide_no_nan(self.total, self.count)

    def get_config(self) -> dict:
        return {**super().get_config(), **self._options}


@register
class TokenAccuracy(_TokenMean):
    r"""Next-token accuracy without the logits tensor: the weighted share
    of tokens whose highest-scoring id is the target,
    $\sum_t w_t [\arg\max_j z_{tj} = y_t] / \sum_t w_t$.

    `y_pred`: `(hidden, kernel)` / `(hidden, kernel, bias)` (the argmax
    of `hidden @ kernel + bias` over token chunks, `linear_argmax`),
    integer predicted ids (`y_true`'s shape), or logits `(..., V)`.
    Tokens equal to `ignore_class` and of weight 0 are left out.

    Args:
        ignore_class: A token id left out (e.g. the padding id), or None.
        logit_soft_cap: Accepted for symmetry with `Perplexity` (a soft cap
            is monotonic: it does not change the argmax).
        chunk_size: Tokens per chunk of the argmax, or None.
        transpose_kernel: Whether the kernel is `(V, D)` (a tied embedding).
        name, dtype: As for every Keras metric.

    Examples:
        >>> import numpy as np
        >>> h = np.array([[1.0, 0.0], [0.0, 1.0]], "float32")
        >>> w = np.array([[1.0, -1.0, 0.0], [0.0, 1.0, 2.0]], "float32")  # argmax: 0, 2
        >>> m = TokenAccuracy()
        >>> m.update_state(np.array([0, 1]), (h, w))
        >>> float(m.result())
        0.5

    Reference:
        Keras' `SparseCategoricalAccuracy` on the logits
        (https://keras.io/api/metrics/accuracy_metrics/); Wijmans et al.,
        2024 (https://arxiv.org/abs/2411.09009) for the logit-free head.
    """

    def __init__(self, ignore_class: Optional[int] = None, logit_soft_cap: Optional[float] = None,
                 chunk_size: Optional[int] = None, transpose_kernel: bool = False,
                 name: str = "token_accuracy", dtype: Any = None) -> None:
        super().__init__(ignore_class, logit_soft_cap, chunk_size, transpose_kernel, name=name, dtype=dtype)

    def _values(self, y_true: Tensor, y_pred: Any) -> Tensor:
        linear = _linear_inputs(y_pred)
        if linear is not None:
            hidden, kernel, bias = linear
            ids = linear_argmax(hidden, kernel, bias, chunk_size=self._options["chunk_size"],
                                transpose_kernel=self._options["transpose_kernel"])
        else:
            y_pred = ops.convert_to_tensor(y_pred)
            if len(y_pred.shape) == len(y_true.shape) + 1:
                ids = ops.argmax(y_pred, axis=-1)
            elif "int" in keras.backend.standardize_dtype(y_pred.dtype):
                ids = y_pred
            else:
                raise ValueError(
                    "`y_pred` must be (hidden, kernel[, bias]), integer predicted ids of y_true's shape, or "
                    f"logits (..., V). Received: y_pred.shape={tuple(y_pred.shape)}, dtype={y_pred.dtype}"
                )
        return ops.equal(ops.cast(ids, "int32"), ops.cast(y_true, "int32"))

    def result(self) -> Tensor:
        return self._mean()


@register
class Perplexity(_TokenMean):
    r"""Perplexity without the logits tensor:
    $\exp\big(\sum_t w_t\,\mathrm{nll}_t / \sum_t w_t\big)$, the
    exponential of the weighted mean next-token negative log-likelihood.

    `y_pred`: `(hidden, kernel)` / `(hidden, kernel, bias)` (the NLL from
    `linear_cross_entropy` over token chunks, soft-capped with
    `logit_soft_cap`), per-token NLL values (float, `y_true`'s shape), or
    logits `(..., V)` (used as given: cap them first). Tokens equal to
    `ignore_class` and of weight 0 are left out. No label smoothing or
    z-loss enters: it is the plain likelihood.

    Args:
        ignore_class: A token id left out (e.g. the padding id), or None.
        logit_soft_cap: The soft cap of the logits built from
            `(hidden, kernel)`, or None.
        chunk_size: Tokens per chunk, or None.
        transpose_kernel: Whether the kernel is `(V, D)` (a tied embedding).
        name, dtype: As for every Keras metric.

    Examples:
        >>> import numpy as np
        >>> m = Perplexity()
        >>> m.update_state(np.array([[1, 2]]), np.log(np.array([[2.0, 8.0]], "float32")))  # per-token NLL
        >>> round(float(m.result()), 4)
        4.0

    Reference:
        Jelinek et al., "Perplexity - a measure of the difficulty of speech
        recognition tasks", 1977; KerasHub's `Perplexity` (from logits),
        https://keras.io/keras_hub/.
    """

    def __init__(self, ignore_class: Optional[int] = None, logit_soft_cap: Optional[float] = None,
                 chunk_size: Optional[int] = None, transpose_kernel: bool = False,
                 name: str = "perplexity", dtype: Any = None) -> None:
        super().__init__(ignore_class, logit_soft_cap, chunk_size, transpose_kernel, name=name, dtype=dtype)

    def _values(self, y_true: Tensor, y_pred: Any) -> Tensor:
        linear = _linear_inputs(y_pred)
        o = self._options
        ignore = o["ignore_class"]
        if linear is not None:
            hidden, kernel, bias = linear
            return linear_cross_entropy(y_true, hidden, kernel, bias, ignore_class=ignore,
                                        logit_soft_cap=o["logit_soft_cap"], chunk_size=o["chunk_size"],
                                        transpose_kernel=o["transpose_kernel"])
        y_pred = ops.convert_to_tensor(y_pred)
        if len(y_pred.shape) == len(y_true.shape):
            return y_pred
        if len(y_pred.shape) != len(y_true.shape) + 1:
            raise ValueError(
                "`y_pred` must be (hidden, kernel[, bias]), per-token losses of y_true's shape, or logits "
                f"(..., V). Received: y_pred.shape={tuple(y_pred.shape)}, y_true.shape={tuple(y_true.shape)}"
            )
        logits = ops.cast(y_pred, "float32")
        labels = y_true if ignore is None else ops.where(ops.equal(y_true, ignore), 0, y_true)
        picked = ops.take_along_axis(logits, ops.expand_dims(ops.cast(labels, "int32"), -1), axis=-1)[..., 0]
        return ops.logsumexp(logits, axis=-1) - picked

    def result(self) -> Tensor:
        return ops.exp(self._mean())
