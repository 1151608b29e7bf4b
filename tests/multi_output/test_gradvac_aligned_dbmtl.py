"""GradVac, Aligned-MTL and DB-MTL against numpy re-implementations of
LibMTL's code (tests/multi_output/references.py): the combination itself,
one compiled training step, the state saved with the model, bad options."""

import keras
import numpy as np
import pytest

import keras_lossplus as klp
from keras_lossplus import weighting
from tests.backend_utils import BACKEND, to_numpy, xla_compile
from tests.multi_output import references as ref
from tests.multi_output.helpers import JIT
from tests.multi_output.test_gradient_steps import numpy_task_gradients, tiny_model


def build(strategy, names="abc"):
    strategy.build_tasks(list(names), [1.0] * len(names))
    return strategy


def combine(strategy, grads, losses=None):
    losses = np.ones(len(grads), "float32") if losses is None else np.asarray(losses, "float32")
    return [to_numpy(t) for t in strategy.combine_gradients(np.asarray(grads, "float32"), losses)]


def test_gradvac_two_steps_match_libmtl(rng):
    grads = [rng.normal(size=(3, 6)) for _ in range(2)]
    strategy = build(weighting.GradVac(beta=0.5, shuffle=False))
    rho = np.zeros((3, 3))
    for g in grads:  # the second step starts from non-zero target cosines
        expected, rho = ref.gradvac(g, rho, beta=0.5)
        direction, heads, _ = combine(strategy, g)
        np.testing.assert_allclose(direction, expected, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(to_numpy(strategy.target_cosines), rho, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(heads, 1.0)


def test_gradvac_shuffled_matches_one_of_the_orders(rng):
    g = rng.normal(size=(3, 5))
    direction, _, _ = combine(build(weighting.GradVac(seed=2)), g)
    # the first step has phi = 0: any order is PCGrad's; check against LibMTL in every order
    orders = [(0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)]
    assert min(np.abs(direction - ref.gradvac(g, np.zeros((3, 3)), order=o)[0]).max() for o in orders) < 1e-4


@pytest.mark.parametrize("kind", ["full_rank", "rank_one", "zero"])
def test_aligned_mtl_matches_libmtl_and_stays_finite(rng, kind):
    g = rng.normal(size=(3, 6))
    if kind == "rank_one":
        g = np.outer([1.0, -2.0, 0.5], rng.normal(size=6))
    if kind == "zero":
        g = np.zeros((3, 6))
    direction, heads, logged = combine(build(weighting.AlignedMTL()), g)
    assert np.all(np.isfinite(direction)) and np.all(np.isfinite(logged))
    if kind == "zero":  # LibMTL fails (rank 0); we give weights 0
        np.testing.assert_array_equal(direction, 0.0)
        return
    alpha, expected = ref.aligned_mtl(g)
    np.testing.assert_allclose(logged, alpha, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(direction, expected, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(heads, 1.0)


def test_db_mtl_three_steps_match_libmtl(rng):
    strategy = build(weighting.DBMTL(beta=0.9, beta_sigma=0.5))
    buffer = np.zeros((3, 4))
    for step in (1, 2, 3):
        g, losses = rng.normal(size=(3, 4)), rng.uniform(0.1, 3.0, size=3)
        expected, buffer = ref.db_mtl(g, losses, buffer, step, beta=0.9, beta_sigma=0.5)
        direction, heads, _ = combine(strategy, g, losses)
        np.testing.assert_allclose(direction, expected, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(heads, 1.0 / (losses + 1e-8), rtol=1e-5)
    np.testing.assert_allclose(to_numpy(strategy.gradient_average), buffer, rtol=1e-4, atol=1e-6)
    assert float(to_numpy(strategy.step)) == 3.0


@pytest.mark.skipif(BACKEND not in ("jax", "tensorflow"), reason="XLA compiles on JAX and TensorFlow only")
def test_aligned_mtl_compiles_with_xla(rng):
    strategy = build(weighting.AlignedMTL())
    g = rng.normal(size=(3, 8)).astype("float32")
    compiled = xla_compile(lambda x: strategy.combine_gradients(x, keras.ops.ones((3,)))[0])
    np.testing.assert_allclose(to_numpy(compiled(g)), ref.aligned_mtl(g)[1], rtol=1e-3, atol=1e-4)


STRATEGIES = {
    "gradvac": lambda: weighting.GradVac(shuffle=False),
    "aligned_mtl": lambda: "aligned_mtl",
    "db_mtl": lambda: "db_mtl",
}


@pytest.mark.parametrize("method", sorted(STRATEGIES))
def test_one_compiled_step_matches_libmtl(rng, method):
    x = rng.normal(size=(8, 3)).astype("float32")
    y = {"a": rng.normal(size=(8, 1)).astype("float32"), "b": -rng.normal(size=(8, 1)).astype("float32")}
    model = tiny_model()
    model.compile(keras.optimizers.SGD(0.5), loss={"a": "mse", "b": "mse"}, weighting=STRATEGIES[method](), jit_compile=JIT)
    W, ua, ub = [np.asarray(keras.ops.convert_to_numpy(v.value), np.float64) for v in model.trainable_variables]
    (gWa, gua), (gWb, gub) = numpy_task_gradients(x, y, W, ua, ub)
    shared = np.stack([gWa.ravel(), gWb.ravel()])
    losses = np.array([np.mean((x @ W @ u - y[k]) ** 2) for u, k in ((ua, "a"), (ub, "b"))])
    heads = np.ones(2)
    if method == "gradvac":
        direction = ref.gradvac(shared, np.zeros((2, 2)))[0]
    elif method == "aligned_mtl":
        direction = ref.aligned_mtl(shared)[1]
    else:
        direction = ref.db_mtl(shared, losses, np.zeros_like(shared), 1)[0]
        heads = 1.0 / (losses + 1e-8)
    model.train_on_batch(x, y)
    W1, ua1, ub1 = [np.asarray(keras.ops.convert_to_numpy(v.value)) for v in model.trainable_variables]
    np.testing.assert_allclose(W1, W - 0.5 * direction.reshape(W.shape), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ua1, ua - 0.5 * heads[0] * gua, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ub1, ub - 0.5 * heads[1] * gub, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("method", ["gradvac", "db_mtl"])
def test_state_is_saved_with_the_model(rng, tmp_path, method):
    x = rng.normal(size=(16, 3)).astype("float32")
    y = {"a": rng.normal(size=(16, 1)).astype("float32"), "b": rng.normal(size=(16, 1)).astype("float32")}
    model = tiny_model()
    model.compile(keras.optimizers.SGD(0.1), loss={"a": "mse", "b": "mse"}, weighting=method, jit_compile=JIT)
    history = model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded.loss_weighting) is type(model.loss_weighting)
    names = {"gradvac": ["target_cosines"], "db_mtl": ["step", "gradient_average"]}[method]
    for name in names:
        saved = to_numpy(getattr(model.loss_weighting, name))
        assert np.any(saved != 0)
        np.testing.assert_allclose(to_numpy(getattr(loaded.loss_weighting, name)), saved)


def test_bad_options_raise():
    with pytest.raises(ValueError, match="beta"):
        weighting.GradVac(beta=1.5)
    with pytest.raises(ValueError, match="shuffle"):
        weighting.GradVac(shuffle="yes")
    with pytest.raises(ValueError, match="beta_sigma"):
        weighting.DBMTL(beta_sigma=-1.0)
    with pytest.raises(ValueError, match="beta"):
        weighting.DBMTL(beta=-0.1)
    with pytest.raises(ValueError, match="at least 2"):
        weighting.AlignedMTL().build_tasks(["only"], [1.0])


@pytest.mark.parametrize("name", ["gradvac", "aligned_mtl", "db_mtl"])
def test_config_round_trip(name):
    strategy = weighting.get(name)
    restored = weighting.get(keras.saving.serialize_keras_object(strategy))
    assert type(restored) is type(strategy) and restored.get_config() == strategy.get_config()
