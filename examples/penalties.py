"""Penalty layers on scikit-learn's digits (1797 8x8 images), with each
penalty logged under its layer's name.

1. A sparse autoencoder: `KLSparsityPenalty` keeps the mean activation of
   each hidden unit near 5%.
2. A variational autoencoder: `GaussianSampling` samples the latent code and
   adds `beta * KL`, with beta warmed up linearly over the first 300 steps.

Both models log their penalties (`klp.log_penalties`), so `fit`'s history has
one curve per penalty next to `loss`; the script prints them.

Run:  python examples/penalties.py     (KERAS_BACKEND defaults to jax here)
"""

import os

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

import keras_lossplus as klp  # noqa: E402

EPOCHS = 30


def print_curves(title: str, history: dict, keys: list) -> None:
    print(title)
    print("  epoch  " + "  ".join(f"{k:>14}" for k in keys))
    for epoch in list(range(0, EPOCHS, 5)) + [EPOCHS - 1]:
        print(f"  {epoch + 1:5d}  " + "  ".join(f"{history[k][epoch]:14.4f}" for k in keys))
    print()


def sparse_autoencoder(x_train, x_test) -> None:
    inputs = keras.Input((64,))
    hidden = keras.layers.Dense(32, activation="sigmoid")(inputs)
    hidden = klp.layers.KLSparsityPenalty(target=0.05, factor=0.5, name="kl_sparsity")(hidden)
    outputs = keras.layers.Dense(64)(hidden)
    model = klp.log_penalties(keras.Model(inputs, outputs))
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="mse")
    history = model.fit(x_train, x_train, validation_data=(x_test, x_test), epochs=EPOCHS, batch_size=64, verbose=0)
    print_curves("Sparse autoencoder (KLSparsityPenalty, target 5%):", history.history,
                 ["loss", "kl_sparsity", "val_loss", "val_kl_sparsity"])
    encoder = keras.Model(inputs, hidden)
    rates = encoder.predict(x_test, verbose=0).mean(0)
    print(f"  mean hidden activation on held-out digits: {rates.mean():.3f} "
          f"(units from {rates.min():.3f} to {rates.max():.3f})\n")


def variational_autoencoder(x_train, x_test) -> None:
    inputs = keras.Input((64,))
    h = keras.layers.Dense(64, activation="relu")(inputs)
    z_mean = keras.layers.Dense(2)(h)
    z_log_var = keras.layers.Dense(2)(h)
    beta = klp.schedules.LinearWarmup(start=0.0, end=1.0, steps=300)
    z = klp.layers.GaussianSampling(beta=beta, seed=0, name="kl")([z_mean, z_log_var])
    h = keras.layers.Dense(64, activation="relu")(z)
    outputs = keras.layers.Dense(64)(h)
    model = klp.log_penalties(keras.Model(inputs, outputs))
    # the reconstruction is summed over pixels, as the ELBO has it
    model.compile(optimizer=keras.optimizers.Adam(2e-3), loss=lambda y, p: 64.0 * keras.losses.mean_squared_error(y, p))
    history = model.fit(x_train, x_train, validation_data=(x_test, x_test), epochs=EPOCHS, batch_size=64, verbose=0)
    print_curves("Variational autoencoder (GaussianSampling, beta warmed up over 300 steps):", history.history,
                 ["loss", "kl", "val_loss", "val_kl"])
    layer = model.get_layer("kl")
    print(f"  steps taken: {int(keras.ops.convert_to_numpy(layer.iterations))}, "
          f"beta now {float(keras.ops.convert_to_numpy(layer.current_beta())):.2f}")


if __name__ == "__main__":
    keras.utils.set_random_seed(0)
    x, _ = load_digits(return_X_y=True)
    x = (x / 16.0).astype("float32")
    x_train, x_test = train_test_split(x, test_size=0.2, random_state=0)
    print(f"keras_lossplus {klp.__version__} on keras {keras.__version__} ({keras.backend.backend()})\n")
    sparse_autoencoder(x_train, x_test)
    variational_autoencoder(x_train, x_test)
