"""The edge-case grid (issue 18): every public class of `klp.losses`,
`klp.layers` and `klp.weighting` (enumerated from `__all__`, so a new class
cannot be forgotten) gives a finite value and gradient at every edge case
of its input kind, under compilation, on float32, float16 and bfloat16
inputs and on a batch of one. The table and the input makers are in
`tests/edge_grid.py`; one compiled function per (class, shape, dtype)
serves every edge case of that shape."""

import pathlib

import pathlib

import numpy as np
import pytest

import keras
import keras_lossplus as klp
from tests.backend_utils import to_numpy
from tests.edge_grid import (
    ALL_CLASSES, HALF, LAYER_KINDS, LOSS_KINDS, OWN_SUITES, REFUSED, REFUSED_BY_LAYERS, TASK_LOSSES, TASKS,
    WEIGHTING_KINDS, GridRun, as_tensor, build_layer, check, compiled_value_and_grad, contract_cases, layer_edges, layer_function,
    loss_edges, make_layer, task_gradients,
)

CASES = contract_cases()
FIRST_CASE = {}
for _case in CASES:
    FIRST_CASE.setdefault(_case.cls, _case)


def assert_finite(failures):
    assert not failures, "\n".join(map(str, failures))


def _id(cls):
    return cls.__name__


def test_every_public_class_has_an_entry_in_the_table():
    assert len(ALL_CLASSES["losses"]) >= 46 and len(ALL_CLASSES["layers"]) >= 17
    assert len(ALL_CLASSES["weighting"]) >= 11
    for family, table in (("losses", LOSS_KINDS), ("layers", LAYER_KINDS), ("weighting", WEIGHTING_KINDS)):
        missing = {c.__name__ for c in ALL_CLASSES[family]} - set(table)
        assert not missing, f"public {family} without an entry in tests/edge_grid.py: {sorted(missing)}"
        stale = set(table) - {c.__name__ for c in ALL_CLASSES[family]}
        assert not stale, f"entries of tests/edge_grid.py that are no public {family}: {sorted(stale)}"
    assert set(REFUSED) <= set(LOSS_KINDS) and set(REFUSED_BY_LAYERS) <= set(LAYER_KINDS)
    without_case = [c.__name__ for c in ALL_CLASSES["losses"] if c not in FIRST_CASE]
    assert not without_case, f"public losses without a contract LossCase: {without_case}"


def test_losses_with_their_own_suite_have_it():
    """The losses left out of the grid (`OWN_SUITES`) are public, have their
    own test module, and are saved through a public layer."""
    root = pathlib.Path(__file__).resolve().parent.parent
    for name, (module, layer) in OWN_SUITES.items():
        assert name in klp.losses.__all__ and (root / module).is_file(), (name, module)
        assert layer in klp.layers.__all__, f"{name} is saved through klp.layers.{layer}, which is not public"


# ------------------------------------------------------------------ losses


@pytest.mark.parametrize("cls", ALL_CLASSES["losses"], ids=_id)
def test_loss_is_finite_at_every_edge_case(cls, rng):
    case = FIRST_CASE[cls]
    loss = case.make()
    y_true, y_pred = case.make_inputs(rng)
    edges = loss_edges(case, y_true, y_pred)
    grid = GridRun(cls.__name__, compiled_value_and_grad(lambda yt, yp, sw: loss(yt, yp, sample_weight=sw)))
    by_shape = {}
    for name, (t, p) in edges.items():
        by_shape.setdefault((t.shape, p.shape), []).append((name, t, p))
    for group in by_shape.values():
        batch = group[0][2].shape[0]
        ones = as_tensor(np.ones((batch,), "float32"))
        for name, t, p in group:
            grid.run(name, "float32", as_tensor(t), as_tensor(p), ones)
        name, t, p = group[0]
        grid.run(f"{name}+all_sample_weights_zero", "float32", as_tensor(t), as_tensor(p), ones * 0.0)
    # a batch of one (a new shape: one more compilation)
    for name, t, p in next(iter(by_shape.values())):
        grid.run(f"{name}+batch_of_1", "float32", as_tensor(t[:1]), as_tensor(p[:1]), as_tensor(np.ones((1,))))
    # half precision predictions (one compilation per dtype)
    for dtype in HALF:
        for name, t, p in next(iter(by_shape.values())):
            grid.half(name, dtype, as_tensor(t), p, as_tensor(np.ones((p.shape[0],))))
    assert_finite(grid.problems())


@pytest.mark.parametrize("cls,case,argument", [(c, k, a) for c, cases in REFUSED.items() for k, a in cases.items()])
def test_refused_inputs_are_refused_eagerly_naming_the_argument(cls, case, argument, rng):
    """On every backend, eagerly: the listed edge cases raise a
    `ValueError` naming the argument (under compilation the grid above
    checks that they are finite)."""
    loss_cls = getattr(klp.losses, cls)
    loss_case = FIRST_CASE[loss_cls]
    edges = loss_edges(loss_case, *loss_case.make_inputs(rng))
    t, p = edges[case]
    with pytest.raises(ValueError, match=f"`{argument}` holds values of magnitude"):
        loss_case.make()(as_tensor(t), as_tensor(p))


# ------------------------------------------------------------------ layers

LAYERS = [c for c in ALL_CLASSES["layers"] if LAYER_KINDS[c.__name__] != "abstract"]


def test_abstract_layers_and_strategies_are_not_usable_as_is():
    x = as_tensor(np.ones((2, 3)))
    for cls in (c for c in ALL_CLASSES["layers"] if LAYER_KINDS[c.__name__] == "abstract"):
        with pytest.raises(NotImplementedError):
            cls()(x)
    for cls in (c for c in ALL_CLASSES["weighting"] if WEIGHTING_KINDS[c.__name__] == "abstract"):
        strategy = cls()
        strategy.build_tasks(TASKS, [1.0] * 3)
        if issubclass(cls, klp.weighting.GradientStrategy):
            with pytest.raises(NotImplementedError):
                strategy.combine_gradients(as_tensor(np.ones((3, 4))), as_tensor(np.ones(3)))
        else:  # the base: the prior weights
            weights, reg = strategy.loss_weights(as_tensor(np.ones(3)))
            np.testing.assert_array_equal(to_numpy(weights), [1.0, 1.0, 1.0])


@pytest.mark.parametrize("cls", LAYERS, ids=_id)
def test_layer_is_finite_at_every_edge_case(cls):
    kind = LAYER_KINDS[cls.__name__]
    edges = layer_edges(kind)
    layer = make_layer(cls)
    build_layer(layer, kind, *edges["random" if "random" in edges else next(iter(edges))])
    grid = GridRun(cls.__name__, compiled_value_and_grad(layer_function(layer, kind)), REFUSED_BY_LAYERS)
    for name, (labels, x) in edges.items():
        grid.run(name, "float32", as_tensor(labels), as_tensor(x))
        grid.run(f"{name}+batch_of_1", "float32", as_tensor(labels[:1]), as_tensor(x[:1]))
        for dtype in HALF:
            grid.half(name, dtype, as_tensor(labels), x)
    assert_finite(grid.problems())


@pytest.mark.parametrize("cls,case,argument", [(c, k, a) for c, cases in REFUSED_BY_LAYERS.items()
                                                for k, a in cases.items()])
def test_refused_layer_inputs_are_refused_eagerly_naming_the_argument(cls, case, argument):
    kind = LAYER_KINDS[cls]
    edges = layer_edges(kind)
    layer = make_layer(getattr(klp.layers, cls))
    build_layer(layer, kind, *edges["random"])
    labels, x = edges[case]
    with pytest.raises(ValueError, match=f"{cls}: `{argument}` holds values of magnitude"):
        layer_function(layer, kind)(as_tensor(labels), as_tensor(x))


# ------------------------------------------------------------------ weighting strategies

STRATEGIES = [c for c in ALL_CLASSES["weighting"] if WEIGHTING_KINDS[c.__name__] != "abstract"]


@pytest.mark.parametrize("cls", STRATEGIES, ids=_id)
def test_weighting_is_finite_at_every_edge_case(cls):
    """Eager: the strategies update their state (`assign`) as they weigh,
    which a pure compiled function cannot; the multi-task step that
    compiles them is tested in tests/multi_output."""
    failures = []
    gradient_level = WEIGHTING_KINDS[cls.__name__] == "task_gradients"
    if gradient_level:  # each gradient case once, with the task-loss cases in turn
        names = list(TASK_LOSSES)
        for i, (gname, grads) in enumerate(task_gradients().items()):
            strategy = cls()
            strategy.build_tasks(TASKS, [1.0, 0.5, 2.0])
            name = names[i % len(names)]
            direction, heads, logged = strategy.combine_gradients(as_tensor(grads), as_tensor(TASK_LOSSES[name]))
            check(cls.__name__, f"{name}/grads_{gname}", "float32", direction, heads, failures)
            check(cls.__name__, f"{name}/grads_{gname}/logged", "float32", logged, heads, failures)
    for name, losses in ({} if gradient_level else TASK_LOSSES).items():
        strategy = cls()
        strategy.build_tasks(TASKS, [1.0, 0.5, 2.0])
        losses = as_tensor(losses)
        for step in range(3):  # state moves: DWA's epochs, FAMO's steps
            weights, reg = strategy.loss_weights(losses)
            check(cls.__name__, f"{name}/step{step}", "float32", weights, reg, failures)
            if cls.__name__ == "DWA":
                strategy.on_epoch_end({f"{t}_loss": float(v) for t, v in zip(TASKS, to_numpy(losses))})
            if strategy.needs_post_step_losses:
                strategy.after_step(losses, losses * 0.5)
    assert_finite(failures)


BATCH_LEVEL = sorted({c.cls for c in CASES if c.batch_level}, key=_id)


@pytest.mark.parametrize("cls", BATCH_LEVEL, ids=_id)
def test_batch_level_loss_is_zero_when_every_sample_weight_is_zero(cls, rng):
    """Nothing to score gives 0 with gradient 0 (the rule of every batch-level
    loss: no valid anchor, every pixel ignored, every weight 0)."""
    case = FIRST_CASE[cls]
    loss = case.make()
    y_true, y_pred = case.make_inputs(rng)
    zeros = np.zeros((y_pred.shape[0],), "float32")
    step = compiled_value_and_grad(lambda yt, yp, sw: loss(yt, yp, sample_weight=sw))
    value, grad = step(as_tensor(y_true), as_tensor(y_pred), as_tensor(zeros))
    assert float(to_numpy(value)) == 0.0
    np.testing.assert_array_equal(to_numpy(grad), 0.0)
