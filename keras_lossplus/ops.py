"""Backend-neutral numerics shared by every loss and layer.

Everything here is built on `keras.ops`, so it runs (and compiles with XLA)
on JAX, TensorFlow and PyTorch. Each helper is written so that its value *and*
its gradient stay finite at the points where the textbook formula breaks:
`sqrt` at 0, `x ** gamma` at 0 with `gamma < 1`, a max or log-sum-exp over an
empty set.

This module imports nothing else from `keras_lossplus`.
"""

from __future__ import annotations

from typing import Any, Optional

import keras
import numpy as np
from keras import ops

Tensor = Any

DISTANCE_METRICS = ("euclidean", "squared_euclidean", "cosine")
_HALF_DTYPES = ("float16", "bfloat16")
# Fill values for masked-out entries: the largest finite number of each dtype.
_MACHINE_EPS = {"float16": 9.8e-4, "bfloat16": 7.9e-3, "float32": 1.2e-7, "float64": 2.3e-16}
_CANCELLATION_ULPS = 8.0
_LARGEST_FINITE = {"float16": 6.5e4, "bfloat16": 3.0e38, "float32": 3.0e38, "float64": 1.0e308}


def compute_dtype(dtype: Any) -> str:
    """The dtype a loss computes in for inputs of `dtype`.

    Half-precision inputs (`float16`, `bfloat16`, as produced under mixed
    precision) are computed in `float32`; `float32` and `float64` are kept.

    Examples:
        >>> compute_dtype("bfloat16")
        'float32'
    """
    dtype = keras.backend.standardize_dtype(dtype)
    return "float32" if dtype in _HALF_DTYPES else dtype


def largest_finite(dtype: Any = "float32") -> float:
    """A large finite value of `dtype` (about its largest), the fill that
    masks an entry out of a min or a max without producing `inf`.

    Examples:
        >>> largest_finite("float16")
        65000.0
    """
    return _LARGEST_FINITE.get(keras.backend.standardize_dtype(dtype), _LARGEST_FINITE["float32"])


def _where_safe(condition: Tensor, x: Tensor, fill: float) -> Tensor:
    """`x` where `condition`, else `fill`: the input of a function whose value
    or gradient would be undefined at the masked-out entries. (`fill` is
    converted in `x`'s dtype: a cast would pass through float32 on
    TensorFlow, where float64's fill 1e308 does not exist.)"""
    return ops.where(condition, x, ops.convert_to_tensor(fill, dtype=x.dtype))


def with_gradient_of(value: Tensor, carrier: Tensor) -> Tensor:
    """`value` in the forward pass, the gradient of `carrier` in the backward
    pass: `stop_gradient(value) + carrier - stop_gradient(carrier)`. Data
    parallelism uses it to report a global value while each replica's
    gradient flows through its own share.

    Examples:
        >>> x = keras.ops.convert_to_tensor(3.0)
        >>> float(with_gradient_of(x * 10.0, 2.0 * x))  # the gradient would be 2
        30.0
    """
    return ops.stop_gradient(value) + (carrier - ops.stop_gradient(carrier))


def safe_sqrt(x: Tensor) -> Tensor:
    """`sqrt(x)` for `x >= 0` whose gradient is 0 (not infinite) at `x == 0`.

    Examples:
        >>> float(safe_sqrt(keras.ops.convert_to_tensor(4.0)))
        2.0
    """
    x = ops.convert_to_tensor(x)
    positive = x > 0
    return ops.where(positive, ops.sqrt(_where_safe(positive, x, 1.0)), ops.zeros_like(x))


def safe_norm(x: Tensor, axis: int = -1, keepdims: bool = False) -> Tensor:
    """Euclidean norm along `axis` with a finite gradient (0) at the zero vector.

    `keras.ops.norm` has an undefined gradient at 0 (NaN on every backend);
    this one returns the subgradient 0 there.

    Examples:
        >>> float(safe_norm(keras.ops.convert_to_tensor([3.0, 4.0])))
        5.0
    """
    x = ops.convert_to_tensor(x)
    return safe_sqrt(ops.sum(ops.square(x), axis=axis, keepdims=keepdims))


def safe_pow(x: Tensor, exponent: float) -> Tensor:
    """`x ** exponent` for `x >= 0` whose gradient is finite at `x == 0`.

    For `0 < exponent < 1` the true derivative at 0 is infinite, and in a
    product such as the focal factor `(1 - p_t) ** gamma * ce` with `ce == 0`
    that becomes `inf * 0 = NaN`. Here the gradient at `x == 0` is 0.
    Integer exponents use repeated multiplication (exact and cheapest).

    Examples:
        >>> float(safe_pow(keras.ops.convert_to_tensor(9.0), 0.5))
        3.0
    """
    x = ops.convert_to_tensor(x)
    exponent = float(exponent)
    if exponent == 0.0:
        return ops.ones_like(x)
    if exponent.is_integer() and 0 < exponent <= 4:
        out = x
        for _ in range(int(exponent) - 1):
            out = out * x
        return out
    positive = x > 0
    powered = ops.exp(exponent * ops.log(_where_safe(positive, x, 1.0)))
    return ops.where(positive, powered, ops.zeros_like(x))


def _check_metric(metric: str) -> None:
    if metric not in DISTANCE_METRICS:
        raise ValueError(
            f"Invalid value for argument `metric`. Expected one of {DISTANCE_METRICS}. "
            f"Received: metric={metric!r}"
        )


def l2_normalize(x: Tensor, axis: int = -1, epsilon: float = 1e-12) -> Tensor:
    """`x / max(||x||, epsilon)` along `axis`; the zero vector stays zero, with a
    finite gradient.

    Examples:
        >>> keras.ops.convert_to_numpy(l2_normalize(keras.ops.convert_to_tensor([3.0, 4.0]))).tolist()
        [0.6000000238418579, 0.800000011920929]
    """
    x = ops.convert_to_tensor(x)
    return x / ops.maximum(safe_norm(x, axis=axis, keepdims=True), epsilon)


def pairwise_distances(
    x: Tensor, y: Optional[Tensor] = None, metric: str = "euclidean"
) -> Tensor:
    """Distances between the rows of `x` (N, D) and the rows of `y` (M, D).

    Args:
        x: Embeddings of shape `(N, D)`.
        y: Embeddings of shape `(M, D)`; defaults to `x` (then the diagonal is
            exactly 0).
        metric: `"euclidean"`, `"squared_euclidean"` or `"cosine"`
            (`1 - cosine similarity`; a zero vector is at distance 1 of all).

    Returns:
        An `(N, M)` matrix. The work is one `(N, D) x (D, M)` matmul, never an
        `(N, M, D)` difference tensor. Squared distances below the expansion's
        rounding error (`8 * machine epsilon * (|x|^2 + |y|^2)`) are exactly 0,
        so identical points are at distance 0. The gradient is finite
        everywhere, including between identical points, where the Euclidean
        distance's subgradient 0 is used.

    Examples:
        >>> x = keras.ops.convert_to_tensor([[0.0, 0.0], [3.0, 4.0]])
        >>> keras.ops.convert_to_numpy(pairwise_distances(x)).tolist()
        [[0.0, 5.0], [5.0, 0.0]]
    """
    _check_metric(metric)
    x = ops.convert_to_tensor(x)
    same = y is None
    y = x if same else ops.convert_to_tensor(y, dtype=x.dtype)
    if len(x.shape) != 2 or len(y.shape) != 2:
        raise ValueError(
            "`pairwise_distances` expects 2-D embeddings (N, D) and (M, D). "
            f"Received: x.shape={tuple(x.shape)}, y.shape={tuple(y.shape)}"
        )
    if metric == "cosine":
        sim = ops.matmul(l2_normalize(x), ops.transpose(l2_normalize(y)))
        dist = 1.0 - sim
        if same:
            dist = _zero_diagonal(dist)
        return ops.maximum(dist, 0.0)
    sq_x = ops.sum(ops.square(x), axis=1, keepdims=True)
    sq_y = ops.sum(ops.square(y), axis=1, keepdims=True)
    scale = sq_x + ops.transpose(sq_y)
    sq = scale - 2.0 * ops.matmul(x, ops.transpose(y))
    # The expansion loses ~ eps * (|x|^2 + |y|^2) to cancellation: below that
    # the distance is not resolved, so it is set to exactly 0 (identical points
    # then get distance 0 and gradient 0, not sqrt(roundoff)).
    tolerance = _CANCELLATION_ULPS * _MACHINE_EPS.get(keras.backend.standardize_dtype(x.dtype), 1.2e-7)
    sq = ops.where(sq <= tolerance * scale, ops.zeros_like(sq), sq)
    if same:
        sq = _zero_diagonal(sq)
    if metric == "squared_euclidean":
        return sq
    return safe_sqrt(sq)


def _zero_diagonal(m: Tensor) -> Tensor:
    n = ops.shape(m)[0]
    return ops.where(ops.eye(n, dtype="bool"), ops.zeros_like(m), m)


def same_label_mask(labels: Tensor, labels_b: Optional[Tensor] = None) -> Tensor:
    """Boolean `(N, M)` mask of pairs with equal labels.

    With one argument the pairs are within `labels` and the diagonal (a sample
    paired with itself) is excluded. Labels may be integers or floats, of shape
    `(N,)` or `(N, 1)`.

    Examples:
        >>> labels = keras.ops.convert_to_tensor([0, 0, 1])
        >>> keras.ops.convert_to_numpy(same_label_mask(labels)).astype(int).tolist()
        [[0, 1, 0], [1, 0, 0], [0, 0, 0]]
    """
    a = ops.reshape(ops.convert_to_tensor(labels), (-1,))
    b = a if labels_b is None else ops.reshape(ops.convert_to_tensor(labels_b), (-1,))
    mask = ops.equal(ops.expand_dims(a, 1), ops.expand_dims(b, 0))
    if labels_b is None:
        mask = ops.logical_and(mask, ops.logical_not(ops.eye(ops.shape(a)[0], dtype="bool")))
    return mask


def different_label_mask(labels: Tensor, labels_b: Optional[Tensor] = None) -> Tensor:
    """Boolean `(N, M)` mask of pairs with different labels (so never the diagonal).

    Examples:
        >>> labels = keras.ops.convert_to_tensor([0, 0, 1])
        >>> keras.ops.convert_to_numpy(different_label_mask(labels)).astype(int).tolist()
        [[0, 0, 1], [0, 0, 1], [1, 1, 0]]
    """
    a = ops.reshape(ops.convert_to_tensor(labels), (-1,))
    b = a if labels_b is None else ops.reshape(ops.convert_to_tensor(labels_b), (-1,))
    return ops.not_equal(ops.expand_dims(a, 1), ops.expand_dims(b, 0))


def _masked_extreme(x: Tensor, mask: Tensor, axis: int, keepdims: bool, largest: bool) -> Tensor:
    x = ops.convert_to_tensor(x)
    mask = ops.cast(mask, "bool")
    big = largest_finite(x.dtype)
    fill = -big if largest else big
    filled = _where_safe(mask, x, fill)
    reduced = ops.max(filled, axis=axis, keepdims=keepdims) if largest else ops.min(
        filled, axis=axis, keepdims=keepdims
    )
    any_valid = ops.any(mask, axis=axis, keepdims=keepdims)
    return ops.where(any_valid, reduced, ops.zeros_like(reduced))


def masked_max(x: Tensor, mask: Tensor, axis: int = -1, keepdims: bool = False) -> Tensor:
    """Max of `x` over the entries where `mask` is true; 0 (with gradient 0)
    where no entry is valid.

    Examples:
        >>> x = keras.ops.convert_to_tensor([[1.0, 5.0], [2.0, 3.0]])
        >>> m = keras.ops.convert_to_tensor([[True, False], [False, False]])
        >>> keras.ops.convert_to_numpy(masked_max(x, m)).tolist()
        [1.0, 0.0]
    """
    return _masked_extreme(x, mask, axis, keepdims, largest=True)


def masked_min(x: Tensor, mask: Tensor, axis: int = -1, keepdims: bool = False) -> Tensor:
    """Min of `x` over the entries where `mask` is true; 0 (with gradient 0)
    where no entry is valid.

    Examples:
        >>> x = keras.ops.convert_to_tensor([[1.0, 5.0], [2.0, 3.0]])
        >>> m = keras.ops.convert_to_tensor([[False, True], [False, False]])
        >>> keras.ops.convert_to_numpy(masked_min(x, m)).tolist()
        [5.0, 0.0]
    """
    return _masked_extreme(x, mask, axis, keepdims, largest=False)


def masked_logsumexp(x: Tensor, mask: Tensor, axis: int = -1, keepdims: bool = False) -> Tensor:
    """`log(sum(exp(x)))` over the entries where `mask` is true, computed
    stably; 0 (with gradient 0) where no entry is valid, instead of `-inf`.

    Examples:
        >>> x = keras.ops.convert_to_tensor([[0.0, 0.0, 9.0]])
        >>> m = keras.ops.convert_to_tensor([[True, True, False]])
        >>> round(float(masked_logsumexp(x, m)[0]), 4)
        0.6931
    """
    x = ops.convert_to_tensor(x)
    mask = ops.cast(mask, "bool")
    shift = ops.stop_gradient(masked_max(x, mask, axis=axis, keepdims=True))
    exps = ops.where(mask, ops.exp(_where_safe(mask, x - shift, 0.0)), ops.zeros_like(x))
    total = ops.sum(exps, axis=axis, keepdims=True)
    any_valid = ops.any(mask, axis=axis, keepdims=True)
    out = ops.where(any_valid, ops.log(_where_safe(any_valid, total, 1.0)) + shift, ops.zeros_like(total))
    return out if keepdims else ops.squeeze(out, axis=axis)


def masked_mean(x: Tensor, mask: Tensor, axis: Optional[int] = None, keepdims: bool = False) -> Tensor:
    """Mean of `x` over the entries where `mask` is true (or weighted by a float
    `mask`); 0 where the mask is empty, never `0 / 0`.

    Examples:
        >>> x = keras.ops.convert_to_tensor([1.0, 2.0, 6.0])
        >>> float(masked_mean(x, keras.ops.convert_to_tensor([True, False, True])))
        3.5
    """
    x = ops.convert_to_tensor(x)
    weights = ops.cast(mask, x.dtype)
    total = ops.sum(x * weights, axis=axis, keepdims=keepdims)
    count = ops.sum(weights, axis=axis, keepdims=keepdims)
    return ops.divide_no_nan(total, count)


def paired_distances(x: Tensor, y: Tensor, metric: str = "euclidean") -> Tensor:
    """Distances between matching rows of `x` and `y` (both `(..., D)`), with a
    finite gradient between identical rows.

    `metric` as in `pairwise_distances`; the cosine distance of a zero vector
    to anything is 1.

    Examples:
        >>> x = keras.ops.convert_to_tensor([[0.0, 0.0], [1.0, 1.0]])
        >>> y = keras.ops.convert_to_tensor([[3.0, 4.0], [1.0, 1.0]])
        >>> keras.ops.convert_to_numpy(paired_distances(x, y)).tolist()
        [5.0, 0.0]
    """
    _check_metric(metric)
    x = ops.convert_to_tensor(x)
    y = ops.convert_to_tensor(y, dtype=x.dtype)
    if metric == "cosine":
        return ops.maximum(1.0 - ops.sum(l2_normalize(x) * l2_normalize(y), axis=-1), 0.0)
    sq = ops.sum(ops.square(x - y), axis=-1)
    return sq if metric == "squared_euclidean" else safe_sqrt(sq)


def jacobi_eigh(m: Tensor, sweeps: int = 10) -> tuple:
    """`(eigenvalues, eigenvectors)` of a small symmetric matrix `(n, n)` by
    cyclic Jacobi rotations (`sweeps` passes over the `n (n - 1) / 2`
    pairs, in a `fori_loop`), in ascending order like `keras.ops.eigh`.

    For the `T x T` Gram matrices of multi-task weighting: under XLA on the
    CPU, `eigh` is a LAPACK call that costs about 2 ms inside a compiled
    training step (10 us in a program of its own); these few small matrix
    products fuse with the rest. Accurate to float32 rounding of `|m|` after
    a handful of sweeps (the convergence is quadratic).

    Examples:
        >>> values, _ = jacobi_eigh(keras.ops.convert_to_tensor([[2.0, 1.0], [1.0, 2.0]]))
        >>> [round(float(v), 5) for v in values]
        [1.0, 3.0]
    """
    m = ops.convert_to_tensor(m)
    n = m.shape[-1]
    eye = np.eye(n, dtype="float32")
    pairs = [(p, q) for p in range(n) for q in range(p + 1, n)]
    identity = ops.convert_to_tensor(eye, dtype=m.dtype)
    planes = {  # the rotation of the (p, q) plane is identity + (c - 1) corners + s skew
        (p, q): (ops.convert_to_tensor(np.outer(eye[p], eye[p]) + np.outer(eye[q], eye[q]), dtype=m.dtype),
                 ops.convert_to_tensor(np.outer(eye[p], eye[q]) - np.outer(eye[q], eye[p]), dtype=m.dtype))
        for p, q in pairs
    }

    def rotate(a, v, p, q):
        a_pp, a_qq, a_pq = a[p, p], a[q, q], a[p, q]
        off = ops.abs(a_pq) > 0
        theta = (a_qq - a_pp) / (2.0 * ops.where(off, a_pq, ops.ones_like(a_pq)))
        sign = ops.where(theta >= 0, 1.0, -1.0)
        t = ops.where(off, sign / (ops.abs(theta) + ops.sqrt(theta * theta + 1.0)), 0.0)
        c = 1.0 / ops.sqrt(t * t + 1.0)
        s = t * c
        corners, skew = planes[(p, q)]
        j = identity + (c - 1.0) * corners + s * skew
        return ops.matmul(ops.matmul(ops.transpose(j), a), j), ops.matmul(v, j)

    def sweep(_, state):
        a, v = state
        for p, q in pairs:
            a, v = rotate(a, v, p, q)
        return a, v

    a, v = ops.fori_loop(0, sweeps, sweep, (m, identity))
    values = ops.diagonal(a)
    order = ops.argsort(values)
    return ops.take(values, order), ops.take(v, order, axis=1)
