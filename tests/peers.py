"""Import the peer libraries that the side-by-side tests run.

Each function returns the peer's module, or skips the calling test with the
reason when the peer cannot be imported here (the test then keeps the
published values beside it).

segmentation_models_pytorch's package `__init__` imports its encoders, which
import timm and torchvision; torchvision does not import beside the CPU-only
torch wheel that CI installs (`operator torchvision::nms does not exist`).
Its `losses` sub-package imports torch alone, so `smp_losses()` loads that
sub-package from the installed distribution (`scripts/setup_env.sh` installs
it with `--no-deps`) without running the parent package's `__init__`: the
code that runs is smp's own.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

import pytest

_SMP_LOSSES = "_klp_peer_smp_losses"


def smp_losses():
    """`segmentation_models_pytorch.losses`, the peer's own code."""
    pytest.importorskip("torch")
    if _SMP_LOSSES in sys.modules:
        return sys.modules[_SMP_LOSSES]
    try:
        return importlib.import_module("segmentation_models_pytorch.losses")
    except Exception:  # noqa: BLE001 - the parent package's encoders need torchvision
        pass
    spec = importlib.util.find_spec("segmentation_models_pytorch")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("segmentation_models_pytorch is not installed")
    path = list(spec.submodule_search_locations)[0] + "/losses"
    loss_spec = importlib.util.spec_from_file_location(
        _SMP_LOSSES, path + "/__init__.py", submodule_search_locations=[path]
    )
    module = importlib.util.module_from_spec(loss_spec)
    sys.modules[_SMP_LOSSES] = module
    try:
        loss_spec.loader.exec_module(module)
    except Exception as err:  # noqa: BLE001
        del sys.modules[_SMP_LOSSES]
        pytest.skip(f"segmentation_models_pytorch.losses does not import here: {err}")
    return module


def monai_losses():
    """`monai.losses`."""
    pytest.importorskip("torch")
    return pytest.importorskip("monai.losses")


def keras_rs():
    """`keras_rs` (the Keras 3 recommender library: ranking losses and metrics)."""
    return pytest.importorskip("keras_rs")


def torchvision_ops():
    """`torchvision.ops` (box IoU matrices and losses); it imports only beside
    a torch build it was compiled for, so CI (CPU-only torch 2.13) skips.
    Importing it after TensorFlow crashes: a live comparison runs under
    `KERAS_BACKEND=torch` in an environment that has torchvision."""
    pytest.importorskip("torch")
    try:
        return importlib.import_module("torchvision.ops")
    except Exception as err:  # noqa: BLE001 - RuntimeError when the C++ ops do not load
        pytest.skip(f"torchvision does not import here: {err}")
