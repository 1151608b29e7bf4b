"""The README's quickstart as a script: a tiny model compiled with
`FocalLoss`, `FBetaLoss` and `PinballLoss` in turn, one epoch each on random
data; every loss must be finite. Needs only keras_lossplus and one backend
(no scikit-learn): `scripts/check_wheel.sh` runs it against the built wheel.

Run:  KERAS_BACKEND=jax python examples/quickstart.py     (or tensorflow, torch)
"""

import math
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_lossplus as klp  # noqa: E402

rng = np.random.default_rng(0)
x = rng.normal(size=(256, 8)).astype("float32")
y = (x[:, :1] + rng.normal(size=(256, 1)) > 1.5).astype("float32")       # imbalanced 0/1 labels
q = (x[:, :1] + rng.normal(size=(256, 1))).astype("float32")             # a noisy regression target


def tiny_model(outputs, activation=None):
    return keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
                             keras.layers.Dense(outputs, activation=activation)])


# imbalanced binary classification, logits out
focal = tiny_model(1)
focal.compile(optimizer="adam", loss=klp.losses.FocalLoss(gamma=2.0, alpha=0.25, from_logits=True))

# trade recall against precision directly (batch-level soft F-beta on probabilities)
fbeta = tiny_model(1, activation="sigmoid")
fbeta.compile(optimizer="adam", loss=klp.losses.FBetaLoss(beta=2.0))

# three quantiles at once: the model has 3 outputs, the target 1 column
pinball = tiny_model(3)
pinball.compile(optimizer="adam", loss=klp.losses.PinballLoss(quantiles=[0.1, 0.5, 0.9]))

print(f"keras_lossplus {klp.__version__} quickstart on keras {keras.__version__}, "
      f"backend {keras.backend.backend()}")
for model, target in ((focal, y), (fbeta, y), (pinball, q)):
    history = model.fit(x, target, epochs=1, batch_size=64, verbose=0)
    loss = history.history["loss"][0]
    print(f"  {type(model.loss).__name__:12s} one epoch, loss {loss:.4f}")
    assert math.isfinite(loss), f"{type(model.loss).__name__}: loss {loss}"
print("quickstart OK")
