"""Box regression losses for object detection: IoU, GIoU, DIoU and CIoU
(torchvision's `generalized_box_iou_loss`, `distance_box_iou_loss`,
`complete_box_iou_loss`; tensorflow-addons' `GIoULoss`) and torch's smooth
L1.

Boxes lie on the last axis (4 values) with any leading shape; every IoU
loss returns one value per box, `y_pred.shape[:-1]`, which Keras reduces
(and weights with `sample_weight`) as usual. `smooth_l1_loss` returns the
mean over the last axis, as `keras.losses.Huber` does.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import keras  # noqa: F401  (the docstring examples use it)
from keras import ops

from keras_lossplus.losses.base import LossPlus, prepare_inputs, register
from keras_lossplus.losses.options import Options, choice, number

Tensor = Any

__all__ = [
    "CIoULoss",
    "DIoULoss",
    "GIoULoss",
    "IoULoss",
    "SmoothL1Loss",
    "ciou_loss",
    "diou_loss",
    "giou_loss",
    "iou_loss",
    "smooth_l1_loss",
]

BOX_FORMATS = ("xyxy", "yxyx", "xywh", "center", "center_xywh")
_BOX_OPTIONS = {"box_format": choice(*BOX_FORMATS), "eps": number(low=0.0, low_open=True)}


def _corners(boxes: Tensor, box_format: str) -> tuple:
    """`(x1, y1, x2, y2)` of `boxes` in `box_format`."""
    a, b, c, d = (boxes[..., i] for i in range(4))
    if box_format == "xyxy":
        return a, b, c, d
    if box_format == "yxyx":  # tensorflow-addons' [y_min, x_min, y_max, x_max]
        return b, a, d, c
    if box_format == "xywh":
        return a, b, a + c, b + d
    return a - 0.5 * c, b - 0.5 * d, a + 0.5 * c, b + 0.5 * d  # center / center_xywh


def _prepare_boxes(y_true: Any, y_pred: Any) -> tuple:
    y_true, y_pred = prepare_inputs(y_true, y_pred)
    for name, x in (("y_true", y_true), ("y_pred", y_pred)):
        if len(x.shape) == 0 or x.shape[-1] != 4:
            raise ValueError(
                f"`{name}` must hold boxes of 4 values on its last axis. Received: {name}.shape={tuple(x.shape)}"
            )
    return y_true, y_pred


def _safe_divide(numerator: Tensor, denominator: Tensor, eps: float) -> Tensor:
    """`numerator / denominator`, the denominator kept `>= eps` (it is only
    below for inverted boxes, x2 < x1, whose areas are negative)."""
    return numerator / ops.maximum(denominator, eps)


def _aspect(w: Tensor, h: Tensor) -> Tensor:
    """`atan(w / h)` as torchvision computes it, with a finite gradient at
    `h = 0` (atan2) and at `w = h = 0` (defined as 0)."""
    w = w * ops.where(h < 0, -1.0, 1.0)
    h = ops.abs(h)
    # atan2 is invariant to a common scale of (w, h): divided by the larger
    # (a constant for the gradient), its gradient h / (w^2 + h^2) cannot
    # underflow to 1 / 0 for a tiny box
    m = ops.maximum(ops.abs(w), h)
    both_zero = ops.equal(m, 0.0)
    m = ops.stop_gradient(ops.where(both_zero, 1.0, m))
    return ops.arctan2(ops.where(both_zero, 0.0, w / m), ops.where(both_zero, 1.0, h / m))


def box_iou_terms(y_true: Any, y_pred: Any, box_format: str, eps: float, variant: str) -> Tensor:
    """The loss `variant` (`"iou"`, `"giou"`, `"diou"`, `"ciou"`) per box.

    Every IoU loss is invariant to a common scale of both boxes, so each
    pair is first divided by its largest coordinate magnitude (when above
    1, under `stop_gradient`): coordinates of `1e30` give the same finite
    value and gradient as those of 1 (for coordinates within `[-1, 1]`
    nothing changes; beyond, `eps` is relative to that scale).
    """
    y_true, y_pred = _prepare_boxes(y_true, y_pred)
    gt = ops.stack(_corners(y_true, box_format), axis=-1)
    pr = ops.stack(_corners(y_pred, box_format), axis=-1)
    biggest = ops.maximum(ops.max(ops.abs(gt), axis=-1, keepdims=True), ops.max(ops.abs(pr), axis=-1, keepdims=True))
    scale = ops.stop_gradient(ops.maximum(biggest, 1.0))
    gt, pr = gt / scale, pr / scale
    x1, y1, x2, y2 = (pr[..., i] for i in range(4))
    x1g, y1g, x2g, y2g = (gt[..., i] for i in range(4))
    inter = ops.maximum(ops.minimum(x2, x2g) - ops.maximum(x1, x1g), 0.0) * ops.maximum(
        ops.minimum(y2, y2g) - ops.maximum(y1, y1g), 0.0
    )
    union = (x2 - x1) * (y2 - y1) + (x2g - x1g) * (y2g - y1g) - inter
    iou = _safe_divide(inter, union + eps, eps)
    if variant == "iou":
        return 1.0 - iou
    cw = ops.maximum(x2, x2g) - ops.minimum(x1, x1g)  # the smallest enclosing box
    ch = ops.maximum(y2, y2g) - ops.minimum(y1, y1g)
    if variant == "giou":
        area_c = cw * ch
        return 1.0 - iou + _safe_divide(area_c - union, area_c + eps, eps)
    diagonal = ops.square(cw) + ops.square(ch) + eps
    centers = ops.square(0.5 * (x1 + x2 - x1g - x2g)) + ops.square(0.5 * (y1 + y2 - y1g - y2g))
    loss = 1.0 - iou + centers / diagonal
    if variant == "diou":
        return loss
    v = (4.0 / math.pi**2) * ops.square(_aspect(x2g - x1g, y2g - y1g) - _aspect(x2 - x1, y2 - y1))
    alpha = ops.stop_gradient(v / (1.0 - iou + v + eps))  # torchvision: under torch.no_grad()
    return loss + alpha * v


@Options(**_BOX_OPTIONS)
def iou_loss(y_true: Tensor, y_pred: Tensor, box_format: str = "xyxy", eps: float = 1e-7) -> Tensor:
    r"""IoU loss per box: $1 - \mathrm{IoU}$, $\mathrm{IoU} = |A \cap B| / (|A \cup B| + \epsilon)$.

    Args:
        y_true: Target boxes, `(..., 4)`.
        y_pred: Predicted boxes, `(..., 4)`.
        box_format: `"xyxy"` (x1, y1, x2, y2; torchvision's), `"yxyx"`
            (y1, x1, y2, x2; tensorflow-addons'), `"xywh"` (x1, y1, w, h)
            or `"center"` (cx, cy, w, h; keras-cv's `"center_xywh"`, also
            accepted).
        eps: `> 0`, added to the union (torchvision's 1e-7).

    Returns:
        The loss per box, `y_pred.shape[:-1]`.

    Reference:
        Yu et al., "UnitBox: An Advanced Object Detection Network", ACM MM 2016.

    Examples:
        >>> print(keras.ops.convert_to_numpy(iou_loss([[0.0, 0.0, 2.0, 2.0]], [[1.0, 0.0, 3.0, 2.0]])).round(4))
        [0.6667]
    """
    return box_iou_terms(y_true, y_pred, box_format, eps, "iou")


@Options(**_BOX_OPTIONS)
def giou_loss(y_true: Tensor, y_pred: Tensor, box_format: str = "xyxy", eps: float = 1e-7) -> Tensor:
    r"""Generalized IoU loss per box (torchvision's `generalized_box_iou_loss`).

    $$\ell = 1 - \mathrm{IoU} + \frac{|C| - |A \cup B|}{|C| + \epsilon}$$

    with $C$ the smallest box enclosing both; in `[0, 2)`, and it still
    pulls disjoint boxes together.

    Args:
        y_true: Target boxes, `(..., 4)`.
        y_pred: Predicted boxes, `(..., 4)`.
        box_format: `"xyxy"`, `"yxyx"`, `"xywh"` or `"center"` (`"center_xywh"`).
        eps: `> 0` (torchvision's 1e-7).

    Returns:
        The loss per box, `y_pred.shape[:-1]`.

    Reference:
        Rezatofighi et al., "Generalized Intersection over Union", CVPR 2019;
        torchvision `ops.generalized_box_iou_loss`; tensorflow-addons `GIoULoss`.

    Examples:
        >>> print(keras.ops.convert_to_numpy(giou_loss([[0.0, 0.0, 1.0, 1.0]], [[1.0, 1.0, 2.0, 2.0]])).round(4))
        [1.5]
    """
    return box_iou_terms(y_true, y_pred, box_format, eps, "giou")


@Options(**_BOX_OPTIONS)
def diou_loss(y_true: Tensor, y_pred: Tensor, box_format: str = "xyxy", eps: float = 1e-7) -> Tensor:
    r"""Distance IoU loss per box (torchvision's `distance_box_iou_loss`).

    $$\ell = 1 - \mathrm{IoU} + \frac{\rho^2(b, b^{gt})}{c^2 + \epsilon}$$

    with $\rho$ the distance between the box centres and $c$ the diagonal
    of the smallest enclosing box.

    Args:
        y_true: Target boxes, `(..., 4)`.
        y_pred: Predicted boxes, `(..., 4)`.
        box_format: `"xyxy"`, `"yxyx"`, `"xywh"` or `"center"` (`"center_xywh"`).
        eps: `> 0` (torchvision's 1e-7).

    Returns:
        The loss per box, `y_pred.shape[:-1]`.

    Reference:
        Zheng et al., "Distance-IoU Loss", AAAI 2020; torchvision
        `ops.distance_box_iou_loss`.

    Examples:
        >>> print(keras.ops.convert_to_numpy(diou_loss([[0.0, 0.0, 1.0, 1.0]], [[1.0, 1.0, 2.0, 2.0]])).round(4))
        [1.25]
    """
    return box_iou_terms(y_true, y_pred, box_format, eps, "diou")


@Options(**_BOX_OPTIONS)
def ciou_loss(y_true: Tensor, y_pred: Tensor, box_format: str = "xyxy", eps: float = 1e-7) -> Tensor:
    r"""Complete IoU loss per box (torchvision's `complete_box_iou_loss`).

    $$\ell = \ell_{DIoU} + \alpha v, \quad
      v = \frac{4}{\pi^2}\Bigl(\arctan\frac{w^{gt}}{h^{gt}} - \arctan\frac{w}{h}\Bigr)^2,
      \quad \alpha = \frac{v}{1 - \mathrm{IoU} + v + \epsilon}$$

    `alpha` is a constant for the gradient (`stop_gradient`, as torchvision
    computes it under `torch.no_grad()`). `arctan(w / h)` is taken as
    `atan2`, so a box of zero height has a finite gradient.

    Args:
        y_true: Target boxes, `(..., 4)`.
        y_pred: Predicted boxes, `(..., 4)`.
        box_format: `"xyxy"`, `"yxyx"`, `"xywh"` or `"center"` (`"center_xywh"`).
        eps: `> 0` (torchvision's 1e-7).

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
    return box_iou_terms(y_true, y_pred, box_format, eps, "ciou")


@register
class IoULoss(LossPlus):
    """IoU loss `1 - IoU` per box.

    See `iou_loss`.

    Args:
        box_format: `"xyxy"` (default), `"yxyx"`, `"xywh"` or `"center"`
            (`"center_xywh"`).
        eps: `> 0`, added to the union.
        reduction, name, dtype: As for every `keras.losses.Loss`.

    Reference:
        Yu et al., "UnitBox", ACM MM 2016.

    Examples:
        >>> loss = IoULoss()
        >>> round(float(loss([[0.0, 0.0, 2.0, 2.0]], [[1.0, 0.0, 3.0, 2.0]])), 4)
        0.6667
    """

    fn = staticmethod(iou_loss)

    def __init__(self, box_format: str = "xyxy", eps: float = 1e-7, reduction: Optional[str] = "sum_over_batch_size",
                 name: Optional[str] = "iou_loss", dtype: Any = None) -> None:
        super().__init__(reduction=reduction, name=name, dtype=dtype, box_format=box_format, eps=eps)


@register
class GIoULoss(LossPlus):
    """Generalized IoU loss per box; replaces `tfa.losses.GIoULoss` (whose
    boxes are `[y1, x1, y2, x2]`: `box_format="yxyx"`).

    See `giou_loss`.

    Args:
        box_format: `"xyxy"` (default), `"yxyx"`, `"xywh"` or `"center"`
            (`"center_xywh"`).
        eps: `> 0`.
        reduction, name, dtype: As for every `keras.losses.Loss`.

    Reference:
        Rezatofighi et al., CVPR 2019; torchvision `generalized_box_iou_loss`.

    Examples:
        >>> loss = GIoULoss()
        >>> round(float(loss([[0.0, 0.0, 1.0, 1.0]], [[1.0, 1.0, 2.0, 2.0]])), 4)
        1.5
    """

    fn = staticmethod(giou_loss)

    def __init__(self, box_format: str = "xyxy", eps: float = 1e-7, reduction: Optional[str] = "sum_over_batch_size",
                 name: Optional[str] = "giou_loss", dtype: Any = None) -> None:
        super().__init__(reduction=reduction, name=name, dtype=dtype, box_format=box_format, eps=eps)


@register
class DIoULoss(LossPlus):
    """Distance IoU loss per box: IoU loss plus the squared centre distance
    over the squared enclosing diagonal.

    See `diou_loss`.

    Args:
        box_format: `"xyxy"` (default), `"yxyx"`, `"xywh"` or `"center"`
            (`"center_xywh"`).
        eps: `> 0`.
        reduction, name, dtype: As for every `keras.losses.Loss`.

    Reference:
        Zheng et al., AAAI 2020; torchvision `distance_box_iou_loss`.

    Examples:
        >>> loss = DIoULoss()
        >>> round(float(loss([[0.0, 0.0, 1.0, 1.0]], [[1.0, 1.0, 2.0, 2.0]])), 4)
        1.25
    """

    fn = staticmethod(diou_loss)

    def __init__(self, box_format: str = "xyxy", eps: float = 1e-7, reduction: Optional[str] = "sum_over_batch_size",
                 name: Optional[str] = "diou_loss", dtype: Any = None) -> None:
        super().__init__(reduction=reduction, name=name, dtype=dtype, box_format=box_format, eps=eps)


@register
class CIoULoss(LossPlus):
    """Complete IoU loss per box: DIoU plus an aspect-ratio term.

    See `ciou_loss`.

    Args:
        box_format: `"xyxy"` (default), `"yxyx"`, `"xywh"` or `"center"`
            (`"center_xywh"`).
        eps: `> 0`.
        reduction, name, dtype: As for every `keras.losses.Loss`.

    Reference:
        Zheng et al., IEEE T-CYB 2021; torchvision `complete_box_iou_loss`.

    Examples:
        >>> loss = CIoULoss()
        >>> round(float(loss([[0.0, 0.0, 2.0, 1.0]], [[0.0, 0.0, 1.0, 1.0]])), 4)
        0.5532
    """

    fn = staticmethod(ciou_loss)

    def __init__(self, box_format: str = "xyxy", eps: float = 1e-7, reduction: Optional[str] = "sum_over_batch_size",
                 name: Optional[str] = "ciou_loss", dtype: Any = None) -> None:
        super().__init__(reduction=reduction, name=name, dtype=dtype, box_format=box_format, eps=eps)


@Options(beta=number(low=0.0))
def smooth_l1_loss(y_true: Tensor, y_pred: Tensor, beta: float = 1.0) -> Tensor:
    r"""Smooth L1 loss (torch's `nn.SmoothL1Loss`), averaged over the last axis.

    $$\ell(r) = \begin{cases} 0.5\, r^2 / \beta & |r| < \beta \\
      |r| - 0.5\, \beta & \text{otherwise} \end{cases}, \quad r = y - \hat y$$

    computed as `0.5 c^2 / beta + |r| - c` with `c = min(|r|, beta)` (no
    branch, finite at any residual); `beta = 0` is the L1 loss. This is
    `keras.losses.Huber(delta=beta)` divided by `beta`. The mean over the
    last axis and Keras' `"sum_over_batch_size"` give torch's
    `reduction="mean"` over all elements.

    Args:
        y_true: Targets.
        y_pred: Predictions.
        beta: Where the loss turns from quadratic to linear, `>= 0`.

    Returns:
        The loss per sample, `y_pred.shape[:-1]`.

    Reference:
        Girshick, "Fast R-CNN", ICCV 2015; torch `nn.SmoothL1Loss`.

    Examples:
        >>> print(keras.ops.convert_to_numpy(smooth_l1_loss([[0.0, 0.0]], [[0.5, 3.0]])))
        [1.3125]
    """
    y_true, y_pred = prepare_inputs(y_true, y_pred)
    r = ops.abs(y_true - y_pred)
    if beta == 0.0:
        return ops.mean(r, axis=-1)
    c = ops.minimum(r, beta)
    return ops.mean(0.5 * ops.square(c) / beta + (r - c), axis=-1)


@register
class SmoothL1Loss(LossPlus):
    """Smooth L1 loss (torch's `nn.SmoothL1Loss(beta=...)`): quadratic below
    `beta`, linear above.

    See `smooth_l1_loss`.

    Args:
        beta: `>= 0`; 0 is the L1 loss.
        reduction, name, dtype: As for every `keras.losses.Loss`.

    Reference:
        Girshick, "Fast R-CNN", ICCV 2015.

    Examples:
        >>> loss = SmoothL1Loss(beta=1.0)
        >>> float(loss([[0.0, 0.0]], [[0.5, 3.0]]))
        1.3125
    """

    fn = staticmethod(smooth_l1_loss)

    def __init__(self, beta: float = 1.0, reduction: Optional[str] = "sum_over_batch_size",
                 name: Optional[str] = "smooth_l1_loss", dtype: Any = None) -> None:
        super().__init__(reduction=reduction, name=name, dtype=dtype, beta=beta)
