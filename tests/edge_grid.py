"""The edge-case grid (issue 18): every public class of `klp.losses`,
`klp.layers` and `klp.weighting`, enumerated from their `__all__`, mapped
to the kind of input it takes; per kind, the edge cases that apply to it.

A loss is taken with the configuration and inputs of its first contract
`LossCase` (the family test modules' `CASES`); its edge cases are derived
from those inputs by the role of `y_true` (labels) and of `y_pred`
(logits, probabilities, values, embeddings), so that every case keeps the
shape of the loss' own inputs and one compiled function per (class, shape,
dtype) serves them all.

What the grid asks: loss (or penalty, or weights) and gradient finite at
every case, under compilation (`jax.jit`, `tf.function(jit_compile=True)`,
eager torch). Where an input makes a value meaningless the class either
computes it stably or refuses it clearly; which one each kind does is in
`MEANINGLESS` below.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from typing import Callable, Dict, Optional

import keras
import numpy as np

import keras_lossplus as klp
from keras_lossplus.ops import compute_dtype
from tests.backend_utils import BACKEND, XLA_BACKENDS, to_numpy
from tests.contract import LossCase

HUGE = (100.0, 1e4, 1e30)
HALF = ("float16", "bfloat16")

# ------------------------------------------------------------------ enumeration

LOSS_MODULES = [
    "tests.losses.classification.test_classification",
    "tests.losses.classification.test_bi_tempered_and_class_balanced",
    "tests.losses.metric_learning.test_triplet_and_pair",
    "tests.losses.metric_learning.test_proxy",
    "tests.losses.metric_learning.test_in_batch",
    "tests.losses.segmentation.test_segmentation",
    "tests.losses.test_regression",
    "tests.losses.test_detection",
    "tests.losses.test_distribution",
    "tests.losses.test_ranking",
    "tests.losses.test_ordinal",
]


def public_classes(module) -> list:
    return [getattr(module, n) for n in module.__all__ if inspect.isclass(getattr(module, n))]


# Losses whose `y_pred` is not one tensor (the linear cross-entropy's is
# `(hidden, kernel[, bias])`): the grid and the contract cannot build their
# inputs, so each has its own module running the same checks (values against
# Keras, every reduction, XLA, edge cases, half precision, config, errors);
# their fit-save-reload goes through the layer that owns their kernel.
OWN_SUITES = {
    "LinearCrossEntropy": ("tests/losses/language/test_linear_cross_entropy.py", "LanguageModelHead"),
}

ALL_CLASSES = {
    "losses": [c for c in public_classes(klp.losses) if c.__name__ not in OWN_SUITES],
    "layers": public_classes(klp.layers),
    "weighting": public_classes(klp.weighting),
}


def contract_cases() -> list:
    """Every contract `LossCase` of the family test modules."""
    cases = []
    for name in LOSS_MODULES:
        cases += [c for c in getattr(importlib.import_module(name), "CASES", []) if isinstance(c, LossCase)]
    return cases


def contract_fitted_cases() -> list:
    """The contract cases that `test_fit_then_load_in_fresh_process` runs."""
    fitted = []
    for name in LOSS_MODULES:
        for value in vars(importlib.import_module(name)).values():
            test = getattr(value, "test_fit_then_load_in_fresh_process", None) if inspect.isclass(value) else None
            if test is not None:
                fitted += list(test.pytestmark[0].args[1])
    return fitted


# ------------------------------------------------------------------ the table: class -> input kind

# losses: (label role, prediction role); the prediction role "auto" is
# logits or probabilities after the case's `from_logits`
LOSS_KINDS = {
    # binary / multi-label probabilities or logits
    "FocalLoss": ("binary", "auto"), "AsymmetricLoss": ("binary", "auto"), "FBetaLoss": ("binary", "auto"),
    "ClassBalancedLoss": ("binary", "logits"),
    # one-hot labels, softmax probabilities or logits
    "PolyLoss": ("onehot", "auto"), "BiTemperedLogisticLoss": ("onehot", "logits"),
    "WeightedKappaLoss": ("onehot", "probs"),
    # regression
    **{n: ("values", "values") for n in (
        "CharbonnierLoss", "GeneralAdaptiveLoss", "PinballLoss", "SmoothL1Loss", "TukeyBiweightLoss")},
    # boxes (..., 4) against boxes
    **{n: ("boxes", "boxes") for n in ("CIoULoss", "DIoULoss", "GIoULoss", "IoULoss")},
    # labels + embeddings
    **{n: ("classes", "embeddings") for n in (
        "BatchContrastiveLoss", "LiftedStructureLoss", "MultiSimilarityLoss", "NPairLoss", "NTXentLoss",
        "QuadrupletLoss", "SoftNearestNeighborLoss", "SupConLoss", "TripletLoss")},
    # stacked embeddings (B, m, D): anchors, positives, hard negatives; y_true ignored or pair scores
    "MultipleNegativesRankingLoss": ("ignored", "stacked_pairs"), "MatryoshkaLoss": ("ignored", "stacked_pairs"),
    "CoSENTLoss": ("pair_scores", "stacked_pairs"), "AnglELoss": ("pair_scores", "stacked_pairs"),
    # labels + scores against proxies
    "ProxyAnchorLoss": ("proxy_classes", "logits"), "ProxyNCALoss": ("proxy_classes", "logits"),
    # pair labels + pair distances
    "ContrastiveLoss": ("pairs", "distances"),
    # segmentation label maps
    **{n: ("label_maps", "auto") for n in (
        "ComboLoss", "DiceCrossentropyLoss", "DiceFocalLoss", "DiceLoss", "FocalTverskyLoss", "GeneralizedDiceLoss",
        "JaccardLoss", "LovaszLoss", "MCCLoss")},
    # ranking lists (relevance, -1 = padding)
    **{n: ("relevance", "logits") for n in (
        "ApproxNDCGLoss", "LambdaLoss", "ListMLELoss", "ListNetLoss", "PairwiseHingeLoss", "PairwiseLogisticLoss",
        "PairwiseMeanSquaredError", "PairwiseSoftZeroOneLoss", "SoftmaxRankingLoss")},
    # ordinal ranks
    "CoralLoss": ("ranks", "logits"), "CornLoss": ("ranks", "logits"),
    # distributions
    "JensenShannonDivergence": ("distributions", "auto"),
    # sample sets
    **{n: ("samples", "values") for n in ("EnergyDistance", "MMDLoss", "SinkhornLoss", "Wasserstein1DLoss")},
}

# layers: kind of input
LAYER_KINDS = {
    "ArcFace": "head", "CosFace": "head", "SubCenterArcFace": "head",
    "ProxyAnchor": "proxy_head", "ProxyNCA": "proxy_head", "CoralOutput": "proxy_head",
    "CenterPenalty": "center", "GaussianSampling": "gaussian", "CrossBatchMemory": "memory",
    "DecorrelationPenalty": "activations", "ElasticNetPenalty": "activations", "L1Penalty": "activations",
    "L2Penalty": "activations", "OrthogonalityPenalty": "activations", "VarianceCovariancePenalty": "activations",
    "KLSparsityPenalty": "rates", "EntropyPenalty": "probabilities",
    "LanguageModelHead": "lm_head",  # its fused loss of (hidden, labels) against its own kernel
    "ZLossPenalty": "logits", "RouterZLossPenalty": "logits", "LoadBalancingPenalty": "logits",
    "PenaltyLayer": "abstract",
}

WEIGHTING_KINDS = {
    **{n: "task_losses" for n in ("DWA", "FAMO", "RLW", "Static", "Uncertainty")},
    **{n: "task_gradients" for n in (
        "AlignedMTL", "CAGrad", "DBMTL", "GradNorm", "GradVac", "IMTL", "MGDA", "NashMTL", "PCGrad",
    )},
    "WeightingStrategy": "abstract", "GradientStrategy": "abstract",
}

# Where an input makes the value meaningless, what the class does (the
# grid checks finiteness; these are the documented choices).
MEANINGLESS = {
    "embeddings": "1e30 embeddings: computed (finite value and gradient) by the losses on normalized or "
                  "margin-clipped distances; NPair (dot products) and soft nearest neighbour (squared "
                  "distances) refuse them (REFUSED)",
    "stacked_pairs": "1e30 embeddings: computed (finite value and gradient) under cosine similarity, each "
                     "vector divided by its largest entry before normalizing",
    "values": "1e30 residuals: Charbonnier and Barron's loss (hypot form), smooth L1 (linear beyond beta) and "
              "Wasserstein p > 1 (scaled by the largest difference) are computed stably; Barron's loss with alpha > 1 (value ~ |u|^alpha) "
              "refuses residuals whose value overflows (eagerly; clipped under jit; the grid's case is alpha = 1); "
              "MMD, Sinkhorn and contrastive, whose values are squares "
              "of 1e30, refuse them (REFUSED)",
    "activations": "penalty layers: L1, KL-sparsity, entropy and orthogonality (normalized) are computed at 1e30; "
                   "the quadratic ones (L2, elastic net, decorrelation, variance-covariance, center, Gaussian KL) "
                   "refuse 1e30 (REFUSED_BY_LAYERS); heads and proxy layers normalize: computed",
    "logits": "1e30 logits: the z-losses (squares of log-sum-exp) refuse them (REFUSED_BY_LAYERS); load "
              "balancing (softmax, top-k) computes them",
    "boxes": "1e30 coordinates: computed (finite value and gradient): each pair of boxes whose coordinates pass "
             "2^24 is divided by a power of two (exact: the values are those of the unscaled formula) before any "
             "area or square, and eps by its square",
    "half": "float16 / bfloat16 inputs: the value must be finite; the gradient (of the input's dtype) wherever "
            "the float32 gradient at the same rounded input fits in that dtype",
}


# Refused inputs: (class, edge case) whose value does not exist in float32
# (the squares or dot products of inputs of 1e30 are 1e60): eagerly the
# loss raises a `ValueError` naming the argument; under compilation, where
# nothing can raise, the input is clipped to the bound for the value with
# the gradient passed through (`keras_lossplus.losses.magnitude`), so the
# value and gradient are finite. The grid asks exactly this: the listed
# cases are refused on the eager backend (torch) and finite on the compiled
# ones, and nothing else is refused anywhere.
REFUSED = {
    "PairwiseMeanSquaredError": dict.fromkeys(
        ["logits_pm1e+30", "logits_right_1e+30", "logits_wrong_1e+30", "no_positives_1e30"], "y_pred"),
    "ContrastiveLoss": {"residual_1e+30": "y_pred", "distance_1e+30": "y_pred"},
    "MMDLoss": {"residual_1e+30": "y_pred", "both_1e+30": "y_true"},
    "NPairLoss": {"embeddings_x1e+30": "y_pred", "single_class_x1e30": "y_pred"},
    "SoftNearestNeighborLoss": {"embeddings_x1e+30": "y_pred", "single_class_x1e30": "y_pred"},
    "SinkhornLoss": {"residual_1e+30": "y_pred", "both_1e+30": "y_true"},
}
_HUGE_INPUTS = {"inputs_pm1e+30": "inputs", "inputs_x1e+30": "inputs"}
REFUSED_BY_LAYERS = {
    **dict.fromkeys(["L2Penalty", "ElasticNetPenalty", "DecorrelationPenalty", "VarianceCovariancePenalty"],
                    _HUGE_INPUTS),
    "CenterPenalty": dict.fromkeys(_HUGE_INPUTS, "embeddings"),
    "GaussianSampling": dict.fromkeys(_HUGE_INPUTS, "z_mean"),
    **dict.fromkeys(["ZLossPenalty", "RouterZLossPenalty"], _HUGE_INPUTS),
}
EAGER = BACKEND not in XLA_BACKENDS


def kind_of(cls) -> Optional[object]:
    return {**LOSS_KINDS, **LAYER_KINDS, **WEIGHTING_KINDS}.get(cls.__name__)


# ------------------------------------------------------------------ edge cases of a loss


def _alternating(shape) -> np.ndarray:
    return np.where(np.arange(int(np.prod(shape))).reshape(shape) % 2 == 0, 1.0, -1.0).astype("float32")


def _label_map_targets(case: LossCase, y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Per-pixel target probabilities in `y_pred`'s layout."""
    if y_true.shape == y_pred.shape:
        return (y_true == 1).astype("float32") if y_pred.ndim and np.max(y_true) > 1 else y_true.astype("float32")
    channels_first = case.kwargs.get("data_format") == "channels_first"
    axis = 1 if channels_first else -1
    channels = y_pred.shape[axis]
    labels = np.where(y_true == case.kwargs.get("ignore_index", -12345), 0, y_true).astype("int64")
    if channels == 1:
        target = (labels == 1).astype("float32")[..., None]
        return np.moveaxis(target, -1, 1) if channels_first else target
    target = np.eye(channels, dtype="float32")[labels]
    return np.moveaxis(target, -1, 1) if channels_first else target


def _box_edges(yt: np.ndarray, yp: np.ndarray) -> Dict[str, tuple]:
    """Boxes `(..., 4)` (x1, y1, x2, y2 for the default format): identical,
    disjoint, zero-area (points and lines), inverted (x2 < x1) and far-out
    boxes, in the inputs' shape."""
    unit = np.broadcast_to(np.array([0.0, 0.0, 1.0, 1.0], "float32"), yp.shape)
    edges = {
        "boxes_identical": (yt, yt.copy()),
        "boxes_disjoint": (unit, unit + 5.0),
        "boxes_zero_area": (np.zeros_like(yt), np.zeros_like(yp)),
        "boxes_zero_area_pred": (unit, np.broadcast_to(np.array([0.5, 0.5, 0.5, 2.0], "float32"), yp.shape)),
        "boxes_inverted": (unit, unit[..., ::-1].copy()),
    }
    for s in HUGE:
        edges[f"boxes_x{s:g}"] = (s * yt, s * yp)
        edges[f"boxes_offset_{s:g}"] = (yt, yp + s)
    return edges


def loss_edges(case: LossCase, y_true: np.ndarray, y_pred: np.ndarray) -> Dict[str, tuple]:
    """`{edge case: (y_true, y_pred)}` for `case`, all of the inputs' shapes."""
    label_role, pred_role = LOSS_KINDS[case.cls.__name__]
    if pred_role == "auto":
        pred_role = "logits" if case.kwargs.get("from_logits") else "probs"
    if case.cls.__name__ == "JensenShannonDivergence" and pred_role == "probs":
        pred_role = "distribution_probs"
    yt, yp = np.asarray(y_true, "float32"), np.asarray(y_pred, "float32")
    edges = {"random": (yt, yp)}
    alt = _alternating(yp.shape)
    # ---- predictions
    if pred_role == "logits":
        if label_role in ("binary", "onehot"):
            sign = 2.0 * yt - 1.0
        elif label_role == "label_maps":
            sign = 2.0 * _label_map_targets(case, yt, yp) - 1.0
        else:
            sign = alt
        for s in HUGE:
            edges[f"logits_pm{s:g}"] = (yt, s * alt)
            edges[f"logits_right_{s:g}"] = (yt, s * sign)
            edges[f"logits_wrong_{s:g}"] = (yt, -s * sign)
        edges["logits_zero"] = (yt, np.zeros_like(yp))
    elif pred_role == "probs":
        if label_role == "label_maps":
            target = _label_map_targets(case, yt, yp)
        else:
            target = yt
        edges["probs_exact_right"] = (yt, target)
        if label_role == "binary" or target.shape[-1] == 1:
            wrong = 1.0 - target
        else:
            axis = 1 if case.kwargs.get("data_format") == "channels_first" else -1
            wrong = np.roll(target, 1, axis=axis)
        edges["probs_exact_wrong"] = (yt, wrong)
        if label_role == "binary":
            edges["probs_all_0"] = (yt, np.zeros_like(yp))
            edges["probs_all_1"] = (yt, np.ones_like(yp))
    elif pred_role == "distribution_probs":
        onehot = np.eye(yp.shape[-1], dtype="float32")[np.arange(yp.shape[0]) % yp.shape[-1]]
        edges["probs_exact_identical"] = (onehot, onehot)
        edges["probs_exact_disjoint"] = (onehot, np.roll(onehot, 1, axis=-1))
        edges["probs_zero"] = (yt, np.zeros_like(yp))
    elif pred_role in ("values", "distances"):
        edges["identical"] = (yt, yt.copy()) if yt.shape == yp.shape else (yt, np.zeros_like(yp))
        edges["zeros"] = (np.zeros_like(yt), np.zeros_like(yp))
        for s in HUGE:
            base = yt if yt.shape == yp.shape else np.zeros_like(yp)
            edges[f"residual_{s:g}"] = (yt, base + s * alt)
            if pred_role == "values":
                edges[f"both_{s:g}"] = (s * _alternating(yt.shape), s * alt)
        if pred_role == "distances":
            for s in HUGE:
                edges[f"distance_{s:g}"] = (yt, np.full_like(yp, s))
    elif pred_role == "boxes":
        edges.update(_box_edges(yt, yp))
    elif pred_role == "embeddings":
        edges["identical_embeddings"] = (yt, np.ones_like(yp))
        edges["zero_vectors"] = (yt, np.zeros_like(yp))
        for s in HUGE:
            edges[f"embeddings_x{s:g}"] = (yt, s * yp)
    elif pred_role == "stacked_pairs":
        edges["identical_embeddings"] = (yt, np.ones_like(yp))
        edges["zero_vectors"] = (yt, np.zeros_like(yp))
        edges["positives_are_anchors"] = (yt, np.repeat(yp[:, :1], yp.shape[1], axis=1))
        edges["zero_positives"] = (yt, np.concatenate([yp[:, :1], np.zeros_like(yp[:, 1:])], axis=1))
        for s in HUGE:
            edges[f"embeddings_x{s:g}"] = (yt, s * yp)
    # ---- labels
    if label_role == "pair_scores":
        edges["tied_scores"] = (np.full_like(yt, 0.5), yp)
        edges["scores_1e30"] = (1e30 * _alternating(yt.shape), yp)
        edges["tied_scores_x1e30"] = (np.full_like(yt, 0.5), 1e30 * yp)
    elif label_role in ("binary", "pairs"):
        edges["no_positives"] = (np.zeros_like(yt), yp)
        edges["single_class"] = (np.ones_like(yt), yp)
    elif label_role == "onehot":
        edges["single_class"] = (np.eye(yt.shape[-1], dtype="float32")[np.zeros(yt.shape[:-1], "int64")], yp)
    elif label_role == "classes":
        edges["single_class"] = (np.zeros_like(yt), yp)
        edges["no_positives"] = (np.arange(yt.shape[0], dtype="float32"), yp)
        edges["single_class_x1e30"] = (np.zeros_like(yt), 1e30 * yp)
    elif label_role == "proxy_classes":
        edges["single_class"] = (np.zeros_like(yt), yp)
    elif label_role == "ranks":
        edges["all_lowest"] = (np.zeros_like(yt), yp)
        edges["all_highest"] = (np.full_like(yt, yp.shape[-1]), yp)
    elif label_role == "relevance":
        edges["no_positives"] = (np.zeros_like(yt), yp)
        edges["all_padding"] = (np.full_like(yt, -1.0), yp)
        edges["no_positives_1e30"] = (np.zeros_like(yt), 1e30 * alt)
    elif label_role == "label_maps":
        sparse = yt.shape != yp.shape
        if sparse:
            edges["single_class"] = (np.ones_like(yt), yp)
            edges["no_positives"] = (np.zeros_like(yt), yp)
            if "ignore_index" in case.kwargs:
                edges["all_pixels_ignored"] = (np.full_like(yt, case.kwargs["ignore_index"]), yp)
        else:
            edges["no_positives"] = (np.zeros_like(yt), yp)
            edges["single_class"] = (np.ones_like(yt), yp)
    for name, (t, p) in case.edge_inputs.items():
        edges[f"contract_{name}"] = (np.asarray(t, "float32"), np.asarray(p, "float32"))
    return edges


# ------------------------------------------------------------------ compiled value and gradient


def compiled_value_and_grad(f: Callable) -> Callable:
    """`(value, gradient w.r.t. the second argument)` of the scalar
    `f(a, x, *rest)`, compiled once: `jax.jit` on JAX,
    `tf.function(jit_compile=True)` on TensorFlow, eager on torch."""
    if BACKEND == "jax":
        import jax

        return jax.jit(jax.value_and_grad(f, argnums=1))
    if BACKEND == "tensorflow":
        import tensorflow as tf

        def step(a, x, *rest):
            with tf.GradientTape() as tape:
                tape.watch(x)
                value = f(a, x, *rest)
            grad = tape.gradient(value, x)
            return value, (tf.zeros_like(x) if grad is None else grad)

        return tf.function(step, jit_compile=True, autograph=False, reduce_retracing=False)
    if BACKEND == "torch":
        import torch

        def step(a, x, *rest):
            x = torch.as_tensor(x).detach().requires_grad_(True)
            value = f(a, x, *rest)
            if value.requires_grad:
                value.backward()
            return value.detach(), (torch.zeros_like(x) if x.grad is None else x.grad)

        return step
    raise NotImplementedError(BACKEND)  # pragma: no cover


def as_tensor(x, dtype: str = "float32"):
    return keras.ops.cast(keras.ops.convert_to_tensor(np.asarray(x, "float32")), dtype)


def fits(x: np.ndarray, dtype: str) -> bool:
    """Whether `x` is finite once cast to `dtype`."""
    return bool(np.all(np.isfinite(to_numpy(as_tensor(x, dtype)).astype("float32"))))


@dataclasses.dataclass
class Failure:
    cls: str
    case: str
    dtype: str
    what: str
    value: object

    def __str__(self) -> str:
        return f"{self.cls} / {self.case} / {self.dtype} / {BACKEND}: {self.what} = {self.value}"


def base_case(case: str) -> str:
    """The edge case without its variant suffix (batch of one, zero weights)."""
    return case.replace("+batch_of_1", "").replace("+all_sample_weights_zero", "")


class GridRun:
    """The edge cases of one class through its compiled `step(a, x, *rest)`:
    the failures (non-finite value or gradient) and the refusals
    (`ValueError`s) met, checked against `REFUSED` (or `table`) at the end."""

    def __init__(self, cls_name: str, step: Callable, table: Optional[dict] = None) -> None:
        self.cls_name, self.step, self.table = cls_name, step, table
        self.failures, self.refusals = [], {}

    def value(self, case: str, *args) -> Optional[tuple]:
        """`step(*args)`, or None when the class refused the input."""
        try:
            return self.step(*args)
        except ValueError as error:
            self.refusals[case] = str(error)
            return None

    def run(self, case: str, dtype: str, *args, grad32=None) -> Optional[tuple]:
        """`value`, checked finite (`check`)."""
        out = self.value(case, *args)
        if out is not None:
            check(self.cls_name, case, dtype, *out, self.failures, grad32)
        return out

    def half(self, case: str, dtype: str, a, x: np.ndarray, *rest) -> None:
        """`x` in `dtype`, its gradient checked where the float32 gradient at
        the same rounded input fits in `dtype`."""
        if not fits(x, dtype):
            return
        reference = self.value(case, a, as_tensor(to_numpy(as_tensor(x, dtype)).astype("float32")), *rest)
        if reference is not None:
            self.run(case, dtype, a, as_tensor(x, dtype), *rest, grad32=reference[1])

    def problems(self) -> list:
        return list(map(str, self.failures)) + check_refusals(self.cls_name, self.refusals, self.table)


def check_refusals(cls_name: str, refusals: dict, table: Optional[dict] = None) -> list:
    """What is wrong with the refusals of a class (see `REFUSED`, or
    `table`)."""
    expected = (REFUSED if table is None else table).get(cls_name, {}) if EAGER else {}
    problems = []
    for case, message in refusals.items():
        argument = expected.get(base_case(case))
        if argument is None:
            problems.append(f"{cls_name} / {case} / {BACKEND}: refused, not listed in REFUSED: {message}")
        elif f"`{argument}`" not in message:
            problems.append(f"{cls_name} / {case}: the refusal does not name `{argument}`: {message}")
    missing = set(expected) - {base_case(c) for c in refusals}
    problems += [f"{cls_name} / {case} / {BACKEND}: listed in REFUSED but computed" for case in sorted(missing)]
    return problems


def check(cls_name: str, case: str, dtype: str, value, grad, failures: list, grad32=None) -> None:
    """Value and gradient finite. For half-precision inputs (`grad32`: the
    float32 gradient at the same rounded input) the gradient only where the
    float32 one fits in the input's dtype: the gradient of a float16 input
    is float16, and a true gradient beyond 65504 overflows it (the rule of
    the contract's mixed-precision check)."""
    value, grad = to_numpy(value).astype("float32"), to_numpy(grad).astype("float32")
    if not np.all(np.isfinite(value)):
        failures.append(Failure(cls_name, case, dtype, "value", value))
    if grad32 is not None:
        grad32 = to_numpy(grad32).astype("float32")
        representable = np.isfinite(grad32) & (np.abs(grad32) < 0.5 * float(np.finfo("float16").max))
        if dtype == "bfloat16":
            representable = np.isfinite(grad32)
        grad = np.where(representable, grad, 0.0)
    if not np.all(np.isfinite(grad)):
        bad = grad[~np.isfinite(grad)]
        failures.append(Failure(cls_name, case, dtype, "gradient", f"{bad.size} non-finite, e.g. {bad.ravel()[:3]}"))




# ------------------------------------------------------------------ layers

NUM_CLASSES = 4


def make_layer(cls, **kwargs):
    """The layer under test and whether it is a `PenaltyLayer` (tested
    through its pure `penalty`) or an output layer (through its output);
    `kwargs` (e.g. `dtype`) go to the constructor."""
    name = cls.__name__
    if name in ("ArcFace", "CosFace", "SubCenterArcFace", "ProxyAnchor", "ProxyNCA", "CenterPenalty"):
        return cls(num_classes=NUM_CLASSES, **kwargs)
    if name == "CoralOutput":
        return cls(num_classes=5, **kwargs)
    if name == "LanguageModelHead":
        return cls(vocabulary_size=NUM_CLASSES, **kwargs)
    if name == "LoadBalancingPenalty":  # layer_edges' dim: 3 experts
        return cls(num_experts=3, **kwargs)
    if name == "CrossBatchMemory":
        return cls(klp.losses.TripletLoss(dtype=kwargs.get("dtype")), memory_size=8, **kwargs)
    return cls(**kwargs)


def layer_edges(kind: str, batch: int = 6, dim: int = 3) -> Dict[str, tuple]:
    """`{edge case: (labels or None, layer input)}` for a layer kind; the
    input is one array, or a pair for `gaussian` (z_mean, z_log_var)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, dim)).astype("float32")
    labels = (np.arange(batch) % NUM_CLASSES).astype("float32")
    alt = _alternating(x.shape)
    edges = {"random": (labels, x)}
    if kind in ("head", "lm_head", "proxy_head", "center", "memory", "activations", "gaussian"):
        edges["zero_vectors"] = (labels, np.zeros_like(x))
        edges["identical_rows"] = (labels, np.ones_like(x))
        for s in HUGE:
            edges[f"inputs_pm{s:g}"] = (labels, s * alt)
            edges[f"inputs_x{s:g}"] = (labels, s * x)
        if kind in ("head", "lm_head", "center", "memory"):
            edges["single_class"] = (np.zeros_like(labels), x)
    if kind == "rates":
        u = rng.uniform(size=x.shape).astype("float32")
        edges = {"random": (labels, u), "rates_exact_0": (labels, np.zeros_like(u)),
                 "rates_exact_1": (labels, np.ones_like(u)), "rates_0_and_1": (labels, (alt > 0).astype("float32"))}
    if kind == "probabilities":
        p = np.full(x.shape, 1.0 / dim, "float32")
        edges = {"uniform": (labels, p), "probs_exact_one_hot": (labels, np.eye(dim, dtype="float32")[labels.astype(int) % dim]),
                 "probs_zero": (labels, np.zeros_like(p))}
    if kind == "logits":  # output or router logits (z-losses, load balancing): ties, +-100, 1e4, 1e30
        edges["equal_logits"] = (labels, np.zeros_like(x))
        edges["equal_logits_1e4"] = (labels, np.full_like(x, 1e4))
        for s in HUGE:
            edges[f"inputs_pm{s:g}"] = (labels, s * alt)
            edges[f"inputs_x{s:g}"] = (labels, s * x)
    return edges


def layer_function(layer, kind: str) -> Callable:
    """Labels arrive as float32 (one signature for every kind); The scalar `f(labels, inputs)` whose value and gradient w.r.t. the
    inputs the grid checks: the penalty of a penalty layer, the sum of an
    output layer's output."""
    from keras import ops

    if kind == "head":
        return lambda labels, x: ops.sum(layer([x, ops.cast(labels, "int32")], training=True))
    if kind == "proxy_head":
        return lambda labels, x: ops.sum(layer(x))
    if kind == "lm_head":  # the loss it adds in fit (labels: the next tokens)
        return lambda labels, x: layer.compute_head_loss(x, ops.cast(labels, "int32"))
    if kind == "center":
        return lambda labels, x: layer.penalty((x, layer._one_hot(ops.cast(labels, "int32"), "float32")))
    if kind == "memory":  # the batch against the queue that build_layer filled
        return lambda labels, x: layer.memory_loss(x, ops.cast(labels, "int32"))
    if kind == "gaussian":
        # z_log_var: exp fits float32 (half-precision x computed in float32, float64 kept)
        return lambda labels, x: layer.penalty((x, ops.tanh(ops.cast(x, compute_dtype(x.dtype))) * 50.0))
    return lambda labels, x: layer.penalty(x)


def build_layer(layer, kind: str, labels: np.ndarray, x: np.ndarray) -> None:
    if kind == "head":
        layer([as_tensor(x), as_tensor(labels)], training=True)
    elif kind == "center":
        layer([as_tensor(x), as_tensor(labels, "int32")])
    elif kind == "memory":  # two training steps: the queue is full
        for _ in range(2):
            layer([as_tensor(x), as_tensor(labels, "int32")], training=True)
    elif kind == "gaussian":
        layer([as_tensor(x), as_tensor(x)])
    else:
        layer(as_tensor(x))


# ------------------------------------------------------------------ weighting strategies

TASKS = ["a", "b", "c"]
TASK_LOSSES = {
    "zero_huge_one": [0.0, 1e30, 1.0],
    "all_zero": [0.0, 0.0, 0.0],
    "all_1e30": [1e30, 1e30, 1e30],
    "tiny_one_1e4": [1e-30, 1.0, 1e4],
    "identical": [0.5, 0.5, 0.5],
}


def task_gradients(params: int = 5) -> Dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    g = rng.normal(size=(len(TASKS), params)).astype("float32")
    return {
        "random": g, "zero": np.zeros_like(g), "identical": np.repeat(g[:1], len(TASKS), 0),
        "opposing": np.stack([g[0], -g[0], g[2]]), "one_zero": np.stack([g[0], 0 * g[1], g[2]]),
        "x1e4": 1e4 * g, "x1e30": 1e30 * g, "x1e-30": 1e-30 * g,
    }
