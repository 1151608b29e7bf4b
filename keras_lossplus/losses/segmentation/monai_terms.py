"""The pixel terms of MONAI's compound losses, for `convention="monai"`:

* `DiceCELoss`: a softmax cross-entropy over the channels whenever there
  are several (`torch.nn.CrossEntropyLoss(weight)`), whatever activation
  its Dice term uses (`sigmoid=True` included), and a binary
  cross-entropy with `pos_weight` for one channel;
* `DiceFocalLoss`: a sigmoid focal term per channel
  (`monai.losses.FocalLoss(use_softmax=False)`), whatever activation its
  Dice term uses (`softmax=True` included), averaged over
  `B x C x spatial` (without the background channel when
  `include_background=False`).

MONAI reads its input as logits in both; here `from_logits=False` uses the
probabilities as they are.
"""

from __future__ import annotations

from typing import Any, Optional

from keras import ops

from keras_lossplus.losses.classification.terms import sigmoid_terms, softmax_terms
from keras_lossplus.losses.segmentation.base import weighted, weighted_mean
from keras_lossplus.losses.segmentation.scores import EPS, Scoring
from keras_lossplus.ops import safe_pow

Tensor = Any


def sigmoid_logs(raw: Tensor, from_logits: bool) -> tuple:
    """`(log p, log(1 - p))` of sigmoid outputs (probabilities clipped to
    `[1e-7, 1 - 1e-7]`)."""
    if from_logits:
        return ops.log_sigmoid(raw), ops.log_sigmoid(-raw)
    p = ops.clip(raw, EPS, 1.0 - EPS)
    return ops.log(p), ops.log(1.0 - p)


def _weighted_by_class(values: Tensor, norms: Tensor, weights: Optional[Tensor], axes: tuple) -> Tensor:
    """`sum(w * values) / sum(w * norms)`, 0 where the denominator is 0. The
    denominator is the batch's (torch's normalisation); per image
    (`axes` without the batch axis) it is shared out evenly, so that the
    mean over the images is the batch's value."""
    value = ops.sum(weighted(values, weights), axis=axes + (len(values.shape) - 1,))
    total = ops.sum(weighted(norms, weights))
    if axes[0] != 0:
        total = total / ops.cast(ops.shape(values)[0], values.dtype)
    return value / ops.maximum(total, EPS) * ops.cast(total > 0, values.dtype)


def crossentropy(raw: Tensor, target: Tensor, weights: Optional[Tensor], axes: tuple, label_map: bool,
                 from_logits: bool, scoring: Scoring) -> Tensor:
    """MONAI `DiceCELoss`'s cross-entropy term, `class_weights` as its
    `weight`: torch's `CrossEntropyLoss` divides by the batch's sum of the
    pixels' class weights for a label map and by the number of pixels for
    one-hot (or multi-label) targets; one channel:
    `BCEWithLogitsLoss(pos_weight)`."""
    channels = raw.shape[-1]
    class_weights = ops.convert_to_tensor(scoring.weights(channels), dtype=raw.dtype)
    if channels == 1:
        log_p, log_not_p = sigmoid_logs(raw, from_logits)
        terms = -(class_weights * target * log_p + (1.0 - target) * log_not_p)
        return weighted_mean(terms, weights, axes)
    log_p, _ = softmax_terms(raw, from_logits)
    weighted_target = target * class_weights
    terms = -ops.sum(weighted_target * log_p, axis=-1, keepdims=True)
    if label_map and scoring.class_weights is not None:
        return _weighted_by_class(terms, ops.sum(weighted_target, axis=-1, keepdims=True), weights, axes)
    return weighted_mean(terms, weights, axes)


def focal(raw: Tensor, target: Tensor, weights: Optional[Tensor], axes: tuple, from_logits: bool, scoring: Scoring,
          gamma: float, alpha: Any) -> Tensor:
    """MONAI `DiceFocalLoss`'s focal term: `(1 - p_t)^gamma` times the
    binary cross-entropy of each channel's sigmoid; `alpha` a number
    (`alpha` for positives, `1 - alpha` for negatives) or one weight per
    channel (positives only); `class_weights` scale each channel; the mean
    over the counted entries of the chosen channels."""
    channels = raw.shape[-1]
    bce, one_minus_pt, _ = sigmoid_terms(target, raw, from_logits)
    terms = safe_pow(one_minus_pt, gamma) * bce
    if isinstance(alpha, tuple):
        alpha = ops.convert_to_tensor(alpha, dtype=raw.dtype)
        terms = terms * ops.where(ops.equal(target, 1.0), alpha, ops.ones_like(alpha))
    elif alpha is not None:
        terms = terms * (target * alpha + (1.0 - target) * (1.0 - alpha))
    chosen = scoring.selected(channels)
    terms = terms * ops.convert_to_tensor(scoring.weights(channels), dtype=raw.dtype)
    chosen = ops.convert_to_tensor(chosen, dtype=raw.dtype)
    return weighted_mean(terms, chosen if weights is None else weights * chosen, axes)
