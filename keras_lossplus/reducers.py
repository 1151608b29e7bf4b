"""Reducers the triplet loss takes as `reducer=` next to their names
(`"mean"`, `"avg_nonzero"`, `"sum"`); the code lives in
`keras_lossplus.losses.metric_learning.reducers`.

>>> import keras_lossplus as klp
>>> loss = klp.losses.TripletLoss(mining="hard", reducer=klp.reducers.AvgNonZeroReducer())
"""

from keras_lossplus.losses.metric_learning.reducers import (
    AvgNonZeroReducer,
    MeanReducer,
    Reducer,
    SumReducer,
    resolve_reducer,
)

__all__ = ["AvgNonZeroReducer", "MeanReducer", "Reducer", "SumReducer", "resolve_reducer"]
