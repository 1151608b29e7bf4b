"""Metric-learning losses: pair, triplet, quadruplet, softmax-style
(multi-similarity, lifted structure, N-pair, SupCon, NT-Xent, soft nearest
neighbour) and proxy losses, and the pieces they are built from.

The in-batch losses take integer labels `y_true` of shape `(B,)` or `(B, 1)`
and embeddings `y_pred` of shape `(B, D)`, mine their pairs or triplets inside
the batch with `O(B^2)` memory (`chunk_size` rows at a time when given), and
return one scalar: the mean over the valid anchors (those with a positive and
a negative in the batch), each anchor weighted by its `sample_weight`. A batch
without a valid anchor gives 0 with gradient 0.

With `mining="none"`, `TripletLoss` and `QuadrupletLoss` take explicit tuples
concatenated on the last axis instead (the classic Keras recipe) and behave
like any per-sample Keras loss.

Modules:

* `distances`: the `Distance` objects (`keras_lossplus.distances`), the
  names the losses take as shorthands for them and `resolve_distance`;
* `inputs`: labels and embeddings in, checked;
* `rows`: blocks of anchors (`Rows`) and `per_anchor`, which runs a
  per-anchor function over the batch in blocks of `chunk_size` anchors, so
  that the memory is `chunk_size x B` instead of `B x B`;
* `miners`: the triplet miners (semi-hard, all, hard) as functions;
* `mining`, `easy_hard`, `distance_weighted`: the `Miner` objects
  (`keras_lossplus.miners`) and `resolve_miner`;
* `reducers`: per-anchor numerators and counts to the loss,
  `sum_a w_a num_a / sum_a w_a cnt_a` over the valid anchors, and the
  `Reducer` objects of `TripletLoss(reducer=)` (`keras_lossplus.reducers`);
* `pair`, `triplet`, `softmax`, `proxy`: the losses;
* `in_batch`: the in-batch losses of sentence embeddings after
  sentence-transformers (multiple negatives ranking, CoSENT, AnglE), on
  stacked embeddings `(B, m, D)`: anchors, positives, hard negatives;
* `matryoshka`: `MatryoshkaLoss`, any embedding loss over nested prefixes.

The miners never build a `B x B x B` tensor: they loop over the anchors'
positives, one positive per anchor per step (`B x B` work per step, as many
steps as the largest number of positives of an anchor), and return the
triplets' loss and their first-order coefficients on the distance matrix.
The loop carries no gradient; the loss is rebuilt from the coefficients,
which gives the exact value and the exact gradient.
"""

from keras_lossplus.losses.metric_learning.in_batch import (
    AnglELoss,
    CoSENTLoss,
    MultipleNegativesRankingLoss,
    angle_loss,
    cosent_loss,
    multiple_negatives_ranking_loss,
)
from keras_lossplus.losses.metric_learning.matryoshka import MatryoshkaLoss, matryoshka_loss
from keras_lossplus.losses.metric_learning.pair import (
    BatchContrastiveLoss,
    ContrastiveLoss,
    batch_contrastive_loss,
    contrastive_loss,
)
from keras_lossplus.losses.metric_learning.proxy import (
    ProxyAnchorLoss,
    ProxyNCALoss,
    proxy_anchor_loss,
    proxy_nca_loss,
)
from keras_lossplus.losses.metric_learning.softmax import (
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
from keras_lossplus.losses.metric_learning.triplet import (
    QuadrupletLoss,
    TripletLoss,
    quadruplet_loss,
    triplet_loss,
)

__all__ = [
    "AnglELoss",
    "CoSENTLoss",
    "MatryoshkaLoss",
    "MultipleNegativesRankingLoss",
    "angle_loss",
    "cosent_loss",
    "multiple_negatives_ranking_loss",
    "BatchContrastiveLoss",
    "ContrastiveLoss",
    "LiftedStructureLoss",
    "MultiSimilarityLoss",
    "NPairLoss",
    "NTXentLoss",
    "ProxyAnchorLoss",
    "ProxyNCALoss",
    "QuadrupletLoss",
    "SoftNearestNeighborLoss",
    "SupConLoss",
    "TripletLoss",
    "batch_contrastive_loss",
    "contrastive_loss",
    "lifted_structure_loss",
    "matryoshka_loss",
    "multi_similarity_loss",
    "npair_loss",
    "nt_xent_loss",
    "proxy_anchor_loss",
    "proxy_nca_loss",
    "quadruplet_loss",
    "soft_nearest_neighbor_loss",
    "supcon_loss",
    "triplet_loss",
]
