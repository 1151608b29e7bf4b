"""IoU, GIoU, DIoU, CIoU and smooth L1: numpy references written from
torchvision 0.29.1's source (`torchvision/ops/giou_loss.py`, `diou_loss.py`,
`ciou_loss.py`, `_utils._loss_inter_union`; equal to torchvision itself,
see test_box_ops.py), values computed by torchvision's own code, the
tensorflow-addons GIoU test values and a port of its code (its convention:
`eps=0, swapped_corners="empty"`), box formats, the stop-gradient of CIoU's
alpha, and the shared contract."""

import math

import keras
import numpy as np
import pytest

from keras_lossplus import losses as L
from tests.backend_utils import to_numpy, value_and_grad
from tests.contract import LossCase, contract_suite

EPS = 1e-7


def _xyxy(b, box_format="xyxy"):
    b = np.asarray(b, "float64")
    if box_format == "xyxy":
        return b
    if box_format == "xywh":
        return np.concatenate([b[..., :2], b[..., :2] + b[..., 2:]], -1)
    return np.concatenate([b[..., :2] - b[..., 2:] / 2, b[..., :2] + b[..., 2:] / 2], -1)


@np.errstate(divide="ignore", invalid="ignore")  # torchvision's NaN (0 / 0) and inf where it has them
def ref_box_loss(y_true, y_pred, variant, box_format="xyxy", eps=EPS, alpha=None):
    """torchvision 0.29.1's box losses, line by line, in float64 (boxes1 =
    prediction, boxes2 = target); `"iou"` is `1 - intsct / (union + eps)`.
    Its `complete_box_iou_loss` calls `_diou_iou_loss` without `eps`, so the
    union and diagonal of CIoU take 1e-7 whatever `eps` is. `alpha`, if
    given, replaces CIoU's (a constant for the gradient)."""
    diou_eps = EPS if variant == "ciou" else eps
    x1, y1, x2, y2 = np.moveaxis(_xyxy(y_pred, box_format), -1, 0)
    x1g, y1g, x2g, y2g = np.moveaxis(_xyxy(y_true, box_format), -1, 0)
    xkis1, ykis1 = np.maximum(x1, x1g), np.maximum(y1, y1g)
    xkis2, ykis2 = np.minimum(x2, x2g), np.minimum(y2, y2g)
    mask = (ykis2 > ykis1) & (xkis2 > xkis1)
    intsct = np.where(mask, (xkis2 - xkis1) * (ykis2 - ykis1), 0.0)
    union = (x2 - x1) * (y2 - y1) + (x2g - x1g) * (y2g - y1g) - intsct
    iou = intsct / (union + diou_eps)
    if variant == "iou":
        return 1 - iou
    xc1, yc1 = np.minimum(x1, x1g), np.minimum(y1, y1g)
    xc2, yc2 = np.maximum(x2, x2g), np.maximum(y2, y2g)
    if variant == "giou":
        area_c = (xc2 - xc1) * (yc2 - yc1)
        return 1 - (iou - (area_c - union) / (area_c + eps))
    diag = (xc2 - xc1) ** 2 + (yc2 - yc1) ** 2 + diou_eps
    centers = ((x2 + x1) / 2 - (x1g + x2g) / 2) ** 2 + ((y2 + y1) / 2 - (y1g + y2g) / 2) ** 2
    diou = 1 - iou + centers / diag
    if variant == "diou":
        return diou
    v = (4 / math.pi**2) * (np.arctan((x2g - x1g) / (y2g - y1g)) - np.arctan((x2 - x1) / (y2 - y1))) ** 2
    alpha = v / (1 - iou + v + eps) if alpha is None else alpha
    return diou + alpha * v


def ref_smooth_l1(y, p, beta=1.0):
    """torch.nn.SmoothL1Loss(reduction="none", beta=beta), then the mean over the last axis."""
    r = np.abs(np.asarray(y, "float64") - p)
    v = r if beta == 0 else np.where(r < beta, 0.5 * r**2 / beta, r - 0.5 * beta)
    return v.mean(-1)


def box_inputs(box_format="xyxy", shape=(12,)):
    """Valid boxes around the same region: overlapping, nested and disjoint."""

    def make(rng):
        def boxes():
            xy = rng.uniform(0, 10, size=shape + (2,))
            wh = rng.uniform(0.5, 5, size=shape + (2,))
            if box_format == "xyxy":
                return np.concatenate([xy, xy + wh], -1)
            if box_format == "xywh":
                return np.concatenate([xy, wh], -1)
            return np.concatenate([xy + wh / 2, wh], -1)

        return boxes().astype("float32"), boxes().astype("float32")

    return make


def regression(rng):
    y = rng.normal(size=(12, 4)).astype("float32")
    return y, (y + 2 * rng.normal(size=(12, 4))).astype("float32")


_square = [0.0, 0.0, 1.0, 1.0]
BOX_EDGES = {
    "identical": ([_square, [2, 3, 5, 4]], [_square, [2, 3, 5, 4]]),
    "disjoint": ([_square, [0, 0, 1, 1]], [[5, 5, 6, 6], [0, 2, 1, 3]]),
    "zero_area_both": ([[1, 1, 1, 1], [0, 0, 0, 2]], [[1, 1, 1, 1], [0, 0, 0, 2]]),
    "zero_area_pred": ([_square, _square], [[0.5, 0.5, 0.5, 0.5], [0, 0, 1, 0]]),
    "inverted": ([[1, 0, 0, 1], _square], [_square, [1, 1, 0, 0]]),
    "coords_1e4": ([[0, 0, 1e4, 1e4], [1e4, 1e4, 2e4, 3e4]], [[1, 1, 1e4, 2e4], [-1e4, 0, 1e4, 2e4]]),
    "coords_1e30": ([[0, 0, 1e30, 1e30], [-1e30, 0, 1e30, 1e30]], [[1e29, 0, 1e30, 2e30], [0, 0, 1, 1]]),
}
# the contract also casts its edge inputs to float16: 1e30 is checked by the edge grid and below
_CONTRACT_EDGES = {k: v for k, v in BOX_EDGES.items() if k != "coords_1e30"}
_VALUE_EDGES = {"identical": (np.ones((3, 4)), np.ones((3, 4))), "huge": (np.zeros((2, 4)), np.full((2, 4), 1e4))}
_BOX_BAD = [({"box_format": "xyzw"}, "box_format"), ({"eps": -1.0}, "eps"), ({"swapped_corners": "sort"}, "swapped_corners")]
_CLASSES = {"iou": (L.IoULoss, L.iou_loss), "giou": (L.GIoULoss, L.giou_loss),
            "diou": (L.DIoULoss, L.diou_loss), "ciou": (L.CIoULoss, L.ciou_loss)}


def box_case(variant, box_format="xyxy"):
    cls, fn = _CLASSES[variant]
    kwargs = {} if box_format == "xyxy" else {"box_format": box_format}
    return LossCase(
        id=f"{variant}_{box_format}", cls=cls, fn=fn, kwargs=kwargs,
        reference=lambda y, p: ref_box_loss(y, p, variant, box_format), make_inputs=box_inputs(box_format),
        edge_inputs=_CONTRACT_EDGES if box_format == "xyxy" else {}, bad_args=_BOX_BAD, rtol=2e-5, atol=2e-6,
    )


CASES = [
    *(box_case(v) for v in ("iou", "giou", "diou", "ciou")),
    box_case("giou", "xywh"),
    box_case("ciou", "center"),
    box_case("diou", "center_xywh"),
    LossCase(
        id="smooth_l1", cls=L.SmoothL1Loss, fn=L.smooth_l1_loss, kwargs={},
        reference=ref_smooth_l1, make_inputs=regression, edge_inputs=_VALUE_EDGES,
        bad_args=[({"beta": -1.0}, "beta"), ({"beta": "x"}, "beta")],
    ),
    LossCase(
        id="smooth_l1_beta_0.5", cls=L.SmoothL1Loss, fn=L.smooth_l1_loss, kwargs={"beta": 0.5},
        reference=lambda y, p: ref_smooth_l1(y, p, 0.5), make_inputs=regression, edge_inputs=_VALUE_EDGES,
    ),
]

TestContract = contract_suite(CASES, fit_ids={"iou_xyxy", "giou_xyxy", "diou_xyxy", "ciou_xyxy", "smooth_l1"})

def ref_tfa_giou(y_true, y_pred, mode="giou"):
    """tensorflow-addons 0.23 `giou_loss` (`_calculate_giou(y_pred, y_true)`),
    line by line, boxes `[y_min, x_min, y_max, x_max]`, float64."""
    b1_ymin, b1_xmin, b1_ymax, b1_xmax = np.moveaxis(np.asarray(y_pred, "float64"), -1, 0)
    b2_ymin, b2_xmin, b2_ymax, b2_xmax = np.moveaxis(np.asarray(y_true, "float64"), -1, 0)
    b1_area = np.maximum(0, b1_xmax - b1_xmin) * np.maximum(0, b1_ymax - b1_ymin)
    b2_area = np.maximum(0, b2_xmax - b2_xmin) * np.maximum(0, b2_ymax - b2_ymin)
    intersect_width = np.maximum(0, np.minimum(b1_xmax, b2_xmax) - np.maximum(b1_xmin, b2_xmin))
    intersect_height = np.maximum(0, np.minimum(b1_ymax, b2_ymax) - np.maximum(b1_ymin, b2_ymin))
    intersect_area = intersect_width * intersect_height
    union_area = b1_area + b2_area - intersect_area

    def divide_no_nan(a, b):
        return np.where(b == 0, 0.0, a / np.where(b == 0, 1.0, b))

    iou = divide_no_nan(intersect_area, union_area)
    if mode == "iou":
        return 1 - iou
    enclose_width = np.maximum(0, np.maximum(b1_xmax, b2_xmax) - np.minimum(b1_xmin, b2_xmin))
    enclose_height = np.maximum(0, np.maximum(b1_ymax, b2_ymax) - np.minimum(b1_ymin, b2_ymin))
    enclose_area = enclose_width * enclose_height
    return 1 - (iou - divide_no_nan(enclose_area - union_area, enclose_area))


# tensorflow-addons `losses/tests/giou_loss_test.py` (boxes as [y1, x1, y2, x2];
# swapping the axes in both boxes leaves IoU and GIoU unchanged)
TFA_BOXES1 = [[4.0, 3.0, 7.0, 5.0], [5.0, 6.0, 10.0, 7.0]]
TFA_BOXES2 = [[3.0, 4.0, 6.0, 8.0], [14.0, 14.0, 15.0, 15.0]]
TFA = {"box_format": "yxyx", "eps": 0.0, "swapped_corners": "empty"}


def test_tensorflow_addons_giou_and_iou_values():
    giou = to_numpy(L.giou_loss(TFA_BOXES2, TFA_BOXES1, **TFA))
    np.testing.assert_allclose(to_numpy(L.giou_loss(TFA_BOXES2, TFA_BOXES1, box_format="yxyx")), giou, rtol=1e-6)
    np.testing.assert_allclose(to_numpy(L.giou_loss(TFA_BOXES2, TFA_BOXES1)), giou, rtol=1e-6)
    np.testing.assert_allclose(giou, [1.07500000298023224, 1.9333333373069763], rtol=1e-6)
    np.testing.assert_allclose(to_numpy(L.iou_loss(TFA_BOXES2, TFA_BOXES1, **TFA)), [14.0 / 16.0, 1.0], rtol=1e-6)
    with_dims = to_numpy(L.GIoULoss(reduction=None, **TFA)([TFA_BOXES2] * 2, [TFA_BOXES1] * 2))
    np.testing.assert_allclose(with_dims, [[1.075, 1.9333333]] * 2, rtol=1e-6)
    # its test_different_shapes: (2, 1, 4) against (1, 1, 4) broadcast
    broadcast = L.giou_loss(np.array(TFA_BOXES2[:1])[None], np.array(TFA_BOXES1)[:, None], **TFA)
    np.testing.assert_allclose(to_numpy(broadcast)[:, 0], [1.07500000298023224, 1.366071], rtol=1e-6)
    # its test_with_integer: tfa casts integer predictions to float32; here they are refused
    with pytest.raises(TypeError, match="y_pred"):
        L.giou_loss(np.array(TFA_BOXES2, "int32"), np.array(TFA_BOXES1, "int32"), **TFA)


def test_tensorflow_addons_convention(rng):
    # tfa's code on random [y1, x1, y2, x2] boxes, about 3 in 4 with swapped
    # corners (an empty box for tfa), some identical, of zero size, tiny
    # (eps would matter) and the same point (0 / 0); test_box_ops checks the
    # gradient at the edge cases in this convention too
    t = rng.uniform(0, 1, (12, 4)).astype("float32")  # the contract's shape: JAX has compiled its ops
    p = rng.uniform(0, 1, (12, 4)).astype("float32")
    t[:2] = p[:2]
    t[2, 2] = t[2, 0]
    t[3:5], p[3:5] = [[0.5, 0.5, 0.5005, 0.5005]], [[0.5001, 0.5, 0.5006, 0.5004]]
    t[5], p[5] = [0.3] * 4, [0.3] * 4
    for fn, mode in ((L.giou_loss, "giou"), (L.iou_loss, "iou")):
        np.testing.assert_allclose(to_numpy(fn(t, p, **TFA)), ref_tfa_giou(t, p, mode), rtol=2e-6, atol=1e-6)
        value, grad = value_and_grad(lambda x, fn=fn: keras.ops.sum(fn(t, x, **TFA)), p)
        assert np.isfinite(value) and np.isfinite(grad).all()
    # torchvision's convention (the default) differs for swapped corners and tiny boxes
    assert np.abs(to_numpy(L.giou_loss(t, p, box_format="yxyx")) - ref_tfa_giou(t, p)).max() > 0.1


# torchvision 0.29.1's `generalized_box_iou_loss`, `distance_box_iou_loss` and
# `complete_box_iou_loss` (reduction "none", eps 1e-7, float64; torch 2.14.1)
# on these boxes (boxes1 = TV_PRED, boxes2 = TV_TARGET): torchvision imports
# only beside the CUDA-linked torch, not in the test environment, so they were
# computed once and copied here (0.28.0 gave the same values).
TV_PRED = [[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 1.0, 1.0], [1.0, 1.0, 3.0, 4.0], [0.5, 0.5, 0.5, 2.5],
           [2.0, 2.0, 2.0, 2.0], [10.0, -3.0, 14.0, 5.0], [0.0, 0.0, 100.0, 50.0]]
TV_TARGET = [[1.0, 1.0, 3.0, 4.0], [2.0, 3.0, 4.0, 5.0], [1.0, 1.0, 3.0, 4.0], [0.0, 0.0, 1.0, 3.0],
             [1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 2.0, 1.0], [10.0, 10.0, 20.0, 30.0]]
TORCHVISION = {
    "giou": [1.1388888880401233, 1.7499999962500001, 1.6666666380338313e-08, 1.0, 1.0, 1.6964285708067601,
             0.9600000000008],
    "diou": [1.0188888896034567, 1.4512195110945865, 1.6666666380338313e-08, 1.0, 1.0, 1.4663461536667899,
             1.06],
    # torchvision's CIoU is NaN for the point box (atan(0 / 0)); ours is finite there (see below)
    "ciou": [1.0191645501308217, 1.4512195110945865, 1.6666666380338313e-08, 1.0016894606993956, math.nan,
             1.4904640581156272, 1.0849732812748223],
}


@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_torchvision_values(name):
    fn = {"giou": L.giou_loss, "diou": L.diou_loss, "ciou": L.ciou_loss}[name]
    got = to_numpy(fn(TV_TARGET, TV_PRED))
    expected = np.asarray(TORCHVISION[name])
    known = np.isfinite(expected)
    np.testing.assert_allclose(got[known], expected[known], rtol=1e-5, atol=5e-7)  # float32 near 0
    assert np.isfinite(got).all()


def test_worked_values():
    # fvcore's giou_loss test: nested quarter box, side by side, diagonal neighbours
    box, quarter = [-1.0, -1.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0]
    np.testing.assert_allclose(to_numpy(L.giou_loss([box, quarter, quarter], [quarter, [0, 1, 1, 2], [1, 1, 2, 2]])),
                               [0.75, 1.0, 1.5], atol=1e-6)
    for fn in (L.iou_loss, L.giou_loss, L.diou_loss, L.ciou_loss):
        np.testing.assert_allclose(to_numpy(fn([box], [box])), [0.0], atol=1e-6)


@pytest.mark.parametrize("box_format", ["yxyx", "xywh", "center", "center_xywh", "cxcywh"])
def test_box_formats_agree_with_xyxy(box_format, rng):
    t, p = box_inputs("xyxy")(rng)

    def convert(b):
        if box_format == "yxyx":
            return b[..., [1, 0, 3, 2]]
        wh = b[..., 2:] - b[..., :2]
        return np.concatenate([b[..., :2] if box_format == "xywh" else b[..., :2] + wh / 2, wh], -1)

    for fn in (L.iou_loss, L.giou_loss, L.diou_loss, L.ciou_loss):
        np.testing.assert_allclose(to_numpy(fn(convert(t), convert(p), box_format=box_format)), to_numpy(fn(t, p)),
                                   rtol=1e-5, atol=1e-6)


def test_any_leading_shape(rng):
    t, p = box_inputs("xyxy", shape=(2, 3, 5))(rng)
    out = to_numpy(L.ciou_loss(t, p))
    assert out.shape == (2, 3, 5)
    np.testing.assert_allclose(out, ref_box_loss(t, p, "ciou"), rtol=2e-5, atol=2e-6)


def test_scale_invariant_up_to_1e30(rng):
    t, p = box_inputs("xyxy")(rng)
    for fn in (L.giou_loss, L.ciou_loss):
        base = to_numpy(fn(t, p))
        for s in (1e4, 1e30):
            np.testing.assert_allclose(to_numpy(fn(t * s, p * s)), base, rtol=1e-4, atol=1e-5)


def test_ciou_alpha_is_a_constant_for_the_gradient():
    # d/dx of (diou + stop_gradient(alpha) * v) = d diou + alpha * dv; with
    # alpha differentiated, the gradient would be larger by v * d alpha
    t = np.array([[0.0, 0.0, 3.0, 1.0]], "float32")
    p = np.array([[0.2, 0.1, 1.3, 1.4]], "float32")
    _, g = value_and_grad(lambda x: keras.ops.sum(L.ciou_loss(t, x)), p)
    h = 1e-3
    eye = np.eye(4)
    t64, p64 = t.astype("float64"), p.astype("float64")
    iou = 1 - ref_box_loss(t64, p64, "iou")
    v0 = (4 / math.pi**2) * (math.atan(3.0) - math.atan(1.1 / 1.3)) ** 2
    alpha = v0 / (1 - iou + v0 + EPS)
    numeric = []
    for i in range(4):
        q_plus, q_minus = p64 + h * eye[i], p64 - h * eye[i]

        def frozen(q):
            w, hh = q[0, 2] - q[0, 0], q[0, 3] - q[0, 1]
            vq = (4 / math.pi**2) * (math.atan(3.0) - math.atan(w / hh)) ** 2
            return ref_box_loss(t64, q, "diou")[0] + alpha[0] * vq

        numeric.append((frozen(q_plus) - frozen(q_minus)) / (2 * h))
    np.testing.assert_allclose(to_numpy(g)[0], numeric, rtol=1e-3, atol=1e-5)


def test_last_axis_must_be_four():
    for fn in (L.iou_loss, L.ciou_loss):
        with pytest.raises(ValueError, match="`y_pred`"):
            fn(np.zeros((2, 4), "float32"), np.zeros((2, 5), "float32"))
        with pytest.raises(ValueError, match="`y_true`"):
            fn(np.zeros((2, 3), "float32"), np.zeros((2, 4), "float32"))


def test_smooth_l1_beta_one_is_keras_huber(rng):
    y, p = regression(rng)
    huber = to_numpy(keras.losses.Huber(delta=1.0, reduction=None)(y, p))
    np.testing.assert_allclose(to_numpy(L.smooth_l1_loss(y, p)), huber, rtol=1e-5, atol=1e-6)
    huber2 = to_numpy(keras.losses.Huber(delta=2.0, reduction=None)(y, p)) / 2.0
    np.testing.assert_allclose(to_numpy(L.smooth_l1_loss(y, p, beta=2.0)), huber2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(to_numpy(L.smooth_l1_loss(y, p, beta=0.0)), np.abs(y - p).mean(-1), rtol=1e-6)


def test_smooth_l1_equals_torch(rng):
    torch = pytest.importorskip("torch")
    y, p = regression(rng)
    for beta in (1.0, 0.5, 0.0):
        expected = torch.nn.functional.smooth_l1_loss(
            torch.as_tensor(p, dtype=torch.float64), torch.as_tensor(y, dtype=torch.float64), reduction="none", beta=beta
        ).mean(-1)
        np.testing.assert_allclose(to_numpy(L.smooth_l1_loss(y, p, beta=beta)), expected.numpy(), rtol=1e-5, atol=1e-6)
        # Keras' default reduction gives torch's reduction="mean"
        mean = torch.nn.functional.smooth_l1_loss(
            torch.as_tensor(p, dtype=torch.float64), torch.as_tensor(y, dtype=torch.float64), beta=beta
        )
        np.testing.assert_allclose(float(L.SmoothL1Loss(beta=beta)(y, p)), float(mean), rtol=1e-5)
