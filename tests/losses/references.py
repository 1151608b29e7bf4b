"""Small numpy (float64) reference implementations and input makers shared by
the loss tests. Each follows the paper's or the named peer's formula, written
independently of the package's code."""

from __future__ import annotations

import numpy as np

EPS = 1e-7  # keras.backend.epsilon()


def sigmoid(x):
    x = np.asarray(x, dtype="float64")
    return np.where(x >= 0, 1.0 / (1.0 + np.exp(-np.abs(x))), np.exp(-np.abs(x)) / (1.0 + np.exp(-np.abs(x))))


def log_sigmoid(x):
    x = np.asarray(x, dtype="float64")
    return np.minimum(x, 0.0) - np.log1p(np.exp(-np.abs(x)))


def softmax(x):
    x = np.asarray(x, dtype="float64")
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def log_softmax(x):
    x = np.asarray(x, dtype="float64")
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


# ------------------------------------------------------------------ input makers


def binary_logits(batch=12, classes=1, scale=3.0):
    def make(rng):
        y = (rng.uniform(size=(batch, classes)) < 0.4).astype("float32")
        x = (rng.normal(size=(batch, classes)) * scale).astype("float32")
        return y, x

    return make


def binary_probs(batch=12, classes=1):
    def make(rng):
        y = (rng.uniform(size=(batch, classes)) < 0.4).astype("float32")
        p = rng.uniform(0.02, 0.98, size=(batch, classes)).astype("float32")
        return y, p

    return make


def one_hot_logits(batch=12, classes=4, scale=2.0):
    def make(rng):
        y = np.eye(classes, dtype="float32")[rng.integers(0, classes, size=batch)]
        x = (rng.normal(size=(batch, classes)) * scale).astype("float32")
        return y, x

    return make


def one_hot_probs(batch=12, classes=4):
    def make(rng):
        y, x = one_hot_logits(batch, classes)(rng)
        return y, softmax(x).astype("float32")

    return make


def regression(batch=12, outputs=3, noise=1.5):
    def make(rng):
        y = rng.normal(size=(batch, outputs)).astype("float32")
        p = (y + noise * rng.standard_t(df=2, size=(batch, outputs))).astype("float32")
        return y, p

    return make
