"""keras_lossplus in two small models, on data bundled with scikit-learn.

1. Breast-cancer diagnosis (569 samples, 37% malignant) with `FocalLoss`
   from logits; reports accuracy and F1 on a held-out split.
2. Diabetes progression (442 samples) with `PinballLoss` on three quantiles
   at once; reports how often the held-out target falls in the predicted
   10%-90% interval (the goal is 80%).

Run:  python examples/demo.py     (KERAS_BACKEND defaults to jax here)
"""

import os

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.datasets import load_breast_cancer, load_diabetes  # noqa: E402
from sklearn.metrics import accuracy_score, f1_score  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

import keras_lossplus as klp  # noqa: E402


class PrintLoss(keras.callbacks.Callback):
    """One line per few epochs: the training loss going down."""

    def __init__(self, every: int) -> None:
        super().__init__()
        self.every = every

    def on_epoch_end(self, epoch, logs=None):
        if epoch == 0 or (epoch + 1) % self.every == 0:
            print(f"  epoch {epoch + 1:3d}  loss {logs['loss']:.4f}  val_loss {logs['val_loss']:.4f}")


def split(x, y, seed=0):
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=seed)
    scaler = StandardScaler().fit(x_train)
    return scaler.transform(x_train).astype("float32"), scaler.transform(x_test).astype("float32"), y_train, y_test


def mlp(inputs: int, outputs: int) -> keras.Model:
    return keras.Sequential(
        [keras.Input((inputs,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(outputs)]
    )


def focal_classifier() -> None:
    x, y = load_breast_cancer(return_X_y=True)
    x_train, x_test, y_train, y_test = split(x, y.astype("float32")[:, None])
    model = mlp(x.shape[1], 1)
    model.compile(optimizer=keras.optimizers.Adam(1e-2),
                  loss=klp.losses.FocalLoss(gamma=2.0, alpha=0.6, from_logits=True))
    print("Breast cancer, FocalLoss(gamma=2, alpha=0.6, from_logits=True):")
    model.fit(x_train, y_train, validation_data=(x_test, y_test), epochs=15, batch_size=64,
              verbose=0, callbacks=[PrintLoss(5)])
    pred = (model.predict(x_test, verbose=0) > 0).astype(int)
    print(f"  held-out accuracy {accuracy_score(y_test, pred):.3f}, F1 {f1_score(y_test, pred):.3f}\n")


def quantile_regressor() -> None:
    x, y = load_diabetes(return_X_y=True)
    x_train, x_test, y_train, y_test = split(x, (y / y.std()).astype("float32")[:, None])
    quantiles = [0.1, 0.5, 0.9]
    model = mlp(x.shape[1], len(quantiles))
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss=klp.losses.PinballLoss(quantiles=quantiles))
    print(f"Diabetes, PinballLoss(quantiles={quantiles}):")
    model.fit(x_train, y_train, validation_data=(x_test, y_test), epochs=30, batch_size=32,
              verbose=0, callbacks=[PrintLoss(5)])
    pred = model.predict(x_test, verbose=0)
    inside = np.mean((y_test[:, 0] >= pred[:, 0]) & (y_test[:, 0] <= pred[:, 2]))
    print(f"  held-out targets inside the predicted 10%-90% interval: {inside:.0%} (aim: 80%)")


if __name__ == "__main__":
    keras.utils.set_random_seed(0)
    print(f"keras_lossplus {klp.__version__} on keras {keras.__version__} ({keras.backend.backend()})\n")
    focal_classifier()
    quantile_regressor()
