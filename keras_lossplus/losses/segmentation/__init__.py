"""Segmentation losses: soft overlap scores (Dice, Jaccard, focal Tversky,
generalized Dice, Matthews correlation), the Lovasz losses, and weighted sums
of Dice with (focal) cross-entropy.

Every loss takes the same layout and options (`keras_lossplus.losses.
segmentation.base`):

* `y_pred`: `(B, *spatial, C)` (1 to 3 spatial axes), or `(B, C, *spatial)`
  with `data_format="channels_first"`; probabilities, or logits with
  `from_logits=True`.
* `mode="binary"` (one channel, sigmoid), `"multiclass"` (softmax over `C >= 2`
  channels; `y_true` a label map `(B, *spatial)` / `(B, *spatial, 1)` or
  one-hot `(B, *spatial, C)`), `"multilabel"` (one sigmoid per channel,
  `y_true` 0/1 of the shape of `y_pred`).
* `ignore_index`: pixels whose label equals it count nowhere.
* `per_image=False` (default): one value for the whole batch (pixels of all
  images pooled, segmentation_models_pytorch's default); `sample_weight`
  weighs each image's pixels (a `(B, *spatial)` weight or Keras mask weighs
  each pixel). `per_image=True`: one value per image, averaged by Keras'
  `reduction` with `sample_weight` as for any per-sample loss.
* `smooth`: added to the numerator and denominator of the overlap scores
  (or a pair `(numerator, denominator)`, MONAI's `smooth_nr`, `smooth_dr`).

As in segmentation_models_pytorch, a class with no target pixel contributes
0 to the overlap losses (its score is undefined) and the loss is the mean
over the `C` classes; `convention="monai"` scores every class, as MONAI.
The options segmentation_models_pytorch and MONAI users set (`class_weights`,
`classes`, `include_background`, `log_loss`, `squared`, `soft_labels`,
`eps`) are described in `keras_lossplus.losses.segmentation.scores`, and
docs/segmentation.md maps every peer loss to its exact equivalent here
(segmentation_models_pytorch's `DiceLoss(smooth=s)` is `DiceLoss(smooth=2 * s)`).
"""

from keras_lossplus.losses.segmentation.compound import (
    ComboLoss,
    DiceCrossentropyLoss,
    DiceFocalLoss,
    combo_loss,
    dice_crossentropy_loss,
    dice_focal_loss,
)
from keras_lossplus.losses.segmentation.lovasz import (
    LovaszLoss,
    lovasz_loss,
)
from keras_lossplus.losses.segmentation.generalized import (
    GeneralizedDiceLoss,
    MCCLoss,
    generalized_dice_loss,
    mcc_loss,
)
from keras_lossplus.losses.segmentation.overlap import (
    DiceLoss,
    FocalTverskyLoss,
    JaccardLoss,
    dice_loss,
    focal_tversky_loss,
    jaccard_loss,
)

__all__ = [
    "ComboLoss",
    "DiceCrossentropyLoss",
    "DiceFocalLoss",
    "DiceLoss",
    "FocalTverskyLoss",
    "GeneralizedDiceLoss",
    "JaccardLoss",
    "LovaszLoss",
    "MCCLoss",
    "combo_loss",
    "dice_crossentropy_loss",
    "dice_focal_loss",
    "dice_loss",
    "focal_tversky_loss",
    "generalized_dice_loss",
    "jaccard_loss",
    "lovasz_loss",
    "mcc_loss",
]
