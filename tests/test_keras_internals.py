"""Pins every private Keras API the package uses (`keras_lossplus.keras_internals`)
against the installed Keras, and checks that no other module of the package
touches one: a Keras upgrade that moves an internal fails here, in one place.
The same on every `KERAS_BACKEND`."""

import io
import re
import tokenize
from pathlib import Path

import inspect

import keras
import numpy as np
import pytest

from keras_lossplus import keras_internals as ki

PACKAGE = Path(__file__).resolve().parent.parent / "keras_lossplus"
INTERNALS = PACKAGE / "keras_internals.py"


def _model():
    inputs = keras.Input((3,))
    hidden = keras.layers.Dense(4, name="hidden")(inputs)
    inner = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="inner_dense")], name="inner")
    model = keras.Model(inputs, inner(hidden))
    model.compile("sgd", loss="mse", metrics=["mae"])
    return model


# ------------------------------------------------------------ each internal, pinned


def test_primary_locations_exist():
    """The private imports resolve (no fallback in use) and the private attributes are where the
    accessors read them."""
    assert ki._get_keras_mask is not None and ki._set_keras_mask is not None
    assert ki._LossFunctionWrapper is not None and issubclass(ki.LossFunctionWrapper, keras.losses.Loss)
    for name in ("_flatten_layers", "_aggregate_additional_loss"):
        assert callable(getattr(keras.Model, name, None)), name
    model = _model()
    for name in ("_tracker", "_compile_config", "_compile_metrics", "_compile_loss", "_loss_tracker",
                 "_call_has_training_arg", "_trainable_variables", "_non_trainable_variables", "_seed_generators"):
        assert hasattr(model, name), name
    assert hasattr(keras.losses.MeanSquaredError(), "_dtype_policy")


def test_overridden_layer_methods_exist():
    assert ki.OVERRIDDEN_LAYER_METHODS
    for name in ki.OVERRIDDEN_LAYER_METHODS:
        method = getattr(keras.layers.Layer, name, None)
        assert callable(method), name
        assert list(inspect.signature(method).parameters) == ["self"], name


def test_producing_call_reads_a_functional_graph():
    x = keras.Input((3,))
    dense = keras.layers.Dense(2)
    h = dense(x)
    layer, inputs, kwargs = ki.producing_call(h)
    assert layer is dense and len(inputs) == 1 and inputs[0] is x and kwargs == {}
    embedding = keras.layers.ReversibleEmbedding(5, 2)
    out = embedding(h, reverse=True)
    assert ki.producing_call(out)[0] is embedding and ki.producing_call(out)[2] == {"reverse": True}
    assert ki.producing_call(keras.ops.ones((2,))) is None


def test_keras_mask_round_trip():
    x = keras.ops.ones((2, 3))
    assert ki.get_keras_mask(x) is None
    y = keras.ops.multiply(x, 1.0)
    ki.set_keras_mask(y, keras.ops.convert_to_tensor([True, False]))
    assert keras.ops.convert_to_numpy(ki.get_keras_mask(y)).tolist() == [True, False]
    # Keras' own losses read the same mask
    loss = keras.losses.MeanSquaredError()(keras.ops.zeros((2, 3)), y)
    assert float(loss) == pytest.approx(1.0)


def test_loss_function_wrapper_is_what_compile_uses():
    wrapped = ki.wrap_loss_function(keras.losses.mean_squared_error, name="mse")
    assert isinstance(wrapped, keras.losses.Loss) and wrapped.name == "mse"
    assert wrapped.reduction == "sum_over_batch_size"
    assert ki.wrapped_loss_function(wrapped) is keras.losses.mean_squared_error
    # Keras' built-in loss classes are wrappers too
    assert ki.wrapped_loss_function(keras.losses.BinaryFocalCrossentropy()) is keras.losses.binary_focal_crossentropy

    class Custom(keras.losses.Loss):
        def call(self, y_true, y_pred):
            return y_pred

    assert ki.wrapped_loss_function(Custom()) is None
    assert float(wrapped(np.zeros((2, 1)), np.ones((2, 1)))) == pytest.approx(1.0)


def test_loss_dtype_policy_name():
    assert ki.loss_dtype_policy_name(keras.losses.MeanSquaredError(dtype="float32")) == "float32"
    policy = keras.dtype_policies.DTypePolicy("mixed_bfloat16")
    assert ki.loss_dtype_policy_name(keras.losses.MeanSquaredError(dtype=policy)) == "mixed_bfloat16"


def test_layer_and_model_accessors():
    model = _model()
    assert ki.call_has_training_arg(keras.layers.Dropout(0.5)) is True

    class NoTraining(keras.layers.Layer):
        def call(self, inputs):
            return inputs

    assert ki.call_has_training_arg(NoTraining()) is False
    names = [layer.name for layer in ki.flatten_layers(model)]
    assert "hidden" in names and "inner" in names and "inner_dense" in names and model.name not in names
    assert isinstance(ki.loss_tracker(model), keras.metrics.Metric)
    assert ki.compiled_metrics(model) is not None
    plain = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    plain.compile("sgd", loss="mse")
    assert ki.compiled_metrics(plain) is None
    ki.update_compile_config(model, weighting="static")
    assert model.get_compile_config()["weighting"] == "static"
    assert float(ki.aggregate_additional_loss(model, keras.ops.convert_to_tensor([1.0, 2.0]))) == 3.0


def test_untrack_and_own_state():
    layer = keras.layers.Layer()
    layer.kernel = layer.add_weight(shape=(2,), name="k")
    layer.counter = layer.add_weight(shape=(), name="c", trainable=False)
    layer.seed = keras.random.SeedGenerator(1)
    assert [v.name for v in ki.own_variables(layer)] == ["k", "c"]
    assert ki.seed_generators(layer) == [layer.seed]
    model = _model()
    metric = keras.metrics.Mean(name="extra")
    model.extra = metric
    assert any(m is metric for m in model.metrics)
    ki.untrack(model, [metric, None])
    assert all(m is not metric for m in model.metrics)


# ------------------------------------------------------------ nobody else touches them


def _keras_private_names() -> set:
    objects = [_model(), keras.layers.Dense(2), keras.losses.MeanSquaredError(), keras.metrics.Mean(),
               keras.callbacks.Callback(), keras.random.SeedGenerator(0), keras.Variable(0.0),
               keras.optimizers.SGD()]
    objects[1].build((None, 3))
    names = set()
    for obj in objects + [type(o) for o in objects]:
        names |= {n for n in dir(obj) if n.startswith("_") and not n.startswith("__")}
    return names


def _code(path: Path):
    """`(line, code without comments and strings, code without comments)` per line."""
    source = path.read_text()
    bare, with_strings = {}, {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE):
            continue
        row = tok.start[0]
        with_strings.setdefault(row, []).append(tok.string)
        if tok.type != tokenize.STRING:
            bare.setdefault(row, []).append(tok.string)
    for row in sorted(with_strings):
        yield row, " ".join(bare.get(row, [])), " ".join(with_strings[row])


def _files():
    return sorted(p for p in PACKAGE.rglob("*.py") if p != INTERNALS)


def _own_private_names() -> set:
    """Private names the package itself defines (functions, classes, attributes it assigns)."""
    names = set()
    for path in _files():
        text = path.read_text()
        names |= set(re.findall(r"(?:def|class)\s+(_\w+)", text))
        names |= set(re.findall(r"(?:^|[\s.(,])(_\w+)\s*(?::[^=\n]*)?=(?!=)", text, re.MULTILINE))
    return {n for n in names if not n.startswith("__")}


def test_no_keras_internal_outside_keras_internals():
    keras_private = _keras_private_names() - {"_klp"}
    own = _own_private_names() - keras_private
    overridden = set(ki.OVERRIDDEN_LAYER_METHODS)
    problems = []
    for path in _files():
        rel = path.relative_to(PACKAGE.parent)
        for row, bare, code in _code(path):
            where = f"{rel}:{row}"
            if re.search(r"\bkeras \. src\b", bare) or re.search(r"[\"']keras\.src", code):
                problems.append(f"{where}: imports keras.src")
            for receiver, name in re.findall(r"(\w+|\)) \. (_[A-Za-z]\w*)", bare):
                if name.startswith("_klp_"):
                    continue
                if name in keras_private:
                    if not (name in overridden and receiver == ")"):  # super()._get_own_losses()
                        problems.append(f"{where}: Keras' private {receiver}.{name}")
                elif receiver not in ("self", "cls") and name not in own:
                    problems.append(f"{where}: private attribute {receiver}.{name} of another object")
            for name in re.findall(r"def (_[A-Za-z]\w*)", bare):
                if name in keras_private and name not in overridden:
                    problems.append(f"{where}: overrides Keras' private {name}; list it in OVERRIDDEN_LAYER_METHODS")
            for name in re.findall(r"\b(?:get|has|set|del)attr \([^,]+,\s*[\"'](_[A-Za-z]\w*)", code):
                if not name.startswith("_klp_") and (name in keras_private or name not in own):
                    problems.append(f"{where}: private attribute {name!r} by name")
    assert not problems, "\n".join(problems)


def test_the_scan_catches_internals(tmp_path):
    """The scan above is not vacuous: a module using internals is reported."""
    bad = tmp_path / "keras_lossplus"
    bad.mkdir()
    (bad / "bad.py").write_text(
        "from keras.src.backend import get_keras_mask\n"
        "def f(model):\n"
        "    return model._tracker, getattr(model, '_loss_tracker'), model._klp_fine\n"
        "class L:\n"
        "    def _flatten_layers(self):\n"
        "        return self._compile_metrics\n"
    )
    global PACKAGE
    saved = PACKAGE
    PACKAGE = bad
    try:
        with pytest.raises(AssertionError) as info:
            test_no_keras_internal_outside_keras_internals()
    finally:
        PACKAGE = saved
    message = str(info.value)
    for expected in ("imports keras.src", "model._tracker", "'_loss_tracker'", "overrides Keras' private _flatten_layers",
                     "self._compile_metrics"):
        assert expected in message, message
    assert "_klp_fine" not in message
