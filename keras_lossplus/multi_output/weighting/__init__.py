"""Loss-weighting strategies for `keras_lossplus.MultiOutputModel`.

Pass one to `compile(weighting=...)` by name (`"static"`, `"uncertainty"`,
`"dwa"`, `"rlw"`, `"famo"`, `"gradnorm"`, `"pcgrad"`, `"cagrad"`, `"mgda"`,
`"nash_mtl"`, `"imtl"`, `"gradvac"`, `"aligned_mtl"`, `"db_mtl"`)
or as an object to set its options, e.g. `weighting=klp.weighting.DWA(temperature=1.0)`.
"""

from keras_lossplus.multi_output.weighting.aligned_mtl import AlignedMTL
from keras_lossplus.multi_output.weighting.base import WeightingStrategy, get
from keras_lossplus.multi_output.weighting.db_mtl import DBMTL
from keras_lossplus.multi_output.weighting.gradient_based import MGDA, CAGrad, GradientStrategy, GradNorm, PCGrad
from keras_lossplus.multi_output.weighting.gradvac import GradVac
from keras_lossplus.multi_output.weighting.imtl import IMTL
from keras_lossplus.multi_output.weighting.loss_based import DWA, FAMO, RLW, Static, Uncertainty
from keras_lossplus.multi_output.weighting.nash_mtl import NashMTL

__all__ = [
    "AlignedMTL",
    "CAGrad",
    "DBMTL",
    "DWA",
    "FAMO",
    "GradNorm",
    "GradVac",
    "GradientStrategy",
    "IMTL",
    "MGDA",
    "NashMTL",
    "PCGrad",
    "RLW",
    "Static",
    "Uncertainty",
    "WeightingStrategy",
    "get",
]
