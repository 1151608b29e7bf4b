"""Schedules for a penalty layer's weight (e.g. `GaussianSampling(beta=...)`),
evaluated on a step counter inside the compiled training step, so they
advance without retracing.

A schedule is any serializable callable `schedule(step) -> weight` built on
`keras.ops`; Keras' own `keras.optimizers.schedules.*` qualify too.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from keras_lossplus.losses.options import check_number

Tensor = Any


def _check_steps(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"Argument `{name}` must be an integer >= 1. Received: {name}={value!r}")
    return value


class Schedule:
    """Base of the schedules: `__call__(step)` on `keras.ops`, and a
    `get_config()` holding every constructor argument."""

    def __call__(self, step: Any) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def get_config(self) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def from_config(cls, config: dict) -> "Schedule":
        return cls(**config)


@keras.saving.register_keras_serializable(package="keras_lossplus")
class LinearWarmup(Schedule):
    """`start` for `delay` steps, then a linear ramp to `end` over `steps`
    steps, then `end`.

    The KL warm-up of VAEs (Bowman et al., 2016; Sønderby et al., 2016).

    Args:
        start: Value before and at the start of the ramp, `>= 0`.
        end: Value after the ramp, `>= 0`.
        steps: Length of the ramp in training steps, `>= 1`.
        delay: Steps at `start` before the ramp, `>= 0`.

    Reference:
        Bowman et al., "Generating Sentences from a Continuous Space",
        CoNLL 2016, https://arxiv.org/abs/1511.06349

    Examples:
        >>> schedule = LinearWarmup(start=0.0, end=1.0, steps=10)
        >>> [round(float(schedule(k)), 2) for k in (0, 5, 10, 20)]
        [0.0, 0.5, 1.0, 1.0]
    """

    def __init__(self, start: float = 0.0, end: float = 1.0, steps: int = 1000, delay: int = 0) -> None:
        self.start = check_number("start", start, low=0.0)
        self.end = check_number("end", end, low=0.0)
        self.steps = _check_steps("steps", steps)
        if isinstance(delay, bool) or not isinstance(delay, int) or delay < 0:
            raise ValueError(f"Argument `delay` must be an integer >= 0. Received: delay={delay!r}")
        self.delay = delay

    def __call__(self, step: Any) -> Tensor:
        step = ops.cast(step, "float32")
        progress = ops.clip((step - self.delay) / self.steps, 0.0, 1.0)
        return self.start + (self.end - self.start) * progress

    def get_config(self) -> dict:
        return {"start": self.start, "end": self.end, "steps": self.steps, "delay": self.delay}


@keras.saving.register_keras_serializable(package="keras_lossplus")
class CyclicalSchedule(Schedule):
    """Cyclical annealing (Fu et al., 2019): each cycle of `period` steps
    ramps linearly from `start` to `end` over its first `ratio` fraction,
    then holds `end`.

    Args:
        period: Steps per cycle, `>= 1`.
        ratio: Fraction of the cycle spent ramping, in `(0, 1]`.
        start: Value at the start of each cycle, `>= 0`.
        end: Value held at the end of each cycle, `>= 0`.

    Reference:
        Fu et al., "Cyclical Annealing Schedule: A Simple Approach to
        Mitigating KL Vanishing", NAACL 2019, https://arxiv.org/abs/1903.10145

    Examples:
        >>> schedule = CyclicalSchedule(period=10, ratio=0.5)
        >>> [round(float(schedule(k)), 2) for k in (0, 1, 5, 9, 10, 12)]
        [0.0, 0.2, 1.0, 1.0, 0.0, 0.4]
    """

    def __init__(self, period: int = 1000, ratio: float = 0.5, start: float = 0.0, end: float = 1.0) -> None:
        self.period = _check_steps("period", period)
        self.ratio = check_number("ratio", ratio, low=0.0, high=1.0, low_open=True)
        self.start = check_number("start", start, low=0.0)
        self.end = check_number("end", end, low=0.0)

    def __call__(self, step: Any) -> Tensor:
        step = ops.cast(step, "float32")
        position = ops.mod(step, float(self.period)) / self.period
        progress = ops.minimum(position / self.ratio, 1.0)
        return self.start + (self.end - self.start) * progress

    def get_config(self) -> dict:
        return {"period": self.period, "ratio": self.ratio, "start": self.start, "end": self.end}
