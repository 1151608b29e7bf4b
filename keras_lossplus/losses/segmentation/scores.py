"""The per-class overlap score and its mean over the classes, with the
options segmentation_models_pytorch (smp) and MONAI users set: separate
numerator / denominator smoothing, `eps`, `log_loss`, per-class weights, a
subset of the classes (`classes`, `include_background`), V-Net's squared
denominator, the soft-label (L1) counts, and which library's rule the class
mean follows (`convention`).

Everything here is decided once per call from static values (the options
and the number of channels): the class mean is one product with a constant
`(C,)` vector of coefficients, so no option adds a gather or a branch to
the compiled program.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import numpy as np
from keras import ops

from keras_lossplus.losses.options import (
    check_number,
    choice,
    flag,
    float_list,
    number,
    optional,
    to_float_list,
)
from keras_lossplus.ops import safe_pow

Tensor = Any

CONVENTIONS = ("smp", "monai")
EPS = 1e-7  # segmentation_models_pytorch's default `eps`


def smoothing(name: str, value: Any) -> list:
    """A number `>= 0` (added to numerator and denominator), or a pair
    `[numerator, denominator]` of them (MONAI's `smooth_nr`, `smooth_dr`);
    returned as the pair."""
    if isinstance(value, (list, tuple)) or hasattr(value, "__array__"):
        pair = to_float_list(name, value)
        if len(pair) != 2:
            raise ValueError(
                f"Argument `{name}` must be a number >= 0 or a pair (numerator, denominator) of them. "
                f"Received: {name}={value!r}"
            )
        return [check_number(name, v, low=0.0) for v in pair]
    s = check_number(name, value, low=0.0)
    return [s, s]


def class_indices(name: str, value: Any) -> list:
    """A non-empty list of distinct class indices `>= 0`."""
    values = list(value) if isinstance(value, (list, tuple, np.ndarray)) else None
    ok = bool(values) and all(
        not isinstance(v, (bool, np.bool_)) and isinstance(v, (int, np.integer)) and v >= 0 for v in values
    )
    if not ok or len(set(int(v) for v in values)) != len(values):
        raise ValueError(
            f"Argument `{name}` must be None or a non-empty list of distinct class indices >= 0. "
            f"Received: {name}={value!r}"
        )
    return [int(v) for v in values]


SCORING = {
    "smooth": smoothing,
    "eps": number(low=0.0, low_open=True),
    "log_loss": flag,
    "class_weights": optional(float_list(low=0.0)),
    "classes": optional(class_indices),
    "include_background": flag,
    "squared": flag,
    "soft_labels": flag,
    "convention": choice(*CONVENTIONS),
}
"""The checks of the scoring options (merged into each overlap loss's `Options`)."""


def joint_rules(options: dict) -> dict:
    """Rules that tie the options together (an `Options` joint check)."""
    if options.get("include_background") is False and options.get("mode") == "binary":
        raise ValueError(
            "Argument `include_background=False` drops channel 0, the only channel with mode='binary'. "
            "Keep include_background=True, or use mode='multiclass' / 'multilabel' with a background channel."
        )
    weights = options.get("class_weights")
    if weights is not None and not any(weights):
        raise ValueError(f"Argument `class_weights` must hold a weight > 0. Received: class_weights={weights!r}")
    return options


@dataclasses.dataclass(frozen=True)
class Scoring:
    """The scoring options of one call, hashable (a static argument of the
    compiled function on JAX)."""

    smooth: tuple = (0.0, 0.0)
    eps: float = EPS
    log_loss: bool = False
    class_weights: Optional[tuple] = None
    classes: Optional[tuple] = None
    include_background: bool = True
    squared: bool = False
    soft_labels: bool = False
    convention: str = "smp"

    @classmethod
    def of(cls, arguments: dict) -> "Scoring":
        """From a function's checked arguments (those that are scoring
        options; lists become tuples, a number `smooth` the pair)."""
        fields = {k: arguments[k] for k in SCORING if k in arguments}
        if not isinstance(fields.get("smooth", []), list):
            fields["smooth"] = [fields["smooth"]] * 2
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})

    # ------------------------------------------------------------------ the classes

    def selected(self, channels: int) -> np.ndarray:
        """`(C,)` 1.0 for each class the mean counts."""
        chosen = np.zeros(channels) if self.classes is not None else np.ones(channels)
        if self.classes is not None:
            if max(self.classes) >= channels:
                raise ValueError(
                    f"Argument `classes` must hold indices of the {channels} channels of `y_pred` "
                    f"(0 to {channels - 1}). Received: classes={list(self.classes)!r}"
                )
            chosen[list(self.classes)] = 1.0
        if not self.include_background:
            chosen[0] = 0.0
        if not chosen.any():
            raise ValueError(
                f"No class is left to score: classes={self.classes!r} with "
                f"include_background={self.include_background}."
            )
        return chosen

    def weights(self, channels: int) -> np.ndarray:
        """`(C,)` the class weights (1 without `class_weights`)."""
        if self.class_weights is None:
            return np.ones(channels)
        if len(self.class_weights) != channels:
            raise ValueError(
                f"Argument `class_weights` must hold one weight per channel of `y_pred` ({channels}; with "
                f"`classes` or include_background=False too, the weights of the other channels are unused). "
                f"Received {len(self.class_weights)}: class_weights={list(self.class_weights)!r}"
            )
        return np.asarray(self.class_weights, "float64")

    def coefficients(self, channels: int) -> np.ndarray:
        """`(C,)` the coefficient of each per-class loss in the class mean:
        `w_c / sum(w)` over the chosen classes (`"smp"`: a weighted mean), or
        `w_c / (number of chosen classes)` (`"monai"`: the mean of the
        weighted losses)."""
        chosen = self.selected(channels)
        weighted = chosen * self.weights(channels)
        if self.convention == "monai" and chosen.sum() == 1:
            weighted = chosen  # MONAI's DiceLoss leaves its `weight` out when one class is scored
        total = weighted.sum() if self.convention == "smp" else chosen.sum()
        if total <= 0:
            raise ValueError(
                f"Argument `class_weights` gives weight 0 to every class scored. Received: "
                f"class_weights={list(self.class_weights)!r}, classes={self.classes!r}, "
                f"include_background={self.include_background}"
            )
        return weighted / total

    # ------------------------------------------------------------------ score, loss and mean

    def ratio(self, tp: Tensor, fp: Tensor, fn: Tensor, alpha: float, beta: float, scale: float = 1.0) -> Tensor:
        """`(TP + s_nr * scale) / max(TP + alpha FP + beta FN + s_dr * scale, eps)`,
        and 1 where that denominator is 0 (nothing to find, nothing predicted)."""
        numerator = tp + self.smooth[0] * scale
        denominator = tp + alpha * fp + beta * fn + self.smooth[1] * scale
        return overlap_ratio(numerator, denominator, self.eps)

    def per_class_loss(self, score: Tensor, gamma: float = 1.0) -> Tensor:
        """`1 - score` (or `-log(max(score, eps))` with `log_loss`), raised
        to `gamma` (clipped at 0 first) when `gamma != 1`."""
        loss = -ops.log(ops.maximum(score, self.eps)) if self.log_loss else 1.0 - score
        if gamma != 1.0:
            loss = safe_pow(ops.maximum(loss, 0.0), gamma)
        return loss

    def tversky(self, counts: tuple, alpha: float, beta: float, gamma: float = 1.0) -> Tensor:
        """The loss of the Tversky index `(TP + s) / (TP + alpha FP + beta FN + s)`
        (Jaccard: `alpha = beta = 1`), mean over the classes."""
        tp, fp, fn, support = counts
        return self.class_mean(self.per_class_loss(self.ratio(tp, fp, fn, alpha, beta), gamma), support)

    def dice(self, counts: tuple) -> Tensor:
        """The Dice loss `1 - (2 TP + s) / (2 TP + FP + FN + s)`, mean over the
        classes: the Tversky index with `alpha = beta = 1/2` and `s / 2`
        (segmentation_models_pytorch's form, so `eps` floors `TP + (FP + FN) / 2 + s / 2`)."""
        tp, fp, fn, support = counts
        return self.class_mean(self.per_class_loss(self.ratio(tp, fp, fn, 0.5, 0.5, scale=0.5)), support)

    def class_mean(self, per_class: Tensor, support: Tensor) -> Tensor:
        """The mean over the classes (last axis): with `"smp"` a class absent
        from the target counts 0 (its score is undefined)."""
        if self.convention == "smp":
            per_class = ops.where(support > 0, per_class, ops.zeros_like(per_class))
        coef = ops.convert_to_tensor(self.coefficients(per_class.shape[-1]), dtype=per_class.dtype)
        return ops.sum(per_class * coef, axis=-1)


def overlap_ratio(numerator: Tensor, denominator: Tensor, eps: float) -> Tensor:
    """`numerator / max(denominator, eps)` (segmentation_models_pytorch's
    clamp), and 1 where `denominator` is 0: no target, no prediction and no
    smoothing, the limit of the smoothed score (a loss of 0 with gradient 0
    where nothing is counted)."""
    score = numerator / ops.maximum(denominator, eps)
    return ops.where(denominator > 0, score, ops.ones_like(score))



SCORING_ARGS = """        class_weights: `None`, or one weight `>= 0` per channel: the class
            mean becomes `sum_c w_c l_c / sum_c w_c` (`convention="smp"`,
            segmentation_models_pytorch's `class_weights`) or
            `mean_c w_c l_c` (`"monai"`, MONAI's `weight`).
        classes: `None` (every class), or the indices of the classes the
            mean counts (segmentation_models_pytorch's `classes`).
        include_background: `False` leaves class 0 out of the mean (MONAI's
            `include_background`; not with `mode="binary"`).
        log_loss: Each class's loss is `-log(max(score, eps))` instead of
            `1 - score` (segmentation_models_pytorch's `log_loss`).
        squared: Squared predictions and targets in the denominator:
            `2 TP + FP + FN = sum p^2 + sum y^2` (V-Net; MONAI's
            `squared_pred`).
        soft_labels: Count `TP = (sum p + sum y - sum |p - y|) / 2`, that is
            `sum min(p, y)` (segmentation_models_pytorch's counts; MONAI's
            `soft_label`): the same as `sum p y` for 0/1 targets, a score
            that peaks at `p = y` for soft targets.
        eps: Floor of the denominator of the score written as
            `TP + alpha FP + beta FN + s` (Dice: `alpha = beta = 1/2` and `s`
            halved), and of the score under `log_loss`; `> 0`.
        convention: `"smp"`: a class absent from the target counts 0 (its
            score is undefined) and `class_weights` give a weighted mean;
            `"monai"`: every class is scored and the weighted losses are
            averaged over the classes, as MONAI does."""
