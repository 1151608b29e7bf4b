"""Forward + backward of the segmentation losses (issue 7): the
Lovasz-softmax against the straightforward port of
segmentation_models_pytorch's algorithm, and the overlap losses against
Keras' `Dice`.

Lovasz-softmax (groups `lovasz_softmax <size>` and
`lovasz_softmax per_image <size>`, sizes 4 x 64 x 64 x 21 and
8 x 256 x 256 x 21): logits N(0, 2) float32, label maps of 21 classes drawn
uniformly per pixel (every class present in every image).

* ours, `keras_lossplus`: `LovaszLoss(mode="multiclass", from_logits=True,
  per_image=...)`, which sorts every (image, class) row at once with one
  `argsort` of a `(rows, classes, pixels)` tensor;
* peer, `loop`: segmentation_models_pytorch's `LovaszLoss` (multiclass,
  `classes="present"`) written in `keras.ops` the way people port it: a
  softmax, then a Python loop over the images (`per_image=True`) and over
  the classes, one `ops.argsort` (descending) per (image, class) row, the
  errors and labels gathered in that order, `_lovasz_grad` on the sorted
  labels; a class absent from the row is left out of the mean (with
  `where`, since a Python `if` on a tensor cannot be compiled).

Overlap losses (group `overlap <size>`, 8 x 256 x 256 x 21): probabilities
(softmax of N(0, 2) logits, float32) and the same label maps, one-hot
(float32) or as label maps (int32):

* peer, `keras_dice`: `keras.losses.Dice()` (one-hot targets; one Dice over
  every entry pooled, Keras' definition);
* ours: `DiceLoss(mode="multiclass")` and `JaccardLoss()` (mean over the
  classes of the per-class score, segmentation_models_pytorch's definition),
  each with one-hot (`+dice_onehot`, `+jaccard_onehot`) and label-map
  (`+dice_labels`, `+jaccard_labels`) targets.

Each case times `harness.value_and_grad_step`: the loss and its gradient
with respect to `y_pred` (the logits for the Lovasz-softmax, the
probabilities for the overlap losses); XLA jit on JAX and TensorFlow, eager
autograd on torch. Variants take turns, as in the other suites: for each
group, `BLOCKS[size]` blocks of `ROUNDS[size]` rounds per variant (one
warm-up round each, none at 8 x 256 x 256 x 21, where one Lovasz call takes
seconds), the order rotated from block to block (`harness.rotated`);
`report.py` takes the median of all a variant's rounds and the ratio
ours / peer of the medians of one run. Each variant is built and checked in
its first block against a float64 numpy reference (value to rel. 1e-4,
gradient to rel. 1e-3 with an absolute floor of 1e-4 of the largest entry;
for the Lovasz losses the floor is at least one float32 ulp of the Jaccard
index per class and row averaged, `2**-23 / (C * rows)`, since the Lovasz
gradient is a difference of consecutive float32 Jaccard indices, and the
gradient is compared on the pixels with no error
within 1e-6 of an error of the other label in the same row, which float32
may sort the other way round: 0.01-1.5 % of the pixels here, see
`lovasz_reference`). On JAX the compiled program's temporaries are
recorded, except for the loop (a second compilation of up to 100 s).

`SEGMENTATION_BENCH_SIZES` (comma-separated, default both) limits the
Lovasz sizes, e.g. `SEGMENTATION_BENCH_SIZES=4x64x64x21`.

Run with `KERAS_BACKEND=<backend> pytest benchmarks/test_bench_segmentation.py --benchmark-only`
or `benchmarks/report.py --suites segmentation`.
"""

import functools
import os

import keras
import numpy as np
import pytest
from harness import BACKEND, as_numpy, rotated, to_backend, value_and_grad_step, xla_temp_bytes
from keras import ops

from keras_lossplus.losses import DiceLoss, JaccardLoss, LovaszLoss

SIZES = {"4x64x64x21": (4, 64, 64, 21), "8x256x256x21": (8, 256, 256, 21)}
LOVASZ_SIZES = [s for s in os.environ.get("SEGMENTATION_BENCH_SIZES", ",".join(SIZES)).split(",") if s]
LARGE = "8x256x256x21"
OVERLAP_SIZE = LARGE
BLOCKS = {"4x64x64x21": 4, LARGE: 2, "overlap": 4}
ROUNDS = {"4x64x64x21": 3, LARGE: 1, "overlap": 5}
NEAR_TIE = 1e-6  # errors closer than this may be sorted either way in float32

MEASURED_LOVASZ = (
    "the Lovasz-softmax and its gradient w.r.t. the logits, N(0, 2) float32, uniform label maps of 21 "
    "classes; ours: one argsort of (rows, classes, pixels); loop: smp's algorithm in keras.ops, a Python "
    "loop over images and classes with one argsort per row; XLA jit on jax and tensorflow, eager "
    "autograd on torch"
)
MEASURED_OVERLAP = (
    "the overlap loss and its gradient w.r.t. the probabilities, 8 x 256 x 256 x 21 float32, one-hot "
    "or label-map targets; XLA jit on jax and tensorflow, eager autograd on torch"
)


def segmentation_batch(size: str) -> tuple:
    """Label maps `(B, H, W)` int32 (uniform over the classes) and logits
    `(B, H, W, C)` float32, N(0, 2); one seed per size."""
    shape = SIZES[size]
    rng = np.random.default_rng(7 + shape[0] * shape[1])
    labels = rng.integers(0, shape[-1], size=shape[:-1]).astype("int32")
    logits = rng.normal(scale=2.0, size=shape).astype("float32")
    return labels, logits


def _softmax64(x):
    x = x.astype("float64")
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def one_hot(labels, classes):
    return np.eye(classes, dtype="float32")[labels]


# --------------------------------------------------------------------------- the peer


def _lovasz_grad(gt_sorted):
    """segmentation_models_pytorch's `_lovasz_grad` in keras.ops."""
    gts = ops.sum(gt_sorted)
    intersection = gts - ops.cumsum(gt_sorted)
    union = gts + ops.cumsum(1.0 - gt_sorted)
    jaccard = 1.0 - intersection / union
    return ops.concatenate([jaccard[:1], jaccard[1:] - jaccard[:-1]])


def _lovasz_softmax_flat(probas, labels):
    """`_lovasz_softmax_flat(probas (P, C), labels (P,), classes="present")`:
    one argsort per class."""
    losses, present = [], []
    for c in range(probas.shape[-1]):
        fg = ops.cast(ops.equal(labels, c), probas.dtype)
        errors = ops.abs(fg - probas[:, c])
        perm = ops.argsort(-errors)  # torch.sort(errors, descending=True)
        errors_sorted = ops.take(errors, perm)
        fg_sorted = ops.take(fg, perm)
        losses.append(ops.sum(errors_sorted * _lovasz_grad(fg_sorted)))  # torch.dot
        present.append(ops.sum(fg) > 0)
    losses, present = ops.stack(losses), ops.cast(ops.stack(present), probas.dtype)
    return ops.sum(losses * present) / ops.maximum(ops.sum(present), 1.0)


def loop_lovasz_softmax(per_image):
    """smp's `LovaszLoss(mode="multiclass", from_logits=True, per_image=...)`,
    channels-last, in keras.ops with Python loops over images and classes."""

    def loss(y_true, y_pred):
        probas = ops.softmax(y_pred, axis=-1)
        labels = ops.cast(y_true, "int32")
        channels = probas.shape[-1]
        if per_image:  # mean over the images of each image's loss
            return ops.mean(ops.stack([
                _lovasz_softmax_flat(ops.reshape(probas[i], (-1, channels)), ops.reshape(labels[i], (-1,)))
                for i in range(probas.shape[0])
            ]))
        return _lovasz_softmax_flat(ops.reshape(probas, (-1, channels)), ops.reshape(labels, (-1,)))

    return loss


# --------------------------------------------------------------------------- references


def lovasz_reference(labels, logits, per_image):
    """Lovasz-softmax (classes present, mean over images if `per_image`) and
    its gradient w.r.t. the logits, float64, vectorised; plus a mask of the
    pixels whose gradient float32 may legitimately change: those with, in
    some class, an error within `NEAR_TIE` of the error of a pixel of the
    other label (float32 may sort the two the other way round, which changes
    both pixels' Lovasz gradients by up to the gradient's scale)."""
    shape, classes = logits.shape, logits.shape[-1]
    p = _softmax64(logits)
    t = np.eye(classes)[labels]
    rows = shape[0] if per_image else 1

    def to_rows(x):  # (B, H, W, C) -> (rows, C, pixels)
        return x.reshape(rows, -1, classes).transpose(0, 2, 1)

    def from_rows(x):
        return x.transpose(0, 2, 1).reshape(shape)

    tr, pr = to_rows(t), to_rows(p)
    errors = np.abs(tr - pr)
    order = np.argsort(-errors, axis=-1, kind="stable")
    e_sorted = np.take_along_axis(errors, order, -1)
    t_sorted = np.take_along_axis(tr, order, -1)
    gts = t_sorted.sum(-1, keepdims=True)
    jaccard = 1.0 - (gts - np.cumsum(t_sorted, -1)) / (gts + np.cumsum(1.0 - t_sorted, -1))
    g = jaccard.copy()
    g[..., 1:] -= jaccard[..., :-1]
    present = gts[..., 0] > 0
    n = np.maximum(present.sum(-1), 1)
    value = ((e_sorted * g).sum(-1) * present).sum(-1) / n  # (rows,)
    d_errors = np.empty_like(errors)
    np.put_along_axis(d_errors, order, g, -1)
    d_errors *= (present / n[:, None])[..., None] / rows
    d_p = from_rows(d_errors * np.sign(pr - tr))
    d_x = p * (d_p - (d_p * p).sum(-1, keepdims=True))

    touched = np.empty(errors.shape, bool)
    np.put_along_axis(touched, order, _near_other_label(e_sorted, t_sorted), -1)
    return value.mean(), d_x, from_rows(touched).any(-1)  # near_tie: (B, H, W)


def _near_other_label(e_sorted, t_sorted):
    """Entries within `NEAR_TIE` of an entry of the other label, along the
    last axis of errors sorted in decreasing order (the closest ones are the
    previous and the next entry of the other label)."""
    n = e_sorted.shape[-1]
    index = np.arange(n)
    near = np.zeros(e_sorted.shape, bool)
    for label in (0.0, 1.0):
        other = t_sorted == label
        previous = np.maximum.accumulate(np.where(other, index, -1), axis=-1)
        following = np.minimum.accumulate(np.where(other, index, n)[..., ::-1], axis=-1)[..., ::-1]
        for position in (previous, following):
            exists = (position >= 0) & (position < n)
            e_other = np.take_along_axis(e_sorted, np.clip(position, 0, n - 1), -1)
            near |= ~other & exists & (np.abs(e_sorted - e_other) < NEAR_TIE)
    return near


def overlap_reference(kind, labels, probs):
    """Keras' pooled Dice, or our per-class Dice / Jaccard (every class
    present, mean over the classes), and the gradient w.r.t. the
    probabilities, float64."""
    p = probs.astype("float64")
    t = np.eye(p.shape[-1])[labels]
    axes = (0, 1, 2) if kind != "keras_dice" else None
    tp, s = (t * p).sum(axes), t.sum(axes) + p.sum(axes)
    if kind == "jaccard":
        union = s - tp
        value = 1.0 - tp / union
        grad = -(t * union - tp * (1.0 - t)) / union**2
    else:
        value = 1.0 - 2.0 * tp / s
        grad = -(2.0 * t * s - 2.0 * tp) / s**2
    if kind == "keras_dice":
        return float(value), grad
    return float(value.mean()), grad / p.shape[-1]


# --------------------------------------------------------------------------- variants


def _ours_lovasz(per_image):
    return LovaszLoss(mode="multiclass", from_logits=True, per_image=per_image)


LOVASZ = {"keras_lossplus": _ours_lovasz, "loop": loop_lovasz_softmax}

OVERLAP = {  # implementation -> (loss, reference, targets: "onehot" or "labels")
    "keras_dice": (lambda: keras.losses.Dice(), "keras_dice", "onehot"),
    "keras_lossplus+dice_onehot": (lambda: DiceLoss(mode="multiclass"), "dice", "onehot"),
    "keras_lossplus+dice_labels": (lambda: DiceLoss(mode="multiclass"), "dice", "labels"),
    "keras_lossplus+jaccard_onehot": (lambda: JaccardLoss(), "jaccard", "onehot"),
    "keras_lossplus+jaccard_labels": (lambda: JaccardLoss(), "jaccard", "labels"),
}


@pytest.fixture(scope="module")
def segmentation_steps():
    """(group, implementation) -> (warmed-up step, XLA temporaries); only the
    current group's are kept."""
    return {}


def _check(name, result, ref_value, ref_grad, mask=None, atol=0.0):
    value, grad = as_numpy(result)
    assert value == pytest.approx(ref_value, rel=1e-4), name
    atol = max(atol, 1e-4 * np.abs(ref_grad).max())
    if mask is not None:
        assert mask.mean() < 0.05, f"{name}: {mask.mean():.2%} of the pixels near a tie"
        grad, ref_grad = grad[~mask], ref_grad[~mask]
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-3, atol=atol, err_msg=name)


@functools.lru_cache(maxsize=1)  # both variants of a group are built in its first block
def _lovasz_expected(size, per_image):
    return lovasz_reference(*segmentation_batch(size), per_image)


def build_lovasz(size, per_image, implementation):
    """The variant's step, compiled and checked (at the large size the check
    is its only warm-up call: one call takes seconds on XLA); and the JAX
    program's temporaries, except for the loop, whose compilation takes up
    to 100 s at 8 x 256 x 256 x 21 per image."""
    labels, logits = segmentation_batch(size)
    loss = LOVASZ[implementation](per_image)
    y_true, y_pred = to_backend(labels), to_backend(logits)
    step = value_and_grad_step(loss, y_true, y_pred, warmup=0 if size == LARGE else 2)
    ref_value, ref_grad, near_tie = _lovasz_expected(size, per_image)
    # The Lovasz gradient is a difference of consecutive Jaccard indices (<= 1)
    # computed in float32: each carries up to one float32 ulp of 1, divided by
    # the classes and the rows averaged (1.1e-9 of a largest entry of 4e-7 at
    # 8 x 256 x 256 x 21 pooled, in ours and the loop alike).
    rows = logits.shape[0] if per_image else 1
    _check(f"{implementation} per_image={per_image}", step(), ref_value, ref_grad, near_tie,
           atol=2.0**-23 / (logits.shape[-1] * rows))
    return step, None if implementation == "loop" else xla_temp_bytes(loss, y_true, y_pred)


def build_overlap(size, implementation):
    labels, logits = segmentation_batch(size)
    probs = _softmax64(logits).astype("float32")
    make, kind, targets = OVERLAP[implementation]
    loss = make()
    y_true = to_backend(one_hot(labels, probs.shape[-1]) if targets == "onehot" else labels)
    y_pred = to_backend(probs)
    step = value_and_grad_step(loss, y_true, y_pred)
    _check(implementation, step(), *overlap_reference(kind, labels, probs))
    return step, xla_temp_bytes(loss, y_true, y_pred)


def _cached(cache, group, implementation, build):
    key = group, implementation
    if key not in cache:
        for old in [k for k in cache if k[0] != group]:  # free the previous group's
            del cache[old]
        cache[key] = build()
    return cache[key]


LOVASZ_CASES = [
    (size, per_image, block, implementation)
    for size in LOVASZ_SIZES
    for per_image in (False, True)
    for block in range(BLOCKS[size])
    for implementation in rotated(LOVASZ, block)
]


@pytest.mark.parametrize("size, per_image, block, implementation", LOVASZ_CASES, ids=str)
def test_lovasz_softmax(benchmark, segmentation_steps, size, per_image, block, implementation):
    group = f"lovasz_softmax{' per_image' if per_image else ''} {size}"
    step, temp = _cached(segmentation_steps, group, implementation,
                         lambda: build_lovasz(size, per_image, implementation))
    benchmark.group = f"{group} {BACKEND}"
    benchmark.extra_info.update(
        backend=BACKEND, loss=group, implementation=implementation, block=block, per_image=per_image,
        shape=list(SIZES[size]), xla_temp_bytes=temp, measured=MEASURED_LOVASZ,
    )
    benchmark.pedantic(step, rounds=ROUNDS[size], warmup_rounds=0 if size == LARGE else 1)


OVERLAP_CASES = [
    (block, implementation) for block in range(BLOCKS["overlap"]) for implementation in rotated(OVERLAP, block)
]


@pytest.mark.parametrize("block, implementation", OVERLAP_CASES, ids=str)
def test_overlap(benchmark, segmentation_steps, block, implementation):
    group = f"overlap {OVERLAP_SIZE}"
    step, temp = _cached(segmentation_steps, group, implementation, lambda: build_overlap(OVERLAP_SIZE, implementation))
    benchmark.group = f"{group} {BACKEND}"
    benchmark.extra_info.update(
        backend=BACKEND, loss=group, implementation=implementation, block=block,
        shape=list(SIZES[OVERLAP_SIZE]), xla_temp_bytes=temp, measured=MEASURED_OVERLAP,
    )
    benchmark.pedantic(step, rounds=ROUNDS["overlap"], warmup_rounds=1)
