"""Multi-output training: `MultiOutputModel` (and the `MultiOutputTraining`
mix-in) combine per-output losses with static or dynamic weights; the
strategies are in `keras_lossplus.multi_output.weighting`."""

from keras_lossplus.multi_output import weighting
from keras_lossplus.multi_output.model import MultiOutputModel, MultiOutputTraining

__all__ = ["MultiOutputModel", "MultiOutputTraining", "weighting"]
