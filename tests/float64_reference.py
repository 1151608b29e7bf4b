"""The float64 reference of `tests/test_float64_reference.py` (issue 29):
a loss (or a layer's penalty) runs in float32 and in float64 on the same
inputs; its float32 value and gradient are checked against the float64 run
and against float64 finite differences of the same function.

At one input `x` (the loss' `y_pred`) a check computes

* `v32, g32`: value and gradient (the backend's autodiff) in float32;
* `v64, g64`: the same function in float64 (the class built with
  `dtype="float64"`; `x64()` keeps Keras from computing it in float32);
* along two random directions `d` (`max |d| = 1`; at a domain bound,
  turned into the domain), with `h = STEP * max(1, max |x|)`, the float64
  one-sided differences `D+ = (f(x + h d) - f(x)) / h` and
  `D- = (f(x) - f(x - h d)) / h`. `h` is below every clip of the losses
  (their `eps` is 1e-7 or more), so a clipped input is seen as clipped.

and `compare` asks:

* value: `|v32 - v64| <= RTOL_VALUE |v64| + ATOL_VALUE max(1, |v64|)`;
* differentiable along `d` (`|D+ - D-|` within the differences' error):
  `<g32, d>` and `<g64, d>` equal the central difference `(D+ + D-) / 2`;
  and where that holds for both directions, `g32` equals `g64` element by
  element (to `RTOL_GRAD max |g64|`);
* a kink along `d` (hinge, `|r|` at 0, a max or a sort at a tie): `<g32,
  d>` lies between `D-` and `D+`. For a convex or a concave kink every
  subgradient projects into that interval, so any subgradient passes;
* at a bound (a probability of exactly 0 or 1) only the inward difference
  exists: `<g32, d>` equals the second-order one-sided difference
  `(4 f(x + h d) - 3 f(x) - f(x + 2 h d)) / (2 h)`. Where the function
  itself has a kink at the bound (`CONVEX_AT_BOUND`: the Lovasz extension,
  piecewise linear in sorted errors that tie there) a subgradient only
  bounds the inward derivative: `<g32, d> <= D+`;
* where the value jumps (listed in the test module's `DISCONTINUOUS`: no
  derivative exists) only the value, and that it does jump (more than
  `JUMP` over a step), so that a stale entry is noticed.

A kink is told from a smooth point by `|D+ - D-|` alone: the interval
check is exact for convex and concave kinks (two pieces, or a max or min
of several); where more pieces meet than the two directions cross, a
subgradient of the other pieces may fall outside it (the report says so).
Without a float32 run (JAX, `FLOAT32_ON_JAX`) the float64 gradient takes
`g32`'s place and values are not compared.

Per-sample losses are checked on all their edge cases in one call (the
cases stacked along the batch axis, each case's value the sum of its
samples' values, each case's direction on its own block); batch-level
losses one case at a time.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable

import numpy as np

from tests.backend_utils import BACKEND

STEP = 1e-8  # finite-difference step, relative to max(1, max |x|)
RTOL_VALUE, ATOL_VALUE = 2e-5, 1e-6
RTOL_GRAD = 2e-3  # g32 against g64, relative to max |g64| (float32 rounding through a loss)
RTOL_DIRECTIONAL = 1e-3  # <g, d> against the differences, relative to <|g|, |d|>
KINK = 1e-4  # |D+ - D-| above this (relative, as RTOL_DIRECTIONAL) is a kink along d
JUMP = 1e-6  # a value that moves by more than this (relative) over a step h jumps
DIRECTIONS = 2
# JAX compiles each function (eager JAX would compile every primitive): a
# float32 run there costs one more compilation per class (about 28 s of the
# suite's CPU time in all). JAX's own part, its autodiff rules at ties,
# kinks and bounds, does not depend on the dtype and is checked by the
# float64 run against finite differences; float32 rounding is checked on
# TensorFlow and torch, which run the same `keras.ops` code.
FLOAT32_ON_JAX = False


@contextlib.contextmanager
def x64():
    """The context in which float64 computes. JAX needs `jax_enable_x64`;
    and Keras' type promotion (`keras.backend.result_type`, behind
    `ops.mean`, `ops.divide`, `ops.where`, ...) turns float64 into float32
    on JAX and torch (`BIT64_TO_BIT32_DTYPE`, "aligned with JAX's
    default"), so that a float64 run would round to float32 in every such
    op. Inside, float64 stays float64 (TensorFlow's rule)."""
    from keras.src.backend.common import dtypes

    saved = dtypes.BIT64_TO_BIT32_DTYPE["float64"]
    dtypes.BIT64_TO_BIT32_DTYPE["float64"] = "float64"
    try:
        if BACKEND == "jax":
            import jax

            with jax.enable_x64(True):
                yield
        else:
            yield
    finally:
        dtypes.BIT64_TO_BIT32_DTYPE["float64"] = saved


@dataclasses.dataclass
class Runner:
    """`grad(a, x) -> (values, gradient of sum(values) w.r.t. x)` and
    `values(a, x) -> values`, as float64 numpy, of `fn(a, x)` computed in
    `dtype` (`a`, `x`: numpy arrays, cast to `dtype`)."""

    grad: Callable
    values: Callable


def runner(fn: Callable, dtype: str) -> Runner:
    """The `Runner` of `fn` on the backend: TensorFlow and torch eager;
    JAX `jax.jit`, one compilation per shape (eager JAX compiles every
    primitive on first use, which costs more), whose gradient the values
    reuse."""
    import keras

    def checked(values, grad=None):
        values = np.asarray(keras.ops.convert_to_numpy(values), "float64")
        if grad is None:
            return values
        grad = keras.ops.convert_to_numpy(grad)
        assert str(grad.dtype) == dtype, f"the gradient of a {dtype} input is {grad.dtype}"
        return values, np.asarray(grad, "float64")

    if BACKEND == "jax":
        import jax

        def total(a, x):
            values = fn(a, x)
            return jax.numpy.sum(values), values

        step = jax.jit(jax.value_and_grad(total, argnums=1, has_aux=True))

        def grad(a, x):
            with x64() if dtype == "float64" else contextlib.nullcontext():
                (_, values), g = step(np.asarray(a, dtype), np.asarray(x, dtype))
                return checked(values, g)

        return Runner(grad, lambda a, x: grad(a, x)[0])
    if BACKEND == "tensorflow":
        import tensorflow as tf

        def grad(a, x):
            x = tf.convert_to_tensor(np.asarray(x, dtype))
            with tf.GradientTape() as tape:
                tape.watch(x)
                values = fn(tf.convert_to_tensor(np.asarray(a, dtype)), x)
                total = tf.reduce_sum(values)
            g = tape.gradient(total, x)
            return checked(values, tf.zeros_like(x) if g is None else g)

        return Runner(grad, lambda a, x: checked(fn(tf.convert_to_tensor(np.asarray(a, dtype)),
                                                    tf.convert_to_tensor(np.asarray(x, dtype)))))
    if BACKEND == "torch":
        import torch

        def grad(a, x):
            x = torch.tensor(np.asarray(x, dtype), requires_grad=True)
            values = fn(torch.tensor(np.asarray(a, dtype)), x)
            if values.requires_grad:
                values.sum().backward()
            return checked(values.detach(), torch.zeros_like(x) if x.grad is None else x.grad)

        def values(a, x):
            with torch.no_grad():
                return checked(fn(torch.tensor(np.asarray(a, dtype)), torch.tensor(np.asarray(x, dtype))))

        return Runner(grad, values)
    raise NotImplementedError(BACKEND)  # pragma: no cover


def runners(fn32: Callable, fn64: Callable) -> tuple:
    """`(float32 Runner or None, float64 Runner)` of the backend."""
    run32 = runner(fn32, "float32") if BACKEND != "jax" or FLOAT32_ON_JAX else None
    return run32, runner(fn64, "float64")


# ------------------------------------------------------------------ one input


@dataclasses.dataclass
class Point:
    """One input: `a` (labels, held fixed) and `x` (differentiated); `low`,
    `high`: the domain of `x` (None: unbounded)."""

    name: str
    a: np.ndarray
    x: np.ndarray
    low: float | None = None
    high: float | None = None

    def at_bound(self) -> bool:
        return bool((self.low is not None and np.any(self.x <= self.low))
                    or (self.high is not None and np.any(self.x >= self.high)))

    def inward(self, d: np.ndarray) -> np.ndarray:
        if self.low is not None:
            d = np.where(self.x <= self.low, np.abs(d), d)
        if self.high is not None:
            d = np.where(self.x >= self.high, -np.abs(d), d)
        return d

    def step(self) -> float:
        return STEP * max(1.0, float(np.max(np.abs(self.x))))


@dataclasses.dataclass
class Difference:
    """Float64 differences at `x` along `d`: `plus`, `minus` (None at a
    bound) and, at a bound, `inward` (second order)."""

    d: np.ndarray
    plus: float
    minus: float | None
    inward: float | None
    h: float


@dataclasses.dataclass
class Run:
    """Everything measured at one point (`v32`, `g32`: None where the
    float32 run is not made, see `FLOAT32_ON_JAX`)."""

    v32: float | None
    g32: np.ndarray | None
    v64: float
    g64: np.ndarray
    diffs: list[Difference]


def _directions(rng: np.random.Generator, point: Point) -> list[np.ndarray]:
    out = []
    for _ in range(DIRECTIONS):
        d = rng.normal(size=point.x.shape)
        out.append(point.inward(d / np.max(np.abs(d))))
    return out


def measure_one(run32: Runner | None, run64: Runner, point: Point, rng) -> Run:
    """A batch-level loss at one point: two gradients, four values."""
    v32, g32 = run32.grad(point.a, point.x) if run32 is not None else (None, None)
    x = np.asarray(point.x, "float64")
    h, bound = point.step(), point.at_bound()
    with x64():
        v64, g64 = run64.grad(point.a, x)
        value = lambda z: float(np.sum(run64.values(point.a, z)))
        f0, diffs = float(np.sum(v64)), []
        for d in _directions(rng, point):
            f1 = value(x + h * d)
            if bound:
                f2 = value(x + 2 * h * d)
                diffs.append(Difference(d, (f1 - f0) / h, None, (4 * f1 - 3 * f0 - f2) / (2 * h), h))
            else:
                diffs.append(Difference(d, (f1 - f0) / h, (f0 - value(x - h * d)) / h, None, h))
    return Run(None if v32 is None else float(np.sum(v32)), g32, f0, g64, diffs)


def measure_stacked(run32: Runner | None, run64: Runner, points: list[Point], rng) -> dict[str, Run]:
    """A per-sample loss at every point at once: the points stacked along
    the batch axis (`values` one per sample), each point's value the sum of
    its block, each block perturbed along its own direction (the samples
    do not interact, so the blocks' differences are those of the points
    alone). Two gradients and four to six values whatever the number of
    points."""
    sizes = [p.x.shape[0] for p in points]
    cuts = np.cumsum([0] + sizes)
    blocks = [slice(cuts[i], cuts[i + 1]) for i in range(len(points))]
    a = np.concatenate([p.a for p in points])
    x = np.concatenate([np.asarray(p.x, "float64") for p in points])
    shape = (-1,) + (1,) * (x.ndim - 1)
    h = np.concatenate([np.full(n, p.step()) for n, p in zip(sizes, points)]).reshape(shape)
    bound = [p.at_bound() for p in points]
    # a block on a bound does not step outwards (where the loss may refuse its input)
    inner = np.concatenate([np.full(n, float(not b)) for n, b in zip(sizes, bound)]).reshape(shape)

    def per_point(values) -> np.ndarray:
        values = values.reshape(values.shape[0], -1).sum(axis=1)
        return np.array([values[s].sum() for s in blocks])

    v32, g32 = run32.grad(a, x.astype("float32")) if run32 is not None else (None, None)
    with x64():
        v64, g64 = run64.grad(a, x)
        f0 = per_point(v64)
        ds = [np.concatenate(per) for per in zip(*[_directions(rng, p) for p in points])]
        f1 = [per_point(run64.values(a, x + h * d)) for d in ds]
        fm = [per_point(run64.values(a, x - h * inner * d)) if not all(bound) else None for d in ds]
        f2 = [per_point(run64.values(a, x + 2 * h * (1 - inner) * d)) if any(bound) else None for d in ds]
    v32 = None if v32 is None else per_point(v32)
    out = {}
    for i, (p, s) in enumerate(zip(points, blocks)):
        hp, diffs = p.step(), []
        for k, d in enumerate(ds):
            plus = (f1[k][i] - f0[i]) / hp
            if bound[i]:
                diffs.append(Difference(d[s], plus, None, (4 * f1[k][i] - 3 * f0[i] - f2[k][i]) / (2 * hp), hp))
            else:
                diffs.append(Difference(d[s], plus, (f0[i] - fm[k][i]) / hp, None, hp))
        out[p.name] = Run(None if v32 is None else float(v32[i]), None if g32 is None else g32[s],
                          float(f0[i]), g64[s], diffs)
    return out


# ------------------------------------------------------------------ the comparison


def compare(r: Run, gradient: str = "derivative") -> list[str]:
    """What is wrong with `r` (empty: nothing). `gradient`: `"derivative"`
    (the checks above), `"convex_at_bound"` (at a bound, `<g32, d> <= D+`),
    `"float64_run"` (a gradient that is by design not the derivative of
    the value: `g32` against `g64` only) or `"none"` (a point where the
    value jumps: the value only). Without a float32 run (`r.g32` None) the
    float64 gradient takes its place, and values are not compared."""
    has32 = r.g32 is not None
    if not np.isfinite(r.v64) or (has32 and not np.isfinite(r.v32)):
        return [f"value not finite: float32 {r.v32}, float64 {r.v64}"]
    problems = []
    if gradient == "none" and not any(abs(diff.plus) * diff.h > JUMP * max(1.0, abs(r.v64)) for diff in r.diffs):
        problems.append("listed as discontinuous, but the value does not jump: "
                        f"{[float(diff.plus * diff.h) for diff in r.diffs]} over steps {r.diffs[0].h:.3g}")
    if has32 and abs(r.v32 - r.v64) > RTOL_VALUE * abs(r.v64) + ATOL_VALUE * max(1.0, abs(r.v64)):
        problems.append(f"value: float32 {r.v32:.9g}, float64 {r.v64:.17g}")
    g = r.g32 if has32 else r.g64
    if not (np.all(np.isfinite(g)) and np.all(np.isfinite(r.g64))):
        return problems + ["gradient not finite"]
    if gradient == "none" or (gradient == "float64_run" and not has32):
        return problems
    floor = 3e-6 * max(1.0, abs(r.v64))  # float32 rounding of terms that cancel
    kinked = False  # a kink or a bound along some direction: no element-wise comparison
    for k, diff in enumerate(r.diffs if gradient != "float64_run" else []):
        weight = float(np.sum((np.abs(r.g64) + np.abs(g)) * np.abs(diff.d)))
        tol = RTOL_DIRECTIONAL * weight + floor
        d32, d64 = float(np.sum(g * diff.d)), float(np.sum(r.g64 * diff.d))
        if diff.minus is None:  # at a bound: the inward difference
            kinked = True
            ok = d32 <= diff.plus + tol if gradient == "convex_at_bound" else abs(d32 - diff.inward) <= tol
            if not ok:
                problems.append(f"direction {k} (inward, at a bound): <g, d> = {d32:.6g}, float64 one-sided "
                                f"difference {diff.inward:.6g} (first order {diff.plus:.6g}), <g64, d> = {d64:.6g}")
            continue
        central = 0.5 * (diff.plus + diff.minus)
        if abs(diff.plus - diff.minus) <= KINK * weight + floor:
            if abs(d32 - central) > tol:
                problems.append(f"direction {k}: <g, d> = {d32:.6g}, float64 central difference {central:.6g}, "
                                f"<g64, d> = {d64:.6g}")
            elif abs(d64 - central) > tol:
                problems.append(f"direction {k}: the float64 gradient is not the float64 derivative: "
                                f"<g64, d> = {d64:.6g}, central difference {central:.6g}")
        else:
            kinked = True
            low, high = min(diff.plus, diff.minus), max(diff.plus, diff.minus)
            if not low - tol <= d32 <= high + tol:
                problems.append(f"direction {k} (a kink): <g, d> = {d32:.6g} outside the one-sided "
                                f"differences [{low:.6g}, {high:.6g}]")
    if has32 and not kinked and not problems:
        worst = int(np.argmax(np.abs(r.g32 - r.g64)))
        scale = float(np.max(np.abs(r.g64)))
        if abs(r.g32.flat[worst] - r.g64.flat[worst]) > RTOL_GRAD * scale + floor:
            problems.append(f"gradient: float32 {r.g32.flat[worst]:.6g} against float64 {r.g64.flat[worst]:.9g} "
                            f"at flat index {worst} (max |g64| {scale:.3g})")
    return problems


def describe(r: Run, point: Point) -> str:
    """The failing case in full, for the report."""
    with np.printoptions(precision=4, suppress=True, threshold=64, linewidth=150):
        return (f"y_true =\n{np.asarray(point.a)}\ny_pred =\n{np.asarray(point.x)}\n"
                f"float32 gradient =\n{r.g32}\nfloat64 gradient =\n{r.g64}\n"
                f"value: float32 {r.v32}, float64 {r.v64!r}")
