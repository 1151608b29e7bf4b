"""The fused linear cross-entropy scales out (issue 30 item 4): on 2 and 4
virtual CPU devices the loss `evaluate` and `fit` report and the weights
after one SGD step equal the single-device run on the same global batch,

* JAX `keras.distribution.DataParallel` (the loss is the mean over the
  global batch's tokens) and `ModelParallel` with the head kernel's
  vocabulary axis sharded (vocabulary parallelism: each device keeps
  `(D, V / N)`; XLA all-reduces the per-chunk row max, exp-sum and target
  logit and the `dh` partial sums, never gathers the kernel);
* TensorFlow `MirroredStrategy`, the loss added by `LanguageModelHead` or
  called in `compute_loss`.

Each (backend, device count) runs once, in a subprocess (`lm_replicas.py`):
the number of devices is fixed when the backend starts. Under
`MirroredStrategy` the loss is the mean over the global batch's tokens also
when the replicas keep different numbers of tokens (Keras' own loss averages
the replicas' means there: that naive case is left out)."""

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.backend_utils import BACKEND

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests" / "distributed" / "lm_replicas.py"
DIM, VOCAB = 16, 64

pytestmark = pytest.mark.skipif(
    BACKEND not in ("jax", "tensorflow"),
    reason="data / model parallelism of Keras 3: JAX (keras.distribution) and TensorFlow (tf.distribute); "
           "the torch backend has no Keras distribution API (torch.distributed runs outside fit)",
)


@functools.cache
def _run(devices: int) -> dict:
    env = dict(os.environ, KERAS_BACKEND=BACKEND, TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run([sys.executable, str(SCRIPT), BACKEND, str(devices)], capture_output=True, text=True,
                         cwd=ROOT, env=env, timeout=600, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    line = next(l for l in out.stdout.splitlines() if l.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def _close(one: float, many: float) -> bool:
    return abs(one - many) <= 1e-5 * max(1.0, abs(one))


def _reference(key: str) -> dict:
    """The single-device run a distributed run `key` is compared with."""
    run, name = key.split("/")
    return _run(1)[f"even/{name}" if run.endswith("_even") else name]


def _assert_same(key: str, many: dict) -> None:
    one = _reference(key)
    assert _close(one["evaluate"], many["evaluate"]), (key, "evaluate", one["evaluate"], many["evaluate"])
    assert _close(one["fit"], many["fit"]), (key, "fit", one["fit"], many["fit"])
    gap = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in zip(one["weights"], many["weights"]))
    assert gap <= 1e-5, (key, "weights after one step", gap)


def test_single_device_equals_keras():
    """The reference itself: the fused loss, added by the head or called in
    `compute_loss`, is Keras' SparseCategoricalCrossentropy on the logits
    (ignore_class, padding as sample_weight)."""
    for key, value in _run(1).items():
        if "keras_reference" in value:
            assert _close(value["keras_reference"], value["evaluate"]), (key, value)


# TensorFlow: 2 replicas (a 4-replica process costs ~45 s on CI's 2 cores; JAX runs 2 and 4)
@pytest.mark.parametrize("devices", [2, 4] if BACKEND == "jax" else [2])
def test_data_parallel_equals_one_device(devices):
    results = _run(devices)
    keys = [k for k in results if k.startswith("data_parallel")]
    if BACKEND == "tensorflow":  # Keras' own loss averages the replicas' means: different with uneven ignored tokens
        keys = [k for k in keys if k != "data_parallel/naive"]
    assert keys
    for key in keys:
        _assert_same(key, results[key])


@pytest.mark.skipif(BACKEND != "jax", reason="keras.distribution.ModelParallel: JAX only")
@pytest.mark.parametrize("devices", [2, 4])
def test_vocabulary_parallel_equals_one_device(devices):
    results = _run(devices)
    fits = [k for k in results if k.startswith("model_parallel_")]
    assert len(fits) == (3 if devices == 2 else 6), sorted(results)
    for key in fits:
        model = int(key.split("/")[0].split("x")[1])
        assert results[key]["kernel_shards"] == [[DIM, VOCAB // model]], (key, results[key]["kernel_shards"])
        _assert_same(key, results[key])
    one = _run(1)["sharded_op"]
    for key in (k for k in results if k.startswith("sharded_op_")):
        many = results[key]
        assert _close(one["value"], many["value"]), (key, one["value"], many["value"])
        for grad in ("d_hidden", "d_kernel"):
            gap = float(np.max(np.abs(np.asarray(one[grad]) - np.asarray(many[grad]))))
            assert gap <= 1e-5, (key, grad, gap)
        batch, model = (int(v) for v in key.rsplit("_", 1)[1].split("x"))
        gathered = many["collectives"].get("all-gather", [])
        if batch > 1:  # every chunk strides through the batch: the sharded hidden states are not gathered
            assert not any(f",{DIM}]" in g for g in gathered), (key, many["collectives"])
        assert f"f32[{DIM},{VOCAB}]" not in gathered, (key, many["collectives"])  # the kernel is never gathered
        if model > 1:  # vocabulary parallel: dW stays split over V; per chunk, all-reduces of (chunk,) / (chunk, D)
            assert many["sharding"]["d_kernel"] == "P(None, 'model')", (key, many["sharding"])
            assert many["collectives"]["all-reduce"], (key, many["collectives"])
