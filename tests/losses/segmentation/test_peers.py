"""Side by side with the peers' own code: segmentation_models_pytorch 0.6
(`DiceLoss`, `JaccardLoss`, `TverskyLoss`, `MCCLoss`, `LovaszLoss`) and MONAI 1.6 (`DiceLoss`,
`TverskyLoss`, `GeneralizedDiceLoss`, `DiceCELoss`, `DiceFocalLoss`), on
random inputs, every option docs/segmentation.md maps, in every mode:
values, and gradients against the peer's autograd in float64.

The peer runs in torch on every backend (this file skips where torch or the
peer cannot import); each case names the peer's arguments once and
`smp_to_ours` / `monai_to_ours` turn them into ours by the documented
mapping."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_lossplus import losses as L
from tests.backend_utils import value_and_grad
from tests.losses.references import sigmoid, softmax
from tests.peers import monai_losses, smp_losses

B, H, W, C = 2, 3, 4, 4
IGNORE = 255


def make(mode, rng, *, soft=False, ignore=False, one_hot=False, probabilities=False, ties=False):
    """`(y_true, y_pred)` float32 channels-last: a label map (class 2 absent)
    or 0/1 (`soft`: [0, 1]) masks with channel 2 empty; `ignore`: some
    labels `IGNORE`; `ties`: some probabilities equal to their soft target."""
    channels = 1 if mode == "binary" else C
    logits = rng.normal(size=(B, H, W, channels)) * 2.0
    if mode == "multiclass":
        y = rng.integers(0, channels, size=(B, H, W)).astype("float64")
        y[y == 2] = 1
    else:
        y = rng.uniform(size=(B, H, W, channels)) if soft else (rng.uniform(size=(B, H, W, channels)) < 0.4) * 1.0
        if channels > 1:
            y[..., 2] = 0.0
    if ignore:
        y[rng.uniform(size=y.shape) < 0.2] = IGNORE
    if one_hot:
        y = np.eye(channels)[y.astype(int)]
    pred = logits
    if probabilities:
        pred = softmax(logits) if mode == "multiclass" else sigmoid(logits)
        if ties:
            pred = np.where(rng.uniform(size=pred.shape) < 0.3, np.where(y == IGNORE, 0.5, y), pred)
    return y.astype("float32"), pred.astype("float32")


def first(x):
    return np.moveaxis(x, -1, 1).copy()


def peer_value_and_grad(loss, y_true, y_pred, dtype="float64"):
    """The peer's loss on channels-first float64 tensors (smp's Lovasz
    computes in float32), and its gradient (channels-last)."""
    import torch

    x = torch.tensor(first(y_pred).astype(dtype), requires_grad=True)
    value = loss(x, y_true)
    value.backward()
    return float(value.detach()), np.moveaxis(x.grad.numpy(), 1, -1)


def check(ours, peer, y_true, y_pred):
    value, grad = value_and_grad(lambda p: keras.ops.mean(ours(y_true, p)), y_pred)
    peer_value, peer_grad = peer
    np.testing.assert_allclose(float(value), peer_value, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(grad, "float64"), peer_grad, rtol=1e-4, atol=2e-6)


# ------------------------------------------------------------------ segmentation_models_pytorch


def smp_to_ours(name, mode, peer, soft):
    """segmentation_models_pytorch's arguments as ours: its Dice smooth `s`
    is `2 s` here, every other option keeps its name; soft targets need
    `soft_labels=True` (segmentation_models_pytorch always counts that way).
    Its `MCCLoss(eps)` takes probabilities, its `LovaszLoss` logits."""
    if name == "mcc":
        return lambda y, p: L.mcc_loss(y, p, mode="binary", smooth=peer["eps"])
    if name == "lovasz":
        return lambda y, p: L.lovasz_loss(y, p, mode=mode, from_logits=True, **peer)
    fn = {"dice": L.dice_loss, "jaccard": L.jaccard_loss, "tversky": L.focal_tversky_loss}[name]
    ours = {"mode": mode, "from_logits": True, **peer, "soft_labels": soft}
    if name == "dice":
        ours["smooth"] = 2 * peer.get("smooth", 0.0)
    if name == "tversky":
        ours.update(alpha=peer.get("alpha", 0.5), beta=peer.get("beta", 0.5), gamma=1.0, smooth=peer.get("smooth", 0.0))
    return lambda y, p: fn(y, p, **ours)


SMP = [  # (loss, mode, the peer's arguments, data)
    ("dice", "binary", {}, {}),
    ("dice", "binary", {"smooth": 0.5, "log_loss": True, "ignore_index": IGNORE}, {}),
    ("dice", "binary", {"from_logits": False, "eps": 9.0}, {"soft": True, "ties": True}),
    ("dice", "multiclass", {"classes": [0, 2, 3], "class_weights": [1.0, 2.0, 0.5, 3.0], "ignore_index": IGNORE,
                            "smooth": 0.3}, {}),
    ("dice", "multiclass", {"from_logits": False, "log_loss": True, "eps": 5.0}, {}),
    ("dice", "multilabel", {"class_weights": [1.0, 2.0, 0.5, 3.0], "log_loss": True, "ignore_index": IGNORE}, {}),
    ("dice", "multilabel", {"classes": [1, 2], "from_logits": False, "smooth": 1.0}, {"soft": True, "ties": True}),
    ("jaccard", "binary", {"smooth": 0.5, "ignore_index": IGNORE, "eps": 12.0}, {"soft": True}),
    ("jaccard", "multiclass", {"classes": [1, 2, 3], "log_loss": True, "from_logits": False}, {}),
    ("jaccard", "multilabel", {"class_weights": [0.5, 1.0, 1.0, 2.0], "smooth": 0.2}, {}),
    ("tversky", "binary", {"alpha": 0.3, "beta": 0.7, "log_loss": True}, {}),
    ("tversky", "multiclass", {"alpha": 0.7, "beta": 0.3, "class_weights": [1.0, 2.0, 0.5, 3.0],
                               "ignore_index": IGNORE, "smooth": 1.0}, {}),
    ("tversky", "multilabel", {"classes": [0, 3], "from_logits": False, "eps": 3.0}, {"soft": True}),
    ("mcc", "binary", {"eps": 1e-3}, {}),
    ("lovasz", "binary", {"per_image": True}, {}),
    ("lovasz", "multiclass", {"ignore_index": IGNORE}, {}),
    ("lovasz", "multilabel", {"per_image": True, "ignore_index": IGNORE}, {}),
]


@pytest.mark.parametrize("name, mode, peer, data", SMP, ids=[f"{c[0]}-{c[1]}-{i}" for i, c in enumerate(SMP)])
def test_matches_segmentation_models_pytorch(rng, name, mode, peer, data):
    import torch

    smp = smp_losses()
    if name == "mcc":
        loss = smp.MCCLoss(**peer)
    else:
        cls = {"dice": smp.DiceLoss, "jaccard": smp.JaccardLoss, "tversky": smp.TverskyLoss, "lovasz": smp.LovaszLoss}
        loss = cls[name](mode, **peer)
    probabilities = peer.get("from_logits") is False or name == "mcc"
    y, p = make(mode, rng, ignore="ignore_index" in peer, probabilities=probabilities, **data)
    dtype = "float32" if name == "lovasz" else "float64"
    y_peer = torch.tensor(y).long() if mode == "multiclass" else torch.tensor(first(y).astype(dtype))
    check(smp_to_ours(name, mode, peer, data.get("soft", False)), peer_value_and_grad(loss, y_peer, p, dtype), y, p)


# ------------------------------------------------------------------ MONAI


def monai_to_ours(name, mode, peer):
    """MONAI's arguments as ours (`convention="monai"`, logits): `batch` is
    `not per_image`, `smooth_nr` / `smooth_dr` the pair `smooth` (halved for
    `jaccard=True`), `weight` `class_weights` (one per channel: MONAI's
    `DiceFocalLoss` drops the background's weight and `alpha` with
    `include_background=False`), `squared_pred` `squared`, `soft_label`
    `soft_labels`, `lambda_*` the terms' weights."""
    fn = {"DiceLoss": L.dice_loss, "TverskyLoss": L.focal_tversky_loss, "GeneralizedDiceLoss": L.generalized_dice_loss,
          "DiceCELoss": L.dice_crossentropy_loss, "DiceFocalLoss": L.dice_focal_loss}[name]
    ours = {"mode": mode, "from_logits": True, "per_image": not peer.get("batch", False),
            "smooth": [peer.get("smooth_nr", 1e-5), peer.get("smooth_dr", 1e-5)]}
    renamed = {"include_background": "include_background", "ignore_index": "ignore_index", "soft_label": "soft_labels",
               "squared_pred": "squared", "weight": "class_weights", "alpha": "alpha", "beta": "beta",
               "gamma": "gamma", "w_type": "weight_type", "lambda_dice": "dice_weight",
               "lambda_ce": "crossentropy_weight", "lambda_focal": "focal_weight"}
    ours.update({renamed[k]: v for k, v in peer.items() if k in renamed})
    if isinstance(ours.get("class_weights"), float):  # one weight for every class
        ours["class_weights"] = [ours["class_weights"]] * (1 if mode == "binary" else C)
    if name != "GeneralizedDiceLoss":
        ours["convention"] = "monai"
    if peer.get("jaccard"):
        fn, ours["smooth"] = L.jaccard_loss, [v / 2 for v in ours["smooth"]]
    if name == "TverskyLoss":
        ours.update(alpha=peer.get("alpha", 0.5), beta=peer.get("beta", 0.5), gamma=1.0)
    if name != "DiceCELoss" and not peer.get("include_background", True):
        for key in ("class_weights", "alpha"):
            if isinstance(ours.get(key), list):
                ours[key] = [1.0] + ours[key]
    return lambda y, p: fn(y, p, **ours)


MONAI = [  # (class, mode, the peer's arguments, data)
    ("DiceLoss", "multiclass", {"weight": [2.0, 0.5, 3.0], "include_background": False,
                                "ignore_index": IGNORE}, {}),
    ("DiceLoss", "multilabel", {"squared_pred": True, "smooth_nr": 0.0, "smooth_dr": 1e-3, "batch": True}, {}),
    ("DiceLoss", "binary", {"soft_label": True, "ignore_index": IGNORE, "smooth_nr": 0.2}, {"soft": True}),
    ("DiceLoss", "multiclass", {"jaccard": True, "smooth_nr": 0.4, "smooth_dr": 0.6, "batch": True},
     {"one_hot": True}),
    ("TverskyLoss", "multiclass", {"alpha": 0.3, "beta": 0.7, "include_background": False, "batch": True,
                                   "smooth_nr": 0.1, "smooth_dr": 0.5}, {}),
    ("TverskyLoss", "multilabel", {"alpha": 0.6, "beta": 0.4, "soft_label": True}, {"soft": True}),
    ("GeneralizedDiceLoss", "multiclass", {"w_type": "square", "include_background": False}, {}),
    ("GeneralizedDiceLoss", "multilabel", {"w_type": "simple", "batch": True, "soft_label": True, "smooth_nr": 0.0,
                                           "smooth_dr": 1e-4}, {"soft": True}),
    ("GeneralizedDiceLoss", "binary", {"w_type": "uniform"}, {}),
    ("DiceCELoss", "multiclass", {"weight": [1.0, 2.0, 0.5, 3.0], "lambda_dice": 0.6, "lambda_ce": 1.5}, {}),
    ("DiceCELoss", "multilabel", {"squared_pred": True, "include_background": False, "batch": True,
                                  "weight": [1.0, 2.0, 0.5, 3.0]}, {}),
    ("DiceCELoss", "binary", {"weight": [3.0]}, {}),
    ("DiceCELoss", "multiclass", {"weight": [1.0, 2.0, 0.5, 3.0], "batch": True}, {"one_hot": True}),
    ("DiceFocalLoss", "multiclass", {"gamma": 2.0, "alpha": [0.2, 0.4, 0.6], "include_background": False,
                                     "weight": [2.0, 0.5, 1.0]}, {}),
    ("DiceFocalLoss", "multilabel", {"gamma": 1.5, "alpha": 0.25, "batch": True, "lambda_dice": 0.7,
                                     "lambda_focal": 0.5}, {}),
    ("DiceFocalLoss", "binary", {"gamma": 0.0, "weight": 2.0, "smooth_nr": 0.0, "smooth_dr": 1e-3}, {}),
]


@pytest.mark.parametrize("name, mode, peer, data", MONAI, ids=[f"{c[0]}-{c[1]}-{i}" for i, c in enumerate(MONAI)])
def test_matches_monai(rng, name, mode, peer, data):
    import torch

    monai = monai_losses()
    y, p = make(mode, rng, ignore="ignore_index" in peer, **data)
    label_map = mode == "multiclass" and not data.get("one_hot")
    y_peer = torch.tensor(y[:, None] if label_map else first(y), dtype=torch.float64)
    kwargs = {k: (torch.tensor(v, dtype=torch.float64) if k == "weight" and name == "DiceCELoss" else v)
              for k, v in peer.items()}
    kwargs.update({"softmax": True} if mode == "multiclass" else {"sigmoid": True})
    if label_map:
        kwargs["to_onehot_y"] = True
    peer_result = peer_value_and_grad(getattr(monai, name)(**kwargs), y_peer, p)
    check(monai_to_ours(name, mode, peer), peer_result, y, p)
