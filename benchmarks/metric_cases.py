"""What the issue-6 metric-learning benchmarks run: the batch, our
`TripletLoss` step, pytorch-metric-learning's step, and float64 numpy
references. Shared by `test_bench_metric_learning.py` (time),
`metric_memory.py` (peak memory) and `metric_plot.py` (table and figure).

Setting (the same everywhere):

* batch: P x K labels, K = 8 samples per class, P = B / 8 classes, shuffled
  (every anchor has 7 positives and B - 8 negatives); embeddings N(0, 1)
  float32, D = 128; one seed per B.
* `semihard`: ours `TripletLoss(margin=0.2, mining="semihard")` (FaceNet /
  tensorflow-addons rule: per anchor-positive pair, the closest negative
  farther than the positive, else the farthest negative); PML
  `TripletMarginLoss(margin=0.2)` on the triplets of
  `TripletMarginMiner(margin=0.2, type_of_triplets="semihard")` (every
  triplet with 0 < d_an - d_ap <= 0.2). Both mine semi-hard triplets from
  the same batch, but not the same set: PML keeps every semi-hard triplet,
  tensorflow-addons' rule one negative per pair, so the values differ.
* `all`: ours `TripletLoss(margin=0.05, mining="all")`; PML
  `TripletMarginLoss()` (margin 0.05, every triplet, mean over the non-zero
  ones). The same loss: values and gradients agree.

Both use un-normalised Euclidean distances (`LpDistance(normalize_embeddings=False)`
for PML, `distance="euclidean", normalize=False` for ours).

This module imports neither keras nor torch at import time, so that the
memory script can measure PML in a process without keras.
"""

from __future__ import annotations

import numpy as np

D = 128
K = 8  # samples per class
BATCH_SIZES = (256, 512, 1024, 2048, 4096)
MININGS = ("semihard", "all")
MARGIN = {"semihard": 0.2, "all": 0.05}


def pk_batch(batch_size: int, dim: int = D, k: int = K, seed: int = 0) -> tuple:
    """Labels `(B,)` int32 (B / k classes of k samples, shuffled) and
    embeddings `(B, dim)` float32 N(0, 1)."""
    if batch_size % k:
        raise ValueError(f"batch_size={batch_size} is not a multiple of k={k}")
    rng = np.random.default_rng(seed + batch_size)
    labels = np.repeat(np.arange(batch_size // k, dtype="int32"), k)
    rng.shuffle(labels)
    embeddings = rng.normal(size=(batch_size, dim)).astype("float32")
    return labels, embeddings


# --------------------------------------------------------------------------- ours


def ours_loss(mining: str, chunk_size=None):
    """keras_lossplus' `TripletLoss` for the setting above (imports keras)."""
    from keras_lossplus.losses import TripletLoss

    return TripletLoss(margin=MARGIN[mining], mining=mining, chunk_size=chunk_size)


# --------------------------------------------------------------------------- PML


def pml_loss_fn(mining: str):
    """`(embeddings, labels) -> scalar` of pytorch-metric-learning (torch tensors)."""
    from pytorch_metric_learning import distances, losses, miners

    distance = distances.LpDistance(normalize_embeddings=False)
    loss = losses.TripletMarginLoss(margin=MARGIN[mining], distance=distance)
    if mining == "all":
        return lambda emb, labels: loss(emb, labels)
    miner = miners.TripletMarginMiner(
        margin=MARGIN[mining], type_of_triplets="semihard",
        distance=distances.LpDistance(normalize_embeddings=False),
    )
    return lambda emb, labels: loss(emb, labels, miner(emb, labels))


def pml_step(mining: str, labels: np.ndarray, embeddings: np.ndarray, warmup: int = 1):
    """A blocking `() -> (loss, d loss / d embeddings)` of PML on torch eager
    autograd (CPU ops are synchronous), already warmed up."""
    import torch

    fn = pml_loss_fn(mining)
    labels_t = torch.from_numpy(labels.astype("int64"))
    leaf = torch.from_numpy(embeddings).requires_grad_(True)

    def step():
        value = fn(leaf, labels_t)
        (grad,) = torch.autograd.grad(value, leaf)
        return value.detach(), grad

    for _ in range(warmup):
        step()
    return step


# --------------------------------------------------------------------------- references


def _distances(x: np.ndarray) -> np.ndarray:
    x = x.astype("float64")
    sq = (x * x).sum(1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * x @ x.T, 0.0)
    np.fill_diagonal(d2, 0.0)
    return np.sqrt(d2)


def _grad_from_coefficients(x: np.ndarray, d: np.ndarray, c: np.ndarray) -> np.ndarray:
    """d loss / d x for loss = sum_ij c_ij d_ij (Euclidean d, 0 on the diagonal)."""
    x = x.astype("float64")
    w = c + c.T
    w = np.divide(w, d, out=np.zeros_like(w), where=d > 0)
    return w.sum(1, keepdims=True) * x - w @ x


def _positives(labels: np.ndarray) -> tuple:
    """Masks and each anchor's positives as a `(B, K - 1)` index array
    (the P x K batch: every anchor has the same number of positives)."""
    same = labels[:, None] == labels[None, :]
    pos = same & ~np.eye(len(labels), dtype=bool)
    rows, cols = np.nonzero(pos)
    return pos, ~same, cols.reshape(len(labels), -1)


def triplet_reference(mining: str, labels: np.ndarray, embeddings: np.ndarray, eps: float = 1e-5) -> tuple:
    """Our loss (tensorflow-addons semi-hard rule, or batch-all), its
    gradient, float64, for a P x K batch (every anchor valid), and a `(B,)`
    mask of the rows whose gradient a float32 implementation may get
    differently.

    Semi-hard mining picks one negative per anchor-positive pair by comparing
    distances (~16 here). Float32 distances are off by up to ~3e-6, and about
    one pair in 2000 has a negative within that of d_ap (or two candidates
    that close), so float32 code picks another, equally valid negative for a
    few pairs of a batch, which moves the gradient of the rows of that anchor,
    positive and those negatives (by ~2 % in norm over the whole batch). A
    pair is ambiguous when more than one negative can be chosen if each
    distance moves by `eps`; the mask marks the rows they touch (none for
    "all", which picks nothing). The value moves by ~eps / B only.
    """
    margin = MARGIN[mining]
    d = _distances(embeddings)
    pos, neg, pos_idx = _positives(labels)
    n, rows = len(labels), np.arange(len(labels))
    c = np.zeros_like(d)
    touched = np.zeros(n, dtype=bool)
    total = count = 0.0
    far = np.where(neg, d, -np.inf)
    far_value, far_index = far.max(1), far.argmax(1)
    for k in range(pos_idx.shape[1]):
        p = pos_idx[:, k]
        d_ap = d[rows, p]
        if mining == "semihard":
            farther = neg & (d > d_ap[:, None])
            filled = np.where(farther, d, np.inf)
            index = np.where(farther.any(1), filled.argmin(1), far_index)
            t = d_ap - d[rows, index] + margin
            active = t > 0
            total += t[active].sum()
            count += n
            np.add.at(c, (rows, p), active.astype("float64"))
            np.add.at(c, (rows, index), -active.astype("float64"))
            # every negative some eps-perturbation of the distances could pick
            surely = np.where(neg & (d > d_ap[:, None] + eps), d, np.inf).min(1)
            choices = neg & (d >= d_ap[:, None] - eps) & (d <= surely[:, None] + eps)
            choices |= np.isinf(surely)[:, None] & neg & (d >= far_value[:, None] - eps)
            ambiguous = choices.sum(1) > 1
            touched[rows[ambiguous]] = touched[p[ambiguous]] = True
            touched |= choices[ambiguous].any(0)
        else:
            t = d_ap[:, None] - d + margin
            active = neg & (t > 0)
            total += t[active].sum()
            count += active.sum()
            slope = active.astype("float64")
            c[rows, p] += slope.sum(1)
            c -= slope
    return total / count, _grad_from_coefficients(embeddings, d, c) / count, touched


def check_triplet(mining, labels, embeddings, value, grad, name="", value_rtol=1e-4, grad_rtol=1e-3):
    """Assert that `(value, grad)` is our loss on this batch (see
    `triplet_reference`; the gradient on the rows no ambiguous pair touches).
    Returns the number of rows left out."""
    ref_value, ref_grad, touched = triplet_reference(mining, labels, embeddings)
    assert abs(value / ref_value - 1.0) <= value_rtol, (name, value, ref_value)
    kept = ~touched
    error = relative_error(np.asarray(grad)[kept], ref_grad[kept])
    assert error <= grad_rtol, (name, error, int(touched.sum()))
    return int(touched.sum())


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """||a - b|| / ||b|| (Frobenius)."""
    return float(np.linalg.norm(np.asarray(a, "float64") - b) / max(np.linalg.norm(b), 1e-30))
