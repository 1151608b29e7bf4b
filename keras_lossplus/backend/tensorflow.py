"""TensorFlow specifics."""

from typing import Any

import tensorflow as tf


def is_concrete(x: Any) -> bool:
    return tf.executing_eagerly() and not (isinstance(x, tf.Tensor) and not hasattr(x, "numpy"))
