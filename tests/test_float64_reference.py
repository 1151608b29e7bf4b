"""Every public loss and layer against a float64 reference (issue 29): the
float32 value and gradient (the backend's autodiff) against the same
function run in float64 and against float64 finite differences, at the
first contract case's inputs and at the edge cases `tests/edge_grid.py`
derives from them (ties, zeros, bounds, logits of +-100; not the huge
ones, 1e4 and 1e30, whose float32 values the edge grid checks for
finiteness). What is compared, and how kinks and bounds are handled, is in
`tests/float64_reference.py`; one point per test, so that a failure names
its class and edge case.

What each kind of input meets (the edge cases are the edge grid's; the
checks `float64_reference.compare` makes of them):

* logits (classification, ordinal, ranking, segmentation from logits):
  logits 0 (every score tied) and +-100 (alternating, all right, all
  wrong) are smooth points: the derivative, and float32 against float64
  element by element. A sort over tied scores that changes the value
  (LambdaLoss' rank weights) is a jump: `DISCONTINUOUS`, the value only.
* probabilities (F-beta, asymmetric, weighted kappa, segmentation, JSD;
  penalty layers' rates and probabilities): exactly 0 or 1 is a bound: the
  inward derivative. The Lovasz extension has a kink there
  (`CONVEX_AT_BOUND`).
* values (regression, sample sets, distances): zero residuals and
  identical samples are kinks for the absolute-value and sorting losses
  (pinball, energy distance, Wasserstein): any subgradient; smooth for the
  others (Charbonnier, Barron, Tukey, smooth L1 near 0): the derivative.
* boxes: identical, disjoint, inverted and zero-area boxes meet the mins
  and maxes of the intersection and the enclosure: any subgradient.
* embeddings: identical embeddings tie distances (margins, miners: any
  subgradient); a zero vector is a kink of the safe norm (gradient 0),
  and, for losses that normalize, a jump (`DISCONTINUOUS`).
* gradients designed not to be the derivative of the value
  (`FLOAT64_RUN_ONLY`: CIoU's constant alpha, Sinkhorn's constant plan):
  float32 against float64 only.

Eager on TensorFlow and torch. On JAX, `jax.jit` (eager JAX compiles every
primitive) and the float64 run only (see `FLOAT32_ON_JAX`): one compilation
per class. Per-sample losses take all their edge cases in one stacked call.

Known failures in areas being fixed elsewhere are listed in `XFAIL` below,
the one place to remove them from as the fixes land (`strict=True`: a fixed
case fails until its entry is removed).
"""

from __future__ import annotations

import functools
import traceback

import keras
import numpy as np
import pytest

from keras_lossplus.losses.base import BatchLoss
from tests.backend_utils import BACKEND
from tests.edge_grid import (
    ALL_CLASSES,
    LAYER_KINDS,
    LOSS_KINDS,
    contract_cases,
    layer_edges,
    layer_function,
    loss_edges,
    make_layer,
)
from tests.float64_reference import (
    Point,
    compare,
    describe,
    measure_one,
    measure_stacked,
    runners,
    x64,
)

ALL = ("jax", "tensorflow", "torch")

# ------------------------------------------------------------------ known failures (remove as fixes land)

# (class, edge case): (backends, who fixes). The exact numbers are in each
# test's failure message (run with --runxfail).
# ("class", "*"): every edge case of the class.
XFAIL = {
    ("CIoULoss", "*"): (("tensorflow",), (
        "issue 29: box losses (float64 on TensorFlow: detection/geometry.py _aspect multiplies by "
        "ops.where(h < 0, -1.0, 1.0), a float32 tensor)")),
    ("GIoULoss", "boxes_zero_area"): (ALL, (
        "issue 29: box losses (two zero-area boxes at the origin: gradient 0, the one-sided derivatives "
        "both negative along a direction)")),
    ("GIoULoss", "contract_zero_area_both"): (ALL, (
        "issue 29: box losses (two identical zero-area boxes: a gradient of -2e7 along a direction, outside "
        "the one-sided derivatives [-1.7e7, 6.8e6])")),
}


# ------------------------------------------------------------------ documented exceptions

# Points where the value jumps (no derivative exists): the value only.
DISCONTINUOUS = {
    # ranks of tied scores decide the pair weights (|1/D(r_i) - 1/D(r_j)|): at a tie the value jumps
    "LambdaLoss": ("logits_pm100", "logits_wrong_100"),
    # the cosine of a zero vector (the loss normalizes): every direction out of 0 is another value
    **dict.fromkeys(("CoSENTLoss", "AnglELoss", "MultipleNegativesRankingLoss", "MatryoshkaLoss"),
                    ("zero_positives", "zero_vectors")),
    **dict.fromkeys(("ArcFace", "CosFace", "SubCenterArcFace", "ProxyAnchor", "ProxyNCA"), ("zero_vectors",)),
    # 0 / 0 counted as 0 (tensorflow-addons' divide_no_nan): labels and predictions all one class
    "WeightedKappaLoss": ("contract_perfect_one_class",),
}
# Gradients that are by design not the derivative of the value: float32
# against float64 autodiff only (and the value).
FLOAT64_RUN_ONLY = {
    "CIoULoss": "the aspect-ratio weight alpha is held constant (Zheng et al. 2020; torchvision)",
    "SinkhornLoss": "the transport plan is held constant (envelope theorem, exact at convergence)",
    "LoadBalancingPenalty": "the top-k dispatch fractions are held constant (Switch Transformer, KerasHub): at tied "
                            "logits the gradient is that of the backend's top-k choice",
}
# Kinks at a domain bound: at the bound a subgradient only bounds the inward derivative.
CONVEX_AT_BOUND = {
    "LovaszLoss": "the Lovasz extension is piecewise linear in the sorted errors, which tie at 0 or 1",
}
# Domains of y_pred (a point on a bound is differentiated inwards only).
BOUNDS = {"probs": (0.0, 1.0), "distribution_probs": (0.0, 1.0), "distances": (0.0, None)}
LAYER_BOUNDS = {"rates": (0.0, 1.0), "probabilities": (0.0, 1.0)}
LARGEST = 1e3  # inputs beyond it are the edge grid's (finite values), not compared here


def _mode(cls_name: str, edge: str) -> str:
    if edge in DISCONTINUOUS.get(cls_name, ()):
        return "none"
    if cls_name in FLOAT64_RUN_ONLY:
        return "float64_run"
    return "convex_at_bound" if cls_name in CONVEX_AT_BOUND else "derivative"


# ------------------------------------------------------------------ losses

FIRST_CASE = {}
for _case in contract_cases():
    FIRST_CASE.setdefault(_case.cls.__name__, _case)
LOSSES = [c.__name__ for c in ALL_CLASSES["losses"] if c.__name__ in FIRST_CASE and c.__name__ in LOSS_KINDS]


def _pred_role(case) -> str:
    role = LOSS_KINDS[case.cls.__name__][1]
    if role == "auto":
        role = "logits" if case.kwargs.get("from_logits") else "probs"
    if case.cls.__name__ == "JensenShannonDivergence" and role == "probs":
        role = "distribution_probs"
    return role


def loss_points(cls_name: str) -> list:
    """The edge cases of the class' first contract case with no entry above
    `LARGEST`, no duplicate, and the inputs' shape (one compilation serves
    them; per-sample losses, stacked: the shape of one sample)."""
    case = FIRST_CASE[cls_name]
    y_true, y_pred = case.make_inputs(np.random.default_rng(0))
    low, high = BOUNDS.get(_pred_role(case), (None, None))
    cut = 1 if per_sample(case) else 0
    points, seen = [], []
    for name, (t, p) in loss_edges(case, y_true, y_pred).items():
        if (t.shape[cut:], p.shape[cut:]) != (np.shape(y_true)[cut:], np.shape(y_pred)[cut:]):
            continue
        if max(np.max(np.abs(t)), np.max(np.abs(p))) > LARGEST:
            continue
        if any(np.array_equal(t, t2) and np.array_equal(p, p2) for t2, p2 in seen):
            continue
        seen.append((t, p))
        points.append(Point(name, t, p, low, high))
    return points


def _in_float64(value):
    """A constructor argument in float64: a nested loss (the Matryoshka
    wrapper's) is rebuilt with `dtype="float64"`."""
    if isinstance(value, keras.losses.Loss):
        return type(value).from_config({**value.get_config(), "dtype": "float64"})
    return value


def per_sample(case) -> bool:
    """Whether the loss gives one value per sample, each from its own
    sample only (then edge cases can be stacked along the batch)."""
    return not issubclass(case.cls, BatchLoss) and not any(isinstance(v, BatchLoss) for v in case.kwargs.values())


@functools.cache
def loss_runs(cls_name: str) -> dict:
    """`{edge case: (Run, Point)}`, or the exception the class raised."""
    case = FIRST_CASE[cls_name]
    stacked = per_sample(case)
    reduction = None if stacked else "sum"
    loss32 = case.make(reduction=reduction)
    loss64 = case.cls(**{**{k: _in_float64(v) for k, v in case.kwargs.items()}, "reduction": reduction,
                         "dtype": "float64"})
    run32, run64 = runners(lambda a, x: loss32(a, x), lambda a, x: loss64(a, x))
    points, rng = loss_points(cls_name), np.random.default_rng(1)
    try:
        if stacked:
            runs = measure_stacked(run32, run64, points, rng)
        else:
            runs = {p.name: measure_one(run32, run64, p, rng) for p in points}
    except Exception as error:  # noqa: BLE001 - reported by each of the class' tests
        return error
    return {p.name: (runs[p.name], p) for p in points}


def _param(cls_name: str, edge: str):
    backends, reason = XFAIL.get((cls_name, edge), XFAIL.get((cls_name, "*"), ((), "")))
    marks = [pytest.mark.xfail(BACKEND in backends, reason=reason, strict=True)] if backends else []
    return pytest.param(cls_name, edge, id=f"{cls_name}-{edge}", marks=marks)


LOSS_ITEMS = [_param(c, p.name) for c in LOSSES for p in loss_points(c)]


def _check(runs, cls_name: str, edge: str) -> None:
    """Fails with the problems (no traceback: pytest's formatting of a deep
    TensorFlow one costs about a second per test)."""
    if isinstance(runs, Exception):
        where = "".join(traceback.format_exception(runs, limit=-4))
        pytest.fail(f"{cls_name} / {BACKEND}: {type(runs).__name__}: {runs}\n{where}", pytrace=False)
    run, point = runs[edge]
    problems = compare(run, _mode(cls_name, edge))
    if problems:
        pytest.fail(f"{cls_name} / {edge} / {BACKEND}:\n" + "\n".join(problems) + "\n" + describe(run, point),
                    pytrace=False)


@pytest.mark.parametrize("cls_name,edge", LOSS_ITEMS)
def test_loss_matches_float64_reference(cls_name, edge):
    _check(loss_runs(cls_name), cls_name, edge)


# ------------------------------------------------------------------ layers

LAYERS = [c.__name__ for c in ALL_CLASSES["layers"] if LAYER_KINDS.get(c.__name__, "abstract") != "abstract"]


def layer_points(cls_name: str) -> list:
    kind = LAYER_KINDS[cls_name]
    low, high = LAYER_BOUNDS.get(kind, (None, None))
    return [Point(name, labels, x, low, high) for name, (labels, x) in layer_edges(kind).items()
            if np.max(np.abs(x)) <= LARGEST]


@functools.cache
def layer_runs(cls_name: str) -> dict:
    """`{edge case: (Run, Point)}` of a layer's penalty (or summed output),
    the float64 layer holding the float32 layer's weights."""
    cls = next(c for c in ALL_CLASSES["layers"] if c.__name__ == cls_name)
    kind = LAYER_KINDS[cls_name]
    points, rng = layer_points(cls_name), np.random.default_rng(1)
    first = points[0]
    layer32, layer64 = make_layer(cls), make_layer(cls, dtype="float64")
    # built without an eager call (on JAX each new primitive of one would compile)
    shape, labels = first.x.shape, first.a.shape
    layer32.build({"head": [shape, labels], "center": [shape, labels], "memory": [shape, labels],
                   "gaussian": [shape, shape]}.get(kind, shape))
    if kind == "memory":  # a full queue of earlier embeddings (the layer's documented state)
        size = layer32.memory_size
        layer32.memory.assign(rng.normal(size=(size, shape[1])).astype("float32"))
        layer32.memory_labels.assign(np.arange(size, dtype="int32") % 4)
        layer32.filled.assign(size)
        layer32.pointer.assign(size // 2)
    with x64():  # float64 variables (JAX makes them only with x64 enabled)
        layer64.build_from_config(layer32.get_build_config())
        layer64.set_weights(layer32.get_weights())
    run32, run64 = runners(layer_function(layer32, kind), layer_function(layer64, kind))
    try:
        runs = {p.name: measure_one(run32, run64, p, rng) for p in points}
    except Exception as error:  # noqa: BLE001 - reported by each of the class' tests
        return error
    return {p.name: (runs[p.name], p) for p in points}


LAYER_ITEMS = [_param(c, p.name) for c in LAYERS for p in layer_points(c)]


@pytest.mark.parametrize("cls_name,edge", LAYER_ITEMS)
def test_layer_matches_float64_reference(cls_name, edge):
    _check(layer_runs(cls_name), cls_name, edge)


def test_every_public_loss_and_layer_is_compared():
    """The surface is enumerated from `__all__` through the edge grid's
    table (whose completeness `tests/test_edge_grid.py` checks): every
    class the table lists is compared."""
    assert set(LOSSES) == {c.__name__ for c in ALL_CLASSES["losses"] if c.__name__ in LOSS_KINDS}
    assert set(LAYERS) == {c.__name__ for c in ALL_CLASSES["layers"] if LAYER_KINDS.get(c.__name__) != "abstract"}
    for table in (DISCONTINUOUS, FLOAT64_RUN_ONLY, CONVEX_AT_BOUND):
        assert set(table) <= set(LOSSES) | set(LAYERS)
    points = {(c, p.name) for c in LOSSES for p in loss_points(c)} | {(c, p.name) for c in LAYERS
                                                                       for p in layer_points(c)}
    stale = set(XFAIL) - points - {(c, "*") for c in LOSSES + LAYERS}
    stale |= {(c, e) for c, edges in DISCONTINUOUS.items() for e in edges} - points
    assert not stale, f"entries that name no test: {sorted(stale)}"
