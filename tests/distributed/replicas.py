"""Run in a subprocess by `test_replicas.py`: one training step and one
evaluation of in-batch losses on N virtual CPU devices (JAX
`keras.distribution.DataParallel`, TensorFlow `MirroredStrategy` over logical
CPUs) against the same on one device, printed as JSON.

    python tests/distributed/replicas.py BACKEND N   # N = 1: the single-device reference

The device count must be fixed before the backend starts, hence a process of
its own.
"""

import json
import os
import sys

BACKEND, DEVICES = "jax", 1  # set by start() in the subprocess


def fix_devices(backend: str, devices: int) -> tuple:
    """Set `KERAS_BACKEND` and the number of virtual CPU devices, then import
    the backend: `(jax, None)` or `(None, tensorflow)` (shared with
    `lm_replicas.py`)."""
    os.environ["KERAS_BACKEND"] = backend
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if backend == "jax":
        flags = os.environ.get("XLA_FLAGS", "")
        os.environ["XLA_FLAGS"] = flags + f" --xla_force_host_platform_device_count={devices}"
        import jax

        return jax, None
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * devices)
    return None, tf


def start(backend: str, devices: int) -> None:
    """Fix the device count, then import the backend (run as a script only:
    importing this module, as pytest's doctest collection does, starts
    nothing)."""
    global BACKEND, DEVICES, jax, tf, keras, np, L
    BACKEND, DEVICES = backend, devices
    jax, tf = fix_devices(backend, devices)
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
    # stacked (B, 2, D) anchor-positive embeddings; the labels mask same-class positives
    "mnrl": lambda **kw: L.MultipleNegativesRankingLoss(scale=5.0, symmetric=True, mask_same_label=True, **kw),
}


def strategy(distributed):
    """`distributed`: False, True (data parallel), or a JAX `LayoutMap`
    function (model parallel on a ("batch", "model") mesh)."""
    if BACKEND == "jax":
        keras.distribution.set_distribution(
            None if not distributed
            else keras.distribution.DataParallel(devices=jax.devices()) if distributed is True
            else distributed()
        )
        return None
    if distributed:
        # one strategy for the whole process: two MirroredStrategy objects share collective keys
        if not hasattr(strategy, "mirrored"):
            strategy.mirrored = tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(DEVICES)])
        return strategy.mirrored
    return tf.distribute.get_strategy()


def _metric_model(make_loss, **loss_kwargs):
    loss = make_loss(**loss_kwargs)
    stacked = [keras.layers.Dense(12), keras.layers.Reshape((2, 6))] if isinstance(
        loss, L.MultipleNegativesRankingLoss) else [keras.layers.Dense(6)]
    model = keras.Sequential([keras.Input((8,)), *stacked, keras.layers.UnitNormalization()])
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss=loss, jit_compile=JIT)
    return model


def _penalized_metric_model():
    """Penalty layers (summed, batch-level) in an embedding model whose
    in-batch loss gathers the replicas' embeddings after the forward pass."""
    from keras_lossplus import layers as KL, log_penalties

    model = keras.Sequential([
        keras.Input((8,)), keras.layers.Dense(6), KL.L1Penalty(0.01, name="l1"),
        KL.DecorrelationPenalty(0.5, name="decov"), keras.layers.UnitNormalization(),
    ])
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss=LOSSES["triplet_semihard"](), jit_compile=JIT)
    return log_penalties(model)


def _multi_output_model(weighting):
    """Two heads (one with missing labels), a summed L1 penalty, a batch-level
    decorrelation penalty and a center penalty on the shared trunk."""
    from keras_lossplus import MultiOutputModel, layers as KL

    inputs, labels = keras.Input((8,)), keras.Input((), dtype="int32")
    h = keras.layers.Dense(6, activation="tanh")(inputs)
    h = KL.L1Penalty(0.01, name="l1")(h)
    h = KL.DecorrelationPenalty(0.5, name="decov")(h)
    h = KL.CenterPenalty(4, factor=0.1, name="center")([h, labels])
    outputs = {"cls": keras.layers.Dense(4, name="cls")(h), "reg": keras.layers.Dense(1, name="reg")(h)}
    model = MultiOutputModel([inputs, labels], outputs)
    model.compile(optimizer=keras.optimizers.SGD(0.5), weighting=weighting, jit_compile=JIT,
                  loss={"cls": keras.losses.SparseCategoricalCrossentropy(from_logits=True), "reg": "mse"},
                  loss_weights={"cls": 1.0, "reg": 0.5})
    return model


def _arcface_model():
    """An embedding and an ArcFace head (`"arcface/kernel"`, 8 classes)."""
    from keras_lossplus import layers as KL

    inputs, labels = keras.Input((8,)), keras.Input((), dtype="int32")
    logits = KL.ArcFace(8, scale=16.0, margin=0.3, name="arcface")([keras.layers.Dense(16)(inputs), labels])
    model = keras.Model([inputs, labels], logits)
    model.compile(optimizer=keras.optimizers.SGD(0.5), jit_compile=JIT,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def _class_sharded():
    """JAX `ModelParallel`: the batch over one mesh axis, the ArcFace class
    weights over the other (2 devices: 1 x 2, 4 devices: 2 x 2)."""
    mesh = keras.distribution.DeviceMesh((DEVICES // 2, 2), ("batch", "model"), devices=jax.devices())
    layout_map = keras.distribution.LayoutMap(mesh)
    layout_map["arcface/kernel"] = (None, "model")
    return keras.distribution.ModelParallel(layout_map=layout_map, batch_dim_name="batch")


def run(build, distributed, x, y, predict: bool = False) -> dict:
    """The loss `evaluate` gives, the logs of one SGD step on the global
    batch, the weights after it and (if asked) the predictions before it."""
    scope = strategy(distributed)
    keras.utils.set_random_seed(1)
    with scope.scope() if scope is not None else _nothing():
        model = build()
    out = {"evaluate": float(model.evaluate(x, y, batch_size=BATCH, verbose=0, return_dict=True)["loss"])}
    if predict:
        out["predictions"] = model.predict(x, batch_size=BATCH, verbose=0)
    history = model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0).history
    out["logs"] = {key: values[0] for key, values in history.items()}
    out["weights"] = [np.asarray(w).tolist() for w in model.get_weights()]
    if BACKEND == "jax" and distributed and distributed is not True:  # the class weights really are sharded
        kernel = model.get_layer("arcface").kernel.value
        out["kernel_shards"] = [list(shard.data.shape) for shard in kernel.addressable_shards]
    return out


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *_):
        return False


def _uneven_slices_in_loss(x, y) -> str:
    """`strategy.run` of a gathering loss on slices of different sizes."""
    mirrored = strategy(True)
    sizes = [BATCH // DEVICES + (1 if i == 0 else 0) for i in range(DEVICES)]
    starts = np.cumsum([0] + sizes)
    slices = mirrored.experimental_distribute_values_from_function(
        lambda context: (x[starts[context.replica_id_in_sync_group]:starts[context.replica_id_in_sync_group + 1]],
                         y[starts[context.replica_id_in_sync_group]:starts[context.replica_id_in_sync_group + 1]]))
    loss = LOSSES["triplet_all"]()
    try:
        mirrored.run(tf.function(lambda xy: loss(xy[1], xy[0])), args=(slices,))
        return "no error"
    except Exception as error:  # noqa: BLE001 - which error is raised is reported
        return f"{type(error).__name__}: {str(error)[-1500:]}"


def main() -> None:
    """One device: the reference runs (and the per-slice losses that
    `cross_replica="local"` averages on 2 replicas); N devices: the same runs
    distributed."""
    distributed = DEVICES > 1
    rng = np.random.default_rng(0)
    x = rng.normal(size=(BATCH, 8)).astype("float32")
    y = rng.integers(0, 4, size=BATCH).astype("int32")
    out = {}
    for name, make in LOSSES.items():
        out[name] = run(lambda: _metric_model(make), distributed, x, y, predict=not distributed)
        if not distributed:  # what "local" gives on 2 replicas: the mean of the slices' losses
            embeddings = out[name].pop("predictions")
            out[name]["local"] = float(np.mean([float(make()(y[s], embeddings[s])) for s in np.split(np.arange(BATCH), 2)]))
        elif BACKEND == "tensorflow" and DEVICES == 2:
            out[name]["local"] = run(lambda: _metric_model(make, cross_replica="local"), True, x, y)["evaluate"]
    out["triplet_with_penalties"] = run(_penalized_metric_model, distributed, x, y)
    reg = rng.normal(size=(BATCH, 1)).astype("float32")
    reg[rng.random(BATCH) < 0.3] = np.nan  # missing labels, unevenly spread over the replicas
    for weighting in ("uncertainty", "pcgrad"):
        out[f"multi_output_{weighting}"] = run(lambda: _multi_output_model(weighting), distributed, [x, y],
                                               {"cls": y, "reg": reg})
    if distributed:  # a global batch that does not divide by the replicas: an error, not a wrong loss
        try:
            run(lambda: _metric_model(LOSSES["triplet_all"]), True, x[: BATCH - 1], y[: BATCH - 1])
            out["uneven"] = "no error"
        except Exception as error:  # noqa: BLE001 - which error the framework raises is reported
            out["uneven"] = f"{type(error).__name__}: {str(error)[:300]}"
    if distributed and BACKEND == "tensorflow":  # uneven slices reaching the loss itself (custom loops)
        out["uneven_in_loss"] = _uneven_slices_in_loss(x, y)
    if BACKEND == "jax":
        labels = y * 2 + (x[:, 0] > 0)  # 8 classes
        out["arcface_model_parallel"] = run(_arcface_model, distributed and _class_sharded, [x, labels], labels)
    print("RESULT " + json.dumps(out))


if __name__ == "__main__":
    start(sys.argv[1], int(sys.argv[2]))
    main()
