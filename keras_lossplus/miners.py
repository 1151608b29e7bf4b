"""Triplet miners the triplet loss takes as `mining=` next to their names
(`"semihard"`, `"hard"`, `"all"`); the code lives in
`keras_lossplus.losses.metric_learning` (`mining`, `easy_hard`,
`distance_weighted`).

>>> import keras_lossplus as klp
>>> loss = klp.losses.TripletLoss(mining=klp.miners.BatchEasyHardMiner("easy", "semihard"))
"""

from keras_lossplus.losses.metric_learning.distance_weighted import (
    DistanceWeightedMiner,
)
from keras_lossplus.losses.metric_learning.easy_hard import BatchEasyHardMiner
from keras_lossplus.losses.metric_learning.mining import (
    AllTripletsMiner,
    HardMiner,
    Miner,
    SemiHardMiner,
    resolve_miner,
)

__all__ = [
    "AllTripletsMiner",
    "BatchEasyHardMiner",
    "DistanceWeightedMiner",
    "HardMiner",
    "Miner",
    "SemiHardMiner",
    "resolve_miner",
]
