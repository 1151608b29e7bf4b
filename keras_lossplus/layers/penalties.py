"""Activity penalty layers: each adds a penalty on its input to the loss and
returns the input unchanged.

```python
h = keras.layers.Dense(64, activation="relu")(x)
h = klp.layers.L1Penalty(1e-4)(h)            # adds 1e-4 * sum(|h|) to the loss
```

All penalties are computed in float32 (also under mixed precision) and
count in training and in `evaluate` unless `training_only=True`. Their
factors may be numbers or non-trainable `keras.Variable`s changed between
epochs. With `PenaltyLogging` / `log_penalties`, each value is logged under
the layer's name.
"""

from __future__ import annotations

from typing import Any

import keras  # noqa: F401  (the docstring examples use it)
from keras import ops

from keras_lossplus.layers.base import Factor, PenaltyLayer, as_float32, factor_variable, register, variable_value
from keras_lossplus.losses.magnitude import bounded
from keras_lossplus.losses.options import check_choice, check_number
from keras_lossplus.ops import l2_normalize

Tensor = Any


def _batch_size(x: Tensor) -> Tensor:
    return ops.cast(ops.shape(x)[0], "float32")


_DIVERGED = "Activations this large have diverged; lower the learning rate or normalize them."


class _NormPenalty(PenaltyLayer):
    """`l1 * sum(|x|) + l2 * sum(x^2)`, optionally divided by the batch size."""

    def __init__(self, l1: Factor, l2: Factor, normalize_by_batch: bool, training_only: bool,
                 names: tuple = ("l1", "l2"), **kwargs: Any) -> None:
        super().__init__(training_only=training_only, **kwargs)
        self.normalize_by_batch = bool(normalize_by_batch)
        self.batch_reduction = "mean" if self.normalize_by_batch else "sum"
        self.l1 = None if l1 is None else factor_variable(self, names[0], l1)
        self.l2 = None if l2 is None else factor_variable(self, names[1], l2)

    def penalty(self, inputs: Tensor) -> Tensor:
        x = as_float32(inputs)
        if self.l2 is not None:
            x = bounded(x, "inputs", f"{type(self).__name__}: ", hint=_DIVERGED)
        value = ops.zeros((), x.dtype)
        if self.l1 is not None:
            value = value + self.l1 * ops.sum(ops.abs(x))
        if self.l2 is not None:
            value = value + self.l2 * ops.sum(ops.square(x))
        if self.normalize_by_batch:
            value = ops.divide_no_nan(value, _batch_size(x))
        return value

    def get_config(self) -> dict:
        config = super().get_config()
        config["normalize_by_batch"] = self.normalize_by_batch
        return config


@register
class L1Penalty(_NormPenalty):
    """Adds `factor * sum(|x|)` over the batch to the loss (the classic
    `L1PenaltyLayer` recipe); returns `x` unchanged.

    With `normalize_by_batch=True` the sum is divided by the batch size,
    which is exactly what `keras.layers.ActivityRegularization(l1=factor)`
    adds in Keras 3.

    Args:
        factor: `>= 0`, a number or a non-trainable scalar `keras.Variable`.
        normalize_by_batch: Divide by the batch size.
        training_only: Add the penalty only in training.

    Reference:
        Tibshirani, "Regression Shrinkage and Selection via the Lasso", 1996;
        Keras' `ActivityRegularization`.

    Examples:
        >>> layer = L1Penalty(0.5)
        >>> _ = layer(keras.ops.convert_to_tensor([[1.0, -2.0], [0.0, 3.0]]))
        >>> [float(v) for v in layer.losses]
        [3.0]
    """

    def __init__(self, factor: Factor = 0.01, normalize_by_batch: bool = False, training_only: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(factor, None, normalize_by_batch, training_only, names=("factor", "l2"), **kwargs)

    def get_config(self) -> dict:
        return {**super().get_config(), "factor": variable_value(self.l1)}


@register
class L2Penalty(_NormPenalty):
    """Adds `factor * sum(x^2)` over the batch to the loss; returns `x`.

    `normalize_by_batch=True` divides by the batch size, as
    `keras.layers.ActivityRegularization(l2=factor)` does.

    Args:
        factor: `>= 0`, a number or a non-trainable scalar `keras.Variable`.
        normalize_by_batch: Divide by the batch size.
        training_only: Add the penalty only in training.

    Reference:
        Hoerl & Kennard, "Ridge Regression", 1970; Keras' `ActivityRegularization`.

    Examples:
        >>> layer = L2Penalty(0.5)
        >>> _ = layer(keras.ops.convert_to_tensor([[1.0, -2.0], [0.0, 3.0]]))
        >>> [float(v) for v in layer.losses]
        [7.0]
    """

    def __init__(self, factor: Factor = 0.01, normalize_by_batch: bool = False, training_only: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(None, factor, normalize_by_batch, training_only, names=("l1", "factor"), **kwargs)

    def get_config(self) -> dict:
        return {**super().get_config(), "factor": variable_value(self.l2)}


@register
class ElasticNetPenalty(_NormPenalty):
    """Adds `l1 * sum(|x|) + l2 * sum(x^2)` to the loss; returns `x`.

    With `normalize_by_batch=True` it equals
    `keras.layers.ActivityRegularization(l1=l1, l2=l2)`.

    Args:
        l1: `>= 0`, a number or a non-trainable scalar `keras.Variable`.
        l2: `>= 0`, likewise.
        normalize_by_batch: Divide by the batch size.
        training_only: Add the penalty only in training.

    Reference:
        Zou & Hastie, "Regularization and variable selection via the elastic
        net", 2005.

    Examples:
        >>> layer = ElasticNetPenalty(l1=0.5, l2=0.5)
        >>> _ = layer(keras.ops.convert_to_tensor([[1.0, -2.0], [0.0, 3.0]]))
        >>> [float(v) for v in layer.losses]
        [10.0]
    """

    def __init__(self, l1: Factor = 0.01, l2: Factor = 0.01, normalize_by_batch: bool = False,
                 training_only: bool = False, **kwargs: Any) -> None:
        super().__init__(l1, l2, normalize_by_batch, training_only, **kwargs)

    def get_config(self) -> dict:
        return {**super().get_config(), "l1": variable_value(self.l1), "l2": variable_value(self.l2)}


class _FactorPenalty(PenaltyLayer):
    """A penalty `factor * term(x)`; subclasses implement `term`."""

    def __init__(self, factor: Factor, training_only: bool = False, **kwargs: Any) -> None:
        super().__init__(training_only=training_only, **kwargs)
        self.factor = factor_variable(self, "factor", factor)

    def term(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def penalty(self, inputs: Tensor) -> Tensor:
        return self.factor * self.term(as_float32(inputs))

    def get_config(self) -> dict:
        return {**super().get_config(), "factor": variable_value(self.factor)}


@register
class KLSparsityPenalty(_FactorPenalty):
    r"""Sparse-autoencoder penalty: `factor * sum_j KL(target || rho_j)`,
    where `rho_j` is the mean activation of unit `j` over the batch.

    $$\sum_j \rho \log\frac{\rho}{\hat\rho_j} + (1 - \rho)
      \log\frac{1 - \rho}{1 - \hat\rho_j}$$

    Activations must lie in `[0, 1]` (e.g. after a sigmoid); `rho_j` and
    `1 - rho_j` are clipped to at least `1e-7` so dead or saturated units
    give a finite penalty. Units are the last axis; all other axes are averaged.

    Args:
        target: Target activation rate `rho` in `(0, 1)`.
        factor: `>= 0` (the sparsity weight, `beta` in Ng's notes).
        training_only: Add the penalty only in training.

    Reference:
        Ng, "Sparse autoencoder", CS294A lecture notes, 2011.

    Examples:
        >>> layer = KLSparsityPenalty(target=0.5, factor=1.0)
        >>> _ = layer(keras.ops.convert_to_tensor([[0.5, 0.5], [0.5, 0.5]]))
        >>> [round(float(v), 6) for v in layer.losses]
        [0.0]
    """

    batch_reduction = "batch"

    def __init__(self, target: float = 0.05, factor: Factor = 1.0, training_only: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(factor, training_only=training_only, **kwargs)
        self.target = check_number("target", target, low=0.0, high=1.0, low_open=True, high_open=True)

    def term(self, x: Tensor) -> Tensor:
        units = ops.reshape(x, (-1, x.shape[-1]))
        mean = ops.mean(units, axis=0)
        # 1 - rho_hat bounded itself: in float32 1 - 1e-7 rounds to 1 - 1.19e-7, so a clip of rho_hat
        # at 1 - 1e-7 would put a saturated unit's term 0.17 off the float64 one. Lower bounds only: a
        # clip's gradient at a bound it touches is 1/2 on JAX (rho_hat = 1, or 1 - rho_hat = 1)
        rho_hat, rest = ops.maximum(mean, 1e-7), ops.maximum(1.0 - mean, 1e-7)
        rho = self.target
        kl = rho * ops.log(rho / rho_hat) + (1.0 - rho) * ops.log((1.0 - rho) / rest)
        return ops.sum(kl)

    def get_config(self) -> dict:
        return {**super().get_config(), "target": self.target}


def _centered(x: Tensor) -> Tensor:
    units = ops.reshape(x, (-1, x.shape[-1]))
    return units - ops.mean(units, axis=0, keepdims=True)


def _off_diagonal(m: Tensor) -> Tensor:
    return m * (1.0 - ops.eye(m.shape[0], dtype=m.dtype))


@register
class DecorrelationPenalty(_FactorPenalty):
    r"""DeCov (Cogswell et al., 2016): `factor * 0.5 * ||C||_F^2 - ||diag C||^2`
    with `C` the covariance of the batch's activations (units on the last axis).

    $$C_{ij} = \frac{1}{N}\sum_n (h^n_i - \mu_i)(h^n_j - \mu_j), \qquad
      \mathcal{L} = \tfrac12\bigl(\|C\|_F^2 - \|\operatorname{diag} C\|_2^2\bigr)$$

    It discourages redundant (co-adapted) units without shrinking their
    variance.

    Args:
        factor: `>= 0`.
        training_only: Add the penalty only in training.

    Reference:
        Cogswell et al., "Reducing Overfitting in Deep Networks by
        Decorrelating Representations", ICLR 2016,
        https://arxiv.org/abs/1511.06068

    Examples:
        >>> layer = DecorrelationPenalty(factor=1.0)
        >>> _ = layer(keras.ops.convert_to_tensor([[1.0, 1.0], [-1.0, -1.0]]))
        >>> [float(v) for v in layer.losses]
        [1.0]
    """

    batch_reduction = "batch"

    def __init__(self, factor: Factor = 0.1, training_only: bool = False, **kwargs: Any) -> None:
        super().__init__(factor, training_only=training_only, **kwargs)

    def term(self, x: Tensor) -> Tensor:
        h = _centered(bounded(x, "inputs", "DecorrelationPenalty: ", _DIVERGED, power=4))
        cov = ops.matmul(ops.transpose(h), h) / ops.cast(ops.shape(h)[0], h.dtype)
        return 0.5 * ops.sum(ops.square(_off_diagonal(cov)))


@register
class OrthogonalityPenalty(_FactorPenalty):
    """Pushes the batch's activation vectors (`mode="rows"`, one per sample)
    or units (`mode="columns"`) towards orthogonality: the mean absolute
    cosine similarity between distinct pairs, i.e. how far the normalised
    Gram matrix is from the identity.

    The formula is Keras' `OrthogonalRegularizer(factor, mode)`
    (`factor * 0.5 * sum|G - diag G| / num_pairs`, on L2-normalised rows or
    columns), applied to activations instead of a kernel; inputs must be 2-D.

    Args:
        factor: `>= 0`.
        mode: `"rows"` (samples) or `"columns"` (units).
        training_only: Add the penalty only in training.

    Reference:
        Brock et al., "Neural Photo Editing with Introspective Adversarial
        Networks", ICLR 2017; Keras' `OrthogonalRegularizer`.

    Examples:
        >>> layer = OrthogonalityPenalty(factor=1.0, mode="rows")
        >>> _ = layer(keras.ops.convert_to_tensor([[1.0, 0.0], [1.0, 0.0]]))
        >>> [float(v) for v in layer.losses]
        [1.0]
    """

    MODES = ("rows", "columns")

    batch_reduction = "batch"

    def __init__(self, factor: Factor = 0.01, mode: str = "rows", training_only: bool = False, **kwargs: Any) -> None:
        check_choice("mode", mode, self.MODES)
        super().__init__(factor, training_only=training_only, **kwargs)
        self.mode = mode

    def build(self, input_shape: Any) -> None:
        if len(input_shape) != 2:
            raise ValueError(
                f"{type(self).__name__} expects 2-D activations (batch, units). "
                f"Received input_shape={tuple(input_shape)}"
            )

    def term(self, x: Tensor) -> Tensor:
        if self.mode == "columns":
            x = ops.transpose(x)
        x = l2_normalize(x, axis=1)
        gram = ops.matmul(x, ops.transpose(x))
        size = ops.cast(ops.shape(x)[0], x.dtype)
        pairs = size * (size - 1.0) / 2.0
        return ops.divide_no_nan(0.5 * ops.sum(ops.abs(_off_diagonal(gram))), pairs)

    def get_config(self) -> dict:
        return {**super().get_config(), "mode": self.mode}


@register
class EntropyPenalty(_FactorPenalty):
    r"""Confidence penalty (Pereyra et al., 2017): adds `-factor * H(p)`,
    the negative entropy of the predicted distribution averaged over the
    batch, so that minimising the loss discourages over-confident outputs.

    $$\mathcal{L} = -\beta\, \frac{1}{N}\sum_n H(p_n), \quad
      H(p) = -\sum_c p_c \log p_c$$

    Place it on the model's output (probabilities, or logits with
    `from_logits=True`); classes are on the last axis.

    Args:
        factor: `>= 0` (`beta` in the paper; 0.1 to 2 there).
        from_logits: Whether the input holds logits.
        training_only: Add the penalty only in training.

    Reference:
        Pereyra et al., "Regularizing Neural Networks by Penalizing Confident
        Output Distributions", ICLR 2017 workshop, https://arxiv.org/abs/1701.06548

    Examples:
        >>> layer = EntropyPenalty(factor=1.0)
        >>> _ = layer(keras.ops.convert_to_tensor([[0.5, 0.5]]))
        >>> [round(float(v), 4) for v in layer.losses]
        [-0.6931]
    """

    def __init__(self, factor: Factor = 0.1, from_logits: bool = False, training_only: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(factor, training_only=training_only, **kwargs)
        self.from_logits = bool(from_logits)

    def term(self, x: Tensor) -> Tensor:
        if self.from_logits:
            log_p = ops.log_softmax(x, axis=-1)
            p = ops.exp(log_p)
        else:
            # a lower bound only: a clip at 1 would halve the gradient at p = 1 on JAX (its clip's
            # gradient at a bound it touches is 1/2)
            p = ops.maximum(x, 1e-7)
            log_p = ops.log(p)
        entropy = -ops.sum(p * log_p, axis=-1)
        return -ops.mean(entropy)

    def get_config(self) -> dict:
        return {**super().get_config(), "from_logits": self.from_logits}


@register
class VarianceCovariancePenalty(PenaltyLayer):
    r"""The variance and covariance terms of VICReg (Bardes et al., 2022) on
    one branch's embeddings `Z` (batch on the first axis, features last).

    $$v(Z) = \frac1d\sum_j \max\bigl(0, \gamma - \sqrt{\operatorname{Var}(z_j)
      + \epsilon}\bigr), \qquad c(Z) = \frac1d\sum_{i \ne j} C(Z)_{ij}^2$$

    with `C` the covariance (divided by `N - 1`). Adds
    `variance_weight * v + covariance_weight * c`: the variance term keeps
    every feature's standard deviation above `gamma` (no collapse), the
    covariance term decorrelates features. Put one on each branch and add the
    invariance term (e.g. MSE between branches) as the compiled loss.

    Args:
        variance_weight: `>= 0` (`mu` in the paper, 25).
        covariance_weight: `>= 0` (`nu` in the paper, 1).
        gamma: Target standard deviation, `> 0`.
        epsilon: Numerical floor inside the square root, `> 0`.
        training_only: Add the penalty only in training.

    Reference:
        Bardes et al., "VICReg: Variance-Invariance-Covariance
        Regularization for Self-Supervised Learning", ICLR 2022,
        https://arxiv.org/abs/2105.04906

    Examples:
        >>> layer = VarianceCovariancePenalty(variance_weight=1.0, covariance_weight=1.0)
        >>> _ = layer(keras.ops.convert_to_tensor([[1.0, 0.0], [-1.0, 0.0]]))
        >>> [round(float(v), 4) for v in layer.losses]
        [0.495]
    """

    batch_reduction = "batch"

    def __init__(self, variance_weight: Factor = 25.0, covariance_weight: Factor = 1.0, gamma: float = 1.0,
                 epsilon: float = 1e-4, training_only: bool = False, **kwargs: Any) -> None:
        super().__init__(training_only=training_only, **kwargs)
        self.variance_weight = factor_variable(self, "variance_weight", variance_weight)
        self.covariance_weight = factor_variable(self, "covariance_weight", covariance_weight)
        self.gamma = check_number("gamma", gamma, low=0.0, low_open=True)
        self.epsilon = check_number("epsilon", epsilon, low=0.0, low_open=True)

    def penalty(self, inputs: Tensor) -> Tensor:
        z = _centered(bounded(as_float32(inputs), "inputs", "VarianceCovariancePenalty: ", _DIVERGED, power=4))
        n = ops.cast(ops.shape(z)[0], z.dtype)
        d = float(z.shape[-1])
        var = ops.sum(ops.square(z), axis=0) / ops.maximum(n - 1.0, 1.0)
        variance = ops.mean(ops.relu(self.gamma - ops.sqrt(var + self.epsilon)))
        cov = ops.matmul(ops.transpose(z), z) / ops.maximum(n - 1.0, 1.0)
        covariance = ops.sum(ops.square(_off_diagonal(cov))) / d
        return self.variance_weight * variance + self.covariance_weight * covariance

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "variance_weight": variable_value(self.variance_weight),
            "covariance_weight": variable_value(self.covariance_weight),
            "gamma": self.gamma,
            "epsilon": self.epsilon,
        }
