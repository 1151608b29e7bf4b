"""Box geometry shared by the IoU losses and the pairwise IoU matrices.

Every quantity follows torchvision's formulas (`torchvision/ops/boxes.py`,
`_utils._loss_inter_union`, `giou_loss.py`, `diou_loss.py`,
`ciou_loss.py`), with `eps` in the boxes' own units: it is added to areas
(union, enclosing box) and to the squared enclosing diagonal.

Overflow. Areas and squared diagonals of coordinates past about `1e19` do
not fit in float32 (and their gradients, which square the areas again,
overflow past about `4e9`). Each pair of boxes is therefore divided by a
power of two, `2^k`, chosen so that its largest coordinate magnitude is at
most `2^24`, and `eps` (in units of area) by `2^(2k)`. Dividing by a power
of two is exact in binary floating point, and every IoU quantity is a ratio
of terms of the same degree, so the value and the gradient are bit for bit
those of the unscaled formula (but for the floor below); for coordinates up
to `2^24` (1.7e7) nothing is divided at all.

Denominators. A ratio's gradient divides by the denominator squared, which
overflows (or underflows to `0 * inf = NaN`) for denominators near 0. So the
scaled `eps` is kept at least a floor that grows with the pair's scaled
coordinates `m` (`1.7e-18 max(1, m)^1.5` in float32: 1.7e-18 for
normalised coordinates, 5e-11 at 1e5, at most 1.2e-7; above torchvision's
`eps = 1e-7` only for coordinates near `2^24`, where float32 cannot hold an
area to `1e-7` anyway), and a denominator smaller than the floor in
magnitude (only possible without `eps`, or with swapped corners) gives a
ratio of 0, as 0 / 0 does.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np
from keras import ops

Tensor = Any

# cxcywh: torchvision's name; center_xywh: keras-cv's
BOX_FORMATS = ("xyxy", "yxyx", "xywh", "center", "center_xywh", "cxcywh")
SWAPPED_CORNERS = ("keep", "empty")
# boxes whose coordinates are within 2^24 are never rescaled; the power of two
# taken out of the others leaves their largest coordinate within 2^24
_UNSCALED_LOG2 = 24


def corners(boxes: Tensor, box_format: str) -> tuple:
    """`(x1, y1, x2, y2)` of `boxes` (last axis of 4) in `box_format`."""
    a, b, c, d = (boxes[..., i] for i in range(4))
    if box_format == "xyxy":
        return a, b, c, d
    if box_format == "yxyx":  # tensorflow-addons' [y_min, x_min, y_max, x_max]
        return b, a, d, c
    if box_format == "xywh":
        return a, b, a + c, b + d
    return a - 0.5 * c, b - 0.5 * d, a + 0.5 * c, b + 0.5 * d  # center / center_xywh / cxcywh


def _magnitude(box: tuple) -> Tensor:
    """Per box, its largest coordinate magnitude (a constant for the gradient)."""
    return ops.stop_gradient(ops.max(ops.abs(ops.stack(box, axis=-1)), axis=-1))


def _power_of_two_scale(m: Tensor) -> Tensor:
    """A power of two `>= 1` that brings the magnitudes `m` within `2^24`:
    1 for magnitudes within `2^24`, else one factor `2^26` (float32; `2^200`
    in float64) per threshold `2^24, 2^50, 2^76, ...` that `m` passes.

    A product of exact powers of two is exact on every backend (`pow(2, k)`
    need not be)."""
    dtype = ops.dtype(m)
    step, rungs = (200, 5) if dtype == "float64" else (26, 4)  # 2^(24 + step * rungs) >= the largest float
    scale = None
    for i in range(rungs):
        threshold = ops.convert_to_tensor(np.asarray(2.0 ** (_UNSCALED_LOG2 + step * i), dtype))
        factor = ops.where(ops.greater(m, threshold),
                           ops.convert_to_tensor(np.asarray(2.0**step, dtype)), 1.0)
        scale = factor if scale is None else scale * factor
    return scale


def rescale(pred: tuple, target: tuple, pairwise: bool) -> tuple:
    """`(pred, target, scale, floor)`: both boxes of each pair divided by the
    pair's power of two (see the module docstring), and the smallest
    denominator magnitude for those scaled boxes.

    `pairwise`: `pred` is `(..., N)` and `target` `(..., M)` per coordinate,
    and every pair of the `(..., N, M)` grid is scaled on its own (the
    larger of its two boxes' scales, computed per box).

    `floor` is `32 max(1, m)^1.5 / sqrt(largest float)` with `m` the pair's
    largest scaled coordinate magnitude (1.7e-18 in float32 for coordinates
    within 1, 5e-11 at 1e5, at most 1.2e-7): a ratio's numerator is at most
    about `16 m^2` and its gradient multiplies that by `8 m /
    denominator^2`, which stays finite for denominators above `floor`.
    """
    m_pred, m_target = _magnitude(pred), _magnitude(target)
    if pairwise:
        n = m_pred.shape[-1]
        if n is not None and tuple(m_pred.shape[:-1]) == tuple(m_target.shape[:-1]):  # one pass over both sets
            scales = _power_of_two_scale(ops.concatenate([m_pred, m_target], axis=-1))
            s_pred, s_target = scales[..., :n], scales[..., n:]
        else:
            s_pred, s_target = _power_of_two_scale(m_pred), _power_of_two_scale(m_target)
        s_pred, s_target = ops.expand_dims(s_pred, -1), ops.expand_dims(s_target, -2)
        m_pred, m_target = ops.expand_dims(m_pred, -1), ops.expand_dims(m_target, -2)
        pred = tuple(ops.expand_dims(c, -1) for c in pred)
        target = tuple(ops.expand_dims(c, -2) for c in target)
        scale = ops.maximum(s_pred, s_target)
        m = ops.maximum(m_pred, m_target)
    else:
        m = ops.maximum(m_pred, m_target)
        scale = _power_of_two_scale(m)
    m = ops.maximum(m / scale, 1.0)
    floor = m * ops.sqrt(m) * (32.0 / math.sqrt(float(np.finfo(ops.dtype(m)).max)))
    return tuple(c / scale for c in pred), tuple(c / scale for c in target), scale, floor


def area_eps(eps: float, scale: Tensor, floor: Tensor) -> Optional[Tensor]:
    """`eps` (in the boxes' squared units) in the units of boxes divided by
    `scale`, at least `floor`; `None` for `eps = 0` (0 / 0 is then taken
    as 0)."""
    if eps == 0.0:
        return None
    return ops.maximum(eps / ops.square(scale), floor)


def divide(numerator: Tensor, denominator: Tensor, eps: Optional[Tensor], floor: Optional[Tensor]) -> Tensor:
    """`numerator / (denominator + eps)` (`eps=None`: no `eps`), and 0 where
    that denominator is below `floor` in magnitude (0 included; `floor=None`:
    where it is 0), with a finite gradient.

    With `eps > 0` (at least `floor`) a denominator can only be that small
    for swapped corners (negative widths), where torchvision's value is then
    huge, infinite or NaN; everywhere else this is torchvision's division,
    negative denominators included. With `eps=None` it is tensorflow-addons'
    `divide_no_nan` (areas below `floor`, 1.7e-18 in float32 for normalised
    coordinates, count as 0).
    """
    if eps is not None:
        denominator = denominator + eps
    if floor is None:
        usable = ops.not_equal(denominator, 0.0)
    else:
        usable = ops.greater_equal(ops.abs(denominator), floor)
    return ops.where(usable, numerator / ops.where(usable, denominator, 1.0), 0.0)


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


def _larger_smaller(a: Tensor, b: Tensor) -> tuple:
    """`(max(a, b), min(a, b))` from one comparison: at a tie both take `a`'s
    side (`a` counts as the larger), so the gradient with respect to `a` is
    one one-sided derivative on every backend. With `ops.maximum` and
    `ops.minimum` TensorFlow gives the tie to `a` in both, which mixes the
    two sides (a gradient that is no derivative in any direction)."""
    a_larger = ops.greater_equal(a, b)
    return ops.where(a_larger, a, b), ops.where(a_larger, b, a)


def _positive_part(x: Tensor) -> Tensor:
    """`max(x, 0)` with the derivative 0 at `x = 0` on every backend (where a
    box's extent shrinks to nothing, the side on which the `_larger_smaller`
    ties put the gradient)."""
    return ops.where(x > 0, x, 0.0)


def _extent(lo: Tensor, hi: Tensor, clamp: bool) -> Tensor:
    return _positive_part(hi - lo) if clamp else hi - lo


def iou_terms(pred: tuple, target: tuple, variant: str, *, eps: float, scale: Tensor, floor: Tensor,
              union_eps: bool, clamp_sizes: bool, clamp_enclosing: bool) -> tuple:
    """`(iou, penalty, aspect)` of the boxes `pred` and `target` (corner
    tuples of broadcastable tensors, scaled by `rescale`, which gave
    `scale` and `floor`).

    `penalty` is GIoU's `(|C| - |A u B|) / (|C| + eps)` or DIoU's
    `rho^2 / (c^2 + eps)` (None for `"iou"`); `aspect` is CIoU's
    `alpha * v` with `alpha` a constant for the gradient (None otherwise).
    `union_eps`: `eps` is added to the union (the losses) or not (the
    pairwise matrices, as torchvision's `box_iou`). `clamp_sizes`: a box's
    width and height are `max(x2 - x1, 0)` (tensorflow-addons) rather than
    taken as given (torchvision); `clamp_enclosing` likewise for the
    enclosing box.
    """
    x1, y1, x2, y2 = pred
    x1g, y1g, x2g, y2g = target
    eps_area = area_eps(eps, scale, floor)
    w, h = _extent(x1, x2, clamp_sizes), _extent(y1, y2, clamp_sizes)
    wg, hg = _extent(x1g, x2g, clamp_sizes), _extent(y1g, y2g, clamp_sizes)
    (x1_in, x1_out), (y1_in, y1_out) = _larger_smaller(x1, x1g), _larger_smaller(y1, y1g)
    (x2_out, x2_in), (y2_out, y2_in) = _larger_smaller(x2, x2g), _larger_smaller(y2, y2g)
    inter = _positive_part(x2_in - x1_in) * _positive_part(y2_in - y1_in)
    union = w * h + wg * hg - inter
    iou = divide(inter, union, eps_area if union_eps else None, floor)
    if variant == "iou":
        return iou, None, None
    cw = _extent(x1_out, x2_out, clamp_enclosing)  # the smallest enclosing box
    ch = _extent(y1_out, y2_out, clamp_enclosing)
    if variant == "giou":
        area_c = cw * ch
        return iou, divide(area_c - union, area_c, eps_area if union_eps else None, floor), None
    # centre offsets from differences of nearby coordinates: exact in float32
    # where torchvision's (x1 + x2) / 2 - (x1g + x2g) / 2 rounds at large coordinates
    centers = ops.square(0.5 * ((x1 - x1g) + (x2 - x2g))) + ops.square(0.5 * ((y1 - y1g) + (y2 - y2g)))
    penalty = divide(centers, ops.square(cw) + ops.square(ch), eps_area, floor)
    if variant == "diou":
        return iou, penalty, None
    v = (4.0 / math.pi**2) * ops.square(_aspect(wg, hg) - _aspect(w, h))
    # torchvision: alpha under torch.no_grad(); eps here is a plain number, not an area
    alpha = ops.stop_gradient(divide(v, 1.0 - iou + v, eps if eps > 0.0 else None, None))
    return iou, penalty, alpha * v
