"""The one place that knows Keras' reduction, `sample_weight` and mask rules.

Every loss in keras_lossplus is a pure function plus a thin class built on one
of the two bases here:

* `LossPlus` for losses with one value per sample (or per element, like
  `keras.losses.binary_crossentropy`). Reduction, `sample_weight` and masks
  are applied by `keras.losses.Loss.__call__` itself, so they behave exactly
  like Keras' own losses.
* `BatchLoss` for losses defined over the whole batch (F-beta over the batch,
  metric learning). Their function returns one scalar and takes the per-sample
  weights itself; what a weight means is documented by each loss. Keras
  returns a scalar loss unchanged for every `reduction`, and so do these.

A loss's options are checked once, by the `Options` spec its function
declares (`keras_lossplus.losses.options`): the class checks its
constructor's options with the same spec, then calls the unchecked function.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, ClassVar, Optional

import keras
from keras import ops

from keras_lossplus import backend as klp_backend
from keras_lossplus import keras_internals
from keras_lossplus.losses.options import check_choice, check_float_predictions, saved_option, unchecked
from keras_lossplus.ops import compute_dtype, with_gradient_of

Tensor = Any

REDUCTIONS = ("sum_over_batch_size", "sum", "mean", "mean_with_sample_weight", "none", None)
CROSS_REPLICA = ("gather", "local")


def register(cls: type) -> type:
    """Register a loss class for saving under the `keras_lossplus` package."""
    return keras.saving.register_keras_serializable(package="keras_lossplus")(cls)


def prepare_inputs(y_true: Any, y_pred: Any) -> tuple:
    """Convert `y_true` and `y_pred` to tensors in the dtype the loss computes in.

    `y_pred` must be floating point. `float16` / `bfloat16` inputs are computed
    in `float32` (see `keras_lossplus.ops.compute_dtype`); `y_true` is cast to
    the same dtype.
    """
    check_float_predictions(y_pred)
    y_pred = ops.convert_to_tensor(y_pred)
    dtype = compute_dtype(y_pred.dtype)
    y_pred = ops.cast(y_pred, dtype)
    y_true = ops.cast(ops.convert_to_tensor(y_true), dtype)
    return y_true, y_pred


# --------------------------------------------------------------------------- base classes


class LossPlus(keras.losses.Loss):
    """Base of the per-sample losses: stores the options, calls `fn`, and lets
    `keras.losses.Loss` apply reduction, `sample_weight` and masks.

    Subclasses set `fn = staticmethod(the_function)` and pass their options as
    keyword arguments to `__init__`, which checks them with the function's
    `Options` spec; `get_config` then returns every constructor argument.
    """

    fn: ClassVar[Callable[..., Tensor]]

    def __init__(
        self,
        *,
        reduction: Optional[str] = "sum_over_batch_size",
        name: Optional[str] = None,
        dtype: Any = None,
        **options: Any,
    ) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self._dtype_arg = dtype
        spec = getattr(getattr(type(self), "fn", None), "options", None)
        self._options = options if spec is None else spec.check(options)

    @property
    def _fn(self) -> Callable[..., Tensor]:
        """The loss function without its option checks (done in `__init__`)."""
        return unchecked(type(self).fn)

    def __call__(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> Tensor:
        check_float_predictions(y_pred)
        return super().__call__(y_true, y_pred, sample_weight=sample_weight)

    def call(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        return self._fn(y_true, y_pred, **self._options)

    def get_config(self) -> dict:
        config = super().get_config()
        dtype = self._dtype_arg
        if dtype is not None and not isinstance(dtype, str):
            dtype = keras_internals.loss_dtype_policy_name(self)
        config.update(dtype=dtype, **{k: saved_option(v) for k, v in self._options.items()})
        return config

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self._options.items())
        return f"{type(self).__name__}({opts})"


class BatchLoss(LossPlus):
    """Base of the losses defined over a whole batch.

    `fn(y_true, y_pred, sample_weight=w, **options)` returns one scalar. The
    weights `w` (shape `(B,)`, or `y_pred.shape[:-1]` for sequence outputs) are
    the product of the caller's `sample_weight` and of the Keras mask carried
    by `y_pred`, if any; each loss documents how they enter its formula. Like
    any Keras loss whose value is a scalar, the result is the same for every
    `reduction`.

    Under data-parallel training with `tf.distribute` each replica holds a
    slice of the batch. With `cross_replica="gather"` (the default) the
    slices are all-gathered, so that the loss is that of the global batch
    (in-batch negatives, mining and denominators as on one device); each
    replica's gradient flows through its own slice only, and the value is
    scaled so that Keras' sum of the replicas' gradients and its logged loss
    equal the single-device ones. `cross_replica="local"`: each replica's
    loss on its own slice, averaged over the replicas. Under JAX's
    `keras.distribution` the loss always sees the global batch.
    """

    # True for losses whose labels are class ids (compared, never computed with): integer labels stay
    # integers, since a float32 cast would merge ids from 2**24 on (float16: 2**11)
    class_labels = False

    def __init__(self, *, cross_replica: str = "gather", **kwargs: Any) -> None:
        check_choice("cross_replica", cross_replica, CROSS_REPLICA)
        super().__init__(**kwargs)
        self.cross_replica = cross_replica

    def get_config(self) -> dict:
        config = super().get_config()
        if "cross_replica" in inspect.signature(type(self).__init__).parameters:
            config["cross_replica"] = self.cross_replica
        return config

    def __call__(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> Tensor:
        check_float_predictions(y_pred)
        mask = get_keras_mask(y_pred)
        with keras.name_scope(self.name):
            y_pred = ops.convert_to_tensor(y_pred, dtype=self.dtype)
            y_true = ops.convert_to_tensor(y_true)
            if not (self.class_labels and keras.backend.is_int_dtype(keras.backend.standardize_dtype(y_true.dtype))):
                y_true = ops.cast(y_true, self.dtype)
            weights = batch_weights(sample_weight, mask, y_pred)
            return ops.cast(self._replicated(y_true, y_pred, weights), self.dtype)

    def _replicated(self, y_true: Tensor, y_pred: Tensor, weights: Optional[Tensor]) -> Tensor:
        """The loss of the global batch (`"gather"`) or of this replica's
        slice (`"local"`), scaled for Keras' sum over the replicas."""
        gathered = klp_backend.gather_replicas([y_true, y_pred, weights]) if self.cross_replica == "gather" else None
        if gathered is not None:
            (y_true, y_pred, weights), replicas = gathered
        loss = self._fn(y_true, y_pred, sample_weight=weights, **self._options)
        if gathered is not None:
            # value: the global loss / replicas (Keras logs the replicas' mean times their number);
            # gradient: the global loss's, through this replica's slice (Keras sums the replicas')
            return with_gradient_of(loss / replicas, loss)
        replicas = klp_backend.num_replicas() if self.cross_replica == "local" else 1
        return loss / replicas if replicas > 1 else loss


def get_keras_mask(x: Any) -> Optional[Tensor]:
    """The Keras mask carried by `x` (as `keras.losses.Loss.__call__` reads it),
    or `None`."""
    return keras_internals.get_keras_mask(x)


def with_keras_mask(x: Any, mask: Any) -> Tensor:
    """A copy of `x` carrying the Keras mask `mask` (combined with the one `x`
    already has), which Keras' losses and mean metrics apply to their values."""
    previous = get_keras_mask(x)
    mask = ops.cast(mask, "bool")
    if previous is not None:
        mask = ops.logical_and(mask, ops.cast(ops.reshape(previous, ops.shape(mask)), "bool"))
    copy = ops.multiply(x, ops.ones((), x.dtype))
    keras_internals.set_keras_mask(copy, mask)
    return copy


def batch_weights(sample_weight: Any, mask: Any, y_pred: Tensor) -> Optional[Tensor]:
    """Weights for a batch-level loss from a `sample_weight` and a Keras mask:
    their product, shaped to broadcast against `y_pred.shape[:-1]` (one weight
    per sample, or per position for sequence outputs), or `None` when neither
    is given. The batch size is never read, so unknown batch dimensions under
    `tf.function` are fine."""
    target_rank = max(len(y_pred.shape) - 1, 1)
    weights = None
    for w in (sample_weight, mask):
        if w is None:
            continue
        w = ops.cast(ops.convert_to_tensor(w), y_pred.dtype)
        while len(w.shape) > target_rank and w.shape[-1] == 1:
            w = ops.squeeze(w, axis=-1)
        if len(w.shape) > target_rank:
            raise ValueError(
                "Batch-level losses take one weight per sample (or per position of "
                "`y_pred.shape[:-1]`): `sample_weight` and any mask must have shape "
                f"(batch_size,) or {tuple(y_pred.shape[:-1])}. Received shape {tuple(w.shape)}"
            )
        while len(w.shape) < target_rank:
            w = ops.expand_dims(w, axis=-1)
        weights = w if weights is None else weights * w
    return weights
