"""What the eager PyTorch kernels share: whether `torch.compile` is tracing
(its graphs cannot hold the kernels' data-dependent shapes, so they step
aside for the `keras.ops` code there)."""

import torch


def is_compiling() -> bool:
    """Whether this call is being traced by `torch.compile` (dynamo)."""
    compiling = getattr(getattr(torch, "compiler", None), "is_compiling", None)
    return compiling is not None and bool(compiling())
