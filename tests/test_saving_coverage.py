"""Every public class of `klp.losses`, `klp.layers` and `klp.weighting`
(enumerated from `__all__`, so a new class cannot be forgotten) is in a
model that fits, saves to `.keras` and loads back in a fresh process with
the same `evaluate` (issue 18, item 3).

Covered elsewhere, through the same loading server: the losses of the
contract cases that run `test_fit_then_load_in_fresh_process`, and the
penalty layers of `tests/layers/test_penalties.py`. Every other class gets
an entry here: one tiny model each, all saved to one folder and loaded by
one request to the server."""

import numpy as np

import keras
import keras_lossplus as klp
from tests.backend_utils import BACKEND, XLA_BACKENDS
from tests.contract import _fit_model
from tests.edge_grid import ALL_CLASSES, LAYER_KINDS, WEIGHTING_KINDS, contract_cases, contract_fitted_cases
from tests.fresh_load import load_in_fresh_process

JIT = BACKEND in XLA_BACKENDS


def _penalty_layer_classes():
    from tests.layers import test_penalties

    return {case.cls for case in test_penalties.CASES}


COVERED_ELSEWHERE = {c.cls for c in contract_fitted_cases()} | _penalty_layer_classes()
ABSTRACT = {c for f in ("layers", "weighting") for c in ALL_CLASSES[f]
            if {**LAYER_KINDS, **WEIGHTING_KINDS}[c.__name__] == "abstract"}


# ------------------------------------------------------------------ the entries: one tiny model per class


def _loss_model(cls, rng):
    case = next(c for c in contract_cases() if c.cls is cls)
    model, x, y, losses = _fit_model(case, rng)
    return model, {"x": x, "y": y}


def _layer_model(cls, rng):
    n = 8
    x = rng.normal(size=(n, 6)).astype("float32")
    labels = (np.arange(n) % 4).astype("int32")
    inputs = keras.Input((6,))
    h = keras.layers.Dense(3)(inputs)
    name = cls.__name__
    if LAYER_KINDS[name] in ("head", "center", "memory"):
        label_input = keras.Input((), dtype="int32")
        if LAYER_KINDS[name] == "memory":  # the queue (filled by fit) is saved with the model
            layer = cls(klp.losses.TripletLoss(mining="all"), memory_size=16)
        else:
            layer = cls(num_classes=4)
        out = layer([h, label_input])
        if LAYER_KINDS[name] in ("center", "memory"):
            out = keras.layers.Dense(4)(out)
        model = keras.Model([inputs, label_input], out)
        arrays = {"x0": x, "x1": labels, "y": labels}
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    elif name == "LanguageModelHead":  # the endpoint pattern: targets are an input, the loss is the layer's
        label_input = keras.Input((), dtype="int32")
        model = keras.Model([inputs, label_input], cls(vocabulary_size=4)(h, label_input))
        arrays, loss = {"x0": x, "x1": labels, "y": labels}, None
    elif name == "GaussianSampling":
        z = cls(seed=1)([h, keras.layers.Dense(3)(inputs)])
        model = keras.Model(inputs, keras.layers.Dense(1)(z))
        arrays, loss = {"x": x, "y": rng.normal(size=(n, 1)).astype("float32")}, "mse"
    elif LAYER_KINDS[name] == "logits":  # z-losses and load balancing on the Dense's logits (3 experts)
        layer = cls(num_experts=3, factor=0.1) if name == "LoadBalancingPenalty" else cls(factor=0.1)
        model = keras.Model(inputs, keras.layers.Dense(1)(layer(h)))
        arrays, loss = {"x": x, "y": rng.normal(size=(n, 1)).astype("float32")}, "mse"
    elif name == "CoralOutput":
        model = keras.Model(inputs, cls(num_classes=5)(h))
        arrays, loss = {"x": x, "y": (np.arange(n) % 5).astype("float32")}, klp.losses.CoralLoss()
    else:  # proxy layers: similarities to the class proxies
        model = keras.Model(inputs, cls(num_classes=4)(h))
        arrays = {"x": x, "y": labels.astype("float32")}
        loss = klp.losses.ProxyNCALoss() if name == "ProxyNCA" else klp.losses.ProxyAnchorLoss()
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=loss, jit_compile=JIT)
    x_fit = [arrays["x0"], arrays["x1"]] if "x0" in arrays else arrays["x"]
    model.fit(x_fit, arrays["y"], batch_size=n, epochs=1, verbose=0)
    return model, arrays


def _weighting_model(cls, rng):
    from tests.multi_output.helpers import LOSSES, WEIGHTS, build, data

    x, y = data(rng, 8)
    model = build(klp.MultiOutputModel)
    model.compile(keras.optimizers.Adam(0.01), loss=LOSSES, loss_weights=WEIGHTS, weighting=cls(), jit_compile=JIT)
    model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    return model, {"x": x, **{f"y_{k}": v for k, v in y.items()}}


def _entry(cls):
    if cls in ALL_CLASSES["losses"]:
        return _loss_model
    return _layer_model if cls in ALL_CLASSES["layers"] else _weighting_model


ENTRIES = [c for f in ("losses", "layers", "weighting") for c in ALL_CLASSES[f]
           if c not in COVERED_ELSEWHERE and c not in ABSTRACT]


def test_every_public_class_is_saved_and_loaded_in_a_fresh_process_somewhere():
    every = {c for f in ALL_CLASSES.values() for c in f}
    assert len(every) >= 74
    uncovered = every - COVERED_ELSEWHERE - ABSTRACT - set(ENTRIES)
    assert not uncovered, sorted(c.__name__ for c in uncovered)
    # the abstract bases cannot be in a model: they raise when used
    assert {c.__name__ for c in ABSTRACT} == {"PenaltyLayer", "WeightingStrategy", "GradientStrategy"}


def test_every_entry_fits_saves_and_loads_in_a_fresh_process(tmp_path):
    """One test, not one per class: every model goes into one folder and one
    request to the loading server (a module fixture would be built again
    by each xdist worker)."""
    expected = {}
    for cls in ENTRIES:
        model, arrays = _entry(cls)(cls, np.random.default_rng(1))
        x = [arrays["x0"], arrays["x1"]] if "x0" in arrays else arrays["x"]
        y = arrays["y"] if "y" in arrays else {k[2:]: v for k, v in arrays.items() if k.startswith("y_")}
        value = model.evaluate(x, y, batch_size=len(x[0] if isinstance(x, list) else x), verbose=0)
        expected[cls] = float(np.atleast_1d(value)[0])
        model.save(tmp_path / f"{cls.__name__}.keras")
        np.savez(tmp_path / f"{cls.__name__}.npz", **arrays)
    reloaded = load_in_fresh_process(tmp_path)
    wrong = []
    for cls, value in expected.items():
        got = reloaded[cls.__name__]
        if cls in ALL_CLASSES["losses"]:
            present = got["loss_class"] == cls.__name__
        elif cls in ALL_CLASSES["layers"]:
            present = cls.__name__ in got["layer_classes"]
        else:
            present = got["weighting_class"] == cls.__name__
        if not (present and np.isfinite(value) and np.isclose(got["evaluate"], value, rtol=1e-5, atol=1e-6)):
            wrong.append(f"{cls.__name__}: evaluate {value} before saving, {got['evaluate']} loaded; in model: {present}")
    assert not wrong, "\n".join(wrong)
