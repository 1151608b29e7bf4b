"""The distances and similarities the metric-learning losses take by name,
and the checks of their `distance=` option."""

from __future__ import annotations

from keras_lossplus.losses.options import choice

DISTANCES = ("euclidean", "squared_euclidean", "cosine")
SIMILARITIES = ("cosine", "dot")

distance = choice(*DISTANCES)
"""The `distance=` check of the distance-based losses."""

similarity = choice(*SIMILARITIES)
"""The `distance=` check of the similarity-based losses."""
