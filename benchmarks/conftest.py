"""Shared set-up of the benchmark suites: quiet TensorFlow, the backend and
library versions in the header, and the benchmark inputs (built once per
session, outside any timing)."""

import os
import time

START = time.time()  # the suite process's start, about (conftest is imported first)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "jax")

import importlib.metadata as metadata  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

LIBRARIES = ("keras", "jax", "tensorflow", "torch", "optax", "numpy")
# environment variables that change what the suites run (`report.py --quick` sets them)
KNOBS = ("METRIC_BENCH_BATCH_SIZES", "METRIC_BENCH_PML_MAX_B", "SEGMENTATION_BENCH_SIZES",
         "TRAIN_STEP_BENCH_BLOCKS", "LINEAR_CE_BENCH_SIZES")


def library_versions() -> dict:
    """Installed versions of the libraries the benchmarks compare."""
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def pytest_benchmark_update_machine_info(config, machine_info):
    """Record the backend, the device it computes on, the library versions,
    the settings that change the workload, the machine's load average (1, 5,
    15 min, when the JSON is written at the end of the run) and the run's
    wall time in the JSON output."""
    from harness import device

    machine_info.update(
        keras_backend=keras.backend.backend(), libraries=library_versions(), device=device(),
        bench_env={k: os.environ[k] for k in KNOBS if os.environ.get(k)},
        load_average=[round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        wall_seconds=round(time.time() - START, 1),
    )


def pytest_report_header(config):
    versions = ", ".join(f"{k} {v}" for k, v in library_versions().items())
    return f"backend: {keras.backend.backend()}; {versions}"


@pytest.fixture(scope="session")
def binary_batch():
    """Logits (4096, 1000) float32 and random 0/1 labels of the same shape."""
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=2.0, size=(4096, 1000)).astype("float32")
    labels = rng.integers(0, 2, size=logits.shape).astype("float32")
    return labels, logits


@pytest.fixture(scope="session")
def one_hot_batch():
    """Logits (4096, 1000) float32 and one-hot labels over the 1000 classes."""
    rng = np.random.default_rng(1)
    logits = rng.normal(scale=2.0, size=(4096, 1000)).astype("float32")
    labels = np.eye(1000, dtype="float32")[rng.integers(0, 1000, size=4096)]
    return labels, logits


@pytest.fixture(scope="session")
def mlp_batch():
    """Features (256, 256) float32, N(0, 1), and integer labels in [0, 10)."""
    rng = np.random.default_rng(2)
    features = rng.normal(size=(256, 256)).astype("float32")
    labels = rng.integers(0, 10, size=256).astype("int32")
    return features, labels


@pytest.fixture(scope="session")
def multi_output_batch():
    """Features (256, 64) float32, N(0, 1), and the targets of the three
    outputs: `a` integer labels in [0, 10), `b` and `c` float32 (256, 1), N(0, 1)."""
    rng = np.random.default_rng(3)
    features = rng.normal(size=(256, 64)).astype("float32")
    targets = {
        "a": rng.integers(0, 10, size=256).astype("int32"),
        "b": rng.normal(size=(256, 1)).astype("float32"),
        "c": rng.normal(size=(256, 1)).astype("float32"),
    }
    return features, targets


@pytest.fixture(scope="module")
def steps():
    """Each variant's train step, built on first use and kept for its later blocks."""
    return {}
