"""Divergences and distances between distributions.

Two kinds of loss live here:

* **Per sample**, between two distributions held by one row each:
  `JensenShannonDivergence` (probability vectors over the last axis,
  `divergence.py`) and `Wasserstein1DLoss` (1-D sample sets or histograms
  over ordered bins, `wasserstein.py`). They return one value per sample and
  Keras applies reduction and `sample_weight`, as for
  `keras.losses.kl_divergence`.
* **Per batch**, between two empirical distributions: the rows of `y_true`
  `(B, D)` are samples of the target distribution and the rows of `y_pred`
  `(B, D)` samples of the model's: `MMDLoss`, `EnergyDistance`
  (`sample.py`) and `SinkhornLoss` (`sinkhorn.py`). They return one scalar
  per batch; `sample_weight` `w_i` is the probability mass of row `i` in
  both samples (row `i` of `y_true` and row `i` of `y_pred`), normalized to
  sum 1, so that a weight of 0 removes a row from both distributions.

Every pairwise computation is `O(B^2)` in memory (`common.distances`: from
the differences for samples of up to 4 dimensions, else one
`(B, D) x (D, B)` matmul between the samples shifted by their mean), and the
gradient is finite between identical points. Every loss refuses a NaN or infinite target eagerly, naming
`y_true` (`common.check_finite_targets`).
"""

from keras_lossplus.losses.distribution.divergence import (
    JensenShannonDivergence,
    jensen_shannon_divergence,
)
from keras_lossplus.losses.distribution.sample import (
    EnergyDistance,
    MMDLoss,
    energy_distance,
    mmd_loss,
)
from keras_lossplus.losses.distribution.sinkhorn import SinkhornLoss, sinkhorn_loss
from keras_lossplus.losses.distribution.wasserstein import (
    Wasserstein1DLoss,
    wasserstein_1d_loss,
)

__all__ = [
    "EnergyDistance",
    "JensenShannonDivergence",
    "MMDLoss",
    "SinkhornLoss",
    "Wasserstein1DLoss",
    "energy_distance",
    "jensen_shannon_divergence",
    "mmd_loss",
    "sinkhorn_loss",
    "wasserstein_1d_loss",
]
