"""Distances and similarities of the metric-learning losses: the `Distance`
objects, the names the losses take as shorthands for them, the one resolver
every loss calls (`resolve_distance`) and the checks of the `distance=`
option.

A `Distance` gives `pairwise(a, b)`, the `(N, M)` matrix between the rows of
`a` `(N, D)` and `b` `(M, D)`, and `pair(x, y)`, the values between matching
rows of `x` and `y` `(..., D)`. A subclass overrides either one (the other
follows from it); `is_similarity` tells the losses which way is closer.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import keras
from keras import ops

from keras_lossplus.losses.options import Component, component_or_choice
from keras_lossplus.ops import l2_normalize, paired_distances, pairwise_distances

Tensor = Any

DISTANCES = ("euclidean", "squared_euclidean", "cosine")
SIMILARITIES = ("cosine", "dot")

_BLOCK_ELEMENTS = 1 << 22
"""The largest `rows x columns x features` block the default `pairwise` and
`ManhattanDistance` build at once (16 MiB of float32)."""


def _register(cls: type) -> type:
    return keras.saving.register_keras_serializable(package="keras_lossplus")(cls)


class Distance(Component):
    """Base of the distances and similarities the metric-learning losses take.

    Override `pair(x, y)` (the value between matching rows, broadcasting, on
    the last axis) or `pairwise(a, b)` (the `(N, M)` matrix); register the
    subclass with `keras.saving.register_keras_serializable` and give it a
    `get_config` if its constructor takes arguments. A subclass that only
    overrides `pair` gets a `pairwise` built `rows x M x D` blocks at a time,
    whose backward pass keeps `N x M x D` values: override `pairwise` (or its
    gradient, as `ManhattanDistance` does) for `O(N M)` memory.

    Attributes:
        is_similarity: `True` when a larger value means closer (the
            similarity-based losses take these; the distance-based ones the
            others).
    """

    is_similarity = False

    def pair(self, x: Tensor, y: Tensor) -> Tensor:
        """Values between matching rows of `x` and `y` (`(..., D)` each)."""
        if type(self).pairwise is Distance.pairwise:
            raise NotImplementedError(f"{type(self).__name__} must override `pair` or `pairwise`.")
        return ops.diagonal(self.pairwise(x, y))

    def pairwise(self, a: Tensor, b: Tensor) -> Tensor:
        """The `(N, M)` values between the rows of `a` `(N, D)` and `b` `(M, D)`."""
        if type(self).pair is Distance.pair:
            raise NotImplementedError(f"{type(self).__name__} must override `pair` or `pairwise`.")
        rows = _block_rows(a, b)
        b = ops.expand_dims(b, 0)
        if rows is None:
            return self.pair(ops.expand_dims(a, 1), b)
        n = a.shape[0]
        parts = [self.pair(ops.expand_dims(a[s : min(s + rows, n)], 1), b) for s in range(0, n, rows)]
        return parts[0] if len(parts) == 1 else ops.concatenate(parts, axis=0)

    def __call__(self, a: Tensor, b: Tensor) -> Tensor:
        """`pairwise(a, b)` of tensors or arrays."""
        a = ops.convert_to_tensor(a)
        return self.pairwise(a, ops.convert_to_tensor(b, dtype=a.dtype))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


def _block_rows(a: Tensor, b: Tensor) -> Optional[int]:
    """Rows of `a` per block so that a block holds at most `_BLOCK_ELEMENTS`
    values; `None` for one block (or unknown shapes)."""
    n, m, dim = a.shape[0], b.shape[0], a.shape[-1]
    if n is None or m is None or dim is None or n * m * dim <= _BLOCK_ELEMENTS:
        return None
    return max(1, _BLOCK_ELEMENTS // (m * dim))


class _Named(Distance):
    """One of the distances the losses also take by name (`metric`)."""

    metric = "euclidean"

    def pair(self, x: Tensor, y: Tensor) -> Tensor:
        return paired_distances(x, y, self.metric)

    def pairwise(self, a: Tensor, b: Tensor) -> Tensor:
        return pairwise_distances(a, b, metric=self.metric)


def named_metric(distance: Any) -> Optional[str]:
    """The metric name (`"euclidean"`, ...) of a named distance whose
    `pairwise` is the built-in one, else `None`."""
    if isinstance(distance, _Named) and type(distance).pairwise is _Named.pairwise:
        return distance.metric
    return None


@_register
class EuclideanDistance(_Named):
    """The Euclidean distance `||a - b||` (`distance="euclidean"`).

    One `(N, D) x (D, M)` matmul; identical points are at distance 0 with
    gradient 0. pytorch-metric-learning's `LpDistance(normalize_embeddings=False)`.

    Examples:
        >>> d = EuclideanDistance()
        >>> keras.ops.convert_to_numpy(d([[0.0, 0.0]], [[3.0, 4.0], [0.0, 0.0]])).tolist()
        [[5.0, 0.0]]
    """

    metric = "euclidean"


@_register
class SquaredEuclideanDistance(_Named):
    """The squared Euclidean distance `||a - b||^2` (`distance="squared_euclidean"`).

    pytorch-metric-learning's `LpDistance(normalize_embeddings=False, power=2)`.

    Examples:
        >>> d = SquaredEuclideanDistance()
        >>> keras.ops.convert_to_numpy(d([[0.0, 0.0]], [[3.0, 4.0]])).tolist()
        [[25.0]]
    """

    metric = "squared_euclidean"


@_register
class CosineDistance(_Named):
    """The cosine distance `1 - cos(a, b)` (`distance="cosine"` of the
    distance-based losses); a zero vector is at distance 1 of all.

    Examples:
        >>> d = CosineDistance()
        >>> keras.ops.convert_to_numpy(d([[1.0, 0.0]], [[0.0, 2.0], [3.0, 0.0]])).tolist()
        [[1.0, 0.0]]
    """

    metric = "cosine"


@_register
class CosineSimilarity(Distance):
    """The cosine similarity `cos(a, b)` (`distance="cosine"` of the
    similarity-based losses); pytorch-metric-learning's `CosineSimilarity`.

    Examples:
        >>> s = CosineSimilarity()
        >>> keras.ops.convert_to_numpy(s([[1.0, 0.0]], [[0.0, 2.0], [3.0, 0.0]])).tolist()
        [[0.0, 1.0]]
    """

    is_similarity = True

    def pair(self, x: Tensor, y: Tensor) -> Tensor:
        return ops.sum(l2_normalize(x) * l2_normalize(y), axis=-1)

    def pairwise(self, a: Tensor, b: Tensor) -> Tensor:
        return ops.matmul(l2_normalize(a), ops.transpose(l2_normalize(b)))


@_register
class DotProductSimilarity(Distance):
    """The inner product `<a, b>` (`distance="dot"`); pytorch-metric-learning's
    `DotProductSimilarity`.

    Examples:
        >>> s = DotProductSimilarity()
        >>> keras.ops.convert_to_numpy(s([[1.0, 2.0]], [[3.0, 4.0]])).tolist()
        [[11.0]]
    """

    is_similarity = True

    def pair(self, x: Tensor, y: Tensor) -> Tensor:
        return ops.sum(x * y, axis=-1)

    def pairwise(self, a: Tensor, b: Tensor) -> Tensor:
        return ops.matmul(a, ops.transpose(b))


@_register
class ManhattanDistance(Distance):
    """The Manhattan (L1) distance `sum_k |a_k - b_k|`; pytorch-metric-learning's
    `LpDistance(p=1, normalize_embeddings=False)`.

    The matrix is built a block of features at a time and its gradient is
    written out (`sum_j g_ij sign(a_i - b_j)`, also blockwise), so forward
    and backward passes hold `O(N M)` values plus one block of at most
    `2**22` values, never `N x M x D`. The gradient at identical points is 0
    (the subgradient `sign(0) = 0`).

    Examples:
        >>> d = ManhattanDistance()
        >>> keras.ops.convert_to_numpy(d([[0.0, 0.0]], [[3.0, -4.0], [0.0, 0.0]])).tolist()
        [[7.0, 0.0]]
    """

    def pair(self, x: Tensor, y: Tensor) -> Tensor:
        return ops.sum(ops.abs(x - y), axis=-1)

    def pairwise(self, a: Tensor, b: Tensor) -> Tensor:
        b = ops.cast(b, a.dtype)
        return _manhattan(a, b)


def _feature_width(a: Tensor, b: Tensor) -> int:
    """Features per block: `n x m x width <= _BLOCK_ELEMENTS` (all of them
    when the batch sizes are unknown)."""
    n, m, dim = a.shape[0], b.shape[0], a.shape[-1]
    if n is None or m is None:
        return dim
    return max(1, min(dim, _BLOCK_ELEMENTS // max(n * m, 1)))


def _over_feature_blocks(a: Tensor, b: Tensor, init: Any, fn: Callable) -> Any:
    """`fn(a_block, b_block, carry) -> carry` over blocks of features, in a
    loop (one block alive at a time); the features are zero-padded to a
    whole number of blocks, which adds 0 to the distances and their
    gradients."""
    dim, width = a.shape[-1], _feature_width(a, b)
    steps = -(-dim // width)
    if steps == 1:
        return fn(a, b, init)
    pad = steps * width - dim
    if pad:
        a = ops.pad(a, [[0, 0], [0, pad]])
        b = ops.pad(b, [[0, 0], [0, pad]])
    n, m = ops.shape(a)[0], ops.shape(b)[0]

    def body(i, carry):
        start = i * width
        return fn(ops.slice(a, [0, start], [n, width]), ops.slice(b, [0, start], [m, width]), carry)

    return ops.fori_loop(0, steps, body, init)


def _signs(a: Tensor, b: Tensor) -> Tensor:
    return ops.sign(ops.expand_dims(a, 1) - ops.expand_dims(b, 0))


@ops.custom_gradient
def _manhattan(a: Tensor, b: Tensor) -> Tensor:
    zeros = ops.zeros((ops.shape(a)[0], ops.shape(b)[0]), a.dtype)

    def add(x, y, total):
        return total + ops.sum(ops.abs(ops.expand_dims(x, 1) - ops.expand_dims(y, 0)), axis=-1)

    total = _over_feature_blocks(a, b, zeros, add)

    def grad(*args: Any, upstream: Any = None) -> tuple:
        g = ops.expand_dims(args[0] if upstream is None else upstream, -1)
        dim, width = a.shape[-1], _feature_width(a, b)
        if -(-dim // width) == 1:
            s = _signs(a, b)
            return ops.sum(g * s, axis=1), -ops.sum(g * s, axis=0)
        steps = -(-dim // width)
        grads = (ops.zeros((ops.shape(a)[0], steps, width), a.dtype),
                 ops.zeros((ops.shape(b)[0], steps, width), a.dtype))
        pad = steps * width - dim
        ap = ops.pad(a, [[0, 0], [0, pad]]) if pad else a
        bp = ops.pad(b, [[0, 0], [0, pad]]) if pad else b
        n, m = ops.shape(ap)[0], ops.shape(bp)[0]

        def body(i, carry):
            ga, gb = carry
            start = i * width
            s = _signs(ops.slice(ap, [0, start], [n, width]), ops.slice(bp, [0, start], [m, width]))
            ga = ops.slice_update(ga, [0, i, 0], ops.expand_dims(ops.sum(g * s, axis=1), 1))
            gb = ops.slice_update(gb, [0, i, 0], ops.expand_dims(-ops.sum(g * s, axis=0), 1))
            return ga, gb

        ga, gb = ops.fori_loop(0, steps, body, grads)
        ga = ops.reshape(ga, (ops.shape(a)[0], steps * width))[:, :dim]
        gb = ops.reshape(gb, (ops.shape(b)[0], steps * width))[:, :dim]
        return ga, gb

    return total, grad


@_register
class CustomDistance(Distance):
    """A distance or similarity from a function.

    Args:
        fn: `fn(x, y) -> values` on matching rows (`(..., D)` each, last axis
            reduced, broadcasting), or with `pairwise=True`, `fn(a, b) ->
            (N, M)`. To save it with a model, register it with
            `keras.saving.register_keras_serializable`.
        is_similarity: `True` when a larger value means closer.
        pairwise: Whether `fn` computes the whole matrix.

    Examples:
        >>> def chebyshev(x, y):
        ...     return keras.ops.max(keras.ops.abs(x - y), axis=-1)
        >>> d = CustomDistance(chebyshev)
        >>> keras.ops.convert_to_numpy(d([[0.0, 0.0]], [[3.0, -4.0]])).tolist()
        [[4.0]]
    """

    def __init__(self, fn: Callable[[Tensor, Tensor], Tensor], is_similarity: bool = False,
                 pairwise: bool = False) -> None:
        if isinstance(fn, dict):
            fn = keras.saving.deserialize_keras_object(fn)
        if not callable(fn):
            raise TypeError(f"Argument `fn` must be a function of two tensors. Received: fn={fn!r}")
        self.fn = fn
        self.is_similarity = bool(is_similarity)
        self.whole = bool(pairwise)

    def pair(self, x: Tensor, y: Tensor) -> Tensor:
        if self.whole:
            return Distance.pair(self, x, y)
        return self.fn(x, y)

    def pairwise(self, a: Tensor, b: Tensor) -> Tensor:
        if self.whole:
            return self.fn(a, b)
        return Distance.pairwise(self, a, b)

    def get_config(self) -> dict:
        return {
            "fn": keras.saving.serialize_keras_object(self.fn),
            "is_similarity": self.is_similarity,
            "pairwise": self.whole,
        }


_BY_NAME = {
    False: {"euclidean": EuclideanDistance(), "squared_euclidean": SquaredEuclideanDistance(),
            "cosine": CosineDistance()},
    True: {"cosine": CosineSimilarity(), "dot": DotProductSimilarity()},
}


def resolve_distance(value: Any, similarity: bool = False) -> Distance:
    """The `Distance` a loss's `distance=` option stands for: the object
    itself, or the one a name is a shorthand for (`"euclidean"`,
    `"squared_euclidean"`, `"cosine"` for the distance-based losses,
    `"cosine"`, `"dot"` for the similarity-based ones, `similarity=True`).
    The option's check (`distance_option`) has already refused anything
    else; every loss calls this one function.

    Examples:
        >>> resolve_distance("cosine", similarity=True)
        CosineSimilarity()
    """
    if isinstance(value, Distance):
        return value
    return _BY_NAME[bool(similarity)][value]


def distance_option(similarity: bool = False) -> Callable[[str, Any], Any]:
    """The check of a `distance=` option: one of the names, a `Distance`
    whose `is_similarity` is `similarity`, or its saved config."""
    names = SIMILARITIES if similarity else DISTANCES
    base = component_or_choice(Distance, names)

    def check(name: str, value: Any) -> Any:
        value = base(name, value)
        if isinstance(value, Distance) and bool(value.is_similarity) != bool(similarity):
            want = "a similarity (is_similarity=True)" if similarity else "a distance (is_similarity=False)"
            raise ValueError(f"Argument `{name}` of this loss must be {want}. Received: {name}={value!r}")
        return value

    return check


distance = distance_option(similarity=False)
"""The `distance=` check of the distance-based losses."""

similarity = distance_option(similarity=True)
"""The `distance=` check of the similarity-based losses."""


def unit_vectors(x: Any) -> Any:
    """`x / ||x||` along the last axis; the zero vector stays zero (gradient
    0), and vectors of any size (up to float32's largest) are normalized
    without overflow: each is first divided by its largest absolute entry,
    held constant (the result is scale invariant, so the gradient is
    exact)."""
    x = ops.convert_to_tensor(x)
    peak = ops.stop_gradient(ops.max(ops.abs(x), axis=-1, keepdims=True))
    return l2_normalize(x / ops.where(peak > 0, peak, ops.ones_like(peak)))
