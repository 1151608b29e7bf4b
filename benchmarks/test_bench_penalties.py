"""One training step of an MLP with an L1 activity penalty: keras_lossplus'
`L1Penalty` against Keras' `ActivityRegularization`.

The model is 256 -> Dense 512 relu -> penalty -> Dense 512 relu -> Dense 10,
sparse categorical cross-entropy from logits, SGD, batch 256, compiled with
`jit_compile=True` on JAX and TensorFlow (torch: no XLA). A case times
`train_step`: the model's own compiled train function (forward, loss,
backward, update). Variants:

* `activity_regularization`: `keras.layers.ActivityRegularization(l1=f)`;
* `keras_lossplus`: `L1Penalty(f, normalize_by_batch=True)` (same penalty);
* `keras_lossplus+logging`: the same, with `log_penalties(model)`.

A step takes a few ms, and the load of a shared machine moves by far more
than the 5 % that matters here within a second, so the variants take turns:
`BLOCKS` blocks of `ROUNDS` rounds each (one warm-up round each), block 0 of
every variant, then block 1 of every variant, ..., the order rotated from
block to block so that no variant always runs first; the report takes the
median of all a variant's timed rounds. (Timed one after the other, 100 or
300 rounds each, the same variants gave ratios from 0.84 to 1.29.) Each
variant is built, compiled and checked once, in its first block: its first step
(`train_on_batch`) is checked against a float64 numpy reference (the loss,
the logged penalty and the update of the first kernel), so that every
variant timed trains the same model the same way.

Run with `KERAS_BACKEND=<backend> pytest benchmarks/ --benchmark-only`.
"""

import os

import keras
import numpy as np
import pytest
from harness import BACKEND, rotated, to_backend, train_step

import keras_lossplus
from keras_lossplus.layers import L1Penalty

# `TRAIN_STEP_BENCH_BLOCKS=20` takes turns in fewer blocks (`report.py --quick`)
BLOCKS = int(os.environ.get("TRAIN_STEP_BENCH_BLOCKS", "60"))
ROUNDS = 5
FACTOR = 0.01
LR = 0.01
GROUP = "l1_train_step"


def _activity_regularization():
    return keras.layers.ActivityRegularization(l1=FACTOR, name="penalty")


def _l1_penalty():
    return L1Penalty(FACTOR, normalize_by_batch=True, name="penalty")


VARIANTS = {  # implementation -> (penalty layer, log the penalty)
    "activity_regularization": (_activity_regularization, False),
    "keras_lossplus": (_l1_penalty, False),
    "keras_lossplus+logging": (_l1_penalty, True),
}


def build_model(implementation):
    """The MLP with the variant's penalty layer, compiled (and logging if asked)."""
    make_layer, log = VARIANTS[implementation]
    keras.utils.set_random_seed(0)
    inputs = keras.Input((256,))
    h = keras.layers.Dense(512, activation="relu")(inputs)
    h = keras.layers.Dense(512, activation="relu")(make_layer()(h))
    model = keras.Model(inputs, keras.layers.Dense(10)(h))
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=LR),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=BACKEND != "torch",
    )
    return keras_lossplus.log_penalties(model) if log else model


def reference_step(weights, x, y):
    """Loss, penalty and gradient of the first kernel of one step, float64."""
    w1, b1, w2, b2, w3, b3 = (w.astype("float64") for w in weights)
    x, n = x.astype("float64"), len(x)
    a1 = x @ w1 + b1
    h1 = np.maximum(a1, 0.0)
    a2 = h1 @ w2 + b2
    logits = np.maximum(a2, 0.0) @ w3 + b3
    log_p = logits - logits.max(-1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(-1, keepdims=True))
    penalty = FACTOR * np.abs(h1).sum() / n
    d_logits = (np.exp(log_p) - np.eye(10)[y]) / n
    d_h1 = ((d_logits @ w3.T) * (a2 > 0)) @ w2.T + FACTOR * np.sign(h1) / n
    return -log_p[np.arange(n), y].mean() + penalty, penalty, x.T @ (d_h1 * (a1 > 0))


def checked_train_step(implementation, batch):
    """The variant's warmed-up `train_step`, after checking its first step."""
    model = build_model(implementation)
    x, y = (to_backend(a) for a in batch)
    before = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
    logs = model.train_on_batch(x, y, return_dict=True)  # builds, compiles, first step

    loss, penalty, grad = reference_step(before, *batch)
    assert logs["loss"] == pytest.approx(loss, rel=1e-4)
    if VARIANTS[implementation][1]:
        assert logs["penalty"] == pytest.approx(penalty, rel=1e-4)
    update = keras.ops.convert_to_numpy(model.trainable_weights[0]) - before[0]
    np.testing.assert_allclose(update, -LR * grad, rtol=1e-3, atol=1e-3 * LR * np.abs(grad).max())
    return train_step(model, x, y)


@pytest.mark.parametrize(
    "block, implementation", [(b, i) for b in range(BLOCKS) for i in rotated(VARIANTS, b)],
    ids=str,
)
def test_l1_train_step(benchmark, mlp_batch, steps, block, implementation):
    if implementation not in steps:
        steps[implementation] = checked_train_step(implementation, mlp_batch)
    benchmark.group = f"{GROUP} {BACKEND}"
    benchmark.extra_info.update(
        backend=BACKEND, loss=GROUP, implementation=implementation, block=block,
        shape=list(mlp_batch[0].shape),
        measured="one training step (forward, loss, backward, SGD update) of the model's compiled "
                 "train function, MLP 256-512-512-10, batch 256; XLA jit on jax and tensorflow, "
                 "eager on torch",
    )
    benchmark.pedantic(steps[implementation], rounds=ROUNDS, warmup_rounds=1)
