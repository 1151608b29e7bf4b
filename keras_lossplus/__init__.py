"""keras_lossplus: the losses, penalty layers, multi-output loss weighting
and retrieval metrics that Keras 3 does not ship, on JAX, TensorFlow and PyTorch.

>>> import keras_lossplus as klp
>>> loss = klp.losses.FocalLoss(gamma=2.0)
"""

__version__ = "0.1.0"

from keras_lossplus import causal_lm, distances, layers, losses, metrics, miners, ops, reducers, schedules
from keras_lossplus.grad_cache import GradCacheModel
from keras_lossplus.layers.logging import PenaltyLogging, log_penalties
from keras_lossplus.multi_output import MultiOutputModel, MultiOutputTraining, weighting

__all__ = [
    "GradCacheModel",
    "MultiOutputModel",
    "MultiOutputTraining",
    "PenaltyLogging",
    "__version__",
    "causal_lm",
    "distances",
    "layers",
    "log_penalties",
    "losses",
    "metrics",
    "miners",
    "ops",
    "reducers",
    "schedules",
    "weighting",
]
