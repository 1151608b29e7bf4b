"""Imbalanced and set-based classification losses.

Each loss is a pure function on `keras.ops` returning per-sample values (or,
for `f_beta_loss`, one value for the batch) and a thin `keras.losses.Loss`
class. Logit-space formulas use `exp(-|x|)` / `log1p` / `log_softmax`, so
logits of +-100 give finite values and gradients.
"""

from keras_lossplus.losses.classification.asymmetric import (
    AsymmetricLoss,
    asymmetric_loss,
)
from keras_lossplus.losses.classification.bi_tempered import (
    BiTemperedLogisticLoss,
    bi_tempered_logistic_loss,
    tempered_softmax,
)
from keras_lossplus.losses.classification.class_balanced import (
    ClassBalancedLoss,
    class_balanced_loss,
    class_balanced_weights,
)
from keras_lossplus.losses.classification.f_beta import (
    FBetaLoss,
    f_beta_loss,
)
from keras_lossplus.losses.classification.focal import (
    FocalLoss,
    focal_loss,
)
from keras_lossplus.losses.classification.poly import (
    PolyLoss,
    poly_loss,
)

__all__ = [
    "AsymmetricLoss",
    "BiTemperedLogisticLoss",
    "ClassBalancedLoss",
    "FBetaLoss",
    "FocalLoss",
    "PolyLoss",
    "asymmetric_loss",
    "bi_tempered_logistic_loss",
    "class_balanced_loss",
    "class_balanced_weights",
    "f_beta_loss",
    "focal_loss",
    "poly_loss",
    "tempered_softmax",
]
