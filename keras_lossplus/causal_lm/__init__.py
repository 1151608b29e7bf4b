"""Training KerasHub causal language models with the fused linear
cross-entropy: `FusedCausalLM` wraps a `keras_hub.models.CausalLM` (Gemma,
Llama, ...) and trains it with `fit` on the same data as the stock
`compile(loss=SparseCategoricalCrossentropy(from_logits=True))`, to the same
losses and weights, without building the `(tokens, vocabulary)` logits.

KerasHub is not a dependency of keras_lossplus: this module imports
nothing of it (it reads the model's layers).
"""

from keras_lossplus.causal_lm.model import FusedCausalLM, output_embedding

__all__ = ["FusedCausalLM", "output_embedding"]
