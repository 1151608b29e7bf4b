"""Run in a subprocess by `test_replicas.py`: one training step and one
evaluation of in-batch losses on N virtual CPU devices (JAX
`keras.distribution.DataParallel`, TensorFlow `MirroredStrategy` over logical
CPUs) against the same on one device, printed as JSON.

    python tests/distributed/replicas.py BACKEND N

The device count must be fixed before the backend starts, hence a process of
its own.
"""

import json
import os
import sys

BACKEND, DEVICES = "jax", 1  # set by start() in the subprocess


def start(backend: str, devices: int) -> None:
    """Fix the device count, then import the backend (run as a script only:
    importing this module, as pytest's doctest collection does, starts
    nothing)."""
    global BACKEND, DEVICES, jax, tf, keras, np, L
    BACKEND, DEVICES = backend, devices
    os.environ["KERAS_BACKEND"] = backend
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if backend == "jax":
        flags = os.environ.get("XLA_FLAGS", "")
        os.environ["XLA_FLAGS"] = flags + f" --xla_force_host_platform_device_count={devices}"
        import jax
    else:
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * devices)
    import keras
    import numpy as np

    from keras_lossplus import losses as L


BATCH = 32
JIT = os.environ.get("REPLICAS_JIT", "0") == "1"
LOSSES = {  # built lazily: L is imported by start()
    "triplet_semihard": lambda **kw: L.TripletLoss(margin=0.5, mining="semihard", **kw),
    "triplet_all": lambda **kw: L.TripletLoss(margin=0.5, mining="all", **kw),
    "supcon": lambda **kw: L.SupConLoss(temperature=0.5, **kw),
    "nt_xent": lambda **kw: L.NTXentLoss(temperature=0.5, **kw),
    "multi_similarity": lambda **kw: L.MultiSimilarityLoss(**kw),
}


def strategy(distributed: bool):
    if BACKEND == "jax":
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=jax.devices()) if distributed
                                            else None)
        return None
    if distributed:
        # one strategy for the whole process: two MirroredStrategy objects share collective keys
        if not hasattr(strategy, "mirrored"):
            strategy.mirrored = tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(DEVICES)])
        return strategy.mirrored
    return tf.distribute.get_strategy()


def run(make_loss, distributed: bool, data, **loss_kwargs):
    x, y = data
    scope = strategy(distributed)
    keras.utils.set_random_seed(1)
    with scope.scope() if scope is not None else _nothing():
        model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(6), keras.layers.UnitNormalization()])
        model.compile(optimizer=keras.optimizers.SGD(0.5), loss=make_loss(**loss_kwargs), jit_compile=JIT)
    before = float(model.evaluate(x, y, batch_size=BATCH, verbose=0))
    embeddings = np.asarray(model.predict(x, batch_size=BATCH, verbose=0))
    logged = model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0).history["loss"][0]
    return before, logged, [w.tolist() for w in model.get_weights()], embeddings


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *_):
        return False


def main() -> None:
    rng = np.random.default_rng(0)
    data = (rng.normal(size=(BATCH, 8)).astype("float32"), rng.integers(0, 4, size=BATCH).astype("int32"))
    out = {}
    for name, make in LOSSES.items():
        one = run(make, False, data)
        many = run(make, True, data)
        row = {
            "evaluate": [one[0], many[0]],
            "logged": [one[1], many[1]],
            "weights_max_diff": max(float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in zip(one[2], many[2])),
        }
        if BACKEND == "tensorflow" and DEVICES == 2:
            # "local": the mean over the replicas of the loss of each replica's slice
            local = run(make, True, data, cross_replica="local")[0]
            slices = np.split(np.arange(BATCH), DEVICES)
            expected = np.mean([float(make()(data[1][s], one[3][s])) for s in slices])
            row["local"] = [expected, local]
        out[name] = row
    print("RESULT " + json.dumps(out))


if __name__ == "__main__":
    start(sys.argv[1], int(sys.argv[2]))
    main()
