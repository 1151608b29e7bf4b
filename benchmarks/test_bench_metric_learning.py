"""Forward + backward of `TripletLoss(mining="semihard")` and
`TripletLoss(mining="all")` against pytorch-metric-learning (PML), issue 6.

Setting (`metric_cases.py`): a P x K batch, K = 8 samples per class and
P = B / 8 classes, labels shuffled; embeddings N(0, 1) float32, D = 128;
B = 256, 512, 1024, 2048, 4096; un-normalised Euclidean distances.

* ours: `TripletLoss(margin=0.2, mining="semihard")` and
  `TripletLoss(margin=0.05, mining="all")`, timed by `harness.value_and_grad_step`
  on the current backend (XLA jit on JAX and TensorFlow, eager autograd on
  torch);
* `pml` (peer, in the same process): torch eager autograd (`torch.autograd.grad`)
  of `TripletMarginLoss(margin=0.2)` on the triplets of
  `TripletMarginMiner(margin=0.2, type_of_triplets="semihard")`, and of plain
  `TripletMarginLoss()` (margin 0.05, all triplets), both with
  `LpDistance(normalize_embeddings=False)`. PML's semi-hard miner keeps every
  triplet with 0 < d_an - d_ap <= margin, ours (tensorflow-addons' rule) one
  negative per anchor-positive pair: the same task, not the same value.
  Batch-all is the same loss on both sides.

`METRIC_BENCH_BATCH_SIZES` (comma-separated) times only those B
(`report.py --quick`: 256, 512, 1024, 2048).

PML is O(B^3) in time and memory. It runs up to B = 1024 by default; set
`METRIC_BENCH_PML_MAX_B=4096` to time it at B = 2048 and 4096 too (it then
needs a few GB and tens of seconds per call); above that B the PML cases are
skipped ("not run") and no ratio is reported for that B.

Variants take turns, as in the other suites: for each (mining, B), `BLOCKS`
blocks of `ROUNDS` rounds per variant, the order rotated from block to block
(`harness.rotated`); `report.py` takes the median of all a variant's rounds and
the ratio ours / pml of the medians of one run. Each variant is built and
checked in its first block: ours against a float64 numpy reference (value to
1e-4; gradient to 1e-3 on every row that no near-tie of the semi-hard choice
touches, see `metric_cases.triplet_reference`), PML's batch-all against the
same reference, PML's semi-hard for a finite value and gradient.

Peak memory is measured per configuration in a fresh process by
`metric_memory.py`; on JAX the compiled program's temporaries are recorded
here too (`xla_temp_bytes`).

Run with `KERAS_BACKEND=<backend> pytest benchmarks/test_bench_metric_learning.py --benchmark-only`
or `benchmarks/report.py --suites metric_learning`.
"""

import os

import numpy as np
import pytest
from harness import BACKEND, as_numpy, rotated, to_backend, value_and_grad_step, xla_temp_bytes
from metric_cases import BATCH_SIZES, MARGIN, MININGS, check_triplet, ours_loss, pk_batch, pml_step

PML_MAX_B = int(os.environ.get("METRIC_BENCH_PML_MAX_B", "1024"))
# `METRIC_BENCH_BATCH_SIZES=256,512,1024` times only these B (`report.py --quick`)
BATCH_SIZES = tuple(int(b) for b in os.environ.get("METRIC_BENCH_BATCH_SIZES", "").split(",") if b) or BATCH_SIZES
BLOCKS = {256: 8, 512: 6, 1024: 5, 2048: 3, 4096: 2}
ROUNDS = {256: 4, 512: 2, 1024: 1, 2048: 1, 4096: 1}
IMPLEMENTATIONS = ("keras_lossplus", "pml")

MEASURED = (
    "the loss and its gradient w.r.t. the embeddings, P x K batch (K = 8, shuffled), "
    "N(0, 1) float32, D = 128; ours: XLA jit on jax and tensorflow, eager autograd on torch; "
    "pml: torch eager autograd"
)


@pytest.fixture(scope="module")
def metric_steps():
    """(mining, B, implementation) -> warmed-up step; only the current (mining, B)'s are kept."""
    return {}


def build_step(mining, batch_size, implementation):
    """The variant's warmed-up step, after checking its first result; and
    the JAX program's temporaries for ours."""
    labels, embeddings = pk_batch(batch_size)
    if implementation == "pml":
        step = pml_step(mining, labels, embeddings)
        value, grad = (np.asarray(t.numpy(), "float64") for t in step())
        assert np.isfinite(value) and np.isfinite(grad).all()
        if mining == "all":  # the same loss as ours
            check_triplet(mining, labels, embeddings, float(value), grad, name="pml")
        return step, None
    loss = ours_loss(mining)
    y_true, y_pred = to_backend(labels), to_backend(embeddings)
    step = value_and_grad_step(loss, y_true, y_pred)
    check_triplet(mining, labels, embeddings, *as_numpy(step()), name="keras_lossplus")
    return step, xla_temp_bytes(loss, y_true, y_pred)


CASES = [
    (mining, batch_size, block, implementation)
    for mining in MININGS
    for batch_size in BATCH_SIZES
    for block in range(BLOCKS.get(batch_size, 2))
    for implementation in rotated(IMPLEMENTATIONS, block)
]


@pytest.mark.parametrize("mining, batch_size, block, implementation", CASES, ids=str)
def test_triplet(benchmark, metric_steps, mining, batch_size, block, implementation):
    if implementation == "pml" and batch_size > PML_MAX_B:
        pytest.skip(f"PML not run at B = {batch_size} (O(B^3); METRIC_BENCH_PML_MAX_B={PML_MAX_B})")
    key = mining, batch_size, implementation
    if key not in metric_steps:
        for old in [k for k in metric_steps if k[:2] != key[:2]]:  # free the previous B's
            del metric_steps[old]
        metric_steps[key] = build_step(mining, batch_size, implementation)
    step, temp = metric_steps[key]
    benchmark.group = f"triplet_{mining} B={batch_size} {BACKEND}"
    benchmark.extra_info.update(
        backend=BACKEND, loss=f"triplet_{mining} B={batch_size}", implementation=implementation,
        block=block, batch_size=batch_size, mining=mining, margin=MARGIN[mining],
        shape=[batch_size, 128], xla_temp_bytes=temp, measured=MEASURED,
    )
    benchmark.pedantic(step, rounds=ROUNDS.get(batch_size, 1), warmup_rounds=1 if batch_size <= 512 else 0)
