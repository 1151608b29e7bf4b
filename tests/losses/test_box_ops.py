"""torchvision's pairwise IoU matrices (`box_iou`, `generalized_box_iou`,
`distance_box_iou`, `complete_box_iou`) and the IoU losses at the scales
detectors use, against torchvision 0.29.1.

CI cannot import torchvision (its wheels need the CUDA-linked torch), so
the reference here is a line-by-line numpy port of torchvision 0.29.1's
`ops/boxes.py` (`ref_pairwise`, beside `ref_box_loss` in test_detection.py
for the losses), pinned by `PUBLISHED`: means computed by the real
torchvision 0.29.1 (torch 2.14.1, float64) on the seeded boxes of
`scale_boxes`. `test_side_by_side_with_torchvision` runs torchvision itself
where it imports (and then also checks the port against it elementwise).
"""

import math

import keras
import numpy as np
import pytest

from keras_lossplus import losses as L
from tests import peers
from tests.backend_utils import (
    BACKEND,
    XLA_BACKENDS,
    to_numpy,
    value_and_grad,
    xla_compile,
)
from tests.losses.test_detection import BOX_EDGES, ref_box_loss

EPS = 1e-7
# name: (low, high) of the box centres, (low, high) of the sizes (log-uniform)
SCALES = {
    "normalized": ((0.0, 1.0), (0.003, 0.4)),
    "pixel_1e5": ((0.0, 1e5), (1.0, 3e4)),
    "one_px": ((0.0, 1024.0), (1.0, 1.0)),
    "small_1024": ((0.0, 1024.0), (2.0, 8.0)),
}


def scale_boxes(name, n=48, seed=0):
    """`(target, pred)`, `n` float32 xyxy boxes each: targets at `SCALES[name]`,
    predictions near them (centres moved by about 0.4 box, sizes by about
    30%; a 1-px target keeps its size), some overlapping, some disjoint."""
    rng = np.random.default_rng(seed)
    (lo, hi), (smin, smax) = SCALES[name]
    wh = np.exp(rng.uniform(np.log(smin), np.log(smax), (n, 2)))
    c = rng.uniform(lo + smax, hi - smax, (n, 2))
    cp = c + rng.normal(0.0, 0.4, (n, 2)) * wh
    whp = wh if smin == smax else wh * np.exp(rng.normal(0.0, 0.3, (n, 2)))
    t = np.concatenate([c - wh / 2, c + wh / 2], -1).astype("float32")
    p = np.concatenate([cp - whp / 2, cp + whp / 2], -1).astype("float32")
    return t, p


def ref_pairwise(boxes1, boxes2, variant, eps=EPS, alpha=None):
    """torchvision 0.29.1 `box_iou` / `generalized_box_iou` /
    `distance_box_iou` / `complete_box_iou`, line by line, in float64
    (`alpha`, if given, replaces CIoU's)."""
    b1, b2 = np.asarray(boxes1, "float64"), np.asarray(boxes2, "float64")
    area1 = (b1[..., 2] - b1[..., 0]) * (b1[..., 3] - b1[..., 1])
    area2 = (b2[..., 2] - b2[..., 0]) * (b2[..., 3] - b2[..., 1])
    lt = np.maximum(b1[..., :, None, :2], b2[..., None, :, :2])
    rb = np.minimum(b1[..., :, None, 2:], b2[..., None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = area1[..., :, None] + area2[..., None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / union
        if variant == "iou":
            return iou
        lti = np.minimum(b1[..., :, None, :2], b2[..., None, :, :2])
        rbi = np.maximum(b1[..., :, None, 2:], b2[..., None, :, 2:])
        whi = np.clip(rbi - lti, 0, None)
        if variant == "giou":
            areai = whi[..., 0] * whi[..., 1]
            return iou - (areai - union) / areai
        diag = whi[..., 0] ** 2 + whi[..., 1] ** 2 + eps
        x_p, y_p = (b1[..., 0] + b1[..., 2]) / 2, (b1[..., 1] + b1[..., 3]) / 2
        x_g, y_g = (b2[..., 0] + b2[..., 2]) / 2, (b2[..., 1] + b2[..., 3]) / 2
        centers = (x_p[..., :, None] - x_g[..., None, :]) ** 2 + (y_p[..., :, None] - y_g[..., None, :]) ** 2
        diou = iou - centers / diag
        if variant == "diou":
            return diou
        w_pred, h_pred = (b1[..., 2] - b1[..., 0])[..., :, None], (b1[..., 3] - b1[..., 1])[..., :, None]
        w_gt, h_gt = (b2[..., 2] - b2[..., 0])[..., None, :], (b2[..., 3] - b2[..., 1])[..., None, :]
        v = (4 / math.pi**2) * (np.arctan(w_pred / h_pred) - np.arctan(w_gt / h_gt)) ** 2
        alpha = v / (1 - iou + v + eps) if alpha is None else alpha
        return diou - alpha * v


# torchvision 0.29.1 (torch 2.14.1), float64, on `scale_boxes(name)` (boxes1 =
# pred, boxes2 = target): the mean of each loss over the 48 pairs ("iou_loss"
# is `1 - intsct / (union + eps)` from its `_loss_inter_union`), and of each
# matrix between the first 12 predictions and the first 10 targets
PUBLISHED = {
    "normalized": {"iou_loss": 0.7280964641932076, "giou_loss": 0.8633871270016256, "diou_loss": 0.8070236565993598,
                   "ciou_loss": 0.8073016791317601, "iou": 0.03662475235629821, "giou": -0.5649724539243953,
                   "diou": -0.2404614952619513, "ciou": -0.3083143187033315},
    "pixel_1e5": {"iou_loss": 0.7280806174521989, "giou_loss": 0.8633857635674268, "diou_loss": 0.8034607138473094,
                  "ciou_loss": 0.8036011061756684, "iou": 0.023710634041681566, "giou": -0.8572118535168288,
                  "diou": -0.6687184693348951, "ciou": -0.7925730183539784},
    "one_px": {"iou_loss": 0.7061022799516445, "giou_loss": 0.8284860643503104, "diou_loss": 0.7961375478186743,
               "ciou_loss": 0.7961375478186743, "iou": 0.027325790569779067, "giou": -0.8988784841331824,
               "diou": -0.8905620121118213, "ciou": -0.8905620121118213},
    "small_1024": {"iou_loss": 0.7280394323512391, "giou_loss": 0.8633649543972147, "diou_loss": 0.8148752671712977,
                   "ciou_loss": 0.8155665654430205, "iou": 0.0237102274699452, "giou": -0.9024957831364453,
                   "diou": -0.8765552444739638, "ciou": -0.8862981370070345},
}
VARIANTS = ("iou", "giou", "diou", "ciou")
LOSSES = {"iou": L.iou_loss, "giou": L.giou_loss, "diou": L.diou_loss, "ciou": L.ciou_loss}
MATRICES = {"iou": L.box_iou, "giou": L.generalized_box_iou, "diou": L.distance_box_iou, "ciou": L.complete_box_iou}
SETS = (*SCALES, "awkward", "edges")  # edges: the contract's edge cases, 1e30 included


def _awkward_boxes():
    """Swapped corners, zero-size boxes, identical, touching and edge-sharing boxes (xyxy)."""
    rng = np.random.default_rng(1)
    t = rng.uniform(0, 10, (24, 4)).astype("float32")  # about 3 in 4 with a swapped axis
    p = rng.uniform(0, 10, (24, 4)).astype("float32")
    t[:3] = p[:3]  # identical
    t[3:5, 2] = t[3:5, 0]  # zero width
    t[5:7], p[5:7] = [[1, 1, 1, 1]], [[1, 1, 1, 1]]  # the same point
    t[7], p[7] = [0, 0, 1, 1], [1, 0, 2, 1]  # touching
    t[8], p[8] = [0, 0, 2, 2], [0, 0, 1, 3]  # two shared edges
    return t, p


def loss_boxes():
    """`(target, pred)` of every set, concatenated (one shape for every call:
    JAX compiles each op once per shape), and each set's rows."""
    edges = tuple(np.concatenate([np.asarray(b[i], "float32") for b in BOX_EDGES.values()]) for i in (0, 1))
    pairs = [scale_boxes(name) for name in SCALES] + [_awkward_boxes(), edges]
    rows, start = {}, 0
    for name, (t, _) in zip(SETS, pairs):
        rows[name], start = slice(start, start + len(t)), start + len(t)
    return np.concatenate([t for t, _ in pairs]), np.concatenate([p for _, p in pairs]), rows


def matrix_boxes():
    """`(boxes1, boxes2)`: 12 predictions and 10 targets of every set, stacked
    on a leading axis, `(5, 12, 4)` and `(5, 10, 4)`."""
    pairs = [scale_boxes(name) for name in SCALES] + [_awkward_boxes()]
    return np.stack([p[:12] for _, p in pairs]), np.stack([t[:10] for t, _ in pairs])


def test_port_reproduces_published_torchvision_values():
    for name in SCALES:
        t, p = scale_boxes(name)
        for v in VARIANTS:
            np.testing.assert_allclose(ref_box_loss(t, p, v).mean(), PUBLISHED[name][v + "_loss"], rtol=1e-12)
            np.testing.assert_allclose(ref_pairwise(p[:12], t[:10], v).mean(), PUBLISHED[name][v], rtol=1e-12)


def test_matches_torchvision_at_every_scale():
    # normalised, pixel (to 1e5), 1-px and 2-8 px boxes: float32 within 1e-6 of
    # torchvision's float64 (eps in the boxes' own units at every scale)
    t, p, rows = loss_boxes()
    b1, b2 = matrix_boxes()
    for v in VARIANTS:
        loss, expected = to_numpy(LOSSES[v](t, p)), ref_box_loss(t, p, v)
        matrix, expected_matrix = to_numpy(MATRICES[v](b1, b2)), ref_pairwise(b1, b2, v)
        for i, name in enumerate(SCALES):
            np.testing.assert_allclose(loss[rows[name]], expected[rows[name]], rtol=0, atol=1e-6, err_msg=name)
            np.testing.assert_allclose(loss[rows[name]].mean(), PUBLISHED[name][v + "_loss"], rtol=0, atol=1e-6)
            np.testing.assert_allclose(matrix[i], expected_matrix[i], rtol=0, atol=1e-6, err_msg=name)
            np.testing.assert_allclose(matrix[i].mean(), PUBLISHED[name][v], rtol=0, atol=1e-6)
        # swapped corners taken as given, as torchvision (values up to 1e8 there);
        # where its denominator is 0 (NaN or inf) ours is finite; 1e30 coordinates
        assert np.isfinite(loss).all() and np.isfinite(matrix).all()
        for name in ("awkward", "edges"):
            got, want = loss[rows[name]], expected[rows[name]]
            finite = np.isfinite(want)
            np.testing.assert_allclose(got[finite], want[finite], rtol=1e-6, atol=1e-6, err_msg=name)
        finite = np.isfinite(expected_matrix[-1])
        np.testing.assert_allclose(matrix[-1][finite], expected_matrix[-1][finite], rtol=1e-6, atol=1e-6)


def test_side_by_side_with_torchvision():
    """torchvision itself (run under KERAS_BACKEND=torch where it imports):
    the ports equal it exactly, ours to 1e-6, on every set of boxes."""
    tvo = peers.torchvision_ops()
    torch = pytest.importorskip("torch")

    def tv(fn, *boxes, **kw):
        return fn(*(torch.as_tensor(np.asarray(b, "float64")) for b in boxes), **kw).numpy()

    losses = {"giou": tvo.generalized_box_iou_loss, "diou": tvo.distance_box_iou_loss,
              "ciou": tvo.complete_box_iou_loss}
    matrices = {"iou": tvo.box_iou, "giou": tvo.generalized_box_iou, "diou": tvo.distance_box_iou,
                "ciou": tvo.complete_box_iou}
    t, p, _ = loss_boxes()
    b1, b2 = matrix_boxes()
    for v, fn in losses.items():
        for eps in (1e-7, 1e-3) if v != "ciou" else (1e-7,):  # see ciou_loss on torchvision's eps
            expected = tv(fn, p, t, eps=eps)
            np.testing.assert_array_equal(ref_box_loss(t, p, v, eps=eps), expected)
            finite = np.isfinite(expected)  # torchvision's CIoU is NaN for a point box
            got = to_numpy(LOSSES[v](t, p, eps=eps))
            np.testing.assert_allclose(got[finite], expected[finite], rtol=1e-6, atol=1e-6, err_msg=v)
    for v, fn in matrices.items():
        kw = {} if v in ("iou", "giou") else {"eps": 1e-3}
        expected = tv(fn, b1, b2, **kw)
        np.testing.assert_array_equal(ref_pairwise(b1, b2, v, **kw), expected)
        finite = np.isfinite(expected)  # torchvision: NaN where a union is 0
        got = to_numpy(MATRICES[v](b1, b2, **kw))
        np.testing.assert_allclose(got[finite], expected[finite], rtol=1e-6, atol=1e-6, err_msg=v)


def _one_sided(f, x, steps):
    """`(left, right)` difference quotients of the float64 `f` (each output
    entry depends on one row of `x`: all rows move at once) per column."""
    x = np.asarray(x, "float64")
    f0, left, right = f(x), np.zeros(x.shape), np.zeros(x.shape)
    for j in range(4):
        e = np.zeros(x.shape)
        e[..., j] = steps
        right[..., j] = (f(x + e) - f0) / steps
        left[..., j] = (f0 - f(x - e)) / steps
    return left, right


def _assert_between(grad, left, right, keep, name):
    """The gradient lies between the one-sided derivatives (equal where the
    function is smooth; at a tie of a min or max, any value between them is a
    valid subgradient), up to 1e-4 of the row's largest derivative."""
    scale = np.max(np.abs(np.stack([left, right])), axis=(0, -1), keepdims=True)[0] + 1e-30
    low, high = np.minimum(left, right) - 1e-4 * scale, np.maximum(left, right) + 1e-4 * scale
    bad = ((grad < low) | (grad > high)) & keep[..., None]
    assert not bad.any(), (name, grad[bad], left[bad], right[bad])


def _frozen_alpha(iou, diou, ciou_alpha_1):
    """CIoU's alpha at the point (a constant, as torchvision's no_grad)."""
    v = np.abs(ciou_alpha_1 - diou)
    return v / (1 - iou + v + EPS)


def test_gradients_match_finite_differences():
    # float64 one-sided differences of torchvision's formulas (the ports) against
    # our float32 gradients, every variant at once (one gradient call for the
    # losses, one for the matrices): every scale, ties, zero sizes, swapped corners
    t, p, _ = loss_boxes()
    t64, p64 = t.astype("float64"), p.astype("float64")
    size = np.maximum(np.abs(p64[:, 2:] - p64[:, :2]).max(-1), 1e-3 * np.abs(p64).max(-1))
    alpha = _frozen_alpha(1 - ref_box_loss(t64, p64, "iou"), ref_box_loss(t64, p64, "diou"),
                          ref_box_loss(t64, p64, "ciou", alpha=1.0))
    _, grads = stacked_loss_grad(t, p)
    assert np.isfinite(grads).all()  # 1e30, points, swapped corners
    # tensorflow-addons' convention at the same boxes: finite too
    assert np.isfinite(stacked_loss_grad(t, p, eps=0.0, swapped_corners="empty")[1]).all()
    # a unit box beside one of 1e30: its derivatives (1e-30) are below float64's differences
    resolvable = np.abs(np.concatenate([t64, p64], -1)).max(-1) <= 1e6 * size
    for i, v in enumerate(VARIANTS):
        def f(x, v=v):
            return ref_box_loss(t64, x, v, alpha=alpha if v == "ciou" else None)

        values = f(p64)
        keep = np.isfinite(values) & (np.abs(values) < 10) & resolvable  # a swapped pair's union near -eps: 1e8
        _assert_between(grads[i], *_one_sided(f, p64, 1e-6 * size), keep, v + "_loss")

    b1, b2 = matrix_boxes()
    b1_64, b2_64 = b1.astype("float64"), b2.astype("float64")
    alpha = _frozen_alpha(ref_pairwise(b1_64, b2_64, "iou"), -ref_pairwise(b1_64, b2_64, "diou"),
                          -ref_pairwise(b1_64, b2_64, "ciou", alpha=1.0))
    masks = {}
    for v in VARIANTS:
        values = ref_pairwise(b1_64, b2_64, v, alpha=alpha if v == "ciou" else None)
        masks[v] = np.isfinite(values) & (np.abs(values) < 10)
    _, grads = value_and_grad(
        lambda x: sum(keras.ops.sum(keras.ops.where(masks[v], MATRICES[v](x[i], b2), 0.0))
                      for i, v in enumerate(VARIANTS)),
        np.stack([b1] * 4),
    )
    size = np.abs(b1_64[..., 2:] - b1_64[..., :2]).max(-1) + 1e-3
    for i, v in enumerate(VARIANTS):
        def f(x, v=v):
            m = ref_pairwise(x, b2_64, v, alpha=alpha if v == "ciou" else None)
            return np.where(masks[v], m, 0.0).sum(-1)  # each row depends on one box of boxes1

        _assert_between(grads[i], *_one_sided(f, b1_64, 1e-6 * size), masks[v].any(-1), v)


def stacked_loss_grad(t, p, **kw):
    """The gradients of the four IoU losses at once, `(4,) + p.shape`: one
    gradient call."""
    return value_and_grad(
        lambda x: sum(keras.ops.sum(LOSSES[v](t, x[i], **kw)) for i, v in enumerate(VARIANTS)), np.stack([p] * 4)
    )


def _stacked_matrix_grad(b1, b2, **kw):
    """The gradients of every matrix's sum with respect to `boxes1` at once."""
    def total(x):
        return sum(keras.ops.sum(MATRICES[v](x[i], b2, **({} if v in ("iou", "giou") else kw)))
                   for i, v in enumerate(VARIANTS))

    return value_and_grad(total, np.stack([b1] * 4))[1]


def test_rescaling_by_a_power_of_two_is_exact():
    # boxes at 2^40 x are divided by a power of two before any area: value and
    # gradient are bit for bit those of the same arithmetic unscaled (the boxes
    # at x with eps / 2^80) at every scale. (Degenerate and swapped boxes, whose
    # values or gradients go as 1 / eps, see the smallest denominator instead,
    # which grows with the coordinates.) CIoU's alpha adds eps as a plain
    # number (not an area), which that comparison changes: within 1e-6 there.
    t, p, rows = loss_boxes()
    big = 2.0**40
    scales = np.arange(len(t)) < rows["awkward"].start
    t_big, p_big = (np.where(scales[:, None], b, 1.0).astype("float32") * np.float32(big) for b in (t, p))  # 1e30 x 2^40 overflows
    for v in VARIANTS:
        got, same = to_numpy(LOSSES[v](t_big, p_big)), to_numpy(LOSSES[v](t, p, eps=EPS / big**2))
        np.testing.assert_allclose(got[scales], same[scales], rtol=0 if v != "ciou" else 1e-6, atol=0, err_msg=v)
    grads, same = stacked_loss_grad(t_big, p_big)[1], stacked_loss_grad(t, p, eps=EPS / big**2)[1]
    np.testing.assert_array_equal(grads[:3, scales] * big, same[:3, scales])
    np.testing.assert_allclose(grads[3, scales] * big, same[3, scales], rtol=1e-6, atol=1e-6 * np.abs(same[3]).max())
    b1, b2 = matrix_boxes()
    for v in ("iou", "giou", "diou"):
        kw = {"eps": EPS / big**2} if v == "diou" else {}
        got, same = to_numpy(MATRICES[v](b1 * big, b2 * big)), to_numpy(MATRICES[v](b1, b2, **kw))
        np.testing.assert_array_equal(got[:4], same[:4], err_msg=v)  # the four scales


def test_degenerate_and_huge_boxes():
    b1, b2 = matrix_boxes()
    b1[-1, :6] = [[0, 0, 1, 1], [1, 1, 1, 1], [0, 0, 0, 2], [1, 0, 0, 1], [0, 0, 1e30, 1e30], [-1e30, 0, 1e30, 1e30]]
    b2[-1, :4] = [[1, 1, 1, 1], [0, 0, 1, 1], [1e29, 0, 1e30, 2e30], [5, 5, 6, 6]]
    for v in VARIANTS:
        assert np.isfinite(to_numpy(MATRICES[v](b1, b2))).all(), v
    assert np.isfinite(_stacked_matrix_grad(b1, b2)).all()
    # the same point: union 0 (torchvision NaN) -> 0 for IoU and GIoU
    np.testing.assert_array_equal(to_numpy(L.box_iou(b1[-1, 1:2], b2[-1, :1])), [[0.0]])
    np.testing.assert_array_equal(to_numpy(L.generalized_box_iou(b1[-1, 1:2], b2[-1, :1])), [[0.0]])
    # scale invariant up to 1e30 (by 2^100 = 1.3e30, exact in float32, and with
    # eps = 0: with eps in the boxes' units the normalised boxes' values depend
    # on it): values, and gradients times the scale
    b1, b2 = matrix_boxes()  # the four scales (and the awkward boxes, not compared)
    big = 2.0**100
    for v in VARIANTS:
        kw = {} if v in ("iou", "giou") else {"eps": 0.0}
        huge, base = to_numpy(MATRICES[v](b1 * big, b2 * big, **kw)), to_numpy(MATRICES[v](b1, b2, **kw))
        np.testing.assert_allclose(huge[:4], base[:4], rtol=1e-6, atol=1e-7, err_msg=v)
    base, huge = _stacked_matrix_grad(b1, b2, eps=0.0), _stacked_matrix_grad(b1 * big, b2 * big, eps=0.0)
    np.testing.assert_allclose(huge[:, :4] * big, base[:, :4], rtol=1e-6, atol=1e-6 * np.abs(base).max())


@pytest.mark.skipif(BACKEND not in XLA_BACKENDS, reason="XLA compilation: JAX and TensorFlow")
def test_matrices_compile_with_xla():
    b1, b2 = matrix_boxes()
    compiled = xla_compile(lambda a, b: [MATRICES[v](a, b) for v in VARIANTS])
    for v, got in zip(VARIANTS, compiled(b1, b2)):
        np.testing.assert_allclose(to_numpy(got), to_numpy(MATRICES[v](b1, b2)), rtol=1e-6, atol=1e-7, err_msg=v)


def test_matrix_arguments():
    b = np.array([[0.0, 0.0, 2.0, 2.0], [1.0, 0.0, 3.0, 2.0]], "float32")
    for bad, name in (({"box_format": "xyzw"}, "box_format"), ({"eps": -1.0}, "eps")):
        with pytest.raises(ValueError, match=name):
            L.distance_box_iou(b, b, **bad)
    with pytest.raises(ValueError, match="box_format"):
        L.box_iou(b, b, box_format="cxcy")
    with pytest.raises(ValueError, match="`boxes1`"):
        L.box_iou(b[0], b)
    with pytest.raises(ValueError, match="`boxes2`"):
        L.generalized_box_iou(b, b[:, :3])
    # integer boxes (annotations) are taken as floats; formats as torchvision's fmt
    np.testing.assert_allclose(to_numpy(L.box_iou(b.astype("int32"), b)), to_numpy(L.box_iou(b, b)), rtol=1e-7)
    center = np.concatenate([(b[:, :2] + b[:, 2:]) / 2, b[:, 2:] - b[:, :2]], -1)
    for fmt in ("cxcywh", "center"):
        np.testing.assert_allclose(to_numpy(L.complete_box_iou(center, center, box_format=fmt)),
                                   to_numpy(L.complete_box_iou(b, b)), rtol=1e-6, atol=1e-7)
