"""One option spec per loss (issue 17): for every loss class of the family,
enumerated from `keras_lossplus.losses.metric_learning.__all__`, the function
and the class refuse a bad option with the same error, the class checks its
options once (in `__init__`) and then calls the unchecked function, boolean
options refuse non-bools, and `get_config` holds the normalised values."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from keras_lossplus.losses import metric_learning as M
from keras_lossplus.losses.options import flag

CLASSES = [getattr(M, n) for n in M.__all__ if inspect.isclass(getattr(M, n))]
IDS = [c.__name__ for c in CLASSES]
TENSORS = ("y_true", "y_pred", "sample_weight")
BAD = ("bogus", -1.5, None)

# inputs the loss can be called on: labels and embeddings (or proxy scores), pairs for ContrastiveLoss
DEFAULT_INPUTS = (np.array([0, 0, 1, 1], "int32"), np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [2.0, 0.0]], "float32"))
INPUTS = {"ContrastiveLoss": (np.array([1.0, 0.0, 1.0, 0.0], "float32"), np.array([0.5, 0.25, 1.5, 0.1], "float32"))}


def _options(cls):
    return [p for p in inspect.signature(cls.fn).parameters if p not in TENSORS]


def _error(fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except (TypeError, ValueError) as exc:
        return type(exc), str(exc)
    raise AssertionError("no error raised")


@pytest.mark.parametrize("cls", CLASSES, ids=IDS)
def test_every_option_is_in_the_spec(cls):
    functions = [getattr(M, n) for n in M.__all__ if not inspect.isclass(getattr(M, n))]
    assert cls.fn in functions
    assert sorted(cls.fn.options.checks) == sorted(_options(cls))


@pytest.mark.parametrize("cls", CLASSES, ids=IDS)
def test_function_and_class_refuse_a_bad_option_alike(cls):
    y, x = INPUTS.get(cls.__name__, DEFAULT_INPUTS)
    for name in _options(cls):
        bad = []
        for value in BAD:
            try:
                cls.fn.options.check({name: value})
            except (TypeError, ValueError):
                bad.append(value)
        assert bad, name
        for value in bad:
            from_fn = _error(cls.fn, y, x, **{name: value})
            assert from_fn == _error(cls, **{name: value}), (name, value)
            assert f"`{name}`" in from_fn[1]


@pytest.mark.parametrize("cls", CLASSES, ids=IDS)
def test_class_checks_once_then_calls_the_unchecked_function(cls, monkeypatch):
    spec, calls = cls.fn.options, []
    for name, check in list(spec.checks.items()):
        monkeypatch.setitem(spec.checks, name, lambda n, v, _check=check: (calls.append(n), _check(n, v))[1])
    loss = cls()
    assert sorted(calls) == sorted(spec.checks)
    y, x = INPUTS.get(cls.__name__, DEFAULT_INPUTS)
    loss(y, x)
    loss(y, x)
    assert len(calls) == len(spec.checks)
    cls.fn(y, x)  # the function itself checks on each direct call
    assert len(calls) == 2 * len(spec.checks)


FLAGS = [(c, n) for c in CLASSES for n, check in c.fn.options.checks.items() if check is flag]


@pytest.mark.parametrize("cls,name", FLAGS, ids=[f"{c.__name__}-{n}" for c, n in FLAGS])
def test_flags_refuse_non_bools(cls, name):
    y, x = INPUTS.get(cls.__name__, DEFAULT_INPUTS)
    for value in ("False", 0, 1.0):  # bool("False") was True
        with pytest.raises(TypeError, match=f"`{name}`"):
            cls.fn(y, x, **{name: value})
        with pytest.raises(TypeError, match=f"`{name}`"):
            cls(**{name: value})
    assert cls(**{name: np.True_}).get_config()[name] is True


@pytest.mark.parametrize("cls", CLASSES, ids=IDS)
def test_config_holds_every_argument_normalised(cls):
    params = inspect.signature(cls.__init__).parameters
    numbers = {n: np.float32(p.default) for n, p in params.items() if isinstance(p.default, float)}
    config = cls(**numbers).get_config()
    assert set(params) - {"self"} <= set(config)
    for name, value in numbers.items():
        assert type(config[name]) is float and config[name] == pytest.approx(float(value)), name
    assert cls.from_config(config).get_config() == config
