"""The IoU box losses, one value per pair of boxes: IoU, GIoU, DIoU, CIoU
(torchvision's `generalized_box_iou_loss`, `distance_box_iou_loss`,
`complete_box_iou_loss`; tensorflow-addons' `GIoULoss`)."""

from __future__ import annotations

from typing import Any, Optional

import keras  # noqa: F401  (the docstring examples use it)

from keras_lossplus.losses.base import LossPlus, prepare_inputs, register
from keras_lossplus.losses.detection.geometry import (
    BOX_FORMATS,
    SWAPPED_CORNERS,
    corners,
    iou_terms,
    rescale,
)
from keras_lossplus.losses.options import Options, choice, number

Tensor = Any

__all__ = ["CIoULoss", "DIoULoss", "GIoULoss", "IoULoss", "ciou_loss", "diou_loss", "giou_loss", "iou_loss"]

_BOX_OPTIONS = {
    "box_format": choice(*BOX_FORMATS),
    "eps": number(low=0.0),
    "swapped_corners": choice(*SWAPPED_CORNERS),
}


def _prepare_boxes(y_true: Any, y_pred: Any) -> tuple:
    y_true, y_pred = prepare_inputs(y_true, y_pred)
    for name, x in (("y_true", y_true), ("y_pred", y_pred)):
        if len(x.shape) == 0 or x.shape[-1] != 4:
            raise ValueError(
                f"`{name}` must hold boxes of 4 values on its last axis. Received: {name}.shape={tuple(x.shape)}"
            )
    return y_true, y_pred


def box_loss(y_true: Any, y_pred: Any, variant: str, box_format: str = "xyxy", eps: float = 1e-7,
             swapped_corners: str = "keep") -> Tensor:
    """The loss `variant` (`"iou"`, `"giou"`, `"diou"`, `"ciou"`) per box,
    summed in torchvision's order (each pair rescaled by a power of two
    only when its coordinates pass `2^24`: see `geometry`)."""
    y_true, y_pred = _prepare_boxes(y_true, y_pred)
    pred, target, scale, floor = rescale(corners(y_pred, box_format), corners(y_true, box_format), pairwise=False)
    empty = swapped_corners == "empty"
    iou, penalty, aspect = iou_terms(pred, target, variant, eps=eps, scale=scale, floor=floor, union_eps=True,
                                     clamp_sizes=empty, clamp_enclosing=empty)
    if variant == "iou":
        return 1.0 - iou
    if variant == "giou":
        return 1.0 - (iou - penalty)
    loss = 1.0 - iou + penalty
    return loss if aspect is None else loss + aspect


@Options(**_BOX_OPTIONS)
def iou_loss(y_true: Tensor, y_pred: Tensor, box_format: str = "xyxy", eps: float = 1e-7,
             swapped_corners: str = "keep") -> Tensor:
    r"""IoU loss per box: $1 - \mathrm{IoU}$, $\mathrm{IoU} = |A \cap B| / (|A \cup B| + \epsilon)$.

    Args:
        y_true: Target boxes, `(..., 4)`.
        y_pred: Predicted boxes, `(..., 4)`.
        box_format: `"xyxy"` (x1, y1, x2, y2; torchvision's), `"yxyx"`
            (y1, x1, y2, x2; tensorflow-addons'), `"xywh"` (x1, y1, w, h)
            or `"center"` (cx, cy, w, h; also accepted as keras-cv's
            `"center_xywh"` and torchvision's `"cxcywh"`).
        eps: `>= 0`, added to the union and the enclosing area or squared
            diagonal, in the boxes' own units (torchvision's 1e-7); `0`
            takes 0 / 0 as 0 (tensorflow-addons' `divide_no_nan`).
        swapped_corners: `"keep"` (torchvision's: a box with `x2 < x1` or
            `y2 < y1` has a negative width or height) or `"empty"`
            (tensorflow-addons': its width or height is 0).

    Returns:
        The loss per box, `y_pred.shape[:-1]`.

    Reference:
        Yu et al., "UnitBox: An Advanced Object Detection Network", ACM MM 2016.

    Examples:
        >>> print(keras.ops.convert_to_numpy(iou_loss([[0.0, 0.0, 2.0, 2.0]], [[1.0, 0.0, 3.0, 2.0]])).round(4))
        [0.6667]
    """
    return box_loss(y_true, y_pred, "iou", box_format, eps, swapped_corners)


@Options(**_BOX_OPTIONS)
def giou_loss(y_true: Tensor, y_pred: Tensor, box_format: str = "xyxy", eps: float = 1e-7,
              swapped_corners: str = "keep") -> Tensor:
    r"""Generalized IoU loss per box (torchvision's `generalized_box_iou_loss`).

    $$\ell = 1 - \mathrm{IoU} + \frac{|C| - |A \cup B|}{|C| + \epsilon}$$

    with $C$ the smallest box enclosing both; in `[0, 2)`, and it still
    pulls disjoint boxes together. tensorflow-addons' `GIoULoss()` is
    `giou_loss(..., box_format="yxyx", eps=0, swapped_corners="empty")`.

    Args:
        y_true: Target boxes, `(..., 4)`.
        y_pred: Predicted boxes, `(..., 4)`.
        box_format: `"xyxy"` (x1, y1, x2, y2; torchvision's), `"yxyx"`
            (y1, x1, y2, x2; tensorflow-addons'), `"xywh"` (x1, y1, w, h)
            or `"center"` (cx, cy, w, h; also accepted as keras-cv's
            `"center_xywh"` and torchvision's `"cxcywh"`).
        eps: `>= 0`, added to the union and the enclosing area or squared
            diagonal, in the boxes' own units (torchvision's 1e-7); `0`
            takes 0 / 0 as 0 (tensorflow-addons' `divide_no_nan`).
        swapped_corners: `"keep"` (torchvision's: a box with `x2 < x1` or
            `y2 < y1` has a negative width or height) or `"empty"`
            (tensorflow-addons': its width or height is 0).

    Returns:
        The loss per box, `y_pred.shape[:-1]`.

    Reference:
        Rezatofighi et al., "Generalized Intersection over Union", CVPR 2019;
        torchvision `ops.generalized_box_iou_loss`; tensorflow-addons `GIoULoss`.

    Examples:
        >>> print(keras.ops.convert_to_numpy(giou_loss([[0.0, 0.0, 1.0, 1.0]], [[1.0, 1.0, 2.0, 2.0]])).round(4))
        [1.5]
    """
    return box_loss(y_true, y_pred, "giou", box_format, eps, swapped_corners)


@Options(**_BOX_OPTIONS)
def diou_loss(y_true: Tensor, y_pred: Tensor, box_format: str = "xyxy", eps: float = 1e-7,
              swapped_corners: str = "keep") -> Tensor:
    r"""Distance IoU loss per box (torchvision's `distance_box_iou_loss`).

    $$\ell = 1 - \mathrm{IoU} + \frac{\rho^2(b, b^{gt})}{c^2 + \epsilon}$$

    with $\rho$ the distance between the box centres and $c$ the diagonal
    of the smallest enclosing box.

    Args:
        y_true: Target boxes, `(..., 4)`.
        y_pred: Predicted boxes, `(..., 4)`.
        box_format: `"xyxy"` (x1, y1, x2, y2; torchvision's), `"yxyx"`
            (y1, x1, y2, x2; tensorflow-addons'), `"xywh"` (x1, y1, w, h)
            or `"center"` (cx, cy, w, h; also accepted as keras-cv's
            `"center_xywh"` and torchvision's `"cxcywh"`).
        eps: `>= 0`, added to the union and the enclosing area or squared
            diagonal, in the boxes' own units (torchvision's 1e-7); `0`
            takes 0 / 0 as 0 (tensorflow-addons' `divide_no_nan`).
        swapped_corners: `"keep"` (torchvision's: a box with `x2 < x1` or
            `y2 < y1` has a negative width or height) or `"empty"`
            (tensorflow-addons': its width or height is 0).

    Returns:
        The loss per box, `y_pred.shape[:-1]`.

    Reference:
        Zheng et al., "Distance-IoU Loss", AAAI 2020; torchvision
        `ops.distance_box_iou_loss`.

    Examples:
        >>> print(keras.ops.convert_to_numpy(diou_loss([[0.0, 0.0, 1.0, 1.0]], [[1.0, 1.0, 2.0, 2.0]])).round(4))
        [1.25]
    """
    return box_loss(y_true, y_pred, "diou", box_format, eps, swapped_corners)


@Options(**_BOX_OPTIONS)
def ciou_loss(y_true: Tensor, y_pred: Tensor, box_format: str = "xyxy", eps: float = 1e-7,
              swapped_corners: str = "keep") -> Tensor:
    r"""Complete IoU loss per box (torchvision's `complete_box_iou_loss`).

    $$\ell = \ell_{DIoU} + \alpha v, \quad
      v = \frac{4}{\pi^2}\Bigl(\arctan\frac{w^{gt}}{h^{gt}} - \arctan\frac{w}{h}\Bigr)^2,
      \quad \alpha = \frac{v}{1 - \mathrm{IoU} + v + \epsilon}$$

    `alpha` is a constant for the gradient (`stop_gradient`, as torchvision
    computes it under `torch.no_grad()`). `arctan(w / h)` is taken as
    `atan2`, so a box of zero height has a finite gradient (torchvision's
    is NaN for a box of zero width and height). With an `eps` other than
    1e-7, torchvision's `complete_box_iou_loss` still adds 1e-7 to the union
    and the diagonal (it calls its DIoU without `eps`) and uses `eps` only in
    `alpha`; here `eps` is used in all three.

    Args:
        y_true: Target boxes, `(..., 4)`.
        y_pred: Predicted boxes, `(..., 4)`.
        box_format: `"xyxy"` (x1, y1, x2, y2; torchvision's), `"yxyx"`
            (y1, x1, y2, x2; tensorflow-addons'), `"xywh"` (x1, y1, w, h)
            or `"center"` (cx, cy, w, h; also accepted as keras-cv's
            `"center_xywh"` and torchvision's `"cxcywh"`).
        eps: `>= 0`, added to the union and the enclosing area or squared
            diagonal, in the boxes' own units (torchvision's 1e-7); `0`
            takes 0 / 0 as 0 (tensorflow-addons' `divide_no_nan`).
        swapped_corners: `"keep"` (torchvision's: a box with `x2 < x1` or
            `y2 < y1` has a negative width or height) or `"empty"`
            (tensorflow-addons': its width or height is 0).

    Returns:
        The loss per box, `y_pred.shape[:-1]`.

    Reference:
        Zheng et al., "Enhancing Geometric Factors in Model Learning and
        Inference for Object Detection and Instance Segmentation", IEEE
        T-CYB 2021; torchvision `ops.complete_box_iou_loss`.

    Examples:
        >>> print(keras.ops.convert_to_numpy(ciou_loss([[0.0, 0.0, 2.0, 1.0]], [[0.0, 0.0, 1.0, 1.0]])).round(4))
        [0.5532]
    """
    return box_loss(y_true, y_pred, "ciou", box_format, eps, swapped_corners)


class _BoxLoss(LossPlus):
    """The four IoU losses' shared constructor."""

    def __init__(self, box_format: str, eps: float, swapped_corners: str, reduction: Optional[str],
                 name: Optional[str], dtype: Any) -> None:
        super().__init__(reduction=reduction, name=name, dtype=dtype, box_format=box_format, eps=eps,
                         swapped_corners=swapped_corners)


@register
class IoULoss(_BoxLoss):
    """IoU loss `1 - IoU` per box; `tfa.losses.GIoULoss(mode="iou")` is
    `IoULoss(box_format="yxyx", eps=0, swapped_corners="empty")`.

    See `iou_loss`.

    Args:
        box_format: `"xyxy"` (default), `"yxyx"`, `"xywh"` or `"center"`
            (`"center_xywh"`, `"cxcywh"`).
        eps: `>= 0` (default 1e-7), in the boxes' own units.
        swapped_corners: `"keep"` (default; torchvision) or `"empty"`
            (tensorflow-addons).
        reduction, name, dtype: As for every `keras.losses.Loss`.

    Reference:
        Yu et al., "UnitBox", ACM MM 2016.

    Examples:
        >>> loss = IoULoss()
        >>> round(float(loss([[0.0, 0.0, 2.0, 2.0]], [[1.0, 0.0, 3.0, 2.0]])), 4)
        0.6667
    """

    fn = staticmethod(iou_loss)

    def __init__(self, box_format: str = "xyxy", eps: float = 1e-7, swapped_corners: str = "keep",
                 reduction: Optional[str] = "sum_over_batch_size", name: Optional[str] = "iou_loss",
                 dtype: Any = None) -> None:
        super().__init__(box_format, eps, swapped_corners, reduction, name, dtype)


@register
class GIoULoss(_BoxLoss):
    """Generalized IoU loss per box. `tfa.losses.GIoULoss()` (boxes
    `[y1, x1, y2, x2]`, no `eps`, swapped corners as an empty box) is
    `GIoULoss(box_format="yxyx", eps=0, swapped_corners="empty")`.

    See `giou_loss`.

    Args:
        box_format: `"xyxy"` (default), `"yxyx"`, `"xywh"` or `"center"`
            (`"center_xywh"`, `"cxcywh"`).
        eps: `>= 0` (default 1e-7), in the boxes' own units.
        swapped_corners: `"keep"` (default; torchvision) or `"empty"`
            (tensorflow-addons).
        reduction, name, dtype: As for every `keras.losses.Loss`.

    Reference:
        Rezatofighi et al., CVPR 2019; torchvision `generalized_box_iou_loss`.

    Examples:
        >>> loss = GIoULoss()
        >>> round(float(loss([[0.0, 0.0, 1.0, 1.0]], [[1.0, 1.0, 2.0, 2.0]])), 4)
        1.5
    """

    fn = staticmethod(giou_loss)

    def __init__(self, box_format: str = "xyxy", eps: float = 1e-7, swapped_corners: str = "keep",
                 reduction: Optional[str] = "sum_over_batch_size", name: Optional[str] = "giou_loss",
                 dtype: Any = None) -> None:
        super().__init__(box_format, eps, swapped_corners, reduction, name, dtype)


@register
class DIoULoss(_BoxLoss):
    """Distance IoU loss per box: IoU loss plus the squared centre distance
    over the squared enclosing diagonal.

    See `diou_loss`.

    Args:
        box_format: `"xyxy"` (default), `"yxyx"`, `"xywh"` or `"center"`
            (`"center_xywh"`, `"cxcywh"`).
        eps: `>= 0` (default 1e-7), in the boxes' own units.
        swapped_corners: `"keep"` (default; torchvision) or `"empty"`
            (tensorflow-addons).
        reduction, name, dtype: As for every `keras.losses.Loss`.

    Reference:
        Zheng et al., AAAI 2020; torchvision `distance_box_iou_loss`.

    Examples:
        >>> loss = DIoULoss()
        >>> round(float(loss([[0.0, 0.0, 1.0, 1.0]], [[1.0, 1.0, 2.0, 2.0]])), 4)
        1.25
    """

    fn = staticmethod(diou_loss)

    def __init__(self, box_format: str = "xyxy", eps: float = 1e-7, swapped_corners: str = "keep",
                 reduction: Optional[str] = "sum_over_batch_size", name: Optional[str] = "diou_loss",
                 dtype: Any = None) -> None:
        super().__init__(box_format, eps, swapped_corners, reduction, name, dtype)


@register
class CIoULoss(_BoxLoss):
    """Complete IoU loss per box: DIoU plus an aspect-ratio term.

    See `ciou_loss`.

    Args:
        box_format: `"xyxy"` (default), `"yxyx"`, `"xywh"` or `"center"`
            (`"center_xywh"`, `"cxcywh"`).
        eps: `>= 0` (default 1e-7), in the boxes' own units.
        swapped_corners: `"keep"` (default; torchvision) or `"empty"`
            (tensorflow-addons).
        reduction, name, dtype: As for every `keras.losses.Loss`.

    Reference:
        Zheng et al., IEEE T-CYB 2021; torchvision `complete_box_iou_loss`.

    Examples:
        >>> loss = CIoULoss()
        >>> round(float(loss([[0.0, 0.0, 2.0, 1.0]], [[0.0, 0.0, 1.0, 1.0]])), 4)
        0.5532
    """

    fn = staticmethod(ciou_loss)

    def __init__(self, box_format: str = "xyxy", eps: float = 1e-7, swapped_corners: str = "keep",
                 reduction: Optional[str] = "sum_over_batch_size", name: Optional[str] = "ciou_loss",
                 dtype: Any = None) -> None:
        super().__init__(box_format, eps, swapped_corners, reduction, name, dtype)

