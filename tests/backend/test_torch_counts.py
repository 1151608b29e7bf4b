"""The eager torch kernels of the soft confusion counts
(`backend/torch_counts.py`) against the `keras.ops` counts they stand in
for: every overlap loss, every mode and target layout, per image or over the
batch, logits or probabilities; values and gradients (with respect to the
predictions, and to soft targets); and the inputs the kernels leave to the
neutral code."""

from __future__ import annotations

import functools

import numpy as np
import pytest

import keras_lossplus as klp
from tests.backend_utils import BACKEND, value_and_grad

torch = pytest.importorskip("torch")
from keras_lossplus.backend import torch_counts  # noqa: E402

LOSSES = {
    "dice": klp.losses.dice_loss,
    "jaccard": klp.losses.jaccard_loss,
    "focal_tversky": klp.losses.focal_tversky_loss,
    "generalized_dice": klp.losses.generalized_dice_loss,
    # the scoring options act on the counts the kernels give
    "dice_monai_log": functools.partial(klp.losses.dice_loss, convention="monai", log_loss=True, smooth=(0.5, 1.0)),
}
LAYOUTS = ["labels", "labels_1", "one_hot", "soft", "binary", "multilabel"]


def data(layout, rng, shape=(2, 5, 4, 3)):
    """`(y_true, y_pred logits, mode)` of one target layout."""
    logits = rng.normal(size=shape).astype("float32")
    labels = rng.integers(0, shape[-1], size=shape[:-1])
    if layout == "labels":
        return labels.astype("int32"), logits, "multiclass"
    if layout == "labels_1":
        return labels[..., None].astype("float32"), logits, "multiclass"
    if layout == "one_hot":
        return np.eye(shape[-1], dtype="float32")[labels], logits, "multiclass"
    if layout == "soft":
        soft = rng.uniform(size=shape).astype("float32")
        return soft / soft.sum(-1, keepdims=True), logits, "multiclass"
    if layout == "binary":
        return rng.integers(0, 2, size=shape[:-1] + (1,)).astype("float32"), logits[..., :1], "binary"
    return rng.integers(0, 2, size=shape).astype("float32"), logits, "multilabel"


def run(monkeypatch, kernels, fn, y_true, x, **options):
    """Value and gradient of `sum(fn(y_true, x))`, with or without the kernels."""
    import keras

    from keras_lossplus.backend import torch as torch_backend

    with monkeypatch.context() as patch:
        if not kernels:
            patch.setattr(torch_backend, "label_counts", lambda *a: None)
            patch.setattr(torch_backend, "soft_counts", lambda *a: None)
        return value_and_grad(lambda p: keras.ops.sum(fn(y_true, p, **options)), x)


@pytest.mark.skipif(BACKEND != "torch", reason="the kernels are torch's; elsewhere the counts are keras.ops' only")
@pytest.mark.parametrize("name", LOSSES)
def test_kernel_counts_match_the_neutral_counts(rng, monkeypatch, name):
    """Every target layout, per image or not: the loss through the kernels
    equals the loss through `keras.ops` (value and gradient)."""
    for layout in LAYOUTS:
        for per_image in (False, True):
            y_true, logits, mode = data(layout, rng)
            options = dict(mode=mode, per_image=per_image, from_logits=True)
            expected = run(monkeypatch, False, LOSSES[name], y_true, logits, **options)
            got = run(monkeypatch, True, LOSSES[name], y_true, logits, **options)
            message = f"{layout}, per_image={per_image}"
            np.testing.assert_allclose(got[0], expected[0], rtol=1e-5, atol=1e-6, err_msg=message)
            np.testing.assert_allclose(got[1], expected[1], rtol=1e-4, atol=1e-6, err_msg=message)


@pytest.mark.parametrize("per_image", [False, True])
def test_counts_and_their_gradients_against_numpy(rng, per_image):
    """The kernels alone (pure torch, on any backend): the counts, and the
    gradients of a weighted sum of them with respect to the probabilities and
    to a soft target, against numpy."""
    t_np = rng.uniform(size=(3, 4, 5)).astype("float32")
    p_np = rng.uniform(size=(3, 4, 5)).astype("float32")
    labels = rng.integers(0, 5, size=(3, 4))
    axes = (1,) if per_image else (0, 1)
    one_hot = np.eye(5, dtype="float32")[labels]
    coef = rng.normal(size=(3, 3, 5) if per_image else (3, 5))
    for target, fn in ((t_np, torch_counts.soft_counts), (labels, torch_counts.label_counts)):
        t = torch.tensor(target, requires_grad=target.dtype == np.float32)
        p = torch.tensor(p_np, requires_grad=True)
        counts = fn(t, p, per_image)
        dense = one_hot if target is labels else t_np
        expected = [(dense * p_np).sum(axes), p_np.sum(axes), dense.sum(axes)]
        for c, e in zip(counts, expected):
            np.testing.assert_allclose(c.detach().numpy(), e, rtol=1e-5, atol=1e-5)
        total = sum((torch.tensor(coef[k], dtype=torch.float32) * c).sum() for k, c in enumerate(counts))
        grads = torch.autograd.grad(total, [p, t] if t.requires_grad else [p])
        k_tp, k_pred, k_sup = (np.expand_dims(coef[k], 1) if per_image else coef[k] for k in range(3))
        np.testing.assert_allclose(grads[0].numpy(), dense * k_tp + k_pred + 0 * p_np, rtol=1e-5, atol=1e-5)
        if t.requires_grad:
            np.testing.assert_allclose(grads[1].numpy(), p_np * k_tp + k_sup + 0 * p_np, rtol=1e-5, atol=1e-5)


def test_kernels_step_aside_where_they_do_not_apply():
    """float64, non-contiguous (channels-first) or mismatched inputs go to the
    neutral code."""
    p = torch.rand(2, 3, 4)
    assert torch_counts.soft_counts(p.double(), p.double(), False) is None
    assert torch_counts.soft_counts(p, p.transpose(1, 2), False) is None
    assert torch_counts.soft_counts(p[..., :1], p, False) is None
    assert torch_counts.label_counts(torch.zeros(2, 3, dtype=torch.int64), p.transpose(0, 1), False) is None
