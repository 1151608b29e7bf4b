r"""Learning-to-rank losses: pairwise (RankNet logistic, hinge, soft
zero-one, mean squared error), listwise (ListNet, ListMLE, softmax) and
NDCG-driven (ApproxNDCG, LambdaLoss).

Calling convention, shared by every loss here:

* `y_pred`: the model's scores, shape `(B, list_size)` (one list of items per
  query; more leading axes are allowed, the last one is the list).
* `y_true`: graded relevance labels (`0` irrelevant, `1`, `2`, ... more
  relevant) of the same shape (a trailing axis of size 1 on either,
  `(B, list_size, 1)`, is dropped). Labels must be finite and `>= 0`; items
  whose label equals `mask_value` (default `-1.0`; `None` turns padding off)
  are **padding**: they take no part in the loss, wherever they sit in the
  list. A NaN, an infinity or another negative label is refused eagerly
  (`ValueError` naming `y_true`); inside a compiled function, where nothing
  can raise, such an item is left out like padding. A `y_true` whose list
  size differs from `y_pred`'s raises `ValueError`.
* `temperature` `T > 0` divides the scores (`ApproxNDCGLoss`: the
  temperature of its sigmoid ranks, default 0.1; the others default 1).
* The result is **one value per query**, shape `(B,)` (the pairwise losses'
  `pair_reduction="per_item"`: one per item, keras-rs' convention); Keras
  applies the `reduction`, masks and `sample_weight`: one weight per query
  `(B,)`, or one per item `(B, list_size)`, which each loss takes into its
  per-query value (see each loss for what an item's weight multiplies).
  `skip_empty_lists=True` leaves the all-padding lists out of the batch
  mean (optax's convention) instead of counting each as a 0.
* A query without a valid pair (pairwise losses and `LambdaLoss`) or
  without a relevant item (a valid label `> 0`: the listwise losses and
  `ApproxNDCGLoss`), including a list that is all padding, gives loss 0 and
  gradient 0. Scores of any size (logits of +-100) give finite values and
  gradients: every log-sum-exp is masked and shifted, pairwise logistic
  terms are `softplus`.

Memory: the pairwise losses, `ApproxNDCGLoss` and `LambdaLoss` build
`(B, list_size, list_size)` tensors; `ListNetLoss`, `ListMLELoss` and
`SoftmaxRankingLoss` are `O(B * list_size)` (ListMLE sorts each list and runs
a `log2(list_size)`-step cumulative log-sum-exp).
"""

from keras_lossplus.losses.ranking import listwise as _listwise
from keras_lossplus.losses.ranking import ndcg as _ndcg
from keras_lossplus.losses.ranking import pairwise as _pairwise
from keras_lossplus.losses.ranking import pairwise_mse as _pairwise_mse
from keras_lossplus.losses.ranking.common import RankingLoss  # noqa: F401
from keras_lossplus.losses.ranking.listwise import *  # noqa: F401,F403
from keras_lossplus.losses.ranking.ndcg import *  # noqa: F401,F403
from keras_lossplus.losses.ranking.pairwise import *  # noqa: F401,F403
from keras_lossplus.losses.ranking.pairwise_mse import *  # noqa: F401,F403

__all__ = [  # written out: the docs' API reference (griffe) reads it without running the package
    "ApproxNDCGLoss",
    "LambdaLoss",
    "ListMLELoss",
    "ListNetLoss",
    "PairwiseHingeLoss",
    "PairwiseLogisticLoss",
    "PairwiseMeanSquaredError",
    "PairwiseSoftZeroOneLoss",
    "SoftmaxRankingLoss",
    "approx_ndcg_loss",
    "lambda_loss",
    "listmle_loss",
    "listnet_loss",
    "pairwise_hinge_loss",
    "pairwise_logistic_loss",
    "pairwise_mean_squared_error",
    "pairwise_soft_zero_one_loss",
    "softmax_ranking_loss",
]
assert sorted(__all__) == sorted(_pairwise.__all__ + _pairwise_mse.__all__ + _listwise.__all__ + _ndcg.__all__)
