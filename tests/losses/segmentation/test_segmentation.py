"""Segmentation losses: numpy references (segmentation_models_pytorch's and
MONAI's definitions), Keras' `Dice`, the Lovasz losses against the
reference algorithm that drops ignored pixels, layouts and bad input, and
the shared contract."""

import functools

import keras
import numpy as np
import pytest

from keras_lossplus import losses as L
from tests.backend_utils import to_numpy, value_and_grad
from tests.contract import LossCase, contract_suite
from tests.losses.segmentation import references as R

B, H, W, C = 4, 3, 4, 3
IGNORE = 255


def label_maps(mode, from_logits, ignore=False, channels_first=False, one_hot=False):
    """`make_inputs` for one layout: a label map (multiclass) or 0/1 masks,
    some pixels set to `IGNORE` when `ignore`."""
    channels = 1 if mode == "binary" else C

    def make(rng):
        if mode == "multiclass":
            y = rng.integers(0, channels, size=(B, H, W)).astype("float32")
            y[0] = 0  # one image with a single class: absent classes per image
            if one_hot:
                y = np.eye(channels, dtype="float32")[y.astype(int)]
        else:
            y = (rng.uniform(size=(B, H, W, channels)) < 0.4).astype("float32")
            y[0] = 0  # an image without any foreground
        if ignore:
            y[rng.uniform(size=y.shape) < 0.2] = IGNORE
        logits = (rng.normal(size=(B, H, W, channels)) * 2.0).astype("float32")
        if from_logits:
            p = logits
        elif mode == "multiclass":
            p = (np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)).astype("float32")
        else:
            p = (1 / (1 + np.exp(-logits))).astype("float32")
        if channels_first:
            p = np.moveaxis(p, -1, 1).copy()
            if y.ndim == 4:
                y = np.moveaxis(y, -1, 1).copy()
        return y, p

    return make


def edges(mode, from_logits, channels_first=False):
    make = label_maps(mode, from_logits, channels_first=channels_first)
    y, p = make(np.random.default_rng(3))
    out = {"all_background": (np.zeros_like(y), p)}
    if from_logits:
        out["logits_100"] = (y, np.where(p > 0, 100.0, -100.0).astype("float32"))
    else:
        perfect = np.eye(p.shape[-1] if not channels_first else p.shape[1], dtype="float32")
        if mode == "multiclass" and not channels_first:
            out["perfect"] = (y, perfect[y.astype(int)])
        elif mode != "multiclass":
            out["perfect"] = (y, y.reshape(p.shape))
    return out


def case(id_, cls, fn, ref, mode, *, from_logits=False, ignore=False, per_image=False, channels_first=False,
         one_hot=False, extra=None, bad=(), activation=None, rtol=1e-5):
    kwargs = {"mode": mode, "from_logits": from_logits, "per_image": per_image, **(extra or {})}
    if ignore:
        kwargs["ignore_index"] = IGNORE
    if channels_first:
        kwargs["data_format"] = "channels_first"
    if per_image:
        reference = functools.partial(ref, **kwargs)
    else:
        def reference(y_true, y_pred, sample_weight=None):
            return ref(y_true, y_pred, sample_weight=sample_weight, **kwargs)
    if activation is None:
        activation = "linear" if from_logits else ("softmax" if mode == "multiclass" else "sigmoid")
    return LossCase(
        id=id_, cls=cls, fn=fn, kwargs=kwargs, reference=reference,
        make_inputs=label_maps(mode, from_logits, ignore, channels_first, one_hot),
        edge_inputs=edges(mode, from_logits, channels_first), batch_level=not per_image, activation=activation,
        bad_args=[({"mode": "binary_crossentropy"}, "mode"), ({"ignore_index": 1.5}, "ignore_index"),
                  ({"data_format": "NHWC"}, "data_format"), *bad],
        rtol=rtol, atol=1e-5,
    )


def _overlap(kind):
    return functools.partial(R.overlap, kind)


CASES = [
    case("dice_multiclass_logits_ignore", L.DiceLoss, L.dice_loss, _overlap("dice"), "multiclass", from_logits=True,
         ignore=True, bad=[({"smooth": -1.0}, "smooth")]),
    case("jaccard_multilabel_per_image", L.JaccardLoss, L.jaccard_loss, _overlap("jaccard"), "multilabel",
         per_image=True, extra={"smooth": 1.0}),
    case("focal_tversky_channels_first", L.FocalTverskyLoss, L.focal_tversky_loss, _overlap("focal_tversky"),
         "multiclass", channels_first=True, from_logits=True, extra={"alpha": 0.3, "beta": 0.7, "gamma": 0.75, "smooth": 1.0},
         bad=[({"gamma": 0.0}, "gamma"), ({"alpha": -0.1}, "alpha")]),
    case("generalized_dice_one_hot", L.GeneralizedDiceLoss, L.generalized_dice_loss, _overlap("generalized_dice"),
         "multiclass", one_hot=True, extra={"weight_type": "square", "smooth": 1e-5}, bad=[({"weight_type": "cube"}, "weight_type")]),
    case("mcc_binary_logits", L.MCCLoss, L.mcc_loss, _overlap("mcc"), "binary", from_logits=True,
         extra={"smooth": 1e-5}),
    case("dice_crossentropy_multiclass_per_image", L.DiceCrossentropyLoss, L.dice_crossentropy_loss,
         R.compound, "multiclass", per_image=True,
         extra={"dice_weight": 1.0, "crossentropy_weight": 0.5}, bad=[({"crossentropy_weight": -1.0}, "crossentropy_weight")]),
    case("dice_focal_binary_ignore", L.DiceFocalLoss, L.dice_focal_loss,
         R.compound, "binary",
         from_logits=True, ignore=True, extra={"gamma": 2.0, "alpha": 0.25, "dice_weight": 1.0, "focal_weight": 2.0},
         bad=[({"gamma": -1.0}, "gamma")]),
    case("combo_multilabel", L.ComboLoss, L.combo_loss,
         lambda yt, yp, alpha, beta, **kw: R.compound(yt, yp, dice_weight=1 - alpha, ce_weight=alpha, beta=beta, **kw),
         "multilabel", from_logits=True, extra={"alpha": 0.6, "beta": 0.7, "smooth": 1.0},
         bad=[({"alpha": 1.5}, "alpha")]),
    case("dice_crossentropy_monai_weighted_per_image", L.DiceCrossentropyLoss, L.dice_crossentropy_loss, R.compound,
         "multiclass", from_logits=True, per_image=True,
         extra={"convention": "monai", "class_weights": [1.0, 2.0, 0.5], "include_background": False,
                "smooth": [1e-5, 1e-3], "squared": True, "crossentropy_weight": 0.7},
         bad=[({"class_weights": [1.0, -1.0, 1.0]}, "class_weights"), ({"smooth": [1.0, 2.0, 3.0]}, "smooth"),
              ({"convention": "torch"}, "convention"), ({"mode": "binary"}, "include_background")]),
    case("dice_focal_monai_ignore", L.DiceFocalLoss, L.dice_focal_loss, R.compound, "multilabel", from_logits=True,
         ignore=True, extra={"convention": "monai", "gamma": 1.5, "alpha": [0.2, 0.5, 0.8],
                             "class_weights": [2.0, 1.0, 0.5], "classes": [1, 2], "focal_weight": 0.5,
                             "smooth": 1e-5}),
    case("focal_tversky_smp_options", L.FocalTverskyLoss, L.focal_tversky_loss, _overlap("focal_tversky"), "multilabel",
         from_logits=True, extra={"alpha": 0.4, "beta": 0.6, "gamma": 0.75, "classes": [0, 2], "log_loss": True,
                                  "class_weights": [1.0, 3.0, 0.5], "soft_labels": True, "eps": 1e-4,
                                  "smooth": [0.5, 1.0]},
         bad=[({"classes": [0, 0]}, "classes"), ({"eps": 0.0}, "eps"), ({"log_loss": "yes"}, "log_loss")]),
    case("lovasz_softmax_ignore", L.LovaszLoss, L.lovasz_loss, R.lovasz, "multiclass", ignore=True),
    case("lovasz_hinge_per_image", L.LovaszLoss, L.lovasz_loss, R.lovasz, "binary", from_logits=True, per_image=True),
]

TestSegmentationContract = contract_suite(
    CASES, fit_ids={"dice_multiclass_logits_ignore", "lovasz_hinge_per_image"}
)


# ------------------------------------------------------------------ peers and semantics


def test_binary_dice_equals_keras_dice_and_per_image_equals_keras_axis(rng):
    y, p = label_maps("binary", False)(rng)
    keras_all = to_numpy(keras.losses.dice(y, p))  # pools every pixel of the batch
    np.testing.assert_allclose(to_numpy(L.dice_loss(y, p, mode="binary")), keras_all, rtol=1e-5)
    per_image = to_numpy(L.dice_loss(y, p, mode="binary", per_image=True))
    keras_axis = to_numpy(keras.losses.dice(y, p, axis=(1, 2, 3)))
    has_fg = y.reshape(B, -1).sum(1) > 0  # images without foreground count 0 (segmentation_models_pytorch)
    np.testing.assert_allclose(per_image[has_fg], keras_axis[has_fg], rtol=1e-5)
    np.testing.assert_array_equal(per_image[~has_fg], 0.0)


def test_focal_tversky_with_half_weights_is_dice_and_layouts_agree(rng):
    y, p = label_maps("multiclass", True)(rng)
    # Tversky(1/2, 1/2) with smooth s is (2 TP + 2 s) / (2 TP + FP + FN + 2 s): Dice with smooth 2 s
    dice = to_numpy(L.dice_loss(y, p, from_logits=True, smooth=2.0))
    tversky = to_numpy(L.focal_tversky_loss(y, p, alpha=0.5, beta=0.5, gamma=1.0, from_logits=True, smooth=1.0))
    np.testing.assert_allclose(tversky, dice, rtol=1e-5)
    one_hot = np.eye(C, dtype="float32")[y.astype(int)]
    first = np.moveaxis(p, -1, 1)
    base = to_numpy(L.jaccard_loss(y, p, from_logits=True))
    for y_alt, p_alt, fmt in ((one_hot, p, "channels_last"), (y[..., None], p, "channels_last"),
                              (y, first, "channels_first"), (np.moveaxis(one_hot, -1, 1), first, "channels_first")):
        got = to_numpy(L.jaccard_loss(y_alt, p_alt, from_logits=True, data_format=fmt))
        np.testing.assert_allclose(got, base, rtol=1e-6)


def test_lovasz_with_ignored_pixels_equals_dropping_them(rng):
    """Masking ignored pixels (sorted last, weight 0) equals Berman's
    reference, which removes them before sorting."""
    y, p = label_maps("multiclass", False, ignore=True)(rng)
    keep = y != IGNORE
    dropped = R.lovasz(y[keep][None, :], p[keep][None, :], "multiclass")  # one "image" of the kept pixels
    np.testing.assert_allclose(to_numpy(L.lovasz_loss(y, p, ignore_index=IGNORE)), dropped, rtol=1e-5)
    yb, pb = label_maps("binary", True, ignore=True)(rng)
    keep = (yb != IGNORE)[..., 0]
    dropped = R.lovasz(yb[keep][None], pb[keep][None], "binary", from_logits=True)
    got = to_numpy(L.lovasz_loss(yb, pb, mode="binary", from_logits=True, ignore_index=IGNORE))
    np.testing.assert_allclose(got, dropped, rtol=1e-5)


def test_lovasz_gradient_matches_the_reference_sorted_errors(rng):
    y, p = label_maps("binary", True)(rng)
    _, grad = value_and_grad(lambda x: L.lovasz_loss(y, x, mode="binary", from_logits=True), p)
    # d loss / d logit_i = -sign_i * g_(rank of i) where its hinge error is positive
    sign = 2 * y.ravel() - 1
    errors = 1 - p.ravel().astype("float64") * sign
    order = np.argsort(-errors, kind="stable")
    g = np.zeros_like(errors)
    g[order] = R.lovasz_grad(y.ravel()[order].astype("float64"), np.ones(errors.size))
    expected = np.where(errors > 0, -sign * g, 0.0).reshape(p.shape)
    np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-6)


def test_nothing_counted_gives_zero_and_zero_gradient(rng):
    """Every pixel ignored, every weight 0, or (generalized Dice) no class in
    the target: 0 with gradient 0, `smooth=0` included (generalized Dice
    used to give 1 there)."""
    y, p = label_maps("multiclass", True)(rng)
    ignored = np.full_like(y, IGNORE)
    zero_weights = {"sample_weight": np.zeros(B, "float32")}
    cases = [(fn, ignored, {"ignore_index": IGNORE})
             for fn in (L.dice_loss, L.lovasz_loss, L.dice_focal_loss, L.generalized_dice_loss)]
    cases += [(L.generalized_dice_loss, ignored, {"ignore_index": IGNORE, "smooth": 0.0}),
              (L.generalized_dice_loss, y, {"smooth": 0.0, **zero_weights}),
              (L.dice_loss, ignored, {"ignore_index": IGNORE, "convention": "monai", "smooth": 0.0, "log_loss": True})]
    for fn, y_true, kwargs in cases:
        value, grad = value_and_grad(lambda x: fn(y_true, x, from_logits=True, **kwargs), p)
        assert float(value) == 0.0 and np.all(grad == 0.0), (fn.__name__, kwargs)
    yb, pb = label_maps("binary", True)(rng)
    value, grad = value_and_grad(lambda x: L.generalized_dice_loss(np.zeros_like(yb), x, mode="binary", smooth=0.0,
                                                                   from_logits=True), pb)
    assert float(value) == 0.0 and np.all(grad == 0.0)


def test_soft_labels_gradient_at_ties_matches_float64_finite_differences(rng):
    """`soft_labels` counts `TP = sum min(p, y)`: where `p == y` its one-sided
    derivatives differ and the gradient is their mean (the central
    difference), on every backend."""
    y = rng.uniform(size=(2, 3, 4, 2)).astype("float32")
    p = rng.uniform(size=y.shape).astype("float32")
    p[..., 0] = y[..., 0]  # one channel tied everywhere
    kwargs = {"mode": "multilabel", "soft_labels": True, "smooth": 0.5}
    _, grad = value_and_grad(lambda x: L.dice_loss(y, x, **kwargs), p)
    h, base = 1e-6, p.astype("float64")
    expected = np.zeros_like(base)
    for i in np.ndindex(base.shape):
        step = np.zeros_like(base)
        step[i] = h
        difference = R.overlap("dice", y, base + step, **kwargs) - R.overlap("dice", y, base - step, **kwargs)
        expected[i] = difference / (2 * h)
    np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    "shape_true, shape_pred, kwargs, match",
    [
        ((4, 5), (4, 5), {"mode": "binary"}, "rank 3 to 5"),
        ((2, 3, 3), (2, 3, 3, 1), {"mode": "multiclass"}, "mode='multiclass' needs at least 2"),
        ((2, 3, 3), (2, 3, 3, 3), {"mode": "binary"}, "mode='binary' needs one channel"),
        ((2, 3, 3), (2, 3, 3, 3), {"mode": "multilabel"}, "one 0/1 channel per class"),
        ((2, 3, 3, 2), (2, 3, 3, 3), {"mode": "multiclass"}, "label map"),
        ((2, 3, 3, 3), (2, 3, 3, 3), {"mode": "multiclass", "ignore_index": 255}, "ignore_index"),
        ((2, 3), (2, 3, 3, 3), {"mode": "multiclass"}, "y_true"),
    ],
)
def test_bad_layouts_raise_clear_errors(shape_true, shape_pred, kwargs, match):
    y = np.zeros(shape_true, "float32")
    p = np.full(shape_pred, 0.5, "float32")
    with pytest.raises(ValueError, match=match):
        L.dice_loss(y, p, **kwargs)
    with pytest.raises(ValueError, match=match):
        L.LovaszLoss(**kwargs)(y, p)


@pytest.mark.parametrize(
    "fn, kwargs, match",
    [
        (L.dice_loss, {"class_weights": [1.0, 2.0]}, "`class_weights` must hold one weight per channel"),
        (L.jaccard_loss, {"classes": [0, 3]}, "`classes` must hold indices of the 3 channels"),
        (L.dice_loss, {"classes": [1], "class_weights": [1.0, 0.0, 1.0]}, "weight 0 to every class scored"),
        (L.dice_focal_loss, {"alpha": [0.5, 0.5]}, "`alpha` must be a number or hold one weight per channel"),
        (L.generalized_dice_loss, {"classes": [0], "include_background": False}, "No class is left"),
    ],
)
def test_options_that_do_not_fit_the_channels_raise(fn, kwargs, match):
    with pytest.raises(ValueError, match=match):
        fn(np.zeros((1, 2, 2), "float32"), np.full((1, 2, 2, 3), 1 / 3, "float32"), **kwargs)


def test_out_of_range_labels_and_per_image_sample_weight_raise():
    p = np.full((1, 2, 2, 3), 1 / 3, "float32")
    with pytest.raises(ValueError, match=r"integers in \[0, 2\]"):
        L.dice_loss(np.array([[[0, 1], [3, 1]]], "float32"), p)
    with pytest.raises(ValueError, match="values in"):
        L.dice_loss(np.full((1, 2, 2), 2.0, "float32"), p[..., :1], mode="binary")
    with pytest.raises(ValueError, match="sample_weight"):
        L.dice_loss(np.zeros((1, 2, 2), "float32"), p, per_image=True, sample_weight=np.ones(1))
