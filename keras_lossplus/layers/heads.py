r"""Margin heads and proxy layers for metric learning.

Margin heads (`ArcFace`, `CosFace`, `SubCenterArcFace`) take
`[embeddings, labels]` and return logits `(B, num_classes)` for
`keras.losses.SparseCategoricalCrossentropy(from_logits=True)`: the scaled
cosine between the L2-normalised embedding and each L2-normalised class
weight, with an additive margin on the target class in training only.

Proxy layers (`ProxyAnchor`, `ProxyNCA`) hold one learnable proxy per class
and return, for each embedding, its similarity to every proxy; the matching
losses are `keras_lossplus.losses.ProxyAnchorLoss` and
`keras_lossplus.losses.ProxyNCALoss`.

Weights are created in float32 and the arithmetic runs in float32 under
mixed precision; the output is in the layer's compute dtype.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import keras
import numpy as np
from keras import ops

from keras_lossplus.layers.base import as_float32, register
from keras_lossplus.losses.options import check_number
from keras_lossplus.losses.labels import check_integer_labels
from keras_lossplus.ops import l2_normalize, safe_sqrt

Tensor = Any

__all__ = ["ArcFace", "CosFace", "ProxyAnchor", "ProxyNCA", "SubCenterArcFace"]


# --------------------------------------------------------------------------- validation


def _check_int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"Argument `{name}` must be an integer >= {low}. Received: {name}={value!r}")
    return int(value)


def _check_embedding_shape(layer: keras.layers.Layer, shape: Any) -> tuple:
    shape = tuple(shape)
    if len(shape) != 2 or shape[-1] is None:
        raise ValueError(
            f"{type(layer).__name__} expects `embeddings` of shape (batch_size, dim) with a known dim. "
            f"Received: embeddings.shape={shape}"
        )
    return shape


def _check_label_shape(layer: keras.layers.Layer, shape: Any, batch: Any) -> None:
    shape = tuple(shape)
    if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
        raise ValueError(
            f"{type(layer).__name__} expects `labels` of shape (batch_size,) or (batch_size, 1), one "
            f"integer class per embedding. Received: labels.shape={shape}"
        )
    if batch is not None and shape[0] is not None and batch != shape[0]:
        raise ValueError(
            f"{type(layer).__name__} expects `labels` and `embeddings` with the same batch size. "
            f"Received: labels.shape={shape}, embeddings batch size {batch}"
        )


def _pair_shapes(layer: keras.layers.Layer, input_shape: Any) -> tuple:
    ok = isinstance(input_shape, (list, tuple)) and len(input_shape) == 2
    if not ok or not all(isinstance(s, (list, tuple)) for s in input_shape):
        raise ValueError(
            f"{type(layer).__name__} takes two inputs, [embeddings, labels]. Received input_shape={input_shape}"
        )
    emb = _check_embedding_shape(layer, input_shape[0])
    _check_label_shape(layer, input_shape[1], emb[0])
    return emb, tuple(input_shape[1])


def _cosine(embeddings: Tensor, kernel: Tensor) -> Tensor:
    """Cosine between each row of `embeddings` `(B, D)` and each column of
    `kernel` `(D, N)`, clipped to `[-1, 1]`; a zero vector gives cosine 0."""
    x = l2_normalize(as_float32(embeddings), axis=-1)
    w = l2_normalize(ops.cast(kernel, x.dtype), axis=0)
    return ops.clip(ops.matmul(x, w), -1.0, 1.0)


# --------------------------------------------------------------------------- margin heads


class _MarginHead(keras.layers.Layer):
    """Shared weights, checks and call logic of the margin heads."""

    default_margin = 0.0

    def __init__(
        self,
        num_classes: int,
        scale: float = 64.0,
        margin: Optional[float] = None,
        kernel_initializer: Any = "glorot_uniform",
        kernel_regularizer: Any = None,
        kernel_constraint: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.num_classes = _check_int("num_classes", num_classes, 2)
        self.scale = check_number("scale", scale, low=0.0, low_open=True)
        self.margin = self._check_margin(self.default_margin if margin is None else margin)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.kernel_constraint = keras.constraints.get(kernel_constraint)

    def _check_margin(self, margin: Any) -> float:
        return check_number("margin", margin, low=0.0)

    def _kernel_shape(self, dim: int) -> tuple:
        return (dim, self.num_classes)

    def build(self, input_shape: Any) -> None:
        emb_shape, _ = _pair_shapes(self, input_shape)
        self.kernel = self.add_weight(
            shape=self._kernel_shape(emb_shape[-1]), initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer, constraint=self.kernel_constraint,
            dtype="float32", autocast=False, name="kernel",
        )

    def cosine(self, embeddings: Tensor) -> Tensor:
        """Cosine `(B, num_classes)` between embeddings and class weights."""
        return _cosine(embeddings, self.kernel)

    def target_logit(self, cos: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def call(self, inputs: Any, training: Optional[bool] = None) -> Tensor:
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
            raise ValueError(f"{type(self).__name__} takes two inputs, [embeddings, labels].")
        embeddings, labels = ops.convert_to_tensor(inputs[0]), ops.convert_to_tensor(inputs[1])
        _check_embedding_shape(self, embeddings.shape)
        _check_label_shape(self, labels.shape, embeddings.shape[0])
        cos = self.cosine(embeddings)
        if training:
            check_integer_labels(labels, "labels", f"{type(self).__name__}: ")
            labels = ops.reshape(labels, (-1, 1))
            # a comparison in the labels' dtype, not ops.one_hot: out-of-range (and, under jit, NaN)
            # labels get no margin on every backend
            target = ops.equal(labels, ops.expand_dims(ops.arange(self.num_classes, dtype=labels.dtype), 0))
            cos = ops.where(target, self.target_logit(cos), cos)
        return ops.cast(self.scale * cos, self.compute_dtype)

    def compute_output_shape(self, input_shape: Any) -> tuple:
        return (input_shape[0][0], self.num_classes)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "scale": self.scale,
            "margin": self.margin,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
            "kernel_constraint": keras.constraints.serialize(self.kernel_constraint),
        }


def _arc_margin(cos: Tensor, margin: float) -> Tensor:
    """`cos(theta + m)` where `theta + m <= pi`, else `cos(theta) - m sin(m)`.

    `cos(theta + m) = cos(theta) cos(m) - sin(theta) sin(m)` with
    `sin(theta) = sqrt(1 - cos^2)` through a square root whose gradient is 0
    (not infinite) at `cos = +-1`, so no `acos` is differentiated. The
    fallback beyond `pi - m` is pytorch-metric-learning's and insightface's:
    it keeps the target logit decreasing in `theta`.
    """
    sin = safe_sqrt(1.0 - ops.square(cos))
    cos_m = cos * math.cos(margin) - sin * math.sin(margin)
    # theta <= pi - m  <=>  cos(theta) >= cos(pi - m) = -cos(m)
    return ops.where(cos >= -math.cos(margin), cos_m, cos - margin * math.sin(margin))


@register
class ArcFace(_MarginHead):
    r"""ArcFace head: additive angular margin (Deng et al. 2019).

    Takes `[embeddings, labels]` (embeddings `(B, D)`, integer labels `(B,)`
    or `(B, 1)`) and returns logits `(B, num_classes)`:

    $$z_{ij} = s\cos\theta_{ij}\ (j \ne y_i),\qquad
      z_{iy_i} = s\cos(\theta_{iy_i} + m)\ \text{(training only)}$$

    with $\cos\theta_{ij}$ the cosine between the L2-normalised embedding
    and the L2-normalised weight column $W_{:j}$ (kernel `(D, num_classes)`,
    the layout of pytorch-metric-learning's `ArcFaceLoss.W`). Where
    $\theta + m > \pi$ the target logit is $s(\cos\theta - m\sin m)$, as in
    pytorch-metric-learning and insightface. At inference (`training`
    falsy) no margin is applied: $z = s\cos\theta$. Feed the logits to
    `keras.losses.SparseCategoricalCrossentropy(from_logits=True)`.

    Args:
        num_classes: Number of classes, `>= 2`.
        scale: The scale `s`, `> 0`.
        margin: The angular margin `m` in **radians**, in `[0, pi)`
            (pytorch-metric-learning's `margin` is in degrees: 28.6 degrees
            = 0.5 radians).
        **kwargs: Standard layer arguments (`name`, `dtype`, ...) and the
            keyword arguments below.

    Keyword Args:
        kernel_initializer, kernel_regularizer, kernel_constraint: For the
            class weights, as in `keras.layers.Dense`.

    Reference:
        Deng et al., "ArcFace: Additive Angular Margin Loss for Deep Face
        Recognition", CVPR 2019, https://arxiv.org/abs/1801.07698

    Examples:
        >>> head = ArcFace(num_classes=2, scale=1.0, margin=0.5, kernel_initializer="identity")
        >>> emb = keras.ops.convert_to_tensor([[1.0, 0.0], [1.0, 1.0]])
        >>> labels = keras.ops.convert_to_tensor([0, 1])
        >>> keras.ops.convert_to_numpy(head([emb, labels], training=True)).astype("float64").round(4).tolist()
        [[0.8776, 0.0], [0.7071, 0.2815]]
        >>> keras.ops.convert_to_numpy(head([emb, labels])).astype("float64").round(4).tolist()
        [[1.0, 0.0], [0.7071, 0.7071]]
    """

    default_margin = 0.5

    def __init__(self, num_classes: int, scale: float = 64.0, margin: float = 0.5, **kwargs: Any) -> None:
        super().__init__(num_classes, scale=scale, margin=margin, **kwargs)

    def _check_margin(self, margin: Any) -> float:
        return check_number("margin", margin, low=0.0, high=math.pi, high_open=True)

    def target_logit(self, cos: Tensor) -> Tensor:
        return _arc_margin(cos, self.margin)


@register
class CosFace(_MarginHead):
    r"""CosFace head: additive cosine margin (Wang et al. 2018).

    Takes `[embeddings, labels]` (embeddings `(B, D)`, integer labels `(B,)`
    or `(B, 1)`) and returns logits `(B, num_classes)`:

    $$z_{ij} = s\cos\theta_{ij}\ (j \ne y_i),\qquad
      z_{iy_i} = s(\cos\theta_{iy_i} - m)\ \text{(training only)}$$

    with the cosines between L2-normalised embeddings and L2-normalised
    weight columns (kernel `(D, num_classes)`, the layout of
    pytorch-metric-learning's `CosFaceLoss.W`). At inference no margin is
    applied. Feed the logits to
    `keras.losses.SparseCategoricalCrossentropy(from_logits=True)`.

    Args:
        num_classes: Number of classes, `>= 2`.
        scale: The scale `s`, `> 0`.
        margin: The cosine margin `m`, `>= 0`.
        **kwargs: Standard layer arguments (`name`, `dtype`, ...) and the
            keyword arguments below.

    Keyword Args:
        kernel_initializer, kernel_regularizer, kernel_constraint: For the
            class weights, as in `keras.layers.Dense`.

    Reference:
        Wang et al., "CosFace: Large Margin Cosine Loss for Deep Face
        Recognition", CVPR 2018, https://arxiv.org/abs/1801.09414

    Examples:
        >>> head = CosFace(num_classes=2, scale=1.0, margin=0.35, kernel_initializer="identity")
        >>> emb = keras.ops.convert_to_tensor([[1.0, 0.0], [1.0, 1.0]])
        >>> labels = keras.ops.convert_to_tensor([0, 1])
        >>> keras.ops.convert_to_numpy(head([emb, labels], training=True)).astype("float64").round(4).tolist()
        [[0.65, 0.0], [0.7071, 0.3571]]
    """

    default_margin = 0.35

    def __init__(self, num_classes: int, scale: float = 64.0, margin: float = 0.35, **kwargs: Any) -> None:
        super().__init__(num_classes, scale=scale, margin=margin, **kwargs)

    def target_logit(self, cos: Tensor) -> Tensor:
        return cos - self.margin


@register
class SubCenterArcFace(ArcFace):
    r"""Sub-center ArcFace head (Deng et al. 2020).

    Like `ArcFace`, but each class has `sub_centers` weight vectors and the
    cosine of an embedding to a class is the largest cosine to its
    sub-centers:

    $$\cos\theta_{ij} = \max_k \frac{x_i \cdot W_{:jk}}{\lVert x_i\rVert \lVert W_{:jk}\rVert}$$

    then the ArcFace margin on the target class (training only). The kernel
    has shape `(D, num_classes, sub_centers)`; pytorch-metric-learning's
    `SubCenterArcFaceLoss.W` `(D, num_classes * sub_centers)` is the same
    array reshaped (`W.reshape(D, num_classes, sub_centers)`).

    Args:
        num_classes: Number of classes, `>= 2`.
        scale: The scale `s`, `> 0`.
        margin: The angular margin `m` in radians, in `[0, pi)`.
        sub_centers: Sub-centers per class `K`, `>= 1`.
        **kwargs: Standard layer arguments (`name`, `dtype`, ...) and the
            keyword arguments below.

    Keyword Args:
        kernel_initializer, kernel_regularizer, kernel_constraint: For the
            class weights.

    Reference:
        Deng et al., "Sub-center ArcFace: Boosting Face Recognition by
        Large-scale Noisy Web Faces", ECCV 2020.

    Examples:
        >>> head = SubCenterArcFace(num_classes=2, sub_centers=2, scale=1.0)
        >>> head.build([(None, 2), (None,)])
        >>> _ = head.kernel.assign([[[1.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 1.0]]])
        >>> emb = keras.ops.convert_to_tensor([[1.0, 1.0]])
        >>> labels = keras.ops.convert_to_tensor([1])
        >>> keras.ops.convert_to_numpy(head([emb, labels])).astype("float64").round(4).tolist()
        [[0.7071, 0.7071]]
        >>> keras.ops.convert_to_numpy(head([emb, labels], training=True)).astype("float64").round(4).tolist()
        [[0.7071, 0.2815]]
    """

    def __init__(
        self, num_classes: int, scale: float = 64.0, margin: float = 0.5, sub_centers: int = 3, **kwargs: Any
    ) -> None:
        super().__init__(num_classes, scale=scale, margin=margin, **kwargs)
        self.sub_centers = _check_int("sub_centers", sub_centers, 1)

    def _kernel_shape(self, dim: int) -> tuple:
        return (dim, self.num_classes, self.sub_centers)

    def cosine(self, embeddings: Tensor) -> Tensor:
        dim = self.kernel.shape[0]
        kernel = ops.reshape(self.kernel, (dim, self.num_classes * self.sub_centers))
        cos = _cosine(embeddings, kernel)
        return ops.max(ops.reshape(cos, (-1, self.num_classes, self.sub_centers)), axis=-1)

    def get_config(self) -> dict:
        return {**super().get_config(), "sub_centers": self.sub_centers}


# --------------------------------------------------------------------------- proxy layers


class _ProxyLayer(keras.layers.Layer):
    """Holds the proxies `(num_classes, D)` and checks the embeddings."""

    def __init__(
        self,
        num_classes: int,
        proxy_initializer: Any = "he_normal",
        proxy_regularizer: Any = None,
        proxy_constraint: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.num_classes = _check_int("num_classes", num_classes, 2)
        self.proxy_initializer = keras.initializers.get(proxy_initializer)
        self.proxy_regularizer = keras.regularizers.get(proxy_regularizer)
        self.proxy_constraint = keras.constraints.get(proxy_constraint)

    def build(self, input_shape: Any) -> None:
        shape = _check_embedding_shape(self, input_shape)
        self.proxies = self.add_weight(
            shape=(self.num_classes, shape[-1]), initializer=self.proxy_initializer,
            regularizer=self.proxy_regularizer, constraint=self.proxy_constraint,
            dtype="float32", autocast=False, name="proxies",
        )

    def _normalized(self, embeddings: Any) -> tuple:
        embeddings = ops.convert_to_tensor(embeddings)
        _check_embedding_shape(self, embeddings.shape)
        x = l2_normalize(as_float32(embeddings), axis=-1)
        p = l2_normalize(ops.cast(self.proxies, x.dtype), axis=-1)
        return x, p

    def compute_output_shape(self, input_shape: Any) -> tuple:
        return (input_shape[0], self.num_classes)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "proxy_initializer": keras.initializers.serialize(self.proxy_initializer),
            "proxy_regularizer": keras.regularizers.serialize(self.proxy_regularizer),
            "proxy_constraint": keras.constraints.serialize(self.proxy_constraint),
        }


@register
class ProxyAnchor(_ProxyLayer):
    r"""Proxies for the Proxy-Anchor loss (Kim et al. 2020).

    Holds one learnable proxy per class, `proxies` `(num_classes, D)` (the
    layout of pytorch-metric-learning's `ProxyAnchorLoss.proxies`), and maps
    embeddings `(B, D)` to their cosine similarity to every proxy,
    `(B, num_classes)`:

    $$s_{ij} = \frac{x_i \cdot p_j}{\lVert x_i\rVert\,\lVert p_j\rVert}$$

    (0 for a zero embedding). Train with
    `keras_lossplus.losses.ProxyAnchorLoss`; at inference use the
    embeddings themselves or these similarities.

    Args:
        num_classes: Number of classes, `>= 2`.
        proxy_initializer, proxy_regularizer, proxy_constraint: For the
            proxies (`"he_normal"` by default, as pytorch-metric-learning's
            Kaiming-normal initialisation).
        **kwargs: Standard layer arguments (`name`, `dtype`, ...).

    Reference:
        Kim et al., "Proxy Anchor Loss for Deep Metric Learning", CVPR 2020,
        https://arxiv.org/abs/2003.13911

    Examples:
        >>> layer = ProxyAnchor(num_classes=2, proxy_initializer="identity")
        >>> emb = keras.ops.convert_to_tensor([[2.0, 0.0], [1.0, 1.0]])
        >>> keras.ops.convert_to_numpy(layer(emb)).astype("float64").round(4).tolist()
        [[1.0, 0.0], [0.7071, 0.7071]]
    """

    def call(self, inputs: Any) -> Tensor:
        x, p = self._normalized(inputs)
        return ops.cast(ops.clip(ops.matmul(x, ops.transpose(p)), -1.0, 1.0), self.compute_dtype)


@register
class ProxyNCA(_ProxyLayer):
    r"""Proxies for the ProxyNCA loss (Movshovitz-Attias et al. 2017).

    Holds one learnable proxy per class, `proxies` `(num_classes, D)` (the
    layout of pytorch-metric-learning's `ProxyNCALoss.proxies`), and maps
    embeddings `(B, D)` to minus the squared euclidean distance between the
    L2-normalised embedding and each L2-normalised proxy, `(B, num_classes)`:

    $$z_{ij} = -\lVert \hat x_i - \hat p_j \rVert^2$$

    (pytorch-metric-learning's default `LpDistance(power=2)` with normalised
    embeddings). Train with `keras_lossplus.losses.ProxyNCALoss`.

    Args:
        num_classes: Number of classes, `>= 2`.
        proxy_initializer, proxy_regularizer, proxy_constraint: For the
            proxies.
        **kwargs: Standard layer arguments (`name`, `dtype`, ...).

    Reference:
        Movshovitz-Attias et al., "No Fuss Distance Metric Learning using
        Proxies", ICCV 2017, https://arxiv.org/abs/1703.07464

    Examples:
        >>> layer = ProxyNCA(num_classes=2, proxy_initializer="identity")
        >>> emb = keras.ops.convert_to_tensor([[2.0, 0.0], [0.0, 0.0]])
        >>> keras.ops.convert_to_numpy(layer(emb)).astype("float64").round(4).tolist()
        [[0.0, -2.0], [-1.0, -1.0]]
    """

    def call(self, inputs: Any) -> Tensor:
        x, p = self._normalized(inputs)
        negative_squared = (
            2.0 * ops.matmul(x, ops.transpose(p))
            - ops.sum(ops.square(x), axis=-1, keepdims=True)
            - ops.expand_dims(ops.sum(ops.square(p), axis=-1), 0)
        )
        return ops.cast(ops.minimum(negative_squared, 0.0), self.compute_dtype)
