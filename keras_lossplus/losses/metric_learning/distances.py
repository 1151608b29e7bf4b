"""The distances and similarities the metric-learning losses take by name,
and the checks of their `distance=` option."""

from __future__ import annotations

from typing import Any

from keras import ops

from keras_lossplus.losses.options import choice
from keras_lossplus.ops import l2_normalize

DISTANCES = ("euclidean", "squared_euclidean", "cosine")
SIMILARITIES = ("cosine", "dot")

distance = choice(*DISTANCES)
"""The `distance=` check of the distance-based losses."""

similarity = choice(*SIMILARITIES)
"""The `distance=` check of the similarity-based losses."""


def unit_vectors(x: Any) -> Any:
    """`x / ||x||` along the last axis; the zero vector stays zero (gradient
    0), and vectors of any size (up to float32's largest) are normalized
    without overflow: each is first divided by its largest absolute entry,
    held constant (the result is scale invariant, so the gradient is
    exact)."""
    x = ops.convert_to_tensor(x)
    peak = ops.stop_gradient(ops.max(ops.abs(x), axis=-1, keepdims=True))
    return l2_normalize(x / ops.where(peak > 0, peak, ops.ones_like(peak)))
