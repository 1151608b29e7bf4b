r"""`LanguageModelHead`: the output layer of a language model that trains
with the fused linear cross-entropy (`keras_lossplus.losses.LinearCrossEntropy`)
and so never builds the `(tokens, vocabulary)` logits in `fit`.

Called as `head(hidden, targets=None, sample_weight=None)`:

* with `targets` (next-token ids, `hidden.shape[:-1]`), in `fit` and
  `evaluate`: the layer adds the loss with `add_loss` (Keras'
  `SparseCategoricalCrossentropy(from_logits=True)` on the logits, every
  option and `sample_weight` as Keras applies them) and returns `hidden`
  unchanged. Compile the model with `loss=None`: the loss is the layer's.
* without `targets` (inference, `predict`, generation): it returns the
  logits `(..., vocabulary_size)`, soft-capped like the loss.

Which of the two is returned depends on `targets` only, never on
`training`: a functional model's outputs have one structure, so the
training model takes the targets as an input (Keras' "endpoint layer"
pattern) and the inference model, built on the same layers, does not.

The kernel is the layer's own `(D, V)` matrix (with an optional bias), or
the `(V, D)` `embeddings` of another layer (`tied_embedding`: a
`keras.layers.Embedding`, or a `keras.layers.ReversibleEmbedding`, whose
own `reverse_embeddings` `(D, V)` is used when it is not tied itself).
"""

from __future__ import annotations

from typing import Any, Optional

import keras
import numpy as np
from keras import ops

from keras_lossplus import backend as klp_backend
from keras_lossplus.layers.base import ReplicaLosses, register
from keras_lossplus.losses.language import LinearCrossEntropy, linear_argmax, linear_cross_entropy
from keras_lossplus.losses.options import check_number

Tensor = Any

__all__ = ["LanguageModelHead", "tied_kernel"]


def _check_vocabulary(value: Any) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 2:
        raise ValueError(
            f"Argument `vocabulary_size` must be an integer >= 2 (the number of tokens). "
            f"Received: vocabulary_size={value!r}"
        )
    return int(value)


def tied_kernel(layer: keras.layers.Layer) -> tuple:
    """`(kernel, transpose_kernel)` of the output projection of an
    embedding layer: its `(V, D)` `embeddings` (`transpose_kernel=True`),
    or, for a `ReversibleEmbedding` built with `tie_weights=False`, its
    `(D, V)` `reverse_embeddings`."""
    if getattr(layer, "tie_weights", True) is False and hasattr(layer, "reverse_embeddings"):
        return layer.reverse_embeddings, False
    return layer.embeddings, True


def _read(variable: Any) -> Tensor:
    """The value of a variable as a tensor (a cast to its own dtype: no copy)."""
    return ops.cast(variable, variable.dtype)


def _refuse_layer_name(name: str) -> None:
    raise ValueError(
        f"Argument `tied_embedding` is a layer name ({name!r}): a tied LanguageModelHead cannot be rebuilt "
        "from its config alone. Build it in the `__init__` of the model that owns the embedding layer (a "
        "subclassed model, as KerasHub's are), passing the layer itself."
    )


def _check_tied_embedding(layer: Any) -> Any:
    if layer is None:
        return None
    if not isinstance(layer, keras.layers.Layer) or not (
        hasattr(layer, "embeddings") or "embeddings" in getattr(layer, "__dict__", {})
        or isinstance(layer, keras.layers.Embedding)
    ):
        raise ValueError(
            "Argument `tied_embedding` must be a layer with an `embeddings` (vocabulary_size, dim) variable, "
            f"e.g. keras.layers.Embedding or keras.layers.ReversibleEmbedding. Received: {layer!r}"
        )
    return layer


@register
class LanguageModelHead(ReplicaLosses, keras.layers.Layer):
    r"""Output layer of a language model trained with the fused linear
    cross-entropy: adds the loss in `fit` without building the logits,
    returns the logits at inference.

    `head(hidden, targets, sample_weight)` (targets: integer next-token ids
    of shape `hidden.shape[:-1]`; `sample_weight`: e.g. the padding mask,
    `(batch,)` or `hidden.shape[:-1]`) adds

    $$\text{loss\_weight}\cdot
      \text{SparseCategoricalCrossentropy}_{\text{from\_logits}}
      (\text{targets},\ s(hidden\,W + b),\ \text{sample\_weight})$$

    (`s` the optional soft cap $c\tanh(z/c)$, Gemma 2's final-logit cap)
    with `add_loss`, computed by `keras_lossplus.losses.LinearCrossEntropy`
    over token chunks with the gradients in the same pass, and returns
    `hidden` unchanged; compile with `loss=None`. `head(hidden)` returns
    the logits $s(hidden\,W + b)$ of shape `(..., vocabulary_size)` in the
    layer's compute dtype. The loss is added whenever `targets` is given
    (in `fit` and in `evaluate`, so `val_loss` is the same quantity).

    The kernel is owned, `(D, vocabulary_size)` like a `Dense` kernel, or
    tied: `tied_embedding` is an embedding layer of the same model whose
    `(vocabulary_size, D)` `embeddings` is used transposed (no bias then).
    A tied head is rebuilt by the model that owns the embedding (a
    subclassed model passes `tied_embedding` in its `__init__`, as KerasHub
    models do); its config keeps only the embedding layer's name, and
    `from_config` refuses it. See `keras_lossplus.causal_lm.FusedCausalLM`
    for KerasHub causal LMs.

    Args:
        vocabulary_size: Number of tokens `V` (>= 2). Required for an owned
            kernel; with `tied_embedding`, checked against it if given.
        use_bias: Whether an owned kernel has a `(V,)` bias.
        tied_embedding: `None` (own kernel), or an embedding layer.
        ignore_class: A token id left out of the loss (and the mean), as
            in `keras.losses.SparseCategoricalCrossentropy`.
        label_smoothing: In `[0, 1]`.
        z_loss: Factor of `logsumexp(logits)^2` per token (PaLM), `>= 0`.
        logit_soft_cap: `> 0` or `None`: the logits become
            `cap * tanh(logits / cap)` (loss and inference alike).
        chunk_size: Tokens per chunk of the loss, or `None` (automatic).
        loss_weight: Factor of the added loss, `>= 0`.
        kernel_initializer: Of the owned kernel, as in `Dense`.
        bias_initializer: Of the owned bias, as in `Dense`.
        kernel_regularizer: Of the owned kernel, as in `Dense`.
        bias_regularizer: Of the owned bias, as in `Dense`.
        **kwargs: Standard layer arguments (`name`, `dtype`, ...).

    Examples:
        >>> import numpy as np
        >>> tokens = keras.Input((None,), dtype="int32")
        >>> targets = keras.Input((None,), dtype="int32")
        >>> mask = keras.Input((None,))
        >>> hidden = keras.layers.Embedding(100, 16)(tokens)
        >>> head = LanguageModelHead(100)
        >>> train = keras.Model([tokens, targets, mask], head(hidden, targets, sample_weight=mask))
        >>> infer = keras.Model(tokens, head(hidden))
        >>> train.compile(optimizer="adam", loss=None)
        >>> ids = np.random.default_rng(0).integers(0, 100, (4, 9))
        >>> _ = train.fit([ids[:, :-1], ids[:, 1:], np.ones((4, 8))], epochs=1, verbose=0)
        >>> tuple(infer.predict(ids[:, :-1], verbose=0).shape)
        (4, 8, 100)

    Reference:
        Wijmans et al., "Cut Your Losses in Large-Vocabulary Language
        Models", 2024 (https://arxiv.org/abs/2411.09009); the endpoint
        layer pattern of the Keras functional API guide
        (https://keras.io/guides/functional_api/).
    """

    def __init__(
        self,
        vocabulary_size: Optional[int] = None,
        use_bias: bool = False,
        tied_embedding: Any = None,
        ignore_class: Optional[int] = None,
        label_smoothing: float = 0.0,
        z_loss: float = 0.0,
        logit_soft_cap: Optional[float] = None,
        chunk_size: Optional[int] = None,
        loss_weight: float = 1.0,
        kernel_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        kernel_regularizer: Any = None,
        bias_regularizer: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.vocabulary_size = _check_vocabulary(vocabulary_size)
        if not isinstance(use_bias, (bool, np.bool_)):
            raise TypeError(f"Argument `use_bias` must be True or False. Received: use_bias={use_bias!r}")
        self.use_bias = bool(use_bias)
        if isinstance(tied_embedding, str):
            _refuse_layer_name(tied_embedding)
        self.tied_embedding = _check_tied_embedding(tied_embedding)
        if self.tied_embedding is not None and self.use_bias:
            raise ValueError("Argument `use_bias` must be False with `tied_embedding` (a tied head has no bias).")
        self.loss_weight = check_number("loss_weight", loss_weight, low=0.0)
        # checks ignore_class, label_smoothing, z_loss, logit_soft_cap and chunk_size by name
        self._loss = LinearCrossEntropy(
            ignore_class=ignore_class, label_smoothing=label_smoothing, z_loss=z_loss,
            logit_soft_cap=logit_soft_cap, chunk_size=chunk_size,
        )
        self.loss_options = {k: v for k, v in self._loss._options.items() if k != "transpose_kernel"}
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.kernel = self.bias = None

    # ----------------------------------------------------------------- weights

    def build(self, hidden_shape: Any, targets_shape: Any = None, sample_weight_shape: Any = None) -> None:
        dim = tuple(hidden_shape)[-1]
        if self.tied_embedding is not None:
            if not self.tied_embedding.built:
                raise ValueError(
                    "Argument `tied_embedding`: the embedding layer must be built (called once) before the head."
                )
            kernel, transpose = tied_kernel(self.tied_embedding)
            v, d = kernel.shape if transpose else kernel.shape[::-1]
            if self.vocabulary_size is not None and v != self.vocabulary_size:
                raise ValueError(
                    f"Argument `vocabulary_size`={self.vocabulary_size} differs from the tied embedding's "
                    f"vocabulary ({v})."
                )
            if dim is not None and d != dim:
                raise ValueError(f"`hidden` has dim {dim}, the tied embedding {d}: they must match.")
            self.vocabulary_size = int(v)
        else:
            if self.vocabulary_size is None:
                raise ValueError("Argument `vocabulary_size` is required for a head with its own kernel.")
            if dim is None:
                raise ValueError("LanguageModelHead needs `hidden` with a known last dimension.")
            self.kernel = self.add_weight(
                shape=(dim, self.vocabulary_size), initializer=self.kernel_initializer,
                regularizer=self.kernel_regularizer, name="kernel",
            )
            if self.use_bias:
                self.bias = self.add_weight(
                    shape=(self.vocabulary_size,), initializer=self.bias_initializer,
                    regularizer=self.bias_regularizer, name="bias",
                )
        self._loss = LinearCrossEntropy(  # float64 for a float64 layer, float32 under half precision
            **self.loss_options, transpose_kernel=self.projection()[2],
            dtype="float64" if self.compute_dtype == "float64" else None)
        self.built = True

    def projection(self) -> tuple:
        """`(kernel, bias, transpose_kernel)` of the logits `hidden @ W + b`,
        the variables read as tensors (eager TensorFlow's custom gradients
        refuse a variable read inside them)."""
        if self.tied_embedding is not None:
            kernel, transpose = tied_kernel(self.tied_embedding)
            return _read(kernel), None, transpose
        return _read(self.kernel), None if self.bias is None else _read(self.bias), False

    # ----------------------------------------------------------------- values

    def compute_logits(self, hidden: Tensor) -> Tensor:
        """The logits `(..., V)`, soft-capped, in the layer's compute dtype."""
        kernel, bias, transpose = self.projection()
        kernel = ops.cast(kernel, hidden.dtype)
        logits = ops.matmul(hidden, ops.transpose(kernel) if transpose else kernel)
        if bias is not None:
            logits = logits + ops.cast(bias, logits.dtype)
        cap = self.loss_options["logit_soft_cap"]
        if cap is not None:
            logits = cap * ops.tanh(logits / cap)
        return logits

    def compute_head_loss(self, hidden: Tensor, targets: Tensor, sample_weight: Any = None) -> Tensor:
        """The reduced loss (before `loss_weight`), Keras'
        `sum_over_batch_size`, fused."""
        kernel, bias, _ = self.projection()
        y_pred = (hidden, kernel) if bias is None else (hidden, kernel, bias)
        return self._loss(targets, y_pred, sample_weight=sample_weight)

    def token_losses(self, hidden: Tensor, targets: Tensor) -> Tensor:
        """Per-token losses `hidden.shape[:-1]` (0 at `ignore_class`); their
        gradient runs the chunks once more than the fused sum."""
        kernel, bias, transpose = self.projection()
        return linear_cross_entropy(targets, hidden, kernel, bias, transpose_kernel=transpose, **self.loss_options)

    def predicted_ids(self, hidden: Tensor) -> Tensor:
        """The highest-scoring token per position, int32, chunked."""
        kernel, bias, transpose = self.projection()
        return linear_argmax(hidden, kernel, bias, chunk_size=self.loss_options["chunk_size"],
                             transpose_kernel=transpose)

    def call(self, hidden: Tensor, targets: Any = None, sample_weight: Any = None,
             training: Optional[bool] = None) -> Tensor:
        if targets is None:
            return self.compute_logits(hidden)
        loss = self.compute_head_loss(hidden, targets, sample_weight)
        # under tf.distribute the loss is this replica's share of the global batch's mean (its counts are
        # global), and Keras divides an add_loss term by the replicas: undone here
        scale = self.loss_weight * klp_backend.num_replicas()
        self.add_loss(loss * scale if scale != 1.0 else loss)
        return hidden

    def compute_output_spec(self, hidden: Any, targets: Any = None, sample_weight: Any = None,
                            training: Optional[bool] = None) -> Any:
        if targets is not None:
            return keras.KerasTensor(hidden.shape, dtype=hidden.dtype)
        return keras.KerasTensor(tuple(hidden.shape[:-1]) + (self.vocabulary_size,), dtype=self.compute_dtype)

    @classmethod
    def from_config(cls, config: dict) -> "LanguageModelHead":
        if isinstance(config.get("tied_embedding"), str):
            _refuse_layer_name(config["tied_embedding"])
        return super().from_config(config)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            vocabulary_size=self.vocabulary_size,
            use_bias=self.use_bias,
            tied_embedding=None if self.tied_embedding is None else self.tied_embedding.name,
            loss_weight=self.loss_weight,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            bias_initializer=keras.initializers.serialize(self.bias_initializer),
            kernel_regularizer=keras.regularizers.serialize(self.kernel_regularizer),
            bias_regularizer=keras.regularizers.serialize(self.bias_regularizer),
            **self.loss_options,
        )
        return config
