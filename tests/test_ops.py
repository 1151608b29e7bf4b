"""keras_lossplus.ops against numpy, with gradients at the points where the
textbook formulas break (zero vectors, identical points, empty masks)."""

import keras
import numpy as np
import pytest

from keras_lossplus import ops as K
from tests.backend_utils import BACKEND, XLA_BACKENDS, to_numpy, value_and_grad, xla_compile


def np_distances(x, y, metric):
    diff = x[:, None, :].astype("float64") - y[None, :, :]
    sq = (diff**2).sum(-1)
    if metric == "squared_euclidean":
        return sq
    if metric == "euclidean":
        return np.sqrt(sq)
    nx = np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    ny = np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)
    return np.maximum(1 - (x / nx) @ (y / ny).T, 0)


@pytest.fixture
def points(rng):
    x = rng.normal(size=(6, 4)).astype("float32")
    x[3] = x[1]  # two identical points
    x[5] = 0.0  # a zero vector
    return x


def test_safe_norm_and_sqrt_values_and_zero_gradient(rng):
    x = rng.normal(size=(5, 3)).astype("float32")
    x[2] = 0.0
    np.testing.assert_allclose(to_numpy(K.safe_norm(x)), np.linalg.norm(x, axis=-1), rtol=1e-6)
    np.testing.assert_allclose(to_numpy(K.safe_norm(x, axis=0, keepdims=True)), np.linalg.norm(x, axis=0, keepdims=True), rtol=1e-6)
    _, grad = value_and_grad(lambda v: keras.ops.sum(K.safe_norm(v)), x)
    assert np.all(np.isfinite(grad))
    np.testing.assert_array_equal(grad[2], 0.0)
    np.testing.assert_allclose(grad[0], x[0] / np.linalg.norm(x[0]), rtol=1e-5)
    _, g = value_and_grad(lambda v: keras.ops.sum(K.safe_sqrt(v)), np.array([0.0, 4.0], "float32"))
    np.testing.assert_allclose(g, [0.0, 0.25])


def test_safe_pow_gradient_is_finite_at_zero():
    x = np.array([0.0, 0.25, 1.0], "float32")
    for exponent in (0.0, 0.5, 2.0, 2.5, 7.0):
        value, grad = value_and_grad(lambda v: keras.ops.sum(K.safe_pow(v, exponent)), x)
        np.testing.assert_allclose(value, np.sum(x.astype("float64") ** exponent), rtol=1e-6)
        assert np.all(np.isfinite(grad))
        np.testing.assert_allclose(grad[1:], exponent * x[1:] ** (exponent - 1), rtol=1e-5)


@pytest.mark.parametrize("metric", ["euclidean", "squared_euclidean", "cosine"])
def test_pairwise_distances_match_numpy(points, metric, rng):
    expected = np_distances(points, points, metric)
    np.fill_diagonal(expected, 0.0)  # identical points are at distance exactly 0
    expected[1, 3] = expected[3, 1] = 0.0  # a point is at distance 0 of itself, the zero vector too
    np.testing.assert_allclose(to_numpy(K.pairwise_distances(points, metric=metric)), expected, rtol=1e-5, atol=2e-5)
    other = rng.normal(size=(3, 4)).astype("float32")
    np.testing.assert_allclose(to_numpy(K.pairwise_distances(points, other, metric=metric)),
                               np_distances(points, other, metric), rtol=1e-5, atol=2e-5)
    d = to_numpy(K.pairwise_distances(points, metric=metric))
    np.testing.assert_array_equal(np.diag(d), 0.0)


@pytest.mark.parametrize("metric", ["euclidean", "squared_euclidean", "cosine"])
def test_pairwise_distance_gradient_finite_at_identical_points(points, metric):
    value, grad = value_and_grad(lambda v: keras.ops.sum(K.pairwise_distances(v, metric=metric)), points)
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    if metric != "cosine":
        # numpy gradient of sum_ij d(x_i, x_j), identical pairs contributing 0
        diff = points[:, None, :].astype("float64") - points[None, :, :]
        dist = np.sqrt((diff**2).sum(-1))
        if metric == "euclidean":
            unit = np.divide(diff, dist[..., None], out=np.zeros_like(diff), where=dist[..., None] > 0)
            expected = 2 * unit.sum(1)
        else:
            expected = 4 * diff.sum(1)
        np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-4)


def test_all_identical_points_give_zero_distance_and_gradient():
    x = np.ones((4, 3), "float32")
    value, grad = value_and_grad(lambda v: keras.ops.sum(K.pairwise_distances(v)), x)
    assert value == 0.0
    np.testing.assert_array_equal(grad, 0.0)


def test_pairwise_distances_bad_arguments(points):
    with pytest.raises(ValueError, match="metric"):
        K.pairwise_distances(points, metric="manhattan")
    with pytest.raises(ValueError, match="2-D"):
        K.pairwise_distances(points[0])


def test_label_masks():
    labels = np.array([3, 1, 3, 2, 1])
    same = to_numpy(K.same_label_mask(labels))
    diff = to_numpy(K.different_label_mask(labels.reshape(-1, 1)))
    eq = labels[:, None] == labels[None, :]
    np.testing.assert_array_equal(same, eq & ~np.eye(5, dtype=bool))
    np.testing.assert_array_equal(diff, ~eq)
    other = np.array([1, 2])
    np.testing.assert_array_equal(to_numpy(K.same_label_mask(labels, other)), labels[:, None] == other[None, :])
    np.testing.assert_array_equal(to_numpy(K.same_label_mask(labels.astype("float32"))), same)


def _masked_case(rng):
    x = rng.normal(size=(4, 5)).astype("float32") * 10
    mask = rng.uniform(size=(4, 5)) < 0.5
    mask[2] = False  # a row with no valid entry
    mask[0, 0] = True
    return x, mask


def test_masked_reductions_match_numpy(rng):
    x, mask = _masked_case(rng)
    rows = mask.any(1)
    for fn, npfn in ((K.masked_max, np.max), (K.masked_min, np.min)):
        got = to_numpy(fn(x, mask, axis=1))
        expected = [npfn(x[i][mask[i]]) if rows[i] else 0.0 for i in range(4)]
        np.testing.assert_allclose(got, expected, rtol=1e-6)
    lse = to_numpy(K.masked_logsumexp(x, mask, axis=1))
    expected = [np.log(np.exp(x[i][mask[i]].astype("float64")).sum()) if rows[i] else 0.0 for i in range(4)]
    np.testing.assert_allclose(lse, expected, rtol=1e-5)
    mean = to_numpy(K.masked_mean(x, mask, axis=1))
    expected = [x[i][mask[i]].mean() if rows[i] else 0.0 for i in range(4)]
    np.testing.assert_allclose(mean, expected, rtol=1e-5, atol=1e-6)
    assert to_numpy(K.masked_max(x, mask, axis=1, keepdims=True)).shape == (4, 1)


@pytest.mark.parametrize("name", ["masked_max", "masked_min", "masked_logsumexp", "masked_mean"])
def test_masked_reduction_gradients_are_finite_and_zero_off_mask(name, rng):
    x, mask = _masked_case(rng)
    x[1] = 1e4  # large values must not overflow the log-sum-exp
    fn = getattr(K, name)
    value, grad = value_and_grad(lambda v: keras.ops.sum(fn(v, mask, axis=1)), x)
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    np.testing.assert_array_equal(grad[~mask], 0.0)


def test_compute_dtype():
    assert K.compute_dtype("float16") == "float32"
    assert K.compute_dtype("bfloat16") == "float32"
    assert K.compute_dtype("float64") == "float64"


if BACKEND in XLA_BACKENDS:

    def test_ops_compile_with_xla(points, rng):
        x, mask = _masked_case(rng)

        def everything(p, v, m):
            return (keras.ops.sum(K.pairwise_distances(p)) + keras.ops.sum(K.masked_logsumexp(v, m))
                    + keras.ops.sum(K.masked_max(v, m)) + keras.ops.sum(K.safe_norm(p)))

        np.testing.assert_allclose(to_numpy(xla_compile(everything)(points, x, mask)),
                                   to_numpy(everything(points, x, mask)), rtol=1e-5)


@pytest.mark.parametrize("kind", ["random", "rank_one", "zero", "diagonal_ties", "two_by_two", "larger"])
def test_jacobi_eigh_matches_numpy(kind):
    """`jacobi_eigh` (Aligned-MTL's eigendecomposition on JAX) against
    `numpy.linalg.eigh`: eigenvalues to float32 rounding of the matrix, and
    eigenvectors that diagonalise it, on full-rank, rank-deficient, zero,
    tied, 2 x 2 and 6 x 6 symmetric matrices."""
    rng = np.random.default_rng(3)
    g = rng.normal(size=(3, 7))
    if kind == "rank_one":
        g = np.outer([1.0, -2.0, 0.5], rng.normal(size=7))
    elif kind == "zero":
        g = np.zeros((3, 7))
    elif kind == "two_by_two":
        g = rng.normal(size=(2, 5))
    elif kind == "larger":
        g = rng.normal(size=(6, 9))
    m = (g @ g.T).astype("float32")
    if kind == "diagonal_ties":
        m = np.diag([2.0, 2.0, 1.0]).astype("float32")
    values, vectors = (to_numpy(t) for t in K.jacobi_eigh(m))
    scale = max(float(np.abs(m).max()), 1.0)
    np.testing.assert_allclose(values, np.linalg.eigh(m.astype("float64"))[0], atol=2e-6 * scale)
    np.testing.assert_allclose(vectors.T @ m @ vectors, np.diag(values), atol=2e-6 * scale)
    np.testing.assert_allclose(vectors.T @ vectors, np.eye(len(m)), atol=2e-6)
