"""Nash-MTL and IMTL against numpy references written from LibMTL's
`Nash_MTL.py` / `IMTL.py` (and LibMTL's own cvxpy solution, pasted): the
solvers, the combination, one compiled training step, saving, options.

Where LibMTL's first Nash-MTL step differs from ours (checked by running
LibMTL 1.1.5's `Nash_MTL.py`, commit 4336804 of
median-research-group/LibMTL, imported on its own with torch and cvxpy
1.9.3 / ECOS in a separate venv): LibMTL linearises the bargaining problem
at its starting weights `alpha_0 = 1` and minimises the linear objective
`c . alpha`, `c = G 1 + (1 + G (1 / (G 1))) / |G|_F` (`G` the normalised
`G G^T`), over `{alpha >= 0, alpha_i (G alpha)_i >= 1/|G|_F}`. That set's
recession cone is `{d >= 0, G d >= 0}`, so the subproblem is unbounded
exactly when the linear program `min c . d` over that cone (with
`sum d = 1`) is negative (`libmtl_recession_minimum` below, SciPy). If no
task's gradient opposes the sum (`(G 1)_k > 0` for all `k`) every term of
`c . d` is >= 0 there and `1 . d / |G|_F > 0`: bounded. With an opposing
task it can be unbounded; ECOS then reports "unbounded", cvxpy leaves
`alpha` unset, LibMTL's stop test ends the loop, and it keeps `alpha = 1`
(the plain sum of the task gradients, clipped). On 200 random problems
(T = 2-4, P = 6) ECOS's status and the sign of the linear program agreed
every time: 15 of the 41 problems with an opposing task were unbounded,
none of the 159 others. The statuses and LibMTL's weights for the pinned
cases are in `LIBMTL_NASH_FIRST_STEP`.
"""

import keras
import numpy as np
import pytest

import keras_lossplus as klp
from keras_lossplus import weighting
from keras_lossplus.multi_output.weighting.imtl import imtl_weights
from keras_lossplus.multi_output.weighting.nash_mtl import nash_weights
from tests.backend_utils import BACKEND, to_numpy, xla_compile
from tests.multi_output import references as ref
from tests.multi_output.helpers import JIT, LOSSES, WEIGHTS, build, data, weights_of
from tests.multi_output.test_gradient_steps import numpy_task_gradients, tiny_model

# LibMTL's `Nash_MTL._init_optim_problem` + `solve_optimization` copied as they are (cvxpy 1.9.3, ECOS,
# max_iters=100, optim_niter=20, its stop tests), fed LibMTL's normalised G G^T and normalization factor
# for these gradients at the first step (previous alpha = 1), run once in a separate venv with cvxpy:
# gradients -> alpha
LIBMTL_NASH = {
    "random": ([[0.13, -0.13, 0.64, 0.1, -0.54], [0.36, 1.3, 0.95, -0.7, -1.27], [-0.62, 0.04, -2.33, -0.22, -1.25]],
               [1.1795871971299052, 0.3633330801828767, 0.46675972260884735]),
    "conflicting": ([[1.0, 0.2], [-0.9, 0.3]], [2.701448640269868, 2.9039700261396963]),
    "scales": ([[2.0, 0.0, 1.0], [0.0, 0.5, 0.0], [1.0, 1.0, -1.0]],
               [0.4082482927119129, 1.6329931507936422, 0.4082482966996949]),
}


# LibMTL's `Nash_MTL.solve_optimization` at the first step (alpha_0 = 1), run as above:
# gradients -> (ECOS status of the first subproblem, the alpha LibMTL returns)
LIBMTL_NASH_FIRST_STEP = {
    "unbounded": ([[1.0, 0.0], [-1.1, 1.0]], "unbounded", [1.0, 1.0]),
    "opposing_but_bounded": ([[1.0, 0.0], [-1.1, 0.5]], "optimal", [3.340141634487528, 2.7643208285959435]),
}


def libmtl_recession_minimum(grads):
    """min c . d over {d >= 0, G d >= 0, sum d = 1} for LibMTL's first subproblem (see the module
    docstring): negative exactly where that subproblem is unbounded."""
    from scipy.optimize import linprog

    gram = np.asarray(grads, np.float64) @ np.asarray(grads, np.float64).T
    frobenius = np.linalg.norm(gram)
    normalized = gram / frobenius
    c = normalized.sum(1) + (1.0 + normalized @ (1.0 / normalized.sum(1))) / frobenius
    t = len(gram)
    result = linprog(c, A_ub=-gram, b_ub=np.zeros(t), A_eq=np.ones((1, t)), b_eq=[1.0], bounds=[(0, None)] * t)
    return result.fun


def built(strategy, num_tasks=2, prior=None):
    strategy.build_tasks(list("abcde"[:num_tasks]), prior or [1.0] * num_tasks)
    return strategy


def combine(strategy, grads, losses=None):
    grads = np.asarray(grads, "float32")
    losses = np.ones(len(grads), "float32") if losses is None else np.asarray(losses, "float32")
    return [to_numpy(t) for t in strategy.combine_gradients(grads, losses)]


# ------------------------------------------------------------------ Nash-MTL


@pytest.mark.parametrize("case", sorted(LIBMTL_NASH))
def test_nash_weights_match_libmtl_cvxpy(case):
    grads, expected = (np.asarray(v) for v in LIBMTL_NASH[case])
    gram = (grads @ grads.T).astype("float32")
    np.testing.assert_allclose(to_numpy(nash_weights(gram)), expected, rtol=2e-4)
    np.testing.assert_allclose(ref.nash_mtl_alpha(grads), expected, rtol=1e-5)


@pytest.mark.parametrize(
    "grads",
    [
        [[1.0, 0.0], [1.0, 0.05]],  # near-parallel (LibMTL's stop test ends at alpha = 1 here; see the class)
        [[1.0, 0.0], [-1.0, 0.05]],  # nearly opposite
        [[3e-4, 1.0, 2.0], [1e3, 0.0, 1.0], [0.5, -0.5, 0.1]],  # scales far apart
    ],
)
def test_nash_weights_solve_the_bargaining_equation(grads):
    grads = np.asarray(grads)
    gram = (grads @ grads.T).astype("float32")
    alpha = to_numpy(nash_weights(gram))
    np.testing.assert_allclose(alpha, ref.nash_mtl_alpha(grads), rtol=2e-3)


@pytest.mark.parametrize(
    "grads",
    [np.zeros((2, 3)), [[1.0, 2.0], [0.0, 0.0]], [[1.0, 1.0], [1.0, 1.0]], [[1e30, 0.0], [0.0, 1e-30]],
     [[1.0, 0.0], [-1.0, 0.0]]],  # exactly opposite: no Nash solution (LibMTL: infeasible, keeps alpha = 1)
)
def test_nash_degenerate_gradients_stay_finite(grads):
    direction, heads, logged = combine(built(weighting.NashMTL()), grads)
    assert np.all(np.isfinite(direction)) and np.all(np.isfinite(heads)) and np.all(heads > 0)
    assert np.linalg.norm(direction) <= 1.0 + 1e-5  # max_norm
    if not np.any(grads):
        np.testing.assert_allclose(heads, [1.0, 1.0])  # LibMTL keeps the previous (initial) weights


def test_nash_combination_clips_and_reuses_weights(rng):
    grads = rng.normal(size=(3, 7))
    strategy = built(weighting.NashMTL(update_weights_every=2, max_norm=0.5), 3, prior=[1.0, 0.5, 2.0])
    weighted = np.array([1.0, 0.5, 2.0])[:, None] * grads
    direction, heads, _ = combine(strategy, grads)
    expected, alpha = ref.nash_mtl_direction(weighted, max_norm=0.5)
    np.testing.assert_allclose(direction, expected, rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(heads, alpha * [1.0, 0.5, 2.0], rtol=1e-3)
    _, second, _ = combine(strategy, rng.normal(size=(3, 7)))  # step 1: not a multiple of 2, same weights
    np.testing.assert_allclose(second, heads, rtol=1e-6)
    _, third, _ = combine(strategy, rng.normal(size=(3, 7)))
    assert not np.allclose(third, heads)


@pytest.mark.parametrize("case", sorted(LIBMTL_NASH_FIRST_STEP))
def test_nash_first_step_where_libmtl_first_subproblem_is_unbounded(case):
    grads, status, libmtl_alpha = LIBMTL_NASH_FIRST_STEP[case]
    grads = np.asarray(grads)
    assert np.min(grads @ grads.sum(0)) < 0  # task a's gradient opposes the sum in both
    assert (libmtl_recession_minimum(grads) < 0) == (status == "unbounded")  # the criterion matches ECOS
    direction, heads, _ = combine(built(weighting.NashMTL(max_norm=0.0)), grads)
    expected = ref.nash_mtl_alpha(grads)
    np.testing.assert_allclose(heads, expected, rtol=2e-4)  # ours: the bargaining solution either way
    if status == "unbounded":  # LibMTL keeps alpha = 1: its first step raises task a's loss, ours lowers both
        np.testing.assert_allclose(libmtl_alpha, [1.0, 1.0])
        assert (grads @ (np.asarray(libmtl_alpha) @ grads))[0] < 0
        np.testing.assert_allclose(grads @ direction, 1.0 / expected, rtol=1e-3)  # every task gains 1 / alpha_k
    else:
        np.testing.assert_allclose(heads, libmtl_alpha, rtol=2e-4)


def test_libmtl_first_subproblem_is_bounded_without_an_opposing_task(rng):
    """The "only if" half of the module docstring's claim, on random gradients."""
    checked = 0
    for _ in range(40):
        grads = rng.normal(size=(int(rng.integers(2, 5)), 6))
        if np.min(grads @ grads.sum(0)) > 0:
            assert libmtl_recession_minimum(grads) > 0
            checked += 1
    assert checked >= 20


# ---------------------------------------------------------------------- IMTL


@pytest.mark.parametrize("num_tasks", [2, 3, 4])
def test_imtl_weights_match_libmtl_and_equalize_projections(rng, num_tasks):
    grads = rng.normal(size=(num_tasks, 6)) * rng.uniform(0.1, 10.0, size=(num_tasks, 1))
    alpha = to_numpy(imtl_weights((grads @ grads.T).astype("float32")))
    np.testing.assert_allclose(alpha, ref.imtl_alpha(grads), rtol=1e-3, atol=1e-5)
    update = ref.imtl_alpha(grads) @ grads
    projections = (grads / np.linalg.norm(grads, axis=1, keepdims=True)) @ update
    np.testing.assert_allclose(projections, projections[0], rtol=1e-6)  # IMTL-G's defining property


@pytest.mark.parametrize("grads", [np.zeros((2, 3)), [[1.0, 2.0], [0.0, 0.0]], [[1.0, 1.0], [1.0, 1.0]], [[1e30, 0.0], [0.0, 1e-30]]])
def test_imtl_degenerate_gradients_stay_finite(grads):
    strategy = built(weighting.IMTL())
    direction, heads, logged = combine(strategy, grads)
    own = to_numpy(strategy.own_gradients(keras.ops.ones((2,)))[id(strategy.loss_scale)])
    assert all(np.all(np.isfinite(t)) for t in (direction, heads, logged, own))


# ------------------------------------------------------- one training step


@pytest.mark.parametrize("method", ["nash_mtl", "imtl"])
def test_one_compiled_step_matches_libmtl(rng, method):
    """`train_on_batch` with SGD (compiled with XLA on JAX / TensorFlow)
    against LibMTL's backward on numpy task gradients of a linear model."""
    x = rng.normal(size=(8, 3)).astype("float32")
    y = {"a": rng.normal(size=(8, 1)).astype("float32"), "b": -rng.normal(size=(8, 1)).astype("float32")}
    model = tiny_model()
    lr = 0.5
    model.compile(keras.optimizers.SGD(lr), loss={"a": "mse", "b": "mse"}, weighting=method, jit_compile=JIT)
    W, ua, ub = [np.asarray(keras.ops.convert_to_numpy(v.value), np.float64) for v in model.trainable_variables[:3]]
    (gWa, gua), (gWb, gub) = numpy_task_gradients(x, y, W, ua, ub)
    shared = np.stack([gWa.ravel(), gWb.ravel()])
    losses = np.array([np.mean((x @ W @ u - y[k]) ** 2) for u, k in ((ua, "a"), (ub, "b"))])
    if method == "nash_mtl":
        direction, heads = ref.nash_mtl_direction(shared, max_norm=1.0)
    else:
        direction, heads, scale_grad = ref.imtl_step(shared, losses, np.zeros(2))
    model.train_on_batch(x, y)
    after = weights_of(model)
    np.testing.assert_allclose(after[0], W - lr * direction.reshape(W.shape), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(after[1], ua - lr * heads[0] * gua, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(after[2], ub - lr * heads[1] * gub, rtol=1e-4, atol=1e-5)
    if method == "imtl":  # the loss scales trained by the same SGD step
        np.testing.assert_allclose(to_numpy(model.loss_weighting.loss_scale.value), -lr * scale_grad, rtol=1e-4)
    else:
        np.testing.assert_allclose(to_numpy(model.loss_weighting.alpha.value), heads, rtol=1e-3)


@pytest.mark.skipif(BACKEND not in ("jax", "tensorflow"), reason="XLA compiles on JAX and TensorFlow only")
def test_solvers_compile_with_xla(rng):
    grads = rng.normal(size=(3, 8)).astype("float32")
    gram = grads @ grads.T
    np.testing.assert_allclose(to_numpy(xla_compile(nash_weights)(gram)), to_numpy(nash_weights(gram)), rtol=1e-5)
    np.testing.assert_allclose(to_numpy(xla_compile(imtl_weights)(gram)), to_numpy(imtl_weights(gram)), rtol=1e-5)


# ------------------------------------------------------- saving, fit, options


@pytest.mark.parametrize("strategy", [lambda: weighting.NashMTL(update_weights_every=3, max_norm=2.0), weighting.IMTL])
def test_state_and_options_survive_save_and_load(rng, tmp_path, strategy):
    x, y = data(rng)
    model = build(klp.MultiOutputModel)
    model.compile(keras.optimizers.SGD(0.05), loss=LOSSES, loss_weights=WEIGHTS, weighting=strategy(), jit_compile=JIT)
    history = model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.loss_weighting.get_config() == model.loss_weighting.get_config()
    for ours, theirs in zip(model.loss_weighting.weights, loaded.loss_weighting.weights):
        np.testing.assert_allclose(to_numpy(theirs.value), to_numpy(ours.value))
    assert any(np.any(to_numpy(v.value) != 0) for v in loaded.loss_weighting.weights)


def test_bad_options_raise_naming_the_argument():
    with pytest.raises(ValueError, match="update_weights_every"):
        weighting.NashMTL(update_weights_every=0)
    with pytest.raises(ValueError, match="max_norm"):
        weighting.NashMTL(max_norm=-1.0)
    with pytest.raises(ValueError, match="iterations"):
        weighting.NashMTL(iterations=0)
    with pytest.raises(ValueError, match="at least 2"):
        weighting.IMTL().build_tasks(["only"], [1.0])
