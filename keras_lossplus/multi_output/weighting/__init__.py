"""Loss-weighting strategies for `keras_lossplus.MultiOutputModel`.

Pass one to `compile(weighting=...)` by name (`"static"`, `"uncertainty"`,
`"dwa"`, `"rlw"`, `"famo"`, `"gradnorm"`, `"pcgrad"`, `"cagrad"`, `"mgda"`,
`"nash_mtl"`, `"imtl"`)
or as an object to set its options, e.g. `weighting=klp.weighting.DWA(temperature=1.0)`.
"""

from keras_lossplus.multi_output.weighting.base import WeightingStrategy, get
from keras_lossplus.multi_output.weighting.gradient_based import MGDA, CAGrad, GradientStrategy, GradNorm, PCGrad
from keras_lossplus.multi_output.weighting.imtl import IMTL
from keras_lossplus.multi_output.weighting.loss_based import DWA, FAMO, RLW, Static, Uncertainty
from keras_lossplus.multi_output.weighting.nash_mtl import NashMTL

__all__ = [
    "CAGrad",
    "DWA",
    "FAMO",
    "GradNorm",
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
