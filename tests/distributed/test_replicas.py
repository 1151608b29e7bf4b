"""In-batch losses under data parallelism see the global batch: on 2 and 4
virtual CPU devices (JAX `keras.distribution.DataParallel`, TensorFlow
`MirroredStrategy`), the evaluated loss, every logged training term and the
weights after one SGD step equal the single-device run on the same global
batch, for the in-batch losses, penalty layers and the multi-output helper
(and, on JAX, an ArcFace head whose class weights `ModelParallel` shards). Each device count runs in a subprocess (`replicas.py`), since the
number of devices is fixed when the backend starts."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.backend_utils import BACKEND

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests" / "distributed" / "replicas.py"
LOSSES = {"triplet_semihard", "triplet_all", "supcon", "nt_xent", "multi_similarity", "mnrl"}


def _run(devices: int) -> dict:
    env = dict(os.environ, KERAS_BACKEND=BACKEND, TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run([sys.executable, str(SCRIPT), BACKEND, str(devices)], capture_output=True, text=True,
                         cwd=ROOT, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    line = next(l for l in out.stdout.splitlines() if l.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


data_parallel = pytest.mark.skipif(BACKEND not in ("jax", "tensorflow"),
                                   reason="data parallelism of Keras 3: JAX and TensorFlow")


@pytest.fixture(scope="module")
def single_device():
    return _run(1)


def _close(one: float, many: float) -> bool:
    return abs(one - many) <= 1e-5 * max(1.0, abs(one))


@data_parallel
@pytest.mark.parametrize("devices", [2, 4])
def test_in_batch_losses_see_the_global_batch(devices, single_device):
    results = _run(devices)
    # a global batch that does not divide by the replicas is refused, never a wrong loss: by JAX's
    # sharding, by Keras' TF input pipeline, and (slices reaching the loss in a custom loop) by the loss
    uneven = results.pop("uneven")
    assert ("IndivisibleError" if BACKEND == "jax" else "InvalidArgumentError") in uneven, uneven
    if BACKEND == "tensorflow":
        uneven = results.pop("uneven_in_loss")
        assert "needs the same number of samples on every replica" in uneven, uneven
    expected = set(LOSSES) | {"triplet_with_penalties", "multi_output_uncertainty", "multi_output_pcgrad"}
    assert set(results) == expected | ({"arcface_model_parallel"} if BACKEND == "jax" else set())
    assert {"l1", "decov"} <= set(results["triplet_with_penalties"]["logs"])
    for name in ("multi_output_uncertainty", "multi_output_pcgrad"):  # every term: losses, weights, penalties
        assert {"cls_loss", "reg_loss", "reg_weight", "reg_weighted_loss", "l1", "decov", "center"} <= set(
            results[name]["logs"])
    if BACKEND == "jax":  # ModelParallel: (16, 8) ArcFace weights, classes split over 2 devices
        assert set(map(tuple, results["arcface_model_parallel"]["kernel_shards"])) == {(16, 4)}
    for name, one in single_device.items():
        many = results[name]
        assert _close(one["evaluate"], many["evaluate"]), (name, one["evaluate"], many["evaluate"])
        assert set(one["logs"]) == set(many["logs"]), name
        for key, value in one["logs"].items():
            assert _close(value, many["logs"][key]), (name, key, value, many["logs"][key])
        gap = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in zip(one["weights"], many["weights"]))
        assert gap <= 1e-5, (name, gap)
        if BACKEND == "tensorflow" and devices == 2 and name in LOSSES:  # cross_replica="local", checked once
            assert _close(one["local"], many["local"]), (name, one["local"], many["local"])


def test_gather_is_refused_under_torch_distributed(monkeypatch):
    if BACKEND != "torch":
        pytest.skip("torch.distributed only")
    from keras_lossplus.backend import torch as backend_torch
    from keras_lossplus import losses as L
    import numpy as np

    monkeypatch.setattr(backend_torch, "_world_size", lambda: 2)
    y, x = np.array([0, 0, 1, 1]), np.eye(4, 3, dtype="float32")
    with pytest.raises(NotImplementedError, match="cross_replica='local'"):
        L.SupConLoss()(y, x)
    assert np.isfinite(float(L.SupConLoss(cross_replica="local")(y, x)))
