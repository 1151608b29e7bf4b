"""Language-model losses at large vocabularies.

`linear_cross_entropy` / `LinearCrossEntropy`: the cross-entropy of a linear
output layer (`hidden @ kernel`) computed over token chunks, so that the
`(tokens, vocabulary)` logits and their gradient are never built.
`linear_argmax`: the predicted token ids the same way.
"""

from keras_lossplus.losses.language.linear_cross_entropy import (
    LinearCrossEntropy, linear_argmax, linear_cross_entropy,
)

__all__ = ["LinearCrossEntropy", "linear_argmax", "linear_cross_entropy"]
