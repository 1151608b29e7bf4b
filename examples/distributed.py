"""Data-parallel training with an in-batch loss: the same run on N devices
and on one device gives the same losses and the same weights.

  data      scikit-learn's digits (1280 training, 517 held-out), batches of 128
  model     the MLP of `metric_learning.py` (64 -> 128 -> 64 -> 32, unit length)
            with a `DecorrelationPenalty` on its hidden layer (batch-level)
  loss      `klp.losses.SupConLoss(temperature=0.1)`: every denominator runs
            over the whole global batch, also when each device holds 1/N of it
  devices   JAX: `keras.distribution.DataParallel` over `jax.devices()`;
            TensorFlow: `tf.distribute.MirroredStrategy`. GPUs when present,
            else N virtual CPU devices (`--devices`, default 4).
            torch: Keras 3 has no data-parallel training on torch; the script
            says so and trains on one device.

It prints the loss of each epoch on N devices and on one device (the same
initial weights and batches), the largest weight difference at the end, and
the held-out recall@1 of the embedding.

Run:  python examples/distributed.py [--backend jax|tensorflow|torch] [--devices N] [--epochs E]
      (the backend is --backend, else KERAS_BACKEND, else jax)
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from metric_learning import BATCH_SIZE, load_data, recall_at_1, select_backend  # noqa: E402

LEARNING_RATE = 3e-3


def virtual_devices(count: int) -> None:
    """Split the CPU into `count` devices, before the backend starts (GPUs,
    when present, are used instead)."""
    backend = os.environ["KERAS_BACKEND"]
    if backend == "jax":
        os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={count}"
    elif backend == "tensorflow":
        import tensorflow as tf

        if not tf.config.list_physical_devices("GPU"):
            cpu = tf.config.list_physical_devices("CPU")[0]
            tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)


def data_parallel():
    """`(scope, devices)`: what makes the next model data-parallel."""
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        devices = jax.devices()
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
        return None, [str(d) for d in devices]
    if backend == "tensorflow":
        import tensorflow as tf

        devices = [d.name for d in tf.config.list_logical_devices("GPU")] or [
            d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices), devices
    return None, []


def single_device():
    import keras

    if keras.backend.backend() == "jax":
        keras.distribution.set_distribution(None)


def build_and_train(scope, data: dict, epochs: int, seed: int):
    import keras

    import keras_lossplus as klp

    keras.utils.set_random_seed(seed)  # the same initial weights and batches in both runs
    with scope.scope() if scope is not None else _NoScope():
        inputs = keras.Input((64,))
        h = keras.layers.Dense(128, activation="relu")(inputs)
        h = klp.layers.DecorrelationPenalty(1e-3, name="decov")(keras.layers.Dense(64, activation="relu")(h))
        outputs = keras.layers.UnitNormalization()(keras.layers.Dense(32)(h))
        model = klp.log_penalties(keras.Model(inputs, outputs))
        model.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE), loss=klp.losses.SupConLoss(temperature=0.1))
    start = time.perf_counter()
    history = model.fit(data["x_train"], data["y_train"], batch_size=BATCH_SIZE, epochs=epochs, verbose=0)
    return model, history.history, time.perf_counter() - start


class _NoScope:
    def __enter__(self):
        return self

    def __exit__(self, *_):
        return False


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("jax", "tensorflow", "torch"))
    parser.add_argument("--devices", type=int, default=4, help="virtual CPU devices when there is no GPU")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.devices < 1 or BATCH_SIZE % args.devices:
        parser.error(f"--devices must divide the batch size {BATCH_SIZE}; got {args.devices}")
    select_backend(args.backend)
    virtual_devices(args.devices)
    import keras

    import keras_lossplus as klp

    print(f"keras_lossplus {klp.__version__} on keras {keras.__version__} ({keras.backend.backend()})")
    data = load_data(args.seed)
    scope, devices = data_parallel()
    if not devices:
        print("Keras 3 has no data-parallel training on the torch backend (see docs/distributed.md): one device only.")
        model, history, seconds = build_and_train(None, data, args.epochs, args.seed)
        print(f"loss per epoch: {np.round(history['loss'], 4).tolist()}; recall@1 "
              f"{recall_at_1(model.predict(data['x_test'], verbose=0), data['y_test']):.3f}")
        return {"history": history}
    print(f"{len(devices)} devices: {', '.join(devices)}; global batch {BATCH_SIZE}, "
          f"{BATCH_SIZE // len(devices)} samples per device")
    many, many_history, many_seconds = build_and_train(scope, data, args.epochs, args.seed)
    single_device()
    one, one_history, one_seconds = build_and_train(None, data, args.epochs, args.seed)
    print(f"\n{'epoch':>5}  {'loss, ' + str(len(devices)) + ' devices':>18}  {'loss, 1 device':>15}  "
          f"{'decov, N':>9}  {'decov, 1':>9}")
    for epoch in range(args.epochs):
        print(f"{epoch + 1:>5}  {many_history['loss'][epoch]:>18.6f}  {one_history['loss'][epoch]:>15.6f}  "
              f"{many_history['decov'][epoch]:>9.6f}  {one_history['decov'][epoch]:>9.6f}")
    gap = max(float(np.max(np.abs(a - b))) for a, b in zip(many.get_weights(), one.get_weights()))
    print(f"\nlargest weight difference after {args.epochs} epochs: {gap:.2e}")
    recall = recall_at_1(one.predict(data["x_test"], verbose=0), data["y_test"])
    print(f"held-out recall@1: {recall:.3f}; fit: {many_seconds:.1f} s on {len(devices)} devices, "
          f"{one_seconds:.1f} s on one (virtual CPU devices share the same cores)")
    return {"many": many_history, "one": one_history, "weight_gap": gap, "recall": recall}


if __name__ == "__main__":
    main()
