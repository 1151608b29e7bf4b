r"""`FusedCausalLM`: a KerasHub `CausalLM` trained with the fused linear
cross-entropy.

Why a wrapping `keras.Model` that overrides `compute_loss` (and not a
patched model or a train step): `compute_loss(x, y, y_pred, sample_weight,
training)` is the public hook of Keras 3 that receives exactly what the
stock loss receives (the next tokens `y` and the padding mask
`sample_weight`), runs inside every backend's compiled train step (JAX's
stateless one included) and keeps Keras' optimizer, gradient, metric and
distribution handling; a wrapper leaves the user's `CausalLM` untouched
(its `generate`, `predict`, presets and saving work as before, on the same
variables), like `keras.distillation.Distiller` wraps its models. The
forward pass is the `CausalLM`'s own: its backbone, then its output
projection (the tied `ReversibleEmbedding`, with its final soft cap). In
training `call` stops before the projection and returns the hidden states;
`compute_loss` then computes the loss from them and the embedding matrix
with `keras_lossplus.losses.LinearCrossEntropy` (through a tied
`keras_lossplus.layers.LanguageModelHead`). At inference (`predict`,
`evaluate`, `model(x)`) `call` returns the logits, exactly the `CausalLM`'s.
"""

from __future__ import annotations

from typing import Any, Optional

import keras
from keras import ops

from keras_lossplus import backend as klp_backend
from keras_lossplus import keras_internals
from keras_lossplus.layers.language_model import LanguageModelHead
from keras_lossplus.losses.language.linear_cross_entropy import cross_entropy_from_logits, token_weights
from keras_lossplus.losses.options import flag
from keras_lossplus.metrics.language import Perplexity, TokenAccuracy

Tensor = Any


def output_embedding(causal_lm: Any) -> tuple:
    """`(backbone, embedding)` of a KerasHub-style causal LM whose logits
    are `backbone.token_embedding(backbone(inputs), reverse=True)` (Gemma,
    Gemma 2/3, Llama, Llama 3, Mistral, GPT-2, ...), checked on the model's
    graph; a `ValueError` naming `causal_lm` otherwise."""
    backbone = getattr(causal_lm, "backbone", None)
    embedding = getattr(backbone, "token_embedding", None)
    if not isinstance(causal_lm, keras.Model) or backbone is None or embedding is None:
        raise ValueError(
            "Argument `causal_lm` must be a KerasHub CausalLM (a keras.Model with a `backbone` that has a "
            f"`token_embedding`). Received: {type(causal_lm).__name__}"
        )
    if not isinstance(embedding, keras.layers.ReversibleEmbedding):
        raise ValueError(
            "Argument `causal_lm`: its `backbone.token_embedding` must be a keras.layers.ReversibleEmbedding "
            f"(the output projection). Received: {type(embedding).__name__}"
        )
    outputs = getattr(causal_lm, "outputs", None) or []
    ok = len(outputs) == 1
    if ok:
        call = keras_internals.producing_call(outputs[0])
        ok = call is not None and call[0] is embedding and call[2].get("reverse") is True and len(call[1]) == 1
        if ok:
            before = keras_internals.producing_call(call[1][0])
            ok = before is not None and before[0] is backbone
    if not ok:
        raise ValueError(
            "Argument `causal_lm`: its output must be `backbone.token_embedding(backbone(inputs), reverse=True)` "
            f"(as in GemmaCausalLM or Llama3CausalLM); {type(causal_lm).__name__} computes its logits otherwise."
        )
    if getattr(embedding, "quantization_mode", None):
        raise ValueError("Argument `causal_lm`: a quantized output embedding is not supported.")
    return backbone, embedding


@keras.saving.register_keras_serializable(package="keras_lossplus")
class FusedCausalLM(keras.Model):
    r"""A KerasHub `CausalLM` trained with the fused linear cross-entropy:
    the same `fit` data, losses and updates as
    `causal_lm.compile(loss=SparseCategoricalCrossentropy(from_logits=True))`,
    without the `(batch, length, vocabulary)` logits.

    `fit(x, y, sample_weight)` takes what the stock model takes:
    `x = {"token_ids", "padding_mask"}`, `y` the next tokens, and
    `sample_weight` the padding mask of `y` (what a KerasHub preprocessor
    returns). The loss is Keras' `sum_over_batch_size` of the per-token
    cross-entropy of the soft-capped logits (Gemma 2's
    `final_logit_soft_cap` is read from the output embedding), plus the
    backbone's own `add_loss` terms. Logged: `loss`, `perplexity`
    (`exp` of the weighted mean token NLL: free without label smoothing and
    z-loss, one more forward pass over the chunks with them) and, with
    `token_accuracy=True`, `token_accuracy` (one more chunked matmul).

    In training, `call` returns the backbone's hidden states; otherwise
    (`predict`, `evaluate`, `model(x)`) the logits, exactly the
    `CausalLM`'s (`evaluate` computes the same loss from them). Generate
    with `fused.causal_lm.generate(...)`: it shares every variable.
    `compile` takes no `loss` or `metrics`: the loss is this model's, and
    in training the outputs are hidden states, not logits.

    Args:
        causal_lm: A KerasHub `CausalLM` whose logits are
            `backbone.token_embedding(backbone(x), reverse=True)` (Gemma,
            Gemma 2 and 3 text models, Llama, Llama 3, Mistral, ...).
        ignore_class: A token id left out of the loss, or None.
        label_smoothing: In `[0, 1]`.
        z_loss: Factor of `logsumexp(logits)^2` per token, `>= 0`.
        chunk_size: Tokens per chunk, or None (automatic).
        token_accuracy: Whether to log the next-token accuracy.
        **kwargs: `keras.Model` arguments (`name`).

    Example:
    ```python
    backbone = keras_hub.models.GemmaBackbone(vocabulary_size=1000, num_layers=2, num_query_heads=2,
                                              num_key_value_heads=1, hidden_dim=64, intermediate_dim=128,
                                              head_dim=32)
    causal_lm = keras_hub.models.GemmaCausalLM(backbone, preprocessor=None)
    model = klp.causal_lm.FusedCausalLM(causal_lm)
    model.compile(optimizer=keras.optimizers.AdamW(1e-3))
    model.fit({"token_ids": x, "padding_mask": mask}, y, sample_weight=y_mask)
    causal_lm.generate({"token_ids": prompt, "padding_mask": prompt_mask}, max_length=32)
    ```

    Reference:
        Wijmans et al., "Cut Your Losses in Large-Vocabulary Language
        Models", 2024 (https://arxiv.org/abs/2411.09009); KerasHub's
        `CausalLM` (https://keras.io/keras_hub/api/base_classes/causal_lm/).
    """

    def __init__(
        self,
        causal_lm: Any,
        ignore_class: Optional[int] = None,
        label_smoothing: float = 0.0,
        z_loss: float = 0.0,
        chunk_size: Optional[int] = None,
        token_accuracy: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        backbone, embedding = output_embedding(causal_lm)
        self.causal_lm = causal_lm
        self.head = LanguageModelHead(
            tied_embedding=embedding, ignore_class=ignore_class, label_smoothing=label_smoothing, z_loss=z_loss,
            logit_soft_cap=embedding.logit_soft_cap, chunk_size=chunk_size, dtype=embedding.dtype_policy,
            name="fused_head",
        )
        self.head.build((None, None, getattr(backbone, "hidden_dim", None)))
        self.loss_options = dict(ignore_class=ignore_class, label_smoothing=self.head.loss_options["label_smoothing"],
                                 z_loss=self.head.loss_options["z_loss"], chunk_size=chunk_size)
        self.track_accuracy = flag("token_accuracy", token_accuracy)
        o = self.head.loss_options
        self.perplexity = Perplexity(ignore_class=o["ignore_class"], logit_soft_cap=o["logit_soft_cap"],
                                     chunk_size=o["chunk_size"], transpose_kernel=self.head.projection()[2])
        self.token_accuracy = TokenAccuracy(ignore_class=o["ignore_class"], chunk_size=o["chunk_size"],
                                            transpose_kernel=self.head.projection()[2]) if self.track_accuracy else None
        self.built = True

    @property
    def backbone(self) -> Any:
        return self.causal_lm.backbone

    def call(self, inputs: Any, training: Optional[bool] = None) -> Tensor:
        hidden = self.causal_lm.backbone(inputs, training=training)
        if training:
            return hidden
        return self.causal_lm.backbone.token_embedding(hidden, reverse=True)

    def compile(self, optimizer: Any = "rmsprop", loss: Any = None, metrics: Any = None,
                weighted_metrics: Any = None, **kwargs: Any) -> None:
        for name, value in (("loss", loss), ("metrics", metrics), ("weighted_metrics", weighted_metrics)):
            if value is not None:
                raise ValueError(
                    f"FusedCausalLM.compile takes no `{name}`: the model computes its loss (pass its options "
                    "to FusedCausalLM) and logs `perplexity` (and `token_accuracy=True`); in training its "
                    f"outputs are hidden states, not logits. Received: {name}={value!r}"
                )
        super().compile(optimizer=optimizer, **kwargs)

    # ----------------------------------------------------------------- loss

    def _weights(self, y: Tensor, sample_weight: Any) -> tuple:
        """Per-token `sample_weight * (y != ignore_class)` and the number of
        tokens Keras' `sum_over_batch_size` divides by (all, or the
        non-ignored ones)."""
        ignore = self.head.loss_options["ignore_class"]
        w = token_weights(y, sample_weight, ignore)
        if ignore is None:
            return w, ops.cast(ops.size(y), "float32")
        return w, ops.sum(token_weights(y, None, ignore))

    def _logits_losses(self, y: Tensor, logits: Tensor) -> Tensor:
        """Per-token losses from (soft-capped) logits, the fused loss's formula."""
        o = self.head.loss_options
        return cross_entropy_from_logits(y, logits, o["ignore_class"], o["label_smoothing"], o["z_loss"])

    def compute_loss(self, x: Any = None, y: Any = None, y_pred: Any = None, sample_weight: Any = None,
                     training: bool = True) -> Tensor:
        if y is None:
            raise ValueError("FusedCausalLM needs targets `y` (the next tokens) to compute its loss.")
        y = ops.convert_to_tensor(y)
        w, count = self._weights(y, sample_weight)
        plain = not self.head.loss_options["label_smoothing"] and not self.head.loss_options["z_loss"]
        if training:
            hidden = y_pred
            loss = self.head.compute_head_loss(hidden, y, sample_weight)
            if plain:
                # the loss divides by the global batch's count under tf.distribute: this replica's weighted sum
                total = ops.stop_gradient(ops.cast(loss, "float32")) * klp_backend.replica_sum(count)
                self.perplexity.update_from_sums(total, ops.sum(w))
            else:
                self.perplexity.update_state(y, self._linear(hidden), sample_weight=sample_weight)
            if self.token_accuracy is not None:
                self.token_accuracy.update_state(y, self._linear(hidden), sample_weight=sample_weight)
        else:
            logits = y_pred
            losses = self._logits_losses(y, logits)
            loss = ops.divide_no_nan(ops.sum(losses * w), count)
            if plain:
                self.perplexity.update_from_sums(ops.sum(losses * w), ops.sum(w))
            else:
                self.perplexity.update_state(y, logits, sample_weight=sample_weight)
            if self.token_accuracy is not None:
                self.token_accuracy.update_state(y, logits, sample_weight=sample_weight)
        loss = ops.cast(loss, "float32")
        for term in self.losses:
            loss = loss + ops.cast(keras_internals.aggregate_additional_loss(self, term), "float32")
        return loss

    def _linear(self, hidden: Tensor) -> tuple:
        kernel, bias, _ = self.head.projection()
        return (ops.stop_gradient(hidden), ops.stop_gradient(kernel))

    # ----------------------------------------------------------------- saving

    def get_config(self) -> dict:
        return {
            "name": self.name,
            "causal_lm": keras.saving.serialize_keras_object(self.causal_lm),
            **self.loss_options,
            "token_accuracy": self.track_accuracy,
        }

    @classmethod
    def from_config(cls, config: dict) -> "FusedCausalLM":
        config = dict(config)
        config["causal_lm"] = keras.saving.deserialize_keras_object(config["causal_lm"])
        return cls(**config)
