"""Every public loss declares its options once (`keras_lossplus.losses.options`):
enumerated from `keras_lossplus.losses.__all__`, so a new loss cannot be
forgotten.

- its function carries an `Options` spec, and its class checks with that
  same spec in `__init__` and then calls the unchecked function;
- every checked option, given a value no check accepts, raises the same
  error (type and message, naming the option) from the function and from
  the class;
- a loss object called twice checks nothing more after its construction.
"""

import inspect

import keras
import numpy as np
import pytest

import keras_lossplus as klp
from keras_lossplus.losses import options as options_module
from keras_lossplus.losses.options import Options, unchecked

# the arguments a class (and its function) cannot do without
REQUIRED = {
    "ClassBalancedLoss": {"base_loss": klp.losses.FocalLoss(), "samples_per_class": [3, 1]},
}

CLASSES = sorted(
    name for name in klp.losses.__all__
    if inspect.isclass(getattr(klp.losses, name)) and issubclass(getattr(klp.losses, name), keras.losses.Loss)
)


class _Unacceptable:
    """A value that no option check accepts (not a number, bool, string, list or callable)."""

    def __repr__(self):
        return "<unacceptable>"


def _spec(name):
    cls = getattr(klp.losses, name)
    return cls, getattr(cls.fn, "options", None)


def test_the_public_losses_are_enumerated():
    assert len(CLASSES) >= 60
    assert {"TripletLoss", "FocalLoss", "DiceLoss", "LambdaLoss", "CornLoss", "SinkhornLoss"} <= set(CLASSES)


@pytest.mark.parametrize("name", CLASSES)
def test_function_and_class_share_one_spec(name):
    cls, spec = _spec(name)
    assert isinstance(spec, Options), f"{name}.fn declares no Options spec"
    assert spec.checks, f"{name}'s spec checks nothing"
    loss = cls(**REQUIRED.get(name, {}))
    assert loss._fn is unchecked(cls.fn) and loss._fn is not cls.fn


@pytest.mark.parametrize("name", CLASSES)
def test_a_bad_option_raises_the_same_error_from_function_and_class(name):
    cls, spec = _spec(name)
    required = REQUIRED.get(name, {})
    constructor = inspect.signature(cls.__init__).parameters
    for option in spec.checks:
        if option not in constructor:
            continue
        with pytest.raises((TypeError, ValueError)) as from_class:
            cls(**{**required, option: _Unacceptable()})
        with pytest.raises((TypeError, ValueError)) as from_function:
            cls.fn(np.zeros((2, 2), "float32"), np.zeros((2, 2), "float32"), **{**required, option: _Unacceptable()})
        assert f"`{option}`" in str(from_class.value), (name, option, str(from_class.value))
        assert type(from_class.value) is type(from_function.value), (name, option)
        assert str(from_class.value) == str(from_function.value), (name, option)


def test_a_loss_object_checks_its_options_only_when_built(monkeypatch):
    calls = []
    original = Options.check

    def counting(self, options):
        calls.append(dict(options))
        return original(self, options)

    monkeypatch.setattr(options_module.Options, "check", counting)
    loss = klp.losses.FocalLoss(gamma=2.0, from_logits=True)
    built = len(calls)
    assert built == 1
    y, x = np.array([[1.0], [0.0]], "float32"), np.array([[0.5], [-0.5]], "float32")
    expected = klp.losses.focal_loss(y, x, gamma=2.0, from_logits=True)
    assert len(calls) == built + 1  # the direct call checks
    for _ in range(2):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(loss(y, x)), np.mean(keras.ops.convert_to_numpy(expected)),
                                   rtol=1e-6)
    assert len(calls) == built + 1  # the loss object checks nothing more


@pytest.mark.parametrize("value", ["False", 1, None])
def test_flags_refuse_what_is_not_a_bool(value):
    with pytest.raises(TypeError, match="`from_logits` must be True or False"):
        klp.losses.FocalLoss(from_logits=value)
    with pytest.raises(TypeError, match="`normalize` must be True or False"):
        klp.losses.TripletLoss(normalize=value)
