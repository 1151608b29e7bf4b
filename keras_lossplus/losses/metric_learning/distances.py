"""The distances and similarities the metric-learning losses take by name."""

from __future__ import annotations

from typing import Any, Sequence, Union


from keras_lossplus.losses.options import check_choice, check_number

Tensor = Any
Alpha = Union[None, float, Sequence[float]]



DISTANCES = ("euclidean", "squared_euclidean", "cosine")
SIMILARITIES = ("cosine", "dot")


def check_options(distance: str, allowed: Sequence[str] = DISTANCES, **numbers: Any) -> None:
    """Validate `distance` and the non-negative number options."""
    check_choice("distance", distance, allowed)
    for name, value in numbers.items():
        check_number(name, value, low=0.0)
