"""Distance-weighted negative sampling (Wu et al. 2017, "Sampling Matters"),
as pytorch-metric-learning's `DistanceWeightedMiner`."""

from __future__ import annotations

from typing import Any, Optional

import keras
from keras import ops

from keras_lossplus.losses.metric_learning.miners import one_negative_per_positive
from keras_lossplus.losses.metric_learning.mining import Miner, register_miner
from keras_lossplus.losses.metric_learning.reducers import AvgNonZeroReducer, Reducer
from keras_lossplus.losses.options import check_number
from keras_lossplus.ops import largest_finite

Tensor = Any


def sampling_weights(d: Tensor, neg: Tensor, dim: int, cutoff: float, nonzero_loss_cutoff: float) -> Tensor:
    r"""Unnormalized sampling weights `(c, B)` of the negatives: the inverse
    of the density of distances between points uniform on the unit sphere
    of `dim` dimensions,

    $$w \propto q(d)^{-1},\quad q(d) \propto d^{n-2} (1 - d^2 / 4)^{(n-3)/2},\quad d \leftarrow \max(d, \text{cutoff})$$

    0 for same-class pairs, for `d >= nonzero_loss_cutoff` and where the
    density is not defined (`d >= 2`); every negative equally where a row
    has no positive weight (pytorch-metric-learning's fallback)."""
    mat = ops.maximum(d, cutoff)
    inner = 1.0 - 0.25 * ops.square(mat)
    ok = ops.logical_and(inner > 0, mat > 0)
    log_w = (2.0 - dim) * ops.log(ops.where(ok, mat, 1.0)) - ((dim - 3.0) / 2.0) * ops.log(ops.where(ok, inner, 1.0))
    log_w = ops.where(neg, log_w, ops.zeros_like(log_w))  # as the peer: masked to 0, then the max taken
    top = ops.max(ops.where(ok, log_w, ops.full_like(log_w, -largest_finite(log_w.dtype))))
    keep = ops.logical_and(ops.logical_and(ok, neg), mat < nonzero_loss_cutoff)
    w = ops.where(keep, ops.exp(log_w - top), ops.zeros_like(log_w))
    none = ops.sum(w, axis=1, keepdims=True) <= 0
    return ops.where(ops.logical_and(none, neg), ops.ones_like(w), w)


@register_miner
class DistanceWeightedMiner(Miner):
    r"""Distance-weighted sampling of the negatives (Wu et al. 2017), as
    pytorch-metric-learning's `DistanceWeightedMiner`.

    Every anchor-positive pair gets one negative drawn with probability
    proportional to `min(lambda, q(d_an)^{-1})` (see `sampling_weights`): the
    inverse of the density of distances on the unit sphere, so that the
    negatives are spread over all distances instead of crowding near
    `sqrt(2)`. Meant, like the paper and the peer, for L2-normalized
    embeddings and the Euclidean distance (`TripletLoss(normalize=True)`).
    The triplets' losses are averaged by default over those with a positive
    loss (`AvgNonZeroReducer`, pytorch-metric-learning's default).

    The draws are `keras.random.uniform` from a `keras.random.SeedGenerator`
    the miner owns (seeded by `seed`): inverse-CDF sampling, one uniform per
    anchor-positive pair, `O(B^2)` work per positive. Saving keeps `seed`,
    not the generator's state: a loaded loss draws from the start of its
    seed's sequence again. On JAX the generator's state advances in eager
    calls; inside a compiled `fit` step the loss is not a layer the model
    tracks, so its state does not advance there (the draws still differ as
    the batch does). On TensorFlow and PyTorch it advances at every call.

    Args:
        cutoff: Distances below it count as `cutoff` (the paper's 0.5).
        nonzero_loss_cutoff: Negatives at this distance or farther are never
            drawn (the paper's 1.4).
        seed: An integer seed, or `None` for a random one.

    Reference:
        Wu, Manmatha, Smola & Krähenbühl, "Sampling Matters in Deep
        Embedding Learning", ICCV 2017; pytorch-metric-learning
        `DistanceWeightedMiner`.

    Examples:
        >>> import keras_lossplus as klp
        >>> loss = klp.losses.TripletLoss(margin=0.2, normalize=True, mining=DistanceWeightedMiner(seed=0))
        >>> value = float(loss([0, 0, 1, 1], [[1.0, 0.0], [0.8, 0.6], [0.6, 0.8], [0.0, 1.0]]))
        >>> value >= 0.0
        True
    """

    __hash__ = None  # stateful: never cached as a static argument of a compiled function

    def __init__(self, cutoff: float = 0.5, nonzero_loss_cutoff: float = 1.4, seed: Optional[int] = None) -> None:
        self.cutoff = check_number("cutoff", cutoff, low=0.0)
        self.nonzero_loss_cutoff = check_number("nonzero_loss_cutoff", nonzero_loss_cutoff, low=0.0, low_open=True)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError(f"Argument `seed` must be None or an integer. Received: seed={seed!r}")
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def get_config(self) -> dict:
        return {"cutoff": self.cutoff, "nonzero_loss_cutoff": self.nonzero_loss_cutoff, "seed": self.seed}

    def default_reducer(self, soft: bool) -> Reducer:
        return AvgNonZeroReducer()

    def mine(self, rows, labels, d, margin, soft, nonzero):
        d = ops.stop_gradient(d)
        dim = rows.embeddings.shape[-1]
        w = sampling_weights(d, rows.neg, float(dim), self.cutoff, self.nonzero_loss_cutoff)
        cumulative = ops.cumsum(w, axis=1)
        total = cumulative[:, -1:]
        uniform = keras.random.uniform(ops.shape(d), dtype=d.dtype, seed=self.seed_generator)
        last = ops.shape(d)[1] - 1

        def choose(p, d_ap):
            u = ops.take_along_axis(uniform, ops.expand_dims(p, 1), axis=1) * total
            below = ops.sum(ops.cast(cumulative <= u, "int32"), axis=1)
            return ops.minimum(below, last)

        return one_negative_per_positive(rows, labels, d, margin, soft, nonzero, choose)
