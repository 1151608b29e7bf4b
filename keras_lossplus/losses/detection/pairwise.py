"""torchvision's pairwise IoU matrices: `box_iou`, `generalized_box_iou`,
`distance_box_iou`, `complete_box_iou` (`(..., N, 4)` and `(..., M, 4)`
boxes give an `(..., N, M)` matrix), used to match predictions to targets
(DETR's Hungarian matching cost, anchor assignment) and as losses on its
diagonal."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from keras_lossplus.losses.detection.geometry import (
    BOX_FORMATS,
    corners,
    iou_terms,
    rescale,
)
from keras_lossplus.losses.options import Options, choice, number
from keras_lossplus.ops import compute_dtype

Tensor = Any

__all__ = ["box_iou", "complete_box_iou", "distance_box_iou", "generalized_box_iou"]

_FORMAT = {"box_format": choice(*BOX_FORMATS)}
_FORMAT_AND_EPS = {**_FORMAT, "eps": number(low=0.0)}


def _prepare(boxes1: Any, boxes2: Any) -> tuple:
    """Both sets as tensors of one floating dtype (integer boxes become
    `keras.config.floatx()`, half precision float32), each `(..., K, 4)`."""
    tensors = [ops.convert_to_tensor(b) for b in (boxes1, boxes2)]
    dtypes = []
    for name, b in zip(("boxes1", "boxes2"), tensors):
        if len(b.shape) < 2 or b.shape[-1] != 4:
            raise ValueError(
                f"`{name}` must hold a set of boxes, shape (..., N, 4). Received: {name}.shape={tuple(b.shape)}"
            )
        dtype = keras.backend.standardize_dtype(b.dtype)
        dtypes.append(compute_dtype(dtype) if keras.backend.is_float_dtype(dtype) else keras.config.floatx())
    dtype = keras.backend.result_type(*dtypes)
    return tuple(ops.cast(b, dtype) for b in tensors)


def pairwise_terms(boxes1: Any, boxes2: Any, variant: str, box_format: str, eps: float) -> Tensor:
    """The `(..., N, M)` matrix of `variant` between the two sets of boxes,
    each pair rescaled by a power of two only when its coordinates pass
    `2^24` (see `geometry`)."""
    boxes1, boxes2 = _prepare(boxes1, boxes2)
    pred, target, scale, floor = rescale(corners(boxes1, box_format), corners(boxes2, box_format), pairwise=True)
    iou, penalty, aspect = iou_terms(pred, target, variant, eps=eps, scale=scale, floor=floor, union_eps=False,
                                     clamp_sizes=False, clamp_enclosing=True)
    if variant == "iou":
        return iou
    value = iou - penalty
    return value if aspect is None else value - aspect


@Options(**_FORMAT)
def box_iou(boxes1: Tensor, boxes2: Tensor, box_format: str = "xyxy") -> Tensor:
    r"""IoU of every box of `boxes1` with every box of `boxes2`
    (torchvision's `ops.box_iou`).

    $$\mathrm{IoU}_{ij} = \frac{|A_i \cap B_j|}{|A_i \cup B_j|}$$

    without `eps`, as torchvision; where the union is 0 (two boxes of zero
    area that do not overlap), 0 rather than torchvision's NaN. Value and
    gradient are finite for degenerate boxes and for coordinates up to
    1e30 (see the losses' `eps`).

    Args:
        boxes1: `(..., N, 4)` boxes (integer boxes are cast to
            `keras.config.floatx()`).
        boxes2: `(..., M, 4)` boxes; leading axes broadcast with `boxes1`'s.
        box_format: `"xyxy"` (default; torchvision's), `"yxyx"`, `"xywh"`
            or `"center"` (`"cxcywh"`, `"center_xywh"`).

    Returns:
        The `(..., N, M)` matrix.

    Reference:
        torchvision `ops.box_iou`; Everingham et al., "The PASCAL Visual
        Object Classes (VOC) Challenge", IJCV 2010.

    Examples:
        >>> print(keras.ops.convert_to_numpy(box_iou([[0.0, 0.0, 2.0, 2.0]], [[1.0, 0.0, 3.0, 2.0], [5.0, 5.0, 6.0, 6.0]])).round(4))
        [[0.3333 0.    ]]
    """
    return pairwise_terms(boxes1, boxes2, "iou", box_format, 0.0)


@Options(**_FORMAT)
def generalized_box_iou(boxes1: Tensor, boxes2: Tensor, box_format: str = "xyxy") -> Tensor:
    r"""Generalized IoU of every box of `boxes1` with every box of `boxes2`
    (torchvision's `ops.generalized_box_iou`, DETR's matching cost).

    $$\mathrm{GIoU}_{ij} = \mathrm{IoU}_{ij} - \frac{|C_{ij}| - |A_i \cup B_j|}{|C_{ij}|}$$

    with $C_{ij}$ the smallest box enclosing both, without `eps` as
    torchvision; a zero ratio where a denominator is 0 (torchvision: NaN).
    `1 - diag(generalized_box_iou(pred, target))` is `giou_loss(target, pred,
    eps=0)`.

    Args:
        boxes1: `(..., N, 4)` boxes.
        boxes2: `(..., M, 4)` boxes; leading axes broadcast.
        box_format: `"xyxy"` (default), `"yxyx"`, `"xywh"` or `"center"`
            (`"cxcywh"`, `"center_xywh"`).

    Returns:
        The `(..., N, M)` matrix, in `[-1, 1]`.

    Reference:
        Rezatofighi et al., "Generalized Intersection over Union", CVPR 2019;
        torchvision `ops.generalized_box_iou`.

    Examples:
        >>> print(keras.ops.convert_to_numpy(generalized_box_iou([[0.0, 0.0, 1.0, 1.0]], [[1.0, 1.0, 2.0, 2.0]])).round(4))
        [[-0.5]]
    """
    return pairwise_terms(boxes1, boxes2, "giou", box_format, 0.0)


@Options(**_FORMAT_AND_EPS)
def distance_box_iou(boxes1: Tensor, boxes2: Tensor, box_format: str = "xyxy", eps: float = 1e-7) -> Tensor:
    r"""Distance IoU of every box of `boxes1` with every box of `boxes2`
    (torchvision's `ops.distance_box_iou`).

    $$\mathrm{DIoU}_{ij} = \mathrm{IoU}_{ij} - \frac{\rho^2_{ij}}{c^2_{ij} + \epsilon}$$

    with the IoU without `eps` (as torchvision's, which takes it from
    `box_iou`) and $c_{ij}$ the diagonal of the enclosing box.

    Args:
        boxes1: `(..., N, 4)` boxes.
        boxes2: `(..., M, 4)` boxes; leading axes broadcast.
        box_format: `"xyxy"` (default), `"yxyx"`, `"xywh"` or `"center"`
            (`"cxcywh"`, `"center_xywh"`).
        eps: `>= 0` (torchvision's 1e-7), added to the squared diagonal, in
            the boxes' squared units.

    Returns:
        The `(..., N, M)` matrix.

    Reference:
        Zheng et al., "Distance-IoU Loss", AAAI 2020; torchvision
        `ops.distance_box_iou`.

    Examples:
        >>> print(keras.ops.convert_to_numpy(distance_box_iou([[0.0, 0.0, 1.0, 1.0]], [[1.0, 1.0, 2.0, 2.0]])).round(4))
        [[-0.25]]
    """
    return pairwise_terms(boxes1, boxes2, "diou", box_format, eps)


@Options(**_FORMAT_AND_EPS)
def complete_box_iou(boxes1: Tensor, boxes2: Tensor, box_format: str = "xyxy", eps: float = 1e-7) -> Tensor:
    r"""Complete IoU of every box of `boxes1` with every box of `boxes2`
    (torchvision's `ops.complete_box_iou`).

    $$\mathrm{CIoU}_{ij} = \mathrm{DIoU}_{ij} - \alpha_{ij} v_{ij}, \quad
      v = \frac{4}{\pi^2}\Bigl(\arctan\frac{w_i}{h_i} - \arctan\frac{w_j}{h_j}\Bigr)^2,
      \quad \alpha = \frac{v}{1 - \mathrm{IoU} + v + \epsilon}$$

    `alpha` is a constant for the gradient (torchvision: `torch.no_grad()`);
    `arctan(w / h)` is taken as `atan2` (finite for a box of zero height).

    Args:
        boxes1: `(..., N, 4)` boxes.
        boxes2: `(..., M, 4)` boxes; leading axes broadcast.
        box_format: `"xyxy"` (default), `"yxyx"`, `"xywh"` or `"center"`
            (`"cxcywh"`, `"center_xywh"`).
        eps: `>= 0` (torchvision's 1e-7), added to the squared diagonal (in
            the boxes' squared units) and to `alpha`'s denominator.

    Returns:
        The `(..., N, M)` matrix.

    Reference:
        Zheng et al., "Enhancing Geometric Factors in Model Learning and
        Inference for Object Detection and Instance Segmentation", IEEE
        T-CYB 2021; torchvision `ops.complete_box_iou`.

    Examples:
        >>> print(keras.ops.convert_to_numpy(complete_box_iou([[0.0, 0.0, 1.0, 1.0]], [[0.0, 0.0, 2.0, 1.0]])).round(4))
        [[0.4468]]
    """
    return pairwise_terms(boxes1, boxes2, "ciou", box_format, eps)
