"""The VAE sampling layer: reparameterised sample out, `beta * KL` in."""

from __future__ import annotations

from typing import Any, Optional, Union

import keras
from keras import ops

from keras_lossplus.layers.base import (
    PenaltyLayer,
    as_float32,
    factor_variable,
    register,
    two_input_shapes,
    variable_value,
)
from keras_lossplus.losses.magnitude import bounded

Tensor = Any
Beta = Union[float, keras.Variable, Any]


def gaussian_kl(z_mean: Tensor, z_log_var: Tensor) -> Tensor:
    """`KL(N(mean, exp(log_var)) || N(0, I))` summed over the last axis,
    per sample.

    Examples:
        >>> mean = keras.ops.convert_to_tensor([[1.0, 0.0]])
        >>> float(gaussian_kl(mean, keras.ops.zeros((1, 2)))[0])
        0.5
    """
    return -0.5 * ops.sum(1.0 + z_log_var - ops.square(z_mean) - ops.exp(z_log_var), axis=-1)


@register
class GaussianSampling(PenaltyLayer):
    r"""VAE reparameterisation layer with the KL term as a penalty.

    Takes `[z_mean, z_log_var]`; in training returns
    `z = z_mean + exp(z_log_var / 2) * eps`, `eps ~ N(0, I)`, and in
    inference returns `z_mean`. Adds

    $$\beta\ \frac1N \sum_n \mathrm{KL}\bigl(\mathcal N(\mu_n,
      \sigma_n^2)\,\|\,\mathcal N(0, I)\bigr)$$

    (summed over latent dimensions, averaged over the batch, as in the Keras
    VAE example) to the loss.

    `beta` may be a number, a non-trainable `keras.Variable` you change
    between epochs, or a schedule (`LinearWarmup`, `CyclicalSchedule`, any
    serializable `step -> value` callable such as a Keras learning-rate
    schedule). A schedule is evaluated on the layer's own step counter
    (`iterations`, the number of training calls, i.e. optimizer steps when
    the layer is called once per step), which advances inside the compiled
    step and is saved with the model.

    Args:
        beta: Weight of the KL term, `>= 0`, a variable, or a schedule.
        seed: Seed of the sampling noise.
        training_only: Add the KL only in training (default: also in
            `evaluate`, so `val_loss` is the full ELBO).

    Reference:
        Kingma & Welling, "Auto-Encoding Variational Bayes", ICLR 2014,
        https://arxiv.org/abs/1312.6114; Higgins et al., "beta-VAE", ICLR 2017.

    Examples:
        >>> layer = GaussianSampling(beta=1.0)
        >>> z = layer([keras.ops.zeros((2, 3)), keras.ops.zeros((2, 3))])
        >>> tuple(z.shape), [float(v) for v in layer.losses]
        ((2, 3), [0.0])
    """

    def __init__(self, beta: Beta = 1.0, seed: Optional[int] = None, training_only: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(training_only=training_only, **kwargs)
        if isinstance(beta, dict):
            beta = keras.saving.deserialize_keras_object(beta)
        if callable(beta) and not isinstance(beta, keras.Variable):
            if not hasattr(beta, "get_config"):
                raise ValueError(
                    "Argument `beta` must be a number, a keras.Variable or a serializable schedule "
                    f"(an object with `__call__(step)` and `get_config()`). Received: beta={beta!r}"
                )
            self.schedule = beta
            self.beta = None
        else:
            self.schedule = None
            self.beta = factor_variable(self, "beta", beta)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.iterations = self.add_weight(
            shape=(), initializer="zeros", dtype="int32", trainable=False, name="iterations"
        )

    def build(self, input_shape: Any) -> None:
        mean_shape, log_var_shape = two_input_shapes(self, input_shape, "z_mean, z_log_var")
        if mean_shape != log_var_shape:
            raise ValueError(
                "GaussianSampling needs z_mean and z_log_var of the same shape. Received "
                f"z_mean.shape={mean_shape}, z_log_var.shape={log_var_shape}"
            )

    def current_beta(self) -> Tensor:
        """The weight of the KL term at the current step."""
        if self.schedule is not None:
            return ops.cast(self.schedule(self.iterations), "float32")
        return ops.convert_to_tensor(self.beta)

    def penalty(self, inputs: Any) -> Tensor:
        z_mean, z_log_var = (as_float32(t) for t in inputs)
        z_mean = bounded(z_mean, "z_mean", "GaussianSampling: ", hint="The encoder's means have diverged.")
        return self.current_beta() * ops.mean(gaussian_kl(z_mean, z_log_var))

    def outputs(self, inputs: Any, training: Optional[bool]) -> Tensor:
        z_mean, z_log_var = inputs
        if not training:
            return z_mean
        eps = keras.random.normal(ops.shape(z_mean), dtype=z_mean.dtype, seed=self.seed_generator)
        return z_mean + ops.exp(0.5 * z_log_var) * eps

    def call(self, inputs: Any, training: Optional[bool] = None) -> Tensor:
        outputs = super().call(inputs, training=training)
        if training:
            self.iterations.assign_add(ops.ones((), "int32"))
        return outputs

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape[0]

    def get_config(self) -> dict:
        config = super().get_config()
        if self.schedule is not None:
            config["beta"] = keras.saving.serialize_keras_object(self.schedule)
        else:
            config["beta"] = variable_value(self.beta)
        config["seed"] = self.seed
        return config
