"""One option spec per loss (`keras_lossplus.losses.options`), for every
public loss, enumerated from `keras_lossplus.losses.__all__` so that a new
loss cannot be forgotten: the function and its class refuse a bad option
with the same error naming it, the class checks only through the
function's `Options` spec, once, in `__init__`, and calling the loss object
runs the unchecked function."""

import inspect
import re

import keras
import numpy as np
import pytest

import keras_lossplus as klp
from keras_lossplus.losses import (
    classification, distribution, metric_learning, ordinal, ranking, regression, segmentation,
)
from keras_lossplus.losses.options import Options, flag, unchecked

# Keras-side reduction arguments: the class applies them to the per-sample values
# (`skip_empty_lists`: the ranking losses' mask on all-padding lists), not the function
NOT_OPTIONS = {"self", "reduction", "name", "dtype", "cross_replica", "skip_empty_lists"}
# constructor arguments without a default
REQUIRED = {"num_classes": 4, "base_loss": klp.losses.FocalLoss(), "samples_per_class": [3.0, 1.0, 2.0],
            "loss": klp.losses.MultipleNegativesRankingLoss(), "matryoshka_dims": [4, 2]}
BAD = "<not an option value>"  # refused by every check the losses use
# checks only a class needs: it saves its base loss, so a plain function will not do
CLASS_ONLY = {("ClassBalancedLoss", "base_loss"), ("MatryoshkaLoss", "loss")}

CLASSES = sorted(
    {obj for obj in map(klp.losses.__dict__.get, klp.losses.__all__)
     if inspect.isclass(obj) and issubclass(obj, keras.losses.Loss)},
    key=lambda cls: cls.__name__,
)


def _options(cls):
    return [p for p in inspect.signature(cls.__init__).parameters if p not in NOT_OPTIONS]


def _spec(cls):
    return getattr(cls.fn, "options", None)


def _required(cls):
    return {k: v for k, v in REQUIRED.items() if k in _options(cls)}


SPECCED = [cls for cls in CLASSES if _spec(cls) is not None]
OPTIONS = [(cls, option) for cls in SPECCED for option in _options(cls)]


def _id(value):
    return value.__name__ if inspect.isclass(value) else str(value)


def _errors(cls, **options):
    """The error of the function and of the class on the same options."""
    kwargs = {**_required(cls), **options}
    errors = []
    tensors = [None] * sum(p.default is p.empty and p.name not in kwargs
                           for p in inspect.signature(cls.fn).parameters.values())
    for make in (lambda: cls.fn(*tensors, **kwargs), lambda: cls(**kwargs)):
        with pytest.raises((ValueError, TypeError)) as info:
            make()
        errors.append(info.value)
    return errors


def test_every_class_is_enumerated_and_declares_its_options():
    assert len(CLASSES) >= 46
    assert {"TripletLoss", "FocalLoss", "DiceLoss", "LambdaLoss", "CornLoss", "SinkhornLoss"} <= {c.__name__ for c in CLASSES}
    for cls in CLASSES:
        declared = set(_spec(cls).checks) if _spec(cls) is not None else set()
        missing = set(_options(cls)) - declared
        assert not missing, f"{cls.__name__}: options without a check in its function's spec: {missing}"


@pytest.mark.parametrize("cls", CLASSES, ids=_id)
def test_the_loss_object_calls_the_unchecked_function(cls):
    loss = cls(**_required(cls))
    assert loss._fn is unchecked(cls.fn)
    assert (loss._fn is not cls.fn) == (_spec(cls) is not None)


@pytest.mark.parametrize("cls, option", OPTIONS, ids=_id)
def test_function_and_class_raise_the_same_error(cls, option):
    from_fn, from_cls = _errors(cls, **{option: BAD})
    assert type(from_fn) is type(from_cls) and str(from_fn) == str(from_cls)
    assert f"`{option}`" in str(from_cls)


@pytest.mark.parametrize(
    "cls, options, match",
    [(distribution.Wasserstein1DLoss, {"p": 2, "mode": "histogram"}, "must be 1 with"),
     (segmentation.FocalTverskyLoss, {"gamma": 0.0}, r"`gamma` must be in \(0.0, inf\)"),
     (ordinal.WeightedKappaLoss, {"num_classes": 1}, "integer >= 2")],
    ids=_id,
)
def test_joint_and_range_rules_raise_the_same_error(cls, options, match):
    from_fn, from_cls = _errors(cls, **options)
    assert type(from_fn) is type(from_cls) and str(from_fn) == str(from_cls)
    assert re.search(match, str(from_cls))


@pytest.mark.parametrize(
    "cls, option", [(cls, o) for cls, o in OPTIONS if _spec(cls).checks.get(o) is flag], ids=_id
)
def test_boolean_options_refuse_strings(cls, option):
    """`"False"` used to be read as true where a class did `bool(x)`."""
    from_fn, from_cls = _errors(cls, **{option: "False"})
    assert isinstance(from_cls, TypeError) and type(from_fn) is TypeError
    assert f"Argument `{option}` must be True or False" in str(from_cls) == str(from_fn)


@pytest.mark.parametrize("cls", [c for c in CLASSES if "skip_empty_lists" in inspect.signature(c.__init__).parameters],
                         ids=_id)
def test_skip_empty_lists_refuses_strings(cls):
    with pytest.raises(TypeError, match="Argument `skip_empty_lists` must be True or False"):
        cls(skip_empty_lists="False")


@pytest.mark.parametrize("cls, option", [(c, o) for c, o in OPTIONS if (c.__name__, o) not in CLASS_ONLY], ids=_id)
def test_class_checks_only_through_the_spec(cls, option, monkeypatch):
    """With the spec's checks switched off, no bad value is refused."""
    monkeypatch.setattr(Options, "check", lambda self, options: dict(options))
    cls(**{**_required(cls), option: BAD})


BEHAVIOUR = (segmentation, ranking, ordinal, distribution, classification, regression, metric_learning)


def _inputs(loss):
    """Small valid `(y_true, y_pred)` for each family of `BEHAVIOUR`."""
    rng = np.random.default_rng(0)
    name = type(loss).__name__
    if type(loss).__module__.startswith(segmentation.__name__):
        channels = 1 if loss._options["mode"] == "binary" else 3
        return np.zeros((2, 4, 4), "float32"), np.full((2, 4, 4, channels), 1.0 / channels, "float32")
    if type(loss).__module__.startswith(ranking.__name__):
        return np.array([[2.0, 0.0, 1.0, -1.0]] * 2, "float32"), rng.normal(size=(2, 4)).astype("float32")
    if name == "CoralLoss":
        return np.arange(4, dtype="float32"), rng.normal(size=(4, 4)).astype("float32")
    if name == "WeightedKappaLoss":
        return np.eye(4, dtype="float32"), np.full((4, 4), 0.25, "float32")
    if name == "JensenShannonDivergence":
        return np.full((4, 3), 1 / 3, "float32"), np.eye(4, 3, dtype="float32")
    if name == "ContrastiveLoss":  # pair labels and pair distances
        return np.array([1.0, 0.0, 1.0, 0.0], "float32"), np.array([0.5, 0.25, 1.5, 0.1], "float32")
    if name in ("MultipleNegativesRankingLoss", "CoSENTLoss", "AnglELoss", "MatryoshkaLoss"):  # stacked pairs
        return np.array([0.0, 0.5, 1.0, 0.5], "float32"), rng.normal(size=(4, 2, 4)).astype("float32")
    if type(loss).__module__.startswith(metric_learning.__name__):  # labels and embeddings (or proxy scores)
        return np.array([0, 0, 1, 1], "int32"), np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [2.0, 0.0]], "float32")
    if type(loss).__module__.startswith((classification.__name__, regression.__name__)):
        return np.eye(4, 3, dtype="float32"), np.full((4, 3), 1 / 3, "float32")
    return rng.normal(size=(4, 3)).astype("float32"), rng.normal(size=(4, 3)).astype("float32")


@pytest.mark.parametrize("cls", [c for c in SPECCED if c.__module__.startswith(tuple(m.__name__ for m in BEHAVIOUR))],
                         ids=_id)
def test_class_checks_once_and_calls_the_unchecked_function(cls, monkeypatch):
    checks = []
    original = Options.check

    def counted(self, options):
        checks.append(sorted(options))
        return original(self, options)

    monkeypatch.setattr(Options, "check", counted)
    loss = cls(**_required(cls))
    assert checks == [sorted(loss._options)]  # once, in __init__
    y_true, y_pred = _inputs(loss)
    value = loss(y_true, y_pred)
    if "per_image" in loss._options:  # the per-image path (LossPlus.call) too
        value = value + cls(per_image=True)(y_true, y_pred)
    assert np.isfinite(keras.ops.convert_to_numpy(value))
    assert len(checks) == 1 + ("per_image" in loss._options)  # calling the loss object checks nothing
    wrapped = {k: getattr(loss, k) for k in ("base_loss", "loss") if hasattr(loss, k)}
    cls.fn(y_true, y_pred, **{**loss._options, **wrapped})
    assert len(checks) == 2 + ("per_image" in loss._options)  # a direct call of the function does
    config = loss.get_config()
    assert set(_options(cls)) <= set(config) and cls.from_config(config).get_config() == config
