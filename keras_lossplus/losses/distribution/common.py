"""What the distribution losses share: the eager check of the targets, the
two samples of the batch-level losses, and their weighted pair means."""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Optional

import numpy as np
from keras import ops

from keras_lossplus import backend as klp_backend
from keras_lossplus.losses.base import prepare_inputs
from keras_lossplus.ops import pairwise_distances, safe_sqrt

Tensor = Any


# --------------------------------------------------------------------------- the targets, checked eagerly


def check_finite_targets(y_true: Any, owner: str = "") -> None:
    """Raise `ValueError` naming `y_true` when concrete targets hold a NaN
    or an infinity; nothing for a traced `y_true`.

    A non-finite target is a mistake upstream (a missing value in the data,
    a division by zero in the pipeline). Left in, it gives a NaN gradient
    behind a finite value in some of these losses (the energy distance
    reads a NaN distance as 0, the 1-D Wasserstein distance of order
    `p > 1` a NaN difference as 0) and is clipped away silently in others
    (an infinite probability in the Jensen-Shannon divergence). Inside a
    compiled function nothing can raise: there `finite_or_nan` makes the
    loss NaN instead (see each loss)."""
    if not isinstance(y_true, (np.ndarray, list, tuple, float, int)) and not klp_backend.is_concrete(y_true):
        return
    values = np.asarray(y_true if isinstance(y_true, (list, tuple, float, int)) else ops.convert_to_numpy(y_true))
    if not np.issubdtype(values.dtype, np.floating):
        return
    bad = ~np.isfinite(values)
    if np.any(bad):
        raise ValueError(
            f"{owner}`y_true` must hold finite values (the target distributions or samples). Received "
            f"{int(np.sum(bad))} non-finite value(s) in y_true (shape {values.shape}), e.g. "
            f"{values[bad].ravel()[:5].tolist()}. Find where they come from upstream (a missing value, a "
            "division by zero). (Under jit they are not refused: the loss is NaN.)"
        )


def targets_checked(fn: Callable) -> Callable:
    """Decorate a loss function so that `check_finite_targets(y_true)` runs
    first, outside any `compiled_on_jax` compilation below it."""
    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        check_finite_targets(signature.bind(*args, **kwargs).arguments["y_true"], f"{fn.__name__}: ")
        return fn(*args, **kwargs)

    return wrapper


def finite_or_nan(value: Tensor, y_true: Tensor, per_sample: bool) -> Tensor:
    """`value`, NaN where the targets it depends on are not all finite (the
    row's last axis for a per-sample loss, the whole of `y_true` for a batch
    loss): what a non-finite target gives inside a compiled function, where
    `check_finite_targets` cannot raise. (Concrete targets were checked by
    it already: `value` as it is.)"""
    if klp_backend.is_concrete(y_true):
        return value
    finite = ops.all(ops.isfinite(y_true), axis=-1) if per_sample else ops.all(ops.isfinite(y_true))
    return ops.where(finite, value, ops.full_like(value, np.nan))


# --------------------------------------------------------------------------- two samples (batch losses)


def sample_inputs(y_true: Tensor, y_pred: Tensor, sample_weight: Optional[Tensor]) -> tuple:
    """`x` (N, D), `y` (M, D) in the compute dtype and their row weights.

    Rank-1 inputs are read as `(B, 1)` (1-D samples). Both samples are
    shifted by their common mean (held constant: every loss here depends on
    differences of rows only, so value and gradient are unchanged), which
    keeps the squared distances' expansion `|x|^2 + |y|^2 - 2 x.y` from
    cancelling catastrophically when the clouds sit far from the origin
    (clouds 1e3 away from it, 1 apart, lose 10 % of a float32 distance
    otherwise). Without `sample_weight` every row weighs 1 (and `N != M` is
    allowed); with it, `N == M` and row `i` of both samples weighs `w_i`
    (negative weights count as 0).
    """
    y_true, y_pred = prepare_inputs(y_true, y_pred)
    out = []
    for name, t in (("y_true", y_true), ("y_pred", y_pred)):
        if len(t.shape) == 1:
            t = ops.expand_dims(t, -1)
        if len(t.shape) != 2:
            raise ValueError(
                f"`{name}` must hold one sample per row, shape (batch_size, dim) (or (batch_size,) "
                f"for 1-D samples). Received: {name}.shape={tuple(t.shape)}"
            )
        out.append(t)
    x, y = out
    if x.shape[1] is not None and y.shape[1] is not None and x.shape[1] != y.shape[1]:
        raise ValueError(
            "`y_true` and `y_pred` must have the same number of columns (the dimension of the "
            f"samples). Received: y_true.shape={tuple(x.shape)}, y_pred.shape={tuple(y.shape)}"
        )
    if sample_weight is None:
        wx, wy = ops.ones_like(x[:, 0]), ops.ones_like(y[:, 0])
    else:
        if x.shape[0] is not None and y.shape[0] is not None and x.shape[0] != y.shape[0]:
            raise ValueError(
                "With `sample_weight`, `y_true` and `y_pred` must have the same number of rows (row i "
                f"of both weighs sample_weight[i]). Received: y_true.shape={tuple(x.shape)}, "
                f"y_pred.shape={tuple(y.shape)}"
            )
        w = ops.reshape(ops.cast(ops.convert_to_tensor(sample_weight), x.dtype), (-1,))
        if w.shape[0] is not None and x.shape[0] is not None and w.shape[0] != x.shape[0]:
            raise ValueError(
                "`sample_weight` must hold one weight per row of `y_pred`. Received: "
                f"sample_weight with {w.shape[0]} values for y_pred.shape={tuple(y.shape)}"
            )
        wx = wy = ops.maximum(w, 0.0)  # a mass: negative weights count as 0
    # the mean of all rows; with weights, of the rows with mass (of all rows when none has any)
    rows = ops.cast(ops.maximum(ops.shape(x)[0] + ops.shape(y)[0], 1), x.dtype)
    center = (ops.sum(x, axis=0) + ops.sum(y, axis=0)) / rows
    if sample_weight is not None:
        mass = ops.sum(wx) + ops.sum(wy)
        weighted = (ops.matmul(wx, x) + ops.matmul(wy, y)) / ops.where(mass > 0, mass, 1.0)
        center = ops.where(mass > 0, weighted, center)
    center = ops.stop_gradient(center)
    return x - center, y - center, wx, wy


DIRECT_DIM = 4
"""Up to this many columns, squared distances come from the differences
themselves (`distances`)."""


def distances(x: Tensor, y: Optional[Tensor] = None, squared: bool = False) -> Tensor:
    """`|x_i - y_j|^2` (`squared`) or `|x_i - y_j|` between the rows of `x`
    (N, D) and of `y` (M, D) (`x` itself when `y` is None: an exact 0
    diagonal), with a finite gradient (0) between identical points.

    Up to `DIRECT_DIM` columns (1-D to 4-D samples) they are summed from the
    differences, one column at a time (a few `N x M` passes per column, no
    `N x M x D` tensor): exact for points close to each other wherever they
    sit (the MMD of two clusters 100 apart, points 1 apart within each, was
    1.2e-4 off the float64 one). The Euclidean distance divides each pair's
    differences by their largest magnitude first (held constant: the
    distance is homogeneous, the gradient exact), so that differences of
    1e30 give 1e30, not the infinity of their squares. Beyond `DIRECT_DIM`
    columns, `pairwise_distances`' one matmul, the expansion
    `|x|^2 + |y|^2 - 2 x.y`, whose rounding is about `1e-7 (|x|^2 + |y|^2)`
    in float32 (the samples are shifted by their mean first:
    `sample_inputs`)."""
    metric = "squared_euclidean" if squared else "euclidean"
    dim = x.shape[-1]
    if dim is None or dim > DIRECT_DIM:
        return pairwise_distances(x, metric=metric) if y is None else pairwise_distances(x, y, metric=metric)
    other = x if y is None else y
    diffs = [ops.expand_dims(x[:, d], 1) - ops.expand_dims(other[:, d], 0) for d in range(dim)]
    if squared:
        return functools.reduce(ops.add, [diff * diff for diff in diffs])
    if dim == 1:
        return ops.abs(diffs[0])  # its gradient at 0 is 0 on every backend
    scale = ops.stop_gradient(functools.reduce(ops.maximum, [ops.abs(diff) for diff in diffs]))
    scale = ops.where(scale > 0, scale, ops.ones_like(scale))
    return scale * safe_sqrt(functools.reduce(ops.add, [ops.square(diff / scale) for diff in diffs]))


def weighted_mean(matrix: Tensor, wa: Tensor, wb: Tensor, off_diagonal: bool = False) -> tuple:
    """`sum_ij wa_i wb_j m_ij / sum_ij wa_i wb_j` (over `i != j` if asked),
    0 when the weights of the pairs sum to 0; and that sum."""
    pair = ops.expand_dims(wa, 1) * ops.expand_dims(wb, 0)
    if off_diagonal:
        pair = ops.where(ops.eye(ops.shape(pair)[0], dtype="bool"), ops.zeros_like(pair), pair)
    total = ops.sum(pair)
    return ops.divide_no_nan(ops.sum(pair * matrix), total), total
