"""Every loss of keras_lossplus: each class beside its functional form."""

from keras_lossplus.losses.base import BatchLoss, LossPlus
from keras_lossplus.losses.bi_tempered import (
    BiTemperedLogisticLoss,
    bi_tempered_logistic_loss,
    tempered_softmax,
)
from keras_lossplus.losses.class_balanced import (
    ClassBalancedLoss,
    class_balanced_loss,
    class_balanced_weights,
)
from keras_lossplus.losses.classification import (
    AsymmetricLoss,
    FBetaLoss,
    FocalLoss,
    PolyLoss,
    asymmetric_loss,
    f_beta_loss,
    focal_loss,
    poly_loss,
)
from keras_lossplus.losses.regression import (
    CharbonnierLoss,
    GeneralAdaptiveLoss,
    PinballLoss,
    TukeyBiweightLoss,
    charbonnier_loss,
    general_adaptive_loss,
    pinball_loss,
    tukey_biweight_loss,
)

__all__ = [
    "AsymmetricLoss",
    "BiTemperedLogisticLoss",
    "CharbonnierLoss",
    "ClassBalancedLoss",
    "FBetaLoss",
    "FocalLoss",
    "GeneralAdaptiveLoss",
    "PinballLoss",
    "PolyLoss",
    "TukeyBiweightLoss",
    "asymmetric_loss",
    "bi_tempered_logistic_loss",
    "charbonnier_loss",
    "class_balanced_loss",
    "class_balanced_weights",
    "f_beta_loss",
    "focal_loss",
    "general_adaptive_loss",
    "pinball_loss",
    "poly_loss",
    "tempered_softmax",
    "tukey_biweight_loss",
]
