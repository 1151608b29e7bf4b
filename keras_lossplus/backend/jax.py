"""JAX specifics."""

from typing import Any

import jax


def is_concrete(x: Any) -> bool:
    return not isinstance(x, jax.core.Tracer)
