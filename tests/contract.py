"""The contract every loss of keras_lossplus passes.

A family's test module describes each loss once as a `LossCase` (the class,
its functional form, a numpy reference, small inputs, edge cases and bad
arguments) and gets the whole suite with

    TestContract = contract_suite(CASES)

The suite checks, on the backend `KERAS_BACKEND` selects (CI runs all three):

* the function and the class equal the numpy reference;
* every `reduction`, with and without `sample_weight`, and with a Keras
  mask, equals a Keras built-in `keras.losses.Loss` fed the reference's
  per-sample values (batch-level losses: their documented weighting);
* the loss compiles with XLA (`jax.jit`, `tf.function(jit_compile=True)`)
  and gives the eager value;
* value and gradient are finite at every edge case;
* `float16` / `bfloat16` inputs are computed in float32, and a
  `mixed_float16` loss returns float16 without overflow;
* `get_config` / `from_config` and `keras.saving` (de)serialization
  round-trip;
* a model compiled with the loss fits (with `jit_compile=True` on JAX and
  TensorFlow), saves to `.keras` and loads back with `compile=True` in a
  fresh process, giving the same `evaluate`;
* bad arguments raise `ValueError` / `TypeError` naming the argument, and
  integer predictions are refused.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Callable, Optional

import keras
import numpy as np
import pytest

from tests.backend_utils import BACKEND, XLA_BACKENDS, to_numpy, value_and_grad, with_mask, xla_compile
from tests.fresh_load import load_in_fresh_process

REDUCTIONS = ("sum_over_batch_size", "sum", "mean", "mean_with_sample_weight", "none", None)


@dataclasses.dataclass
class LossCase:
    """One loss configuration under test.

    Attributes:
        id: Test id.
        cls: The `keras.losses.Loss` subclass.
        fn: Its functional form.
        kwargs: Constructor (and function) keyword arguments.
        reference: Numpy reference `reference(y_true, y_pred)` returning
            per-sample values; for batch-level losses
            `reference(y_true, y_pred, sample_weight=None)` returning a scalar.
        make_inputs: `make_inputs(rng) -> (y_true, y_pred)` float32 arrays.
        edge_inputs: `{name: (y_true, y_pred)}` at which value and gradient
            must be finite.
        bad_args: `[(kwargs, argument_name), ...]` that must raise.
        batch_level: Whether the loss is one value per batch.
        activation: Output activation of the model in the fit test.
        rtol, atol: Tolerances against the reference (float32).
        fn_kwargs: Extra arguments for the function only (e.g. `base_loss`).
    """

    id: str
    cls: type
    fn: Callable[..., Any]
    kwargs: dict
    reference: Callable[..., np.ndarray]
    make_inputs: Callable[[np.random.Generator], tuple]
    edge_inputs: dict = dataclasses.field(default_factory=dict)
    bad_args: list = dataclasses.field(default_factory=list)
    batch_level: bool = False
    activation: str = "linear"
    rtol: float = 1e-5
    atol: float = 1e-6
    fn_kwargs: Optional[dict] = None

    def make(self, **overrides: Any) -> keras.losses.Loss:
        return self.cls(**{**self.kwargs, **overrides})

    def call_fn(self, y_true: Any, y_pred: Any, **extra: Any) -> Any:
        return self.fn(y_true, y_pred, **{**self.kwargs, **(self.fn_kwargs or {}), **extra})

    def __repr__(self) -> str:
        return self.id


class _PerSampleValues(keras.losses.Loss):
    """A Keras built-in `Loss` whose per-sample values are given as `y_pred`:
    Keras itself then applies reduction, weights and masks."""

    def call(self, y_true, y_pred):
        return y_pred


def _close(actual: Any, expected: Any, case: LossCase, scale: float = 1.0) -> None:
    np.testing.assert_allclose(
        to_numpy(actual).astype("float64"),
        np.asarray(expected, dtype="float64"),
        rtol=case.rtol * scale,
        atol=case.atol * scale,
    )


def _weights(rng: np.random.Generator, batch: int) -> np.ndarray:
    return rng.uniform(0.0, 2.0, size=(batch,)).astype("float32")


def _fit_model(case: LossCase, rng: np.random.Generator):
    y_true, y_pred = case.make_inputs(rng)
    batch, out_shape = y_pred.shape[0], y_pred.shape[1:]
    x = rng.normal(size=(batch, 6)).astype("float32")
    model = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(int(np.prod(out_shape))),
            keras.layers.Reshape(out_shape),
            keras.layers.Activation(case.activation),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(0.01),
        loss=case.make(),
        jit_compile=BACKEND in XLA_BACKENDS,
    )
    weights = _weights(rng, batch)
    history = model.fit(x, y_true, sample_weight=weights, batch_size=batch // 2, epochs=3, verbose=0)
    return model, x, y_true, history.history["loss"]


def contract_suite(cases: list, fit_ids: Any = None) -> type:
    """A pytest test class running the whole contract over `cases`; the
    (slow) fit-save-reload check only over the cases named in `fit_ids`
    (default all; one per class is enough, the others only change options)."""
    ids = [c.id for c in cases]
    each = pytest.mark.parametrize("case", cases, ids=ids)
    fit_cases = cases if fit_ids is None else [c for c in cases if c.id in fit_ids]
    each_fitted = pytest.mark.parametrize("case", fit_cases, ids=[c.id for c in fit_cases])

    class ContractSuite:
        # ------------------------------------------------------------ values

        @each
        def test_function_matches_reference(self, case, rng):
            y_true, y_pred = case.make_inputs(rng)
            if case.batch_level:
                w = _weights(rng, y_pred.shape[0])
                _close(case.call_fn(y_true, y_pred), case.reference(y_true, y_pred), case)
                _close(case.call_fn(y_true, y_pred, sample_weight=w), case.reference(y_true, y_pred, sample_weight=w), case)
            else:
                _close(case.call_fn(y_true, y_pred), case.reference(y_true, y_pred), case)

        @each
        @pytest.mark.parametrize("reduction", REDUCTIONS, ids=str)
        def test_reduction_and_sample_weight_match_keras(self, case, reduction, rng):
            y_true, y_pred = case.make_inputs(rng)
            w = _weights(rng, y_pred.shape[0])
            loss = case.make(reduction=reduction)
            if case.batch_level:
                _close(loss(y_true, y_pred), case.reference(y_true, y_pred), case)
                _close(loss(y_true, y_pred, sample_weight=w), case.reference(y_true, y_pred, sample_weight=w), case)
                return
            per_sample = case.reference(y_true, y_pred).astype("float32")
            keras_loss = _PerSampleValues(reduction=reduction)
            for sw in (None, w, w[:, None]):
                expected = keras_loss(per_sample, per_sample, sample_weight=sw)
                _close(loss(y_true, y_pred, sample_weight=sw), to_numpy(expected), case)

        @each
        @pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum", "mean_with_sample_weight"])
        def test_mask_matches_keras(self, case, reduction, rng):
            y_true, y_pred = case.make_inputs(rng)
            batch = y_pred.shape[0]
            mask = np.arange(batch) % 3 != 1
            w = _weights(rng, batch)
            loss = case.make(reduction=reduction)
            actual = loss(y_true, with_mask(y_pred, mask), sample_weight=w)
            if case.batch_level:
                expected = case.reference(y_true, y_pred, sample_weight=w * mask)
            else:
                per_sample = case.reference(y_true, y_pred).astype("float32")
                expected = to_numpy(
                    _PerSampleValues(reduction=reduction)(per_sample, with_mask(per_sample, mask), sample_weight=w)
                )
            _close(actual, expected, case)

        # ------------------------------------------------------------ compile

        if BACKEND in XLA_BACKENDS:

            @each
            def test_compiles_with_xla(self, case, rng):
                y_true, y_pred = case.make_inputs(rng)
                w = _weights(rng, y_pred.shape[0])
                loss = case.make()
                compiled = xla_compile(lambda yt, yp, sw: loss(yt, yp, sample_weight=sw))
                _close(compiled(y_true, y_pred, w), to_numpy(loss(y_true, y_pred, sample_weight=w)), case)
                per_sample = xla_compile(lambda yt, yp: case.call_fn(yt, yp))
                _close(per_sample(y_true, y_pred), to_numpy(case.call_fn(y_true, y_pred)), case)

        # ------------------------------------------------------------ numerics

        @each
        def test_finite_value_and_gradient_at_edge_cases(self, case, rng):
            edges = dict(case.edge_inputs)
            edges["random"] = case.make_inputs(rng)
            loss = case.make()
            for name, (y_true, y_pred) in edges.items():
                y_true = np.asarray(y_true, dtype="float32")
                value, grad = value_and_grad(lambda yp: loss(y_true, yp), np.asarray(y_pred, dtype="float32"))
                assert np.all(np.isfinite(value)), f"{case.id}: loss not finite at edge case {name!r}: {value}"
                assert np.all(np.isfinite(grad)), f"{case.id}: gradient not finite at edge case {name!r}"

        @each
        @pytest.mark.parametrize("half", ["float16", "bfloat16"])
        def test_half_precision_inputs_compute_in_float32(self, case, half, rng):
            y_true, y_pred = case.make_inputs(rng)
            yt_half = keras.ops.cast(y_true, half)
            yp_half = keras.ops.cast(y_pred, half)
            # the reference on the same (rounded) inputs, in float32
            yt_r = to_numpy(keras.ops.cast(yt_half, "float32"))
            yp_r = to_numpy(keras.ops.cast(yp_half, "float32"))
            out = case.call_fn(yt_half, yp_half)
            assert keras.backend.standardize_dtype(out.dtype) == "float32"
            _close(out, case.reference(yt_r, yp_r), case, scale=10.0)
            # a loss whose dtype policy is mixed_float16 returns float16, finite
            # wherever the float32 value fits in float16
            loss16, loss32 = case.make(dtype="mixed_float16"), case.make()
            inputs = [(y_true, y_pred)] + list(case.edge_inputs.values())
            for t, p in inputs:
                t, p = np.asarray(t, "float32"), np.asarray(p, "float16")
                v = loss16(t, p)
                assert keras.backend.standardize_dtype(v.dtype) == "float16"
                if abs(float(to_numpy(loss32(t, p)))) < 6e4:
                    assert np.all(np.isfinite(to_numpy(v)))

        # ------------------------------------------------------------ saving

        @each
        def test_config_round_trip(self, case, rng):
            loss = case.make(name="my_loss", reduction="sum")
            config = loss.get_config()
            json.dumps(keras.saving.serialize_keras_object(loss))  # JSON-able
            again = case.cls.from_config(config)
            assert again.get_config() == config
            restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
            assert type(restored) is case.cls and restored.get_config() == config
            y_true, y_pred = case.make_inputs(rng)
            _close(again(y_true, y_pred), to_numpy(loss(y_true, y_pred)), case)

        @pytest.fixture(scope="class")
        def fitted_and_reloaded(self, tmp_path_factory):
            folder = tmp_path_factory.mktemp("models")
            fitted = {}
            for case in fit_cases:
                model, x, y, losses = _fit_model(case, np.random.default_rng(1))
                value = float(model.evaluate(x, y, batch_size=len(x), verbose=0))
                model.save(folder / f"{case.id}.keras")
                np.savez(folder / f"{case.id}.npz", x=x, y=y)
                fitted[case.id] = (losses, value, case.make().get_config())
            return fitted, load_in_fresh_process(folder)

        @each_fitted
        def test_fit_then_load_in_fresh_process(self, case, fitted_and_reloaded):
            fitted, reloaded = fitted_and_reloaded
            losses, value, config = fitted[case.id]
            assert np.all(np.isfinite(losses)) and np.isfinite(value)
            got = reloaded[case.id]
            assert got["loss_class"] == case.cls.__name__
            assert got["loss_config"] == json.loads(json.dumps(config))
            np.testing.assert_allclose(got["evaluate"], value, rtol=1e-5, atol=1e-6)

        # ------------------------------------------------------------ errors

        @each
        def test_bad_arguments_raise_naming_the_argument(self, case, rng):
            y_true, y_pred = case.make_inputs(rng)
            for kwargs, arg in case.bad_args:
                with pytest.raises((ValueError, TypeError), match=f"`?{arg}`?"):
                    case.make(**kwargs)(y_true, y_pred)
                with pytest.raises((ValueError, TypeError), match=f"`?{arg}`?"):
                    case.call_fn(y_true, y_pred, **kwargs)

        @each
        def test_integer_predictions_are_refused(self, case, rng):
            y_true, y_pred = case.make_inputs(rng)
            as_int = np.round(y_pred).astype("int32")
            with pytest.raises(TypeError, match="y_pred"):
                case.make()(y_true, as_int)
            with pytest.raises(TypeError, match="y_pred"):
                case.call_fn(y_true, as_int)

    return ContractSuite
