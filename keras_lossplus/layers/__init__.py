"""Layers of keras_lossplus: penalty layers that add a term to the loss with
`add_loss` and return their input (among them `CrossBatchMemory`, an
in-batch metric-learning loss against a queue of past embeddings).

Their values are logged by the model mix-in `keras_lossplus.PenaltyLogging`
or by `keras_lossplus.log_penalties(model)`; weight schedules for them are in
`keras_lossplus.schedules`."""

from keras_lossplus.layers.base import PenaltyLayer
from keras_lossplus.layers.center import CenterPenalty
from keras_lossplus.layers.logging import penalty_layers
from keras_lossplus.layers.memory import CrossBatchMemory
from keras_lossplus.layers.moe import (
    LoadBalancingPenalty,
    RouterZLossPenalty,
    ZLossPenalty,
    load_balancing_loss,
    z_loss,
)
from keras_lossplus.layers.penalties import (
    DecorrelationPenalty,
    ElasticNetPenalty,
    EntropyPenalty,
    KLSparsityPenalty,
    L1Penalty,
    L2Penalty,
    OrthogonalityPenalty,
    VarianceCovariancePenalty,
)
from keras_lossplus.layers.sampling import GaussianSampling, gaussian_kl

from keras_lossplus.layers.heads import ArcFace, CosFace, ProxyAnchor, ProxyNCA, SubCenterArcFace
from keras_lossplus.layers.language_model import LanguageModelHead

__all__ = [
    "ArcFace",
    "CosFace",
    "ProxyAnchor",
    "ProxyNCA",
    "SubCenterArcFace",
    "CenterPenalty",
    "CrossBatchMemory",
    "DecorrelationPenalty",
    "ElasticNetPenalty",
    "EntropyPenalty",
    "GaussianSampling",
    "KLSparsityPenalty",
    "LanguageModelHead",
    "L1Penalty",
    "L2Penalty",
    "LoadBalancingPenalty",
    "OrthogonalityPenalty",
    "PenaltyLayer",
    "RouterZLossPenalty",
    "VarianceCovariancePenalty",
    "ZLossPenalty",
    "gaussian_kl",
    "load_balancing_loss",
    "penalty_layers",
    "z_loss",
]

# Output layers of the ordinal losses (`keras_lossplus.losses.ordinal`).
from keras_lossplus.layers import ordinal as _ordinal  # noqa: E402
from keras_lossplus.layers.ordinal import *  # noqa: E402,F401,F403

__all__ += _ordinal.__all__
