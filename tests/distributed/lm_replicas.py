"""Run in a subprocess by `test_lm_replicas.py`: the fused linear
cross-entropy (`LinearCrossEntropy`, `LanguageModelHead`) on N virtual CPU
devices against the same on one device, printed as one JSON line.

    python tests/distributed/lm_replicas.py BACKEND N   # N = 1: the single-device reference

* data parallelism (JAX `keras.distribution.DataParallel`, TensorFlow
  `MirroredStrategy` over logical CPUs): one SGD step of `fit` and
  `evaluate` of a tiny language model (Embedding -> Dense ->
  LanguageModelHead, the loss added with `add_loss`), of the same model
  calling `LinearCrossEntropy` in its `compute_loss`, and of the naive
  model (Dense logits, Keras' `SparseCategoricalCrossentropy`) for
  comparison;
* vocabulary parallelism (JAX `keras.distribution.ModelParallel`, the head
  kernel's vocabulary axis sharded over the "model" mesh axis): the same
  `fit` / `evaluate`, and the value and gradients of `LinearCrossEntropy`
  on a sharded kernel under `jax.jit`, with the collectives XLA's
  partitioner put in the compiled step.

Padding tokens carry sample_weight 0 and a few targets are `ignore_class`,
spread unevenly over the batch (most of them in the first rows). The device
count must be fixed before the backend starts, hence a process of its own.
"""

import json
import os
import re
import sys
from pathlib import Path

BACKEND, DEVICES = "jax", 1  # set by start() in the subprocess

BATCH, SEQ, DIM, VOCAB = 8, 6, 16, 64
IGNORE = VOCAB - 1  # the ignore_class token id
CHUNK = 16  # 48 tokens: 3 chunks on one device (the loop runs more than once)
JIT = os.environ.get("REPLICAS_JIT", "0") == "1"


def start(backend: str, devices: int) -> None:
    """Fix the device count, then import the backend (run as a script only)."""
    global BACKEND, DEVICES, jax, tf, keras, np, L, KL
    BACKEND, DEVICES = backend, devices
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script: the repository's tests/
    from tests.distributed.replicas import fix_devices

    jax, tf = fix_devices(backend, devices)
    import keras
    import numpy as np

    from keras_lossplus import layers as KL
    from keras_lossplus import losses as L


def data(even: bool = False) -> tuple:
    """Tokens, next-token targets (some `IGNORE`), a padding mask. The
    ignored tokens are spread unevenly over the replicas' slices (5 + 2 + 1
    in rows 0, 1, 5), or evenly (`even`: the last token of every row)."""
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, VOCAB - 1, size=(BATCH, SEQ)).astype("int32")
    targets = rng.integers(0, VOCAB - 1, size=(BATCH, SEQ)).astype("int32")
    if even:
        targets[:, -1] = IGNORE
    else:
        targets[0, 1:] = IGNORE
        targets[1, 3:5] = IGNORE
        targets[5, 0] = IGNORE
    mask = np.ones((BATCH, SEQ), "float32")
    mask[2, 4:] = 0.0  # right padding
    mask[6, 2:] = 0.0
    mask[7, 5:] = 0.0
    return tokens, targets, mask


# ------------------------------------------------------------------ strategies

def data_parallel():
    if BACKEND == "jax":
        return keras.distribution.DataParallel(devices=jax.devices())
    if not hasattr(data_parallel, "mirrored"):  # one MirroredStrategy per process (collective keys)
        data_parallel.mirrored = tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(DEVICES)])
    return data_parallel.mirrored


def vocabulary_parallel(batch: int = 1):
    """JAX `ModelParallel` on a (batch, DEVICES // batch) ("batch", "model")
    mesh, the head kernel (D, V) split over V."""
    mesh = keras.distribution.DeviceMesh((batch, DEVICES // batch), ("batch", "model"), devices=jax.devices())
    layout_map = keras.distribution.LayoutMap(mesh)
    layout_map["head/kernel"] = (None, "model")
    return keras.distribution.ModelParallel(layout_map=layout_map, batch_dim_name="batch")


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *_):
        return False


def in_scope(distribution):
    """Set a JAX distribution (or None); the TF strategy's scope."""
    if BACKEND == "jax":
        keras.distribution.set_distribution(distribution)
        return _nothing()
    return distribution.scope() if distribution is not None else _nothing()


# ----------------------------------------------------------------------- models

def _trunk(tokens):
    h = keras.layers.Embedding(VOCAB, DIM, name="embed")(tokens)
    return keras.layers.Dense(DIM, activation="tanh", name="mix")(h)


def head_model():
    """The loss added by `LanguageModelHead` (add_loss); compiled with loss=None."""
    tokens, targets = keras.Input((SEQ,), dtype="int32"), keras.Input((SEQ,), dtype="int32")
    mask = keras.Input((SEQ,))
    head = KL.LanguageModelHead(VOCAB, ignore_class=IGNORE, chunk_size=CHUNK, name="head")
    model = keras.Model([tokens, targets, mask], head(_trunk(tokens), targets, sample_weight=mask))
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss=None, jit_compile=JIT)
    return model


def loss_model():
    """Outputs the hidden states; `compute_loss` calls `LinearCrossEntropy`
    on `(hidden, kernel)` (the loss object called directly)."""

    class LossModel(keras.Model):
        def __init__(self):
            tokens = keras.Input((SEQ,), dtype="int32")
            super().__init__(tokens, _trunk(tokens))
            self.head = keras.layers.Dense(VOCAB, use_bias=False, name="head")
            self.head.build((None, SEQ, DIM))
            self.lce = L.LinearCrossEntropy(ignore_class=IGNORE, chunk_size=CHUNK)

        def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
            kernel = keras.ops.convert_to_tensor(self.head.kernel)
            return self.lce(y, (y_pred, kernel), sample_weight=sample_weight)

    model = LossModel()
    model.compile(optimizer=keras.optimizers.SGD(0.5), jit_compile=JIT)
    return model


def naive_model():
    """Dense logits and Keras' own SparseCategoricalCrossentropy: what the
    fused loss must reproduce."""
    tokens = keras.Input((SEQ,), dtype="int32")
    model = keras.Model(tokens, keras.layers.Dense(VOCAB, use_bias=False, name="head")(_trunk(tokens)))
    model.compile(optimizer=keras.optimizers.SGD(0.5), jit_compile=JIT,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=IGNORE))
    return model


def _head(model):
    return model.head if hasattr(model, "lce") else model.get_layer("head")


MODELS = {"head": head_model, "compute_loss": loss_model, "naive": naive_model}


def _fit_args(name, tokens, targets, mask) -> dict:
    if name == "head":
        return {"x": [tokens, targets, mask]}
    return {"x": tokens, "y": targets, "sample_weight": mask}


def _keras_reference(model, tokens, targets, mask) -> float:
    """Keras' SparseCategoricalCrossentropy on the model's logits (numpy
    in, one device): the value the fused loss must give."""
    hidden = model.get_layer("mix")(model.get_layer("embed")(tokens))
    logits = keras.ops.matmul(hidden, _head(model).kernel)
    sce = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=IGNORE)
    return float(sce(targets, logits, sample_weight=mask))


def run(name, distribution, arrays, reference: bool = False) -> dict:
    """`evaluate`, then one SGD step of `fit` on the global batch: the loss
    of each and the weights after the step."""
    scope = in_scope(distribution)
    keras.utils.set_random_seed(1)
    with scope:
        model = MODELS[name]()
    args = _fit_args(name, *arrays)
    out = {"evaluate": float(model.evaluate(**args, batch_size=BATCH, verbose=0, return_dict=True)["loss"])}
    if reference:
        out["keras_reference"] = _keras_reference(model, *arrays)
    out["fit"] = float(model.fit(**args, batch_size=BATCH, epochs=1, shuffle=False, verbose=0).history["loss"][0])
    out["weights"] = [np.asarray(w).tolist() for w in model.get_weights()]
    if BACKEND == "jax" and isinstance(distribution, keras.distribution.ModelParallel):
        kernel = _head(model).kernel.value
        out["kernel_shards"] = sorted({tuple(s.data.shape) for s in kernel.addressable_shards})
    if BACKEND == "jax":
        keras.distribution.set_distribution(None)
    return out


# ------------------------------------------------- the op on a sharded kernel (JAX)

def _collectives(hlo: str) -> dict:
    """The result types of the cross-device ops in compiled HLO, per op (a
    gathered (D, V) kernel would show as an all-gather to f32[16,64])."""
    found = {}
    for line in hlo.splitlines():
        match = re.match(r"\s*(?:ROOT )?%\S+ = (.+?) (all-gather|all-reduce|reduce-scatter|all-to-all|"
                         r"collective-permute)(?:-start)?\(", line)
        if match:
            found.setdefault(match.group(2), []).append(re.sub(r"\{[\d,]*\}", "", match.group(1)))
    return found


def sharded_op(tokens, targets, mask, batch: int = 1) -> dict:
    """Value and gradients (hidden, kernel) of `LinearCrossEntropy` under
    `jax.jit`, the kernel placed split over V (DEVICES // batch shards),
    the hidden states over the batch (`batch` shards)."""
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P

    rng = np.random.default_rng(2)
    hidden = rng.normal(size=(BATCH, SEQ, DIM)).astype("float32")
    kernel = (rng.normal(size=(DIM, VOCAB)) / 4).astype("float32")
    loss = L.LinearCrossEntropy(ignore_class=IGNORE, chunk_size=CHUNK)

    def f(h, w):
        return loss(targets, (h, w), sample_weight=mask)

    step = jax.jit(jax.value_and_grad(f, argnums=(0, 1)))
    if DEVICES > 1:
        mesh = Mesh(np.array(jax.devices()).reshape(batch, DEVICES // batch), ("batch", "model"))
        hidden = jax.device_put(hidden, NamedSharding(mesh, P("batch" if batch > 1 else None)))
        kernel = jax.device_put(kernel, NamedSharding(mesh, P(None, "model")))
    value, (dh, dw) = step(hidden, kernel)
    out = {"value": float(value), "d_hidden": np.asarray(dh).tolist(), "d_kernel": np.asarray(dw).tolist()}
    if DEVICES > 1:
        out["sharding"] = {"d_hidden": str(dh.sharding.spec), "d_kernel": str(dw.sharding.spec)}
        out["collectives"] = _collectives(step.lower(hidden, kernel).compile().as_text())
    return out


def main() -> None:
    arrays, even = data(), data(even=True)
    out = {}
    if DEVICES == 1:  # the references
        for name in MODELS:
            out[name] = run(name, None, arrays, reference=name != "naive")
            out[f"even/{name}"] = run(name, None, even, reference=name != "naive")
        if BACKEND == "jax":
            out["sharded_op"] = sharded_op(*arrays)
        print("RESULT " + json.dumps(out))
        return
    for name in MODELS:
        out[f"data_parallel/{name}"] = run(name, data_parallel(), arrays)
        out[f"data_parallel_even/{name}"] = run(name, data_parallel(), even)
    if BACKEND == "jax":
        meshes = [1] + ([2] if DEVICES >= 4 else [])  # (1, N): vocabulary only; (2, N/2): batch and vocabulary
        for batch in meshes:
            for name in ("head", "compute_loss", "naive"):
                out[f"model_parallel_{batch}x{DEVICES // batch}/{name}"] = run(name, vocabulary_parallel(batch), arrays)
            out[f"sharded_op_{batch}x{DEVICES // batch}"] = sharded_op(*arrays, batch=batch)
        out[f"sharded_op_{DEVICES}x1"] = sharded_op(*arrays, batch=DEVICES)  # batch-sharded hidden states only
    print("RESULT " + json.dumps(out))


if __name__ == "__main__":
    start(sys.argv[1], int(sys.argv[2]))
    main()
