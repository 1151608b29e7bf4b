"""The `Miner` objects the triplet loss takes as `mining=`, the names it
takes as shorthands for them, and the one resolver (`resolve_miner`)."""

from __future__ import annotations

from typing import Any

import keras

from keras_lossplus.losses.metric_learning.miners import (
    all_triplets,
    hard_triplets,
    semihard_triplets,
)
from keras_lossplus.losses.metric_learning.reducers import (
    AvgNonZeroReducer,
    MeanReducer,
    Reducer,
)
from keras_lossplus.losses.metric_learning.rows import Rows
from keras_lossplus.losses.options import Component, component_or_choice

Tensor = Any


def register_miner(cls: type) -> type:
    return keras.saving.register_keras_serializable(package="keras_lossplus")(cls)


class Miner(Component):
    """Base of the triplet miners.

    A subclass overrides `mine`, which sees one block of anchors against the
    batch and returns, per anchor, the sum of its mined triplets' losses, the
    number of triplets (all of them, or with `nonzero=True` those with a
    positive loss) and the (stop-gradient) coefficients of that loss on the
    distances: the loss then gets its exact value and gradient from them
    (`keras_lossplus.losses.metric_learning.miners`). Register the subclass
    with `keras.saving.register_keras_serializable` and return its
    constructor arguments from `get_config`.
    """

    kernel = None
    """The name of the backend's own kernel for this exact class
    (`keras_lossplus.backend.triplet_block`), set by the built-in miners
    only: a subclass runs its own `mine`."""

    def mine(self, rows: Rows, labels: Tensor, d: Tensor, margin: float, soft: bool, nonzero: bool) -> tuple:
        """`(value (c,), count (c,), coef (c, B))` for the block `rows` and its
        stop-gradient distances `d` `(c, B)`; `soft`: the soft margin
        `softplus(d_ap - d_an)` instead of `max(d_ap - d_an + margin, 0)`."""
        raise NotImplementedError(f"{type(self).__name__} must override `mine`.")

    def default_reducer(self, soft: bool) -> Reducer:
        """The reducer used when the loss is given none."""
        return MeanReducer()

    def __call__(self, rows: Rows, labels: Tensor, d: Tensor, margin: float, soft: bool, nonzero: bool) -> tuple:
        return self.mine(rows, labels, d, margin, soft, nonzero)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


@register_miner
class SemiHardMiner(Miner):
    """FaceNet's semi-hard negatives (`mining="semihard"`): every
    anchor-positive pair with the closest negative farther than the positive,
    else the farthest negative (tensorflow-addons' `TripletSemiHardLoss`);
    reduced by default over every pair (`MeanReducer`).

    Examples:
        >>> import keras_lossplus as klp
        >>> loss = klp.losses.TripletLoss(mining=SemiHardMiner())
        >>> round(float(loss([0, 0, 1, 1], [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [2.0, 0.0]])), 4)
        0.2929
    """

    kernel = "semihard"

    def mine(self, rows, labels, d, margin, soft, nonzero):
        return semihard_triplets(rows, labels, d, margin, soft, nonzero)


@register_miner
class HardMiner(Miner):
    """Batch-hard mining (`mining="hard"`): each anchor's farthest positive and
    closest negative (tensorflow-addons' `TripletHardLoss`); the mean over
    anchors by default.

    Examples:
        >>> import keras_lossplus as klp
        >>> loss = klp.losses.TripletLoss(mining=HardMiner())
        >>> round(float(loss([0, 0, 1, 1], [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [2.0, 0.0]])), 4)
        0.6464
    """

    def mine(self, rows, labels, d, margin, soft, nonzero):
        return hard_triplets(rows, labels, d, margin, soft, nonzero)


@register_miner
class AllTripletsMiner(Miner):
    """Every valid triplet (`mining="all"`, batch-all); by default the mean
    over the triplets with a positive loss (`AvgNonZeroReducer`, as
    pytorch-metric-learning's `TripletMarginLoss`), over all of them with the
    soft margin.

    Examples:
        >>> import keras_lossplus as klp
        >>> loss = klp.losses.TripletLoss(mining=AllTripletsMiner())
        >>> round(float(loss([0, 0, 1, 1], [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [2.0, 0.0]])), 4)
        0.7929
    """

    kernel = "all"

    def mine(self, rows, labels, d, margin, soft, nonzero):
        return all_triplets(rows, labels, d, margin, soft, nonzero)

    def default_reducer(self, soft: bool) -> Reducer:
        return MeanReducer() if soft else AvgNonZeroReducer()


_BY_NAME = {"semihard": SemiHardMiner(), "hard": HardMiner(), "all": AllTripletsMiner()}


def resolve_miner(value: Any) -> Miner:
    """The `Miner` a `mining=` option stands for: the object itself or the
    one a name is a shorthand for (`"semihard"`, `"hard"`, `"all"`)."""
    return value if isinstance(value, Miner) else _BY_NAME[value]


def mining_option(*names: str) -> Any:
    """The check of a `mining=` option: one of `names`, a `Miner` or its saved config."""
    return component_or_choice(Miner, names)
