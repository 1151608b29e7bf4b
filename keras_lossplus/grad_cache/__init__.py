"""GradCache: an encoder trained with an in-batch loss over a large batch,
computed chunk by chunk at constant activation memory, with the loss and
gradient of the whole batch (`GradCacheModel`)."""

from keras_lossplus.grad_cache.model import GradCacheModel

__all__ = ["GradCacheModel"]
