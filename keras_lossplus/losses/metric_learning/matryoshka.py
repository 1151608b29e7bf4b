r"""Matryoshka representation learning: any embedding loss over nested prefixes
of the embedding, so that its first `d` dimensions are a good embedding on
their own, as sentence-transformers' `MatryoshkaLoss`."""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import keras
from keras import ops

from keras_lossplus.losses.base import BatchLoss, LossPlus, batch_weights, get_keras_mask, register
from keras_lossplus.losses.metric_learning.distances import unit_vectors
from keras_lossplus.losses.options import Options, check_float_predictions, flag, float_list, optional
from keras_lossplus.ops import compute_dtype

Tensor = Any


def _check_loss(name: str, loss: Any) -> Any:
    if not callable(loss):
        raise ValueError(
            f"Argument `{name}` must be an embedding loss: a `keras.losses.Loss` such as "
            f"`MultipleNegativesRankingLoss()`, or a function (y_true, y_pred) -> values. Received: {name}={loss!r}"
        )
    return loss


def _check_dims(name: str, dims: Any) -> list:
    values = list(dims) if isinstance(dims, (list, tuple)) else None
    if not values or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in values):
        raise ValueError(
            f"Argument `{name}` must be a non-empty list of positive integers (embedding sizes, each at most "
            f"the embedding dimension), e.g. [64, 32, 16]. Received: {name}={dims!r}"
        )
    return [int(d) for d in values]


def _check_together(options: dict) -> dict:
    dims, weights = options.get("matryoshka_dims"), options.get("matryoshka_weights")
    if weights is not None and dims is not None and len(weights) != len(dims):
        raise ValueError(
            "Argument `matryoshka_weights` must hold one weight per entry of `matryoshka_dims` "
            f"({len(dims)}). Received: matryoshka_weights={weights!r}"
        )
    return options


def _prefixes(y_true: Any, y_pred: Tensor, dims: Sequence[int], normalize: bool) -> list:
    """`[(y_true_d, y_pred[..., :d])]` per size `d`; targets of `y_pred`'s
    shape (embeddings to distil) are cut the same way."""
    full = y_pred.shape[-1]
    if full is not None and max(dims) > full:
        raise ValueError(
            "Every entry of `matryoshka_dims` must be at most the embedding dimension "
            f"y_pred.shape[-1]={full}. Received: matryoshka_dims={list(dims)}"
        )
    cut_targets = y_true is not None and tuple(y_true.shape) == tuple(y_pred.shape)  # static shapes
    out = []
    for d in dims:
        piece = y_pred[..., :d]
        out.append((y_true[..., :d] if cut_targets else y_true, unit_vectors(piece) if normalize else piece))
    return out


@Options(
    joint=_check_together, loss=_check_loss, matryoshka_dims=_check_dims,
    matryoshka_weights=optional(float_list(low=0.0)), normalize=flag,
)
def matryoshka_loss(
    y_true: Tensor,
    y_pred: Tensor,
    loss: Callable[..., Tensor],
    matryoshka_dims: Sequence[int] = (64,),
    matryoshka_weights: Optional[Sequence[float]] = None,
    normalize: bool = True,
    sample_weight: Optional[Tensor] = None,
) -> Tensor:
    r"""Matryoshka loss (Kusupati et al. 2022): `loss` over nested prefixes of
    the embeddings,

    $$\mathcal{L} = \sum_k w_k\, \mathcal{L}_{\text{base}}\big(y, \hat y_{[..., :d_k]}\big)$$

    as sentence-transformers' `MatryoshkaLoss`: each prefix is L2-normalized
    first (`normalize=True`, as sentence-transformers does; a no-op for
    cosine losses), targets of `y_pred`'s own shape (embeddings, for a
    distillation loss) are cut to the same prefix, and the weights default
    to 1. Unlike sentence-transformers there is no `n_dims_per_step`
    (a random subset of the sizes at each step): every size is used at
    every step.

    Args:
        y_true: What `loss` takes (an array: a batch-level loss converts it
            even where it ignores it).
        y_pred: Embeddings `(B, D)` or stacked `(B, m, D)`: the prefixes
            are taken on the last axis.
        loss: The embedding loss: a batch-level loss of keras_lossplus
            (`MultipleNegativesRankingLoss()`, `TripletLoss()`, ...), called
            with `sample_weight` and returning a scalar; any other
            `keras.losses.Loss` or a function `(y_true, y_pred) -> values`,
            whose unreduced per-sample values are summed over the sizes.
        matryoshka_dims: The prefix sizes `d_k`, positive, each at most `D`
            (e.g. `[768, 512, 256, 128, 64]`; include `D` itself to train the
            full embedding too).
        matryoshka_weights: `w_k >= 0`, one per size; default all 1.
        normalize: L2-normalize each prefix before `loss`.
        sample_weight: Optional `(B,)` weights, passed to a batch-level
            `loss`; a per-sample loss's values are returned unweighted (the
            class `MatryoshkaLoss` weighs and reduces them as Keras does).

    Returns:
        A scalar for a batch-level `loss`, per-sample values otherwise.

    Reference:
        Kusupati et al., "Matryoshka Representation Learning", NeurIPS 2022,
        https://arxiv.org/abs/2205.13147; sentence-transformers'
        `losses.MatryoshkaLoss`.

    Examples:
        >>> from keras_lossplus.losses import MultipleNegativesRankingLoss
        >>> pairs = [[[1.0, 0.0, 1.0], [0.8, 0.6, 0.0]], [[0.0, 1.0, 0.0], [0.6, 0.8, 1.0]]]
        >>> value = matryoshka_loss([0, 0], pairs, MultipleNegativesRankingLoss(scale=5.0), matryoshka_dims=[3, 2])
        >>> round(float(value), 4)
        1.4253
    """
    check_float_predictions(y_pred)
    y_pred = ops.convert_to_tensor(y_pred)
    y_pred = ops.cast(y_pred, compute_dtype(y_pred.dtype))
    if y_true is not None:
        y_true = ops.convert_to_tensor(y_true)
    weights = [1.0] * len(matryoshka_dims) if matryoshka_weights is None else matryoshka_weights
    batch_level = isinstance(loss, BatchLoss)
    if sample_weight is not None and not batch_level:
        raise ValueError(
            "`sample_weight` is only passed to a batch-level `loss` (a `BatchLoss` of keras_lossplus); the "
            "function returns a per-sample loss's values unweighted: use `MatryoshkaLoss` to weigh them. "
            f"Received: loss={loss!r}"
        )
    total = None
    for w, (target, piece) in zip(weights, _prefixes(y_true, y_pred, matryoshka_dims, normalize)):
        if batch_level:
            value = loss(target, piece, sample_weight=sample_weight)
        elif isinstance(loss, keras.losses.Loss):
            value = loss.call(ops.cast(target, piece.dtype), piece)
        else:
            value = loss(target, piece)
        value = w * ops.cast(value, y_pred.dtype)
        total = value if total is None else total + value
    return total


@register
class MatryoshkaLoss(LossPlus):
    """Matryoshka wrapper: an embedding loss over nested prefixes of the
    embedding, weighted and summed.

    See `matryoshka_loss`. With a batch-level `loss` (the in-batch losses of
    keras_lossplus) the value is one scalar per batch: the wrapped loss gets
    the `sample_weight` and any Keras mask of each prefix, and its
    `cross_replica` rule, for every `reduction`. With a per-sample loss the
    per-sample values are summed over the sizes, then reduced and weighted by
    this loss's `reduction` (the wrapped loss's own is not used).

    Args:
        loss: A `keras.losses.Loss` (saved with the model as a nested
            config), e.g. `MultipleNegativesRankingLoss()`.
        matryoshka_dims, matryoshka_weights, normalize: See
            `matryoshka_loss`.
        reduction, name, dtype: As for every `keras.losses.Loss`.

    Reference:
        Kusupati et al., "Matryoshka Representation Learning", NeurIPS 2022,
        https://arxiv.org/abs/2205.13147.

    Examples:
        >>> from keras_lossplus.losses import MultipleNegativesRankingLoss
        >>> loss = MatryoshkaLoss(MultipleNegativesRankingLoss(scale=5.0), matryoshka_dims=[3, 2])
        >>> pairs = [[[1.0, 0.0, 1.0], [0.8, 0.6, 0.0]], [[0.0, 1.0, 0.0], [0.6, 0.8, 1.0]]]
        >>> round(float(loss([0, 0], pairs)), 4)
        1.4253
    """

    fn = staticmethod(matryoshka_loss)

    def __init__(
        self,
        loss: keras.losses.Loss,
        matryoshka_dims: Sequence[int],
        matryoshka_weights: Optional[Sequence[float]] = None,
        normalize: bool = True,
        reduction: Optional[str] = "sum_over_batch_size",
        name: Optional[str] = "matryoshka_loss",
        dtype: Any = None,
    ) -> None:
        if isinstance(loss, dict):
            loss = keras.saving.deserialize_keras_object(loss)
        _check_loss("loss", loss)
        if not isinstance(loss, keras.losses.Loss):  # the class saves it: a function will not do
            raise ValueError(
                "Argument `loss` must be a `keras.losses.Loss` instance such as "
                f"`MultipleNegativesRankingLoss()`. Received: loss={loss!r}"
            )
        super().__init__(
            reduction=reduction, name=name, dtype=dtype, matryoshka_dims=matryoshka_dims,
            matryoshka_weights=matryoshka_weights, normalize=normalize,
        )
        self.loss = loss

    def __call__(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> Tensor:
        if not isinstance(self.loss, BatchLoss):
            return super().__call__(y_true, y_pred, sample_weight=sample_weight)
        check_float_predictions(y_pred)
        mask = get_keras_mask(y_pred)  # slicing drops it: it reaches the wrapped loss as a weight
        with keras.name_scope(self.name):
            y_pred = ops.convert_to_tensor(y_pred, dtype=self.dtype)
            weights = batch_weights(sample_weight, mask, y_pred)
            value = self._fn(y_true, y_pred, self.loss, sample_weight=weights, **self._options)
            return ops.cast(value, self.dtype)

    def call(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        return self._fn(y_true, y_pred, self.loss, **self._options)

    def get_config(self) -> dict:
        config = super().get_config()
        config["loss"] = keras.saving.serialize_keras_object(self.loss)
        return config

