"""Small multi-output models and data for the tests."""

import keras
import numpy as np

from tests.backend_utils import BACKEND

JIT = BACKEND in ("jax", "tensorflow")  # torch.compile of a model takes ~45 s: eager on torch


def data(rng, n=16):
    x = rng.normal(size=(n, 5)).astype("float32")
    y = {
        "reg": rng.normal(size=(n, 2)).astype("float32"),
        "cls": rng.integers(0, 3, size=(n,)).astype("int32"),
        "bin": rng.integers(0, 2, size=(n, 1)).astype("float32"),
    }
    return x, y


LOSSES = {
    "reg": "mse",
    "cls": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    "bin": keras.losses.BinaryCrossentropy(from_logits=True),
}
WEIGHTS = {"reg": 1.0, "cls": 0.5, "bin": 0.25}


def build(cls=keras.Model, penalty=False, seed=1, outputs="dict"):
    """A shared trunk and three heads, same initial weights for a given seed."""
    from keras_lossplus.layers import L1Penalty

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((5,))
    hidden = keras.layers.Dense(6, activation="tanh", name="trunk")(inputs)
    if penalty:
        hidden = L1Penalty(0.01, name="l1")(hidden)
    heads = {
        "reg": keras.layers.Dense(2, name="reg")(hidden),
        "cls": keras.layers.Dense(3, name="cls")(hidden),
        "bin": keras.layers.Dense(1, name="bin")(hidden),
    }
    if outputs == "list":
        return cls(inputs, [heads["reg"], heads["cls"], heads["bin"]])
    return cls(inputs, heads)


def weights_of(model):
    return [np.asarray(keras.ops.convert_to_numpy(v.value)) for v in model.trainable_variables]
