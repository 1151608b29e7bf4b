"""Inputs too large for a loss's squares (`keras_lossplus.losses.magnitude`):
refused eagerly with a `ValueError` naming the argument, clipped under
compilation with the gradient passed through."""

import numpy as np
import pytest

import keras
import keras_lossplus as klp
from keras_lossplus.losses.magnitude import check_magnitude, clip_magnitude, squares_bound
from tests.backend_utils import to_numpy
from tests.edge_grid import EAGER, as_tensor, compiled_value_and_grad

BOUND = squares_bound("float32")


def test_bound_leaves_room_for_sums_of_1e12_powers():
    largest = float(np.finfo("float32").max)
    assert BOUND ** 2 * 1e12 < largest < BOUND ** 2 * 1e13
    assert squares_bound("float32", power=4) ** 4 * 1e12 < largest
    assert squares_bound("float16") == BOUND  # half inputs are computed in float32
    assert squares_bound("float64") > 1e147


@pytest.mark.parametrize("bad,held", [
    ([1.0, 1e30], r"values of magnitude up to 1e\+30; this loss takes their squares"),
    ([-np.inf, 0.0], "infinite values; this loss takes their squares"),
])
def test_check_refuses_huge_or_infinite_values_naming_the_argument(bad, held):
    with pytest.raises(ValueError, match=rf"my_loss: `y_pred` holds {held} .* Do this\."):
        check_magnitude(as_tensor(bad), "y_pred", "my_loss: ", "Do this.")
    with pytest.raises(ValueError, match="`y_true`"):
        check_magnitude(np.asarray(bad, "float32"), "y_true")


def test_check_names_nan_as_nan():
    # issue 29: the message said "magnitude up to nan"
    with pytest.raises(ValueError, match=r"my_loss: `y_pred` holds NaN values \(1 of 3\)") as error:
        check_magnitude(as_tensor([1.0, np.nan, 1e30]), "y_pred", "my_loss: ", "Rescale.")
    assert "magnitude" not in str(error.value) and "Rescale." not in str(error.value)


def test_check_and_clip_take_a_loss_own_bound():
    check_magnitude(as_tensor([5.0, -5.0]), "y_pred", bound=5.0)
    with pytest.raises(ValueError, match=r"powers of 1.5, which overflow float32 beyond 5"):
        check_magnitude(as_tensor([5.5]), "y_pred", power=1.5, bound=5.0)
    np.testing.assert_array_equal(to_numpy(clip_magnitude(as_tensor([7.0, -1.0, -9.0]), bound=5.0)), [5.0, -1.0, -5.0])


def test_check_passes_values_within_the_bound_and_integers():
    check_magnitude(as_tensor([BOUND * 0.99, -1.0]), "y_pred")
    check_magnitude(keras.ops.convert_to_tensor([2_000_000_000], dtype="int32"), "y_pred")


def test_clip_gives_the_bound_in_value_and_the_identity_gradient_under_compilation():
    step = compiled_value_and_grad(lambda w, x: keras.ops.sum(w * clip_magnitude(x)))
    x = as_tensor([3.0, 1e30, -1e30])
    value, grad = step(as_tensor([1.0, 2.0, 3.0]), x)
    np.testing.assert_allclose(float(to_numpy(value)), 3.0 + 2.0 * BOUND - 3.0 * BOUND, rtol=1e-6)
    np.testing.assert_array_equal(to_numpy(grad), [1.0, 2.0, 3.0])


@pytest.mark.parametrize("loss", [
    klp.losses.ContrastiveLoss(), klp.losses.MMDLoss(), klp.losses.SinkhornLoss(),
    klp.losses.NPairLoss(), klp.losses.SoftNearestNeighborLoss(),
], ids=lambda loss: type(loss).__name__)
def test_quadratic_losses_refuse_huge_inputs_eagerly_and_stay_finite_compiled(loss):
    name = type(loss).__name__
    labels = np.array([0.0, 0.0, 1.0, 1.0], "float32")
    if name == "ContrastiveLoss":
        y_true, y_pred = np.array([1.0, 0.0, 1.0, 0.0], "float32"), np.array([1e30, 0.5, 2.0, 1e30], "float32")
    elif name in ("MMDLoss", "SinkhornLoss"):
        y_true, y_pred = np.eye(4, 2, dtype="float32"), 1e30 * np.eye(4, 2, k=1, dtype="float32")
    else:
        y_true, y_pred = labels, 1e30 * np.eye(4, 3, dtype="float32")
    with pytest.raises(ValueError, match="`y_pred` holds values of magnitude"):
        loss(as_tensor(y_true), as_tensor(y_pred))
    if not EAGER:
        value, grad = compiled_value_and_grad(lambda t, p: loss(t, p))(as_tensor(y_true), as_tensor(y_pred))
        assert np.isfinite(to_numpy(value)) and np.all(np.isfinite(to_numpy(grad)))


def test_normalized_embeddings_have_no_bound():
    labels = as_tensor([0.0, 0.0, 1.0, 1.0])
    huge = as_tensor(1e30 * np.eye(4, 3, dtype="float32") + 1e29)
    for loss in (klp.losses.NPairLoss(distance="cosine"), klp.losses.NPairLoss(normalize=True),
                 klp.losses.SoftNearestNeighborLoss(distance="cosine")):
        assert np.isfinite(to_numpy(loss(labels, huge)))


def test_contrastive_value_is_unchanged_below_the_bound():
    y_true, d = [1.0, 0.0, 1.0], [1e9, 0.25, 1e13]
    expected = np.mean([1e18, 0.75 ** 2, 1e26])
    np.testing.assert_allclose(float(to_numpy(klp.losses.ContrastiveLoss()(y_true, d))), expected, rtol=1e-6)
