"""One training step of a three-output model: `keras_lossplus.MultiOutputModel`
with its weighting strategies against the same graph as a plain
`keras.Model` compiled with the same `loss` / `loss_weights` dicts.

The model is input 64 -> Dense 512 relu -> Dense 512 relu (the shared
trunk) -> three heads: `a` Dense 10 (sparse categorical cross-entropy from
logits, weight 1.0), `b` Dense 1 (MSE, weight 0.5), `c` Dense 1 (MSE,
weight 0.1); SGD, batch 256, compiled with `jit_compile=True` on JAX and
TensorFlow (torch: no XLA). A case times `train_step`: the model's own
compiled train function (forward, loss, backward, update), the one `fit`
runs. Variants:

* `keras` (the peer): `keras.Model(inputs, outputs).compile(loss={...},
  loss_weights={...})`;
* `keras_lossplus+static`, `+uncertainty`, `+dwa`, `+pcgrad`, `+nash_mtl`,
  `+imtl`, `+gradvac`, `+aligned_mtl`, `+db_mtl`:
  `MultiOutputModel(inputs, outputs).compile(loss={...}, loss_weights={...},
  weighting=...)` with that strategy, by name.

Static, uncertainty and DWA train through Keras' own `train_step` (the
strategy only changes the weights of the summed loss); PCGrad computes one
gradient per task (T = 3 backward passes) and projects the trunk's
gradients, so its target is a multiple of a plain step, (T + 1) = 4; so do
Nash-MTL (the update along the Nash bargaining weights of the trunk's task
gradients, clipped to norm 1), IMTL (loss scales and the IMTL-G
weights), GradVac, Aligned-MTL and DB-MTL, with the same target (the first
step of each is checked against the LibMTL algorithm: GradVac's equals
PCGrad's, as its target cosines start at 0).

As in `test_bench_penalties.py`, the variants take turns: `BLOCKS` blocks of
`ROUNDS` timed rounds (one warm-up round each), block 0 of every variant,
then block 1, ..., the order rotated from block to block; the report takes
the median of all a variant's timed rounds. Each variant is built, compiled
and checked once, in its first block: its first step (`train_on_batch`) is
checked against a float64 numpy reference (the total and per-output
losses, and the update of the first trunk kernel and of the head kernels;
for PCGrad the trunk update against the 8 orders in which its shuffling
can visit the tasks; for Nash-MTL and IMTL the trunk and head updates
against the numpy references of LibMTL's algorithms in
`tests/multi_output/references.py`), so that every variant timed trains the
same model.

Run with `KERAS_BACKEND=<backend> pytest benchmarks/test_bench_multi_output.py --benchmark-only`.
"""

import itertools
import math
import os

import keras
import numpy as np
import pytest
from harness import BACKEND, rotated, to_backend, train_step

import keras_lossplus

# `TRAIN_STEP_BENCH_BLOCKS=20` takes turns in fewer blocks (`report.py --quick`)
BLOCKS = int(os.environ.get("TRAIN_STEP_BENCH_BLOCKS", "60"))
ROUNDS = 5
LR = 0.01
HIDDEN = 512
CLASSES = 10
WEIGHTS = {"a": 1.0, "b": 0.5, "c": 0.1}
TASKS = list(WEIGHTS)
GROUP = "multi_output_train_step"
PEER = "keras"
STRATEGIES = ("static", "uncertainty", "dwa", "pcgrad", "nash_mtl", "imtl", "gradvac", "aligned_mtl", "db_mtl")
VARIANTS = [PEER] + [f"keras_lossplus+{s}" for s in STRATEGIES]


def _losses():
    return {"a": keras.losses.SparseCategoricalCrossentropy(from_logits=True), "b": "mse", "c": "mse"}


def build_model(implementation):
    """The three-output model as the variant builds and compiles it."""
    keras.utils.set_random_seed(0)  # same initial weights for every variant
    inputs = keras.Input((64,))
    h = keras.layers.Dense(HIDDEN, activation="relu", name="trunk_1")(inputs)
    h = keras.layers.Dense(HIDDEN, activation="relu", name="trunk_2")(h)
    outputs = {
        "a": keras.layers.Dense(CLASSES, name="a")(h),
        "b": keras.layers.Dense(1, name="b")(h),
        "c": keras.layers.Dense(1, name="c")(h),
    }
    options = dict(
        optimizer=keras.optimizers.SGD(learning_rate=LR), loss=_losses(), loss_weights=dict(WEIGHTS),
        jit_compile=BACKEND != "torch",
    )
    if implementation == PEER:
        model = keras.Model(inputs, outputs)
        model.compile(**options)
    else:
        model = keras_lossplus.MultiOutputModel(inputs, outputs)
        model.compile(weighting=implementation.split("+", 1)[1], **options)
    return model


LAYERS = ("trunk_1", "trunk_2", "a", "b", "c")


def kernels(model):
    """The kernel of each layer in `LAYERS`, as numpy."""
    return {name: keras.ops.convert_to_numpy(model.get_layer(name).kernel) for name in LAYERS}


def reference_step(model, x, y):
    """Float64 per-output losses and, per task, the gradient of its weighted
    loss with respect to the kernels (and trunk biases) of `model`."""
    p = {n: [w.astype("float64") for w in model.get_layer(n).get_weights()] for n in LAYERS}
    x, n = x.astype("float64"), len(x)
    a1 = x @ p["trunk_1"][0] + p["trunk_1"][1]
    h1 = np.maximum(a1, 0.0)
    a2 = h1 @ p["trunk_2"][0] + p["trunk_2"][1]
    h2 = np.maximum(a2, 0.0)
    out = {t: h2 @ p[t][0] + p[t][1] for t in TASKS}
    log_p = out["a"] - out["a"].max(-1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(-1, keepdims=True))
    losses = {
        "a": -log_p[np.arange(n), y["a"]].mean(),
        "b": np.mean((out["b"] - y["b"]) ** 2),
        "c": np.mean((out["c"] - y["c"]) ** 2),
    }
    d_out = {
        "a": (np.exp(log_p) - np.eye(CLASSES)[y["a"]]) / n,
        "b": 2.0 * (out["b"] - y["b"]) / n,
        "c": 2.0 * (out["c"] - y["c"]) / n,
    }
    grads = {}  # task -> {layer: kernel gradient of weight * loss}
    for t in TASKS:
        d = WEIGHTS[t] * d_out[t]
        d_a2 = (d @ p[t][0].T) * (a2 > 0)
        d_a1 = (d_a2 @ p["trunk_2"][0].T) * (a1 > 0)
        grads[t] = {t: h2.T @ d, "trunk_2": h1.T @ d_a2, "trunk_1": x.T @ d_a1,
                    "trunk_2_bias": d_a2.sum(0), "trunk_1_bias": d_a1.sum(0)}
    return losses, grads


TRUNK = ("trunk_1", "trunk_1_bias", "trunk_2", "trunk_2_bias")


def flat_trunk(grads):
    """The (T, P) task gradients of the trunk, in the model's variable order."""
    return np.stack([np.concatenate([grads[t][k].ravel() for k in TRUNK]) for t in TASKS])


def libmtl_trunk_and_heads(implementation, grads, losses):
    """Aligned-MTL's and DB-MTL's first-step trunk_1 kernel gradient and head
    weights (LibMTL's algorithms, on the weighted task gradients)."""
    flat = flat_trunk(grads)
    size = grads["a"]["trunk_1"].size
    if implementation.endswith("+aligned_mtl"):
        m = flat @ flat.T
        lam, v = np.linalg.eigh(m)
        keep = lam > lam.max() * len(m) * np.finfo(np.float32).eps
        lam, v = lam[keep], v[:, keep]
        alpha = (np.sqrt(lam.min()) * (v / np.sqrt(lam)) @ v.T).sum(0)
        heads = np.ones(len(TASKS))
        direction = alpha @ flat
    else:  # db_mtl, step 1: buffer (1 - beta) h of the log-loss gradients h, each scaled to the largest norm
        weighted = np.array([WEIGHTS[t] * losses[t] for t in TASKS])
        heads = 1.0 / (weighted + 1e-8)
        h = (1.0 - 0.9) * flat * heads[:, None]
        norms = np.linalg.norm(h, axis=1)
        direction = (norms.max() / (norms + 1e-8)) @ h
    return direction[:size].reshape(grads["a"]["trunk_1"].shape), heads


def pcgrad_candidates(grads):
    """The trunk_1 kernel gradient PCGrad gives for each of the 8 orders in
    which its shuffling can visit the other two tasks, and whether any pair of
    task gradients conflicts."""
    flat = flat_trunk(grads)
    conflict = any(flat[i] @ flat[j] < 0 for i, j in itertools.combinations(range(3), 2))
    size = grads["a"]["trunk_1"].size
    candidates = []
    for orders in itertools.product([(0, 1, 2), (2, 1, 0)], repeat=3):
        total = 0.0
        for i, order in enumerate(orders):
            g = flat[i].copy()
            for j in order:
                if j != i and g @ flat[j] < 0:
                    g -= (g @ flat[j]) / (flat[j] @ flat[j]) * flat[j]
            total = total + g
        candidates.append(total[:size].reshape(grads["a"]["trunk_1"].shape))
    return candidates, conflict


def weighted_reference(method, grads, losses):
    """Nash-MTL / IMTL (LibMTL's algorithms, numpy): the trunk_1 kernel
    gradient, each head's scale and each task's logged weight."""
    import sys

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from tests.multi_output import references as ref

    flat = flat_trunk(grads)
    if method == "nash_mtl":
        direction, alpha = ref.nash_mtl_direction(flat, max_norm=1.0)
        heads = logged = alpha
    else:  # imtl, first step: loss scales 0
        direction, heads, _ = ref.imtl_step(flat, [losses[t] for t in TASKS], np.zeros(len(TASKS)))
        logged = ref.imtl_alpha(flat) * heads
    size = grads["a"]["trunk_1"].size
    return direction[:size].reshape(grads["a"]["trunk_1"].shape), dict(zip(TASKS, heads)), dict(zip(TASKS, logged))


def check_update(after, before, grad):
    update = after - before
    np.testing.assert_allclose(update, -LR * grad, rtol=1e-3, atol=1e-3 * LR * np.abs(grad).max())


def checked_train_step(implementation, batch):
    """The variant's warmed-up `train_step`, after checking its first step."""
    model = build_model(implementation)
    x, y = batch
    xb, yb = to_backend(x), {t: to_backend(v) for t, v in y.items()}
    model(xb[:1])  # build, to read the initial weights
    losses, grads = reference_step(model, x, y)
    before = kernels(model)
    logs = model.train_on_batch(xb, yb, return_dict=True)  # compiles, first step
    after = kernels(model)

    method = implementation.split("+", 1)[-1]
    trunk, heads, logged = (
        weighted_reference(method, grads, losses) if method in ("nash_mtl", "imtl")
        else (None, dict.fromkeys(TASKS, 1.0), dict.fromkeys(TASKS, 1.0))
    )
    total = sum(WEIGHTS[t] * logged[t] * losses[t] for t in TASKS)
    if implementation.endswith("+uncertainty"):  # + 0.5 * sum(log variances), log(c / w) at start
        scale = {"a": 1.0, "b": 0.5, "c": 0.5}  # inferred: "a" cross-entropy (classification), "mse" regression
        total += 0.5 * sum(math.log(scale[t] / w) for t, w in WEIGHTS.items())
    libmtl = implementation.endswith(("+aligned_mtl", "+db_mtl"))
    if not libmtl:  # their logged weights are their own
        assert logs["loss"] == pytest.approx(total, rel=1e-4)
    if libmtl:
        heads = dict(zip(TASKS, libmtl_trunk_and_heads(implementation, grads, losses)[1]))
    for t in TASKS:
        assert logs[f"{t}_loss"] == pytest.approx(losses[t], rel=1e-4)
        check_update(after[t], before[t], heads[t] * grads[t][t])  # heads: weighted task gradient
    summed = sum(grads[t]["trunk_1"] for t in TASKS)
    if libmtl:
        check_update(after["trunk_1"], before["trunk_1"], libmtl_trunk_and_heads(implementation, grads, losses)[0])
    elif implementation.endswith(("+pcgrad", "+gradvac")):
        candidates, _ = pcgrad_candidates(grads)
        update = (after["trunk_1"] - before["trunk_1"]) / -LR
        errors = [np.abs(update - c).max() for c in candidates]
        assert min(errors) <= 1e-3 * np.abs(summed).max(), errors
    elif trunk is not None:
        check_update(after["trunk_1"], before["trunk_1"], trunk)
    else:  # the same summed gradient as plain Keras
        check_update(after["trunk_1"], before["trunk_1"], summed)
    return train_step(model, xb, yb)


@pytest.mark.parametrize(
    "block, implementation", [(b, i) for b in range(BLOCKS) for i in rotated(VARIANTS, b)], ids=str,
)
def test_multi_output_train_step(benchmark, multi_output_batch, steps, block, implementation):
    if implementation not in steps:
        steps[implementation] = checked_train_step(implementation, multi_output_batch)
    benchmark.group = f"{GROUP} {BACKEND}"
    benchmark.extra_info.update(
        backend=BACKEND, loss=GROUP, implementation=implementation, block=block,
        shape=list(multi_output_batch[0].shape),
        measured="one training step (forward, 3 losses, backward, SGD update) of the model's compiled "
                 "train function, 64-512-512 trunk + heads 10/1/1 (cross-entropy, MSE, MSE; weights "
                 "1/0.5/0.1), batch 256; XLA jit on jax and tensorflow, eager on torch; peer: plain "
                 "keras.Model compiled with the same loss/loss_weights dicts",
    )
    benchmark.pedantic(steps[implementation], rounds=ROUNDS, warmup_rounds=1)
