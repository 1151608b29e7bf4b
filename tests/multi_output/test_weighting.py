"""Each weighting strategy's update against a numpy re-computation on a tiny
problem (strategies used directly, outside a model)."""

import itertools

import keras
import numpy as np
import pytest

from keras_lossplus import weighting
from keras_lossplus.multi_output.weighting.solvers import min_norm_weights
from tests.backend_utils import BACKEND, to_numpy, value_and_grad, xla_compile
from tests.multi_output import references as ref


def build(strategy, names=("a", "b"), prior=None):
    strategy.build_tasks(list(names), prior or [1.0] * len(names))
    return strategy


def combine(strategy, grads, losses=None):
    grads = np.asarray(grads, "float32")
    losses = np.ones(len(grads), "float32") if losses is None else np.asarray(losses, "float32")
    return [to_numpy(t) for t in strategy.combine_gradients(grads, losses)]


# ------------------------------------------------------------------ PCGrad


def test_pcgrad_projects_two_conflicting_gradients():
    grads = np.array([[1.0, 0.0], [-1.0, 1.0]])
    direction, _, _ = combine(build(weighting.PCGrad(shuffle=False)), grads)
    # g1 - (g1.g2)/|g2|^2 g2 = [0.5, 0.5]; g2 - (g2.g1)/|g1|^2 g1 = [0, 1]
    np.testing.assert_allclose(direction, [0.5, 1.5], atol=1e-6)
    np.testing.assert_allclose(direction, ref.pcgrad(grads), atol=1e-6)


def test_pcgrad_no_conflict_is_the_weighted_sum():
    grads = np.array([[1.0, 2.0, 0.0], [0.5, 0.0, 1.0]])
    direction, heads, logged = combine(build(weighting.PCGrad(), prior=[1.0, 0.5]), grads)
    np.testing.assert_allclose(direction, grads[0] + 0.5 * grads[1], atol=1e-6)
    np.testing.assert_allclose(heads, [1.0, 0.5])
    np.testing.assert_allclose(logged, [1.0, 0.5])


def test_pcgrad_three_tasks_fixed_order_and_mean(rng):
    grads = rng.normal(size=(3, 7))
    direction, _, _ = combine(build(weighting.PCGrad(shuffle=False), "abc"), grads)
    np.testing.assert_allclose(direction, ref.pcgrad(grads), rtol=1e-5, atol=1e-6)
    direction, _, logged = combine(build(weighting.PCGrad(shuffle=False, reduction="mean"), "abc"), grads)
    np.testing.assert_allclose(direction, ref.pcgrad(grads) / 3, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(logged, [1 / 3] * 3, rtol=1e-6)


def test_pcgrad_shuffled_matches_one_of_the_orders(rng):
    grads = rng.normal(size=(3, 5))
    direction, _, _ = combine(build(weighting.PCGrad(seed=3), "abc"), grads)
    # every task sees the two others in one of two orders: 2^3 candidates
    import itertools

    candidates = []
    for orders in itertools.product([(0, 1, 2), (2, 1, 0)], repeat=3):
        total = 0
        for i, order in enumerate(orders):
            g = grads[i].copy()
            for j in order:
                if j != i and g @ grads[j] < 0:
                    g = g - (g @ grads[j]) / (grads[j] @ grads[j]) * grads[j]
            total = total + g
        candidates.append(total)
    assert min(np.abs(direction - c).max() for c in candidates) < 1e-5


# ---------------------------------------------------------------- GradNorm


def test_gradnorm_weight_update_matches_numpy(rng):
    strategy = build(weighting.GradNorm(alpha=1.5, learning_rate=0.05), "abc")
    grads = rng.normal(size=(3, 6)) * np.array([[1.0], [3.0], [0.2]])
    first, second = np.array([1.0, 2.0, 0.5]), np.array([0.5, 1.9, 0.4])
    direction, heads, _ = combine(strategy, grads, first)
    np.testing.assert_allclose(direction, grads.sum(0), rtol=1e-5)  # weights before the update: 1
    expected = ref.gradnorm_update([1, 1, 1], grads, first, first, 1.5, 0.05)
    np.testing.assert_allclose(strategy.task_weights.numpy(), expected, rtol=1e-5)
    direction, heads, _ = combine(strategy, grads, second)  # L(0) = first losses
    np.testing.assert_allclose(heads, expected, rtol=1e-5)
    np.testing.assert_allclose(direction, expected @ grads, rtol=1e-5)
    expected = ref.gradnorm_update(expected, grads, second, first, 1.5, 0.05)
    np.testing.assert_allclose(strategy.task_weights.numpy(), expected, rtol=1e-5)
    assert np.isclose(strategy.task_weights.numpy().sum(), 3.0)


# -------------------------------------------------------------------- DWA


def test_dwa_weights_from_two_epochs_of_losses():
    strategy = build(weighting.DWA(temperature=2.0), "abc", prior=[1.0, 1.0, 0.5])
    losses = np.ones(3, "float32")
    np.testing.assert_allclose(to_numpy(strategy.loss_weights(losses)[0]), [1.0, 1.0, 0.5])
    epoch1, epoch2 = [2.0, 1.0, 0.5], [1.0, 0.9, 0.5]
    strategy.on_epoch_end({"a_loss": epoch1[0], "b_loss": epoch1[1], "c_loss": epoch1[2]})
    np.testing.assert_allclose(to_numpy(strategy.loss_weights(losses)[0]), [1.0, 1.0, 0.5])  # one epoch only
    strategy.on_epoch_end({"a_loss": epoch2[0], "b_loss": epoch2[1], "c_loss": epoch2[2], "loss": 9.0})
    expected = np.array([1.0, 1.0, 0.5]) * ref.dwa_weights(epoch1, epoch2, 2.0)
    np.testing.assert_allclose(to_numpy(strategy.loss_weights(losses)[0]), expected, rtol=1e-5)
    with pytest.raises(KeyError, match="c_loss"):
        strategy.on_epoch_end({"a_loss": 1.0, "b_loss": 1.0})


# ------------------------------------------------------------ Uncertainty


@pytest.mark.parametrize("task_types", ["regression", "classification", {"a": "classification"}])
def test_uncertainty_objective_value_and_gradient(task_types):
    strategy = build(weighting.Uncertainty(task_types=task_types), prior=[1.0, 0.25])
    classification = {
        "regression": [False, False],
        "classification": [True, True],
    }.get(task_types if isinstance(task_types, str) else "", [True, False])
    s0 = strategy.log_variances.numpy()
    c = np.where(classification, 1.0, 0.5)
    np.testing.assert_allclose(c * np.exp(-s0), [1.0, 0.25], rtol=1e-6)  # initial weights = loss_weights
    losses = np.array([0.7, 2.0], "float32")
    s = np.array([0.3, -0.4], "float32")

    def objective(log_variances):  # the variable read inside a stateless scope, so gradients reach it
        with keras.StatelessScope(state_mapping=[(strategy.log_variances, log_variances)]):
            tensor = keras.ops.convert_to_tensor(losses)
            weights, regularizer = strategy.loss_weights(tensor)
        return keras.ops.sum(weights * tensor) + regularizer

    value, grad = value_and_grad(objective, s)
    expected_value, expected_grad = ref.uncertainty_objective(losses, s, classification)
    np.testing.assert_allclose(value, expected_value, rtol=1e-5)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-5)


# the string form infers each task's type from its resolved loss
_CLASSIFICATION = [
    "binary_crossentropy", "categorical_crossentropy", "sparse_categorical_crossentropy", "kld", "hinge",
    keras.losses.BinaryCrossentropy(from_logits=True), keras.losses.BinaryFocalCrossentropy(),
    keras.losses.CategoricalCrossentropy(), keras.losses.CategoricalFocalCrossentropy(),
    keras.losses.SparseCategoricalCrossentropy(from_logits=True), keras.losses.Hinge(), keras.losses.SquaredHinge(),
    keras.losses.CategoricalHinge(), keras.losses.KLDivergence(), keras.losses.binary_focal_crossentropy,
]
_REGRESSION = [
    "mse", "mae", "mape", "msle", "huber", "log_cosh", keras.losses.MeanSquaredError(), keras.losses.MeanAbsoluteError(),
    keras.losses.Huber(), keras.losses.LogCosh(), keras.losses.mean_squared_error,
]


def _ours(module, extra=()):
    return [getattr(module, n) for n in list(module.__all__) + list(extra)
            if isinstance(getattr(module, n), type) or n.endswith("_loss")]


def _instance(obj):
    from keras_lossplus.losses import ClassBalancedLoss

    if obj is ClassBalancedLoss:
        return obj(keras.losses.CategoricalCrossentropy(), [10, 5])
    return obj() if isinstance(obj, type) else obj


@pytest.mark.parametrize("kind", ["classification", "regression"])
def test_uncertainty_by_name_infers_task_types(kind):
    from keras_lossplus.losses import classification, ordinal, regression
    from keras_lossplus.multi_output.output_loss import resolve_loss

    ours = (_ours(classification) + [ordinal.CoralLoss, ordinal.CornLoss, ordinal.coral_loss, ordinal.corn_loss]
            if kind == "classification" else _ours(regression))
    specs = (_CLASSIFICATION if kind == "classification" else _REGRESSION) + ours
    losses = {f"t{i}": resolve_loss(_instance(spec)) for i, spec in enumerate(specs)}
    strategy = weighting.get("uncertainty", losses=losses)
    assert type(strategy) is weighting.Uncertainty
    assert strategy.task_types == {name: kind for name in losses}, [s for s in specs]


@pytest.mark.parametrize("spec", ["poisson", "cosine_similarity", "unknown_function"])
def test_uncertainty_by_name_refuses_an_unknown_loss(spec):
    from keras_lossplus.losses import TripletLoss
    from keras_lossplus.multi_output.output_loss import resolve_loss

    def unknown_function(y_true, y_pred):
        return y_pred

    loss = resolve_loss(unknown_function if spec == "unknown_function" else spec)
    losses = {"reg": resolve_loss("mse"), "odd": loss}
    with pytest.raises(ValueError, match=r"'odd'.*Uncertainty\(task_types="):
        weighting.get("uncertainty", losses=losses)
    with pytest.raises(ValueError, match="task_types"):
        weighting.get("uncertainty", losses={"emb": TripletLoss()})


def test_explicit_uncertainty_keeps_its_task_types():
    strategy = weighting.Uncertainty(task_types="regression")
    from keras_lossplus.multi_output.output_loss import resolve_loss

    assert weighting.get(strategy, losses={"c": resolve_loss("binary_crossentropy")}) is strategy
    assert strategy.task_types == "regression"
    assert type(weighting.get("dwa", losses={"c": resolve_loss("poisson")})) is weighting.DWA


# -------------------------------------------------------------------- RLW


def test_rlw_weights_are_a_scaled_softmax_and_seeded():
    one = build(weighting.RLW(seed=7), "abc", prior=[2.0, 1.0, 1.0])
    two = build(weighting.RLW(seed=7), "abc", prior=[2.0, 1.0, 1.0])
    draws = [to_numpy(one.loss_weights(np.ones(3, "float32"))[0]) for _ in range(3)]
    again = [to_numpy(two.loss_weights(np.ones(3, "float32"))[0]) for _ in range(3)]
    np.testing.assert_allclose(draws, again)  # same seed, same sequence
    assert not np.allclose(draws[0], draws[1])  # fresh weights each step
    for w in draws:
        softmax = w / np.array([2.0, 1.0, 1.0])
        np.testing.assert_allclose(softmax.sum(), 1.0, rtol=1e-5)
        assert (softmax > 0).all()
    np.testing.assert_allclose(to_numpy(one.loss_weights(np.ones(3), training=False)[0]), [2 / 3, 1 / 3, 1 / 3])


# ------------------------------------------------------------------- FAMO


def test_famo_weights_and_logit_updates_match_the_authors_adam():
    strategy = build(weighting.FAMO(learning_rate=0.1, gamma=0.01), "abc")
    losses = np.array([1.0, 4.0, 0.5], "float32")
    weights = to_numpy(strategy.loss_weights(losses)[0])
    z = np.full(3, 1 / 3)
    np.testing.assert_allclose(weights, z / (np.sum(z / losses) * losses), rtol=1e-5)
    logits, state = np.zeros(3), None
    steps = [([1.0, 4.0, 0.5], [0.9, 3.0, 0.5]), ([0.9, 3.0, 0.5], [0.85, 2.5, 0.45]), ([1.2, 2.0, 0.4], [1.0, 1.9, 0.41])]
    for old, new in steps:
        strategy.after_step(np.asarray(old, "float32"), np.asarray(new, "float32"))
        logits, state = ref.famo_logit_step(logits, old, new, state, lr=0.1, gamma=0.01)
        np.testing.assert_allclose(strategy.logits.numpy(), logits, rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------------ CAGrad


@pytest.mark.parametrize("num_tasks", [2, 3])
def test_cagrad_direction_matches_the_authors_scipy_solution(rng, num_tasks):
    grads = rng.normal(size=(num_tasks, 9))
    grads[1] = -0.6 * grads[0] + 0.3 * grads[1]  # a conflict
    direction, _, _ = combine(build(weighting.CAGrad(alpha=0.5), "abc"[:num_tasks]), grads)
    np.testing.assert_allclose(direction, ref.cagrad(grads, alpha=0.5), rtol=2e-3, atol=2e-4)


# ------------------------------------------------------------------- MGDA


def exact_min_norm(gram):
    """The min-norm point of the convex hull in float64, by enumerating every
    support S: the affine minimiser on S solves [[G_S, 1], [1^T, 0]] [a; l] =
    [0; 1] (least squares where the gradients are affinely dependent); it
    counts where a >= 0 and the KKT condition (G a)_k >= a^T G a holds for
    every task k. Returns the lowest (value, weights)."""
    gram = np.asarray(gram, np.float64)
    t = len(gram)
    best = (np.inf, None)
    for support in itertools.chain.from_iterable(itertools.combinations(range(t), r) for r in range(1, t + 1)):
        s = list(support)
        kkt = np.block([[gram[np.ix_(s, s)], np.ones((len(s), 1))], [np.ones((1, len(s))), np.zeros((1, 1))]])
        solution = np.linalg.lstsq(kkt, np.eye(len(s) + 1)[-1], rcond=None)[0]
        weights = np.zeros(t)
        weights[s] = solution[:-1]
        value = weights @ gram @ weights
        scale = max(np.max(np.diag(gram)), 1e-300)
        if weights.min() >= -1e-12 and np.min(gram @ weights) >= value - 1e-10 * scale and value < best[0]:
            best = (value, weights)
    return best


def check_min_norm(weights, gram, unique=True, atol=1e-6):
    """Simplex weights whose value is the exact minimum to 1e-7 of the largest squared norm
    (plus 3e-7 of the value: float32 weights) and, where the minimiser is unique, the exact
    weights to `atol`."""
    gram = np.asarray(gram, np.float64)
    value, expected = exact_min_norm(gram)
    assert np.all(np.isfinite(weights)) and weights.min() >= 0
    np.testing.assert_allclose(weights.sum(), 1.0, atol=1e-6)
    np.testing.assert_allclose(weights @ gram @ weights, value, atol=1e-7 * np.max(np.diag(gram)), rtol=3e-7)
    if unique:
        np.testing.assert_allclose(weights, expected, atol=atol)


_SOLVER = {}


def solve_min_norm(gram, compiled=False):
    """`min_norm_weights` eagerly, or compiled with XLA (one compiled function, one compilation per
    task count). On JAX always compiled: an eager `while_loop` compiles its body at every call."""
    gram = np.asarray(gram, "float32")
    if not (compiled or BACKEND == "jax"):
        return to_numpy(min_norm_weights(gram))
    if "f" not in _SOLVER:
        _SOLVER["f"] = xla_compile(min_norm_weights)
    return to_numpy(_SOLVER["f"](gram))


COMPILED = [False, True] if BACKEND == "tensorflow" else [False]  # JAX: compiled either way


@pytest.mark.parametrize("compiled", COMPILED)
def test_min_norm_weights_match_the_exact_solution(compiled):
    """Random full-rank problems (T = 2..8, unique minimiser, condition numbers 5-15) to 1e-6 in
    the weights; rank-deficient ones (T > P) in the value. Compiled on TensorFlow: T = 8; on JAX
    (always compiled, one compilation per T): T = 2, 3, 5, 8, the shapes the other tests reuse."""
    for num_tasks in [8] if compiled else [2, 3, 5, 8] if BACKEND == "jax" else range(2, 9):
        rng = np.random.default_rng(num_tasks)
        grads = rng.normal(size=(num_tasks, 2 * num_tasks + 4)) * rng.uniform(0.2, 2.0, size=(num_tasks, 1))
        grads[1] = -0.8 * grads[0] + 0.3 * grads[1]  # a conflict, so that the minimiser is inside a face
        gram = (grads @ grads.T).astype("float32")
        check_min_norm(solve_min_norm(gram, compiled), gram)
        low_rank = rng.normal(size=(num_tasks, 3)) + rng.normal(size=(1, 3))
        gram = (low_rank @ low_rank.T).astype("float32")
        check_min_norm(solve_min_norm(gram, compiled), gram, unique=False)


# gradients -> whether the minimiser is unique
DEGENERATE = {
    "issue_29": ([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], True),  # (0.5, 0.5, 0); Frank-Wolfe gave (0.4952, 0.5, 0.0047)
    "identical": ([[1.0, 2.0], [1.0, 2.0], [0.5, -1.0]], False),
    "zero_gradient": ([[1.0, 2.0], [0.0, 0.0], [3.0, 1.0]], True),
    "collinear": ([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0]], True),
    "opposing": ([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]], True),
    "opposing_lengths": ([[2.0, 0.0], [-1.0, 0.0], [0.0, 3.0]], True),
    "far_apart_scales": ([[1e-3, 0.0], [0.0, 1e-3], [1.0, 1.0]], True),
    "ties_around_origin": ([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0], [1.0, 1.0]], False),
    "many_in_a_plane": (np.random.default_rng(3).normal(size=(5, 2)) + [3.0, 1.0], True),
}


@pytest.mark.parametrize("compiled", COMPILED)
def test_min_norm_weights_on_degenerate_gradients(compiled):
    """Each case against the exact solution; compiled on TensorFlow: the three-task ones (one compilation)."""
    for grads, unique in DEGENERATE.values():
        grads = np.asarray(grads, np.float64)
        if compiled and BACKEND != "jax" and len(grads) != 3:
            continue
        gram = (grads @ grads.T).astype("float32")
        weights = solve_min_norm(gram, compiled)
        check_min_norm(weights, gram, unique)
    np.testing.assert_allclose(solve_min_norm(np.zeros((3, 3)), compiled), [1 / 3] * 3)  # all zero: uniform


# LibMTL 1.1.5's `MGDA._find_min_norm_element` (the authors' MinNormSolver: the best pair, then projected
# steps until the weights change by less than 1e-5), run once on these float32 gradients with torch 2.13:
LIBMTL_MGDA = (
    [[-1.4, -0.7, 1.4, -0.6, -0.7, 0.5], [-0.7, -0.7, 0.8, -0.3, 0.1, 1.1], [1.2, 0.9, 2.0, -0.4, -0.9, 1.8],
     [0.4, -0.3, -2.1, 1.1, 0.9, -0.7], [0.4, 0.9, -1.3, 0.8, 0.2, -0.9]],
    [0.013168447650969028, 0.49147528409957886, 0.04353613406419754, 2.358068513785838e-06, 0.45181772112846375],
)


def test_min_norm_weights_reach_the_min_norm_point_where_libmtl_stops_short():
    grads, libmtl = (np.asarray(v) for v in LIBMTL_MGDA)
    gram = grads @ grads.T
    value, expected = exact_min_norm(gram)
    np.testing.assert_allclose(libmtl @ gram @ libmtl, 0.12504, rtol=1e-4)  # LibMTL: value 0.125
    np.testing.assert_allclose(value, 0.066736, rtol=1e-4)  # the min-norm point: 0.0667
    np.testing.assert_allclose(solve_min_norm(gram), expected, atol=1e-6)


@pytest.mark.parametrize(
    "normalization, scale", [("none", 1e30), ("l2", 1.0), ("loss", 1e-30), ("loss+", 1.0)]
)
def test_mgda_min_norm_weights_of_the_normalized_gradients(rng, normalization, scale):
    """The authors' code: the weights solve the min-norm problem on the normalized (prior-weighted)
    gradients, the update sums the un-normalized ones with them. Gradients of 1e30 and 1e-30 (whose
    G G^T over- or underflows float32) give the weights of the same gradients at scale 1."""
    prior = np.array([1.0, 0.5, 2.0])
    grads = rng.normal(size=(3, 6)) * np.array([[1.0], [3.0], [0.2]])
    grads[2] = -grads[0] + 0.2 * grads[2]
    losses = np.array([0.5, 2.0, 1.5])
    weighted = prior[:, None] * grads
    divisor = {
        "none": np.ones(3),
        "l2": np.linalg.norm(weighted, axis=1),
        "loss": prior * losses,
        "loss+": prior * losses * np.linalg.norm(weighted, axis=1),
    }[normalization]
    normalized = weighted / divisor[:, None]
    _, expected = exact_min_norm(normalized @ normalized.T)
    strategy = build(weighting.MGDA(normalization=normalization), "abc", prior=list(prior))
    direction, heads, logged = combine(strategy, grads * scale, losses)
    np.testing.assert_allclose(heads, expected * prior, atol=1e-6)
    np.testing.assert_allclose(logged, heads)
    np.testing.assert_allclose(direction, expected @ weighted * scale, rtol=1e-5, atol=1e-6 * scale)


@pytest.mark.skipif(BACKEND not in ("jax", "tensorflow"), reason="XLA compiles on JAX and TensorFlow only")
@pytest.mark.parametrize("name", ["pcgrad", "cagrad", "mgda"])
def test_gradient_combination_compiles_with_xla(rng, name):
    strategy = build(weighting.get(name), "abc")
    grads = rng.normal(size=(3, 8)).astype("float32")
    eager = to_numpy(strategy.combine_gradients(grads, np.ones(3, "float32"))[0])
    if name == "pcgrad":  # random order: compare the no-shuffle version
        strategy = build(weighting.PCGrad(shuffle=False), "abc")
        eager = to_numpy(strategy.combine_gradients(grads, np.ones(3, "float32"))[0])
    compiled = xla_compile(lambda g: strategy.combine_gradients(g, keras.ops.ones((3,)))[0])
    np.testing.assert_allclose(to_numpy(compiled(grads)), eager, rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------ bad input


def test_unknown_name_and_bad_options_raise():
    with pytest.raises(ValueError, match="weighting"):
        weighting.get("softmax")
    with pytest.raises(ValueError, match="temperature"):
        weighting.DWA(temperature=0.0)
    with pytest.raises(ValueError, match="task_types"):
        weighting.Uncertainty(task_types="ordinal")
    with pytest.raises(ValueError, match="reduction"):
        weighting.PCGrad(reduction="max")
    with pytest.raises(ValueError, match="normalization"):
        weighting.MGDA(normalization="l1")
    with pytest.raises(ValueError, match="at least 2"):
        weighting.PCGrad().build_tasks(["only"], [1.0])
    with pytest.raises(ValueError, match="positive"):
        weighting.Uncertainty().build_tasks(["a", "b"], [1.0, 0.0])


@pytest.mark.parametrize("name", ["static", "uncertainty", "dwa", "rlw", "famo", "gradnorm", "pcgrad", "cagrad", "mgda", "nash_mtl", "imtl"])
def test_config_round_trip(name):
    strategy = weighting.get(name)
    restored = weighting.get(keras.saving.serialize_keras_object(strategy))
    assert type(restored) is type(strategy)
    assert restored.get_config() == strategy.get_config()
