"""Box regression for object detection: the IoU, GIoU, DIoU and CIoU losses
(torchvision's `generalized_box_iou_loss`, `distance_box_iou_loss`,
`complete_box_iou_loss`; tensorflow-addons' `GIoULoss`), torchvision's
pairwise IoU matrices (`box_iou`, `generalized_box_iou`,
`distance_box_iou`, `complete_box_iou`) and torch's smooth L1.

Boxes lie on the last axis (4 values) with any leading shape; every IoU
loss returns one value per box, `y_pred.shape[:-1]`, which Keras reduces
(and weights with `sample_weight`) as usual. `smooth_l1_loss` returns the
mean over the last axis, as `keras.losses.Huber` does. `geometry` holds the
box arithmetic the losses and the matrices share (and how they stay exact
in pixel units and finite at 1e30).
"""

from keras_lossplus.losses.detection.iou import (
    CIoULoss,
    DIoULoss,
    GIoULoss,
    IoULoss,
    ciou_loss,
    diou_loss,
    giou_loss,
    iou_loss,
)
from keras_lossplus.losses.detection.pairwise import (
    box_iou,
    complete_box_iou,
    distance_box_iou,
    generalized_box_iou,
)
from keras_lossplus.losses.detection.smooth_l1 import SmoothL1Loss, smooth_l1_loss

__all__ = [
    "CIoULoss",
    "DIoULoss",
    "GIoULoss",
    "IoULoss",
    "SmoothL1Loss",
    "box_iou",
    "ciou_loss",
    "complete_box_iou",
    "diou_loss",
    "distance_box_iou",
    "generalized_box_iou",
    "giou_loss",
    "iou_loss",
    "smooth_l1_loss",
]
