"""In-batch losses under data parallelism see the global batch: on 2 and 4
virtual CPU devices (JAX `keras.distribution.DataParallel`, TensorFlow
`MirroredStrategy`), the evaluated loss, the logged training loss and the
weights after one SGD step equal the single-device run on the same global
batch. Each device count runs in a subprocess (`replicas.py`), since the
number of devices is fixed when the backend starts."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.backend_utils import BACKEND

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests" / "distributed" / "replicas.py"


def _run(devices: int) -> dict:
    env = dict(os.environ, KERAS_BACKEND=BACKEND, TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run([sys.executable, str(SCRIPT), BACKEND, str(devices)], capture_output=True, text=True,
                         cwd=ROOT, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    line = next(l for l in out.stdout.splitlines() if l.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


@pytest.mark.skipif(BACKEND not in ("jax", "tensorflow"), reason="data parallelism of Keras 3: JAX and TensorFlow")
@pytest.mark.parametrize("devices", [2, 4])
def test_in_batch_losses_see_the_global_batch(devices):
    results = _run(devices)
    if BACKEND == "tensorflow" and devices == 2:
        assert all("local" in row for row in results.values())  # cross_replica="local" checked once
    assert set(results) == {"triplet_semihard", "triplet_all", "supcon", "nt_xent", "multi_similarity"}
    for name, row in results.items():
        for key in ("evaluate", "logged") + (("local",) if "local" in row else ()):
            one, many = row[key]
            assert abs(one - many) <= 1e-5 * max(1.0, abs(one)), (name, key, row)
        assert row["weights_max_diff"] <= 1e-5, (name, row)


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
