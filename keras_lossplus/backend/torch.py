"""PyTorch specifics."""

from typing import Any

import torch


def is_concrete(x: Any) -> bool:
    compiling = getattr(getattr(torch, "compiler", None), "is_compiling", None)
    return not (compiling is not None and compiling())
