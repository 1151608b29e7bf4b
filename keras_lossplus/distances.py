"""Distances and similarities the metric-learning losses take as `distance=`
next to their names (`"euclidean"`, `"squared_euclidean"`, `"cosine"`,
`"dot"`); the code lives in `keras_lossplus.losses.metric_learning.distances`.

>>> import keras_lossplus as klp
>>> loss = klp.losses.TripletLoss(distance=klp.distances.ManhattanDistance())
"""

from keras_lossplus.losses.metric_learning.distances import (
    CosineDistance,
    CosineSimilarity,
    CustomDistance,
    Distance,
    DotProductSimilarity,
    EuclideanDistance,
    ManhattanDistance,
    SquaredEuclideanDistance,
    resolve_distance,
)

__all__ = [
    "CosineDistance",
    "CosineSimilarity",
    "CustomDistance",
    "Distance",
    "DotProductSimilarity",
    "EuclideanDistance",
    "ManhattanDistance",
    "SquaredEuclideanDistance",
    "resolve_distance",
]
