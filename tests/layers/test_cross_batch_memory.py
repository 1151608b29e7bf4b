"""CrossBatchMemory (XBM, Wang et al. 2020): the loss of each step against
pytorch-metric-learning's `CrossBatchMemory`, the queue against a numpy
ring buffer, the state inside compiled `fit` and after saving, the warm-up,
the gradient and the argument checks.

Peer: pytorch-metric-learning 2.9.0 `CrossBatchMemory(loss, embedding_size,
memory_size, miner)` run live (float64) on the same sequence of batches; each
batch has two samples of each of its classes, so every anchor has a positive
and a negative (PML has no valid-anchor rule of its own)."""

import keras
import numpy as np
import pytest

import keras_lossplus as klp
from keras_lossplus.layers import CrossBatchMemory
from keras_lossplus.layers.memory import SUPPORTED_LOSSES
from tests.backend_utils import BACKEND, XLA_BACKENDS, to_numpy, value_and_grad
from tests.edge_grid import compiled_value_and_grad

JIT = BACKEND in XLA_BACKENDS
L = klp.losses
B, D = 6, 4


def batches(steps, seed=0, batch=B, classes=7):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(steps):
        labels = rng.permutation(np.repeat(rng.choice(classes, batch // 2, replace=False), 2)).astype("int32")
        out.append((rng.normal(size=(batch, D)).astype("float32"), labels))
    return out


def step_values(layer, sequence, training=True):
    """The loss the layer adds at each call."""
    values = []
    for x, y in sequence:
        layer([keras.ops.convert_to_tensor(x), keras.ops.convert_to_tensor(y)], training=training)
        values.append(float(to_numpy(layer.penalty_value)))
    return np.array(values)


class Ring:
    """The queue in numpy: slots, labels, write pointer, filled count."""

    def __init__(self, size):
        self.x, self.y = np.zeros((size, D), "float32"), np.zeros(size, "int32")
        self.size, self.pointer, self.filled = size, 0, 0

    def references(self, batch):
        """The entries a batch is compared with besides itself: the filled
        slots it does not overwrite."""
        slots = [s for s in range(self.size) if s < self.filled
                 and (s - self.pointer) % self.size >= batch]
        return self.x[slots], self.y[slots]

    def write(self, x, y):
        slots = (self.pointer + np.arange(len(x))) % self.size
        self.x[slots], self.y[slots] = x, y
        self.pointer = (self.pointer + len(x)) % self.size
        self.filled = min(self.filled + len(x), self.size)


# ------------------------------------------------------------------ values: PML and the loss itself


def _pml_pairs():
    pytest.importorskip("pytorch_metric_learning")
    from pytorch_metric_learning import distances, losses, miners

    lp = distances.LpDistance(normalize_embeddings=False)
    return {
        "contrastive": (losses.ContrastiveLoss(pos_margin=0.0, neg_margin=1.0, distance=lp), None,
                        L.BatchContrastiveLoss(pos_margin=0.0, neg_margin=1.0)),
        "triplet_all": (losses.TripletMarginLoss(margin=0.05, distance=lp), None,
                        L.TripletLoss(margin=0.05, mining="all")),
        "multi_similarity": (losses.MultiSimilarityLoss(), miners.MultiSimilarityMiner(0.1), L.MultiSimilarityLoss()),
        "supcon": (losses.SupConLoss(temperature=0.1), None, L.SupConLoss(temperature=0.1)),
        "ntxent": (losses.NTXentLoss(temperature=0.5), None, L.NTXentLoss(temperature=0.5)),
    }


def _pml_values(loss, miner, memory_size, sequence):
    import torch
    from pytorch_metric_learning.losses import CrossBatchMemory as PMLCrossBatchMemory

    xbm = PMLCrossBatchMemory(loss, D, memory_size=memory_size, miner=miner)
    return np.array([float(xbm(torch.tensor(x, dtype=torch.float64), torch.tensor(y, dtype=torch.int64)))
                     for x, y in sequence])


@pytest.mark.parametrize("name", ["contrastive", "triplet_all", "multi_similarity", "supcon", "ntxent"])
def test_each_step_matches_pytorch_metric_learning(name):
    # 16 slots, batches of 6: partly filled, then wrapping around (16 is not a multiple of 6)
    peer, miner, ours = _pml_pairs()[name]
    sequence = batches(5)
    expected = _pml_values(peer, miner, 16, sequence)
    np.testing.assert_allclose(step_values(CrossBatchMemory(ours, memory_size=16), sequence), expected,
                               rtol=2e-5, atol=1e-6)


SUPPORTED = {
    "contrastive_chunked": L.BatchContrastiveLoss(chunk_size=4),
    "triplet_semihard": L.TripletLoss(margin=0.5),
    "triplet_hard_cosine": L.TripletLoss(mining="hard", distance="cosine"),
    "triplet_all_soft_chunked": L.TripletLoss(mining="all", soft=True, chunk_size=4),
    "multi_similarity": L.MultiSimilarityLoss(),
    "npair": L.NPairLoss(),
    "ntxent": L.NTXentLoss(),
    "supcon": L.SupConLoss(),
    "soft_nearest_neighbor": L.SoftNearestNeighborLoss(),
}


def test_the_table_covers_every_supported_loss():
    assert {type(loss) for loss in SUPPORTED.values()} == set(SUPPORTED_LOSSES)


@pytest.mark.parametrize("name", sorted(SUPPORTED))
def test_each_step_is_the_loss_on_batch_and_queue_with_the_queue_rows_weighted_0(name):
    """Every supported loss reads sample_weight as the anchors' weights: the
    memory's value is the unchanged loss on [batch; queue entries] with the
    queue's rows weighted 0 (the queue entries: those filled and not about
    to be overwritten by the batch)."""
    loss = SUPPORTED[name]
    layer, ring = CrossBatchMemory(loss, memory_size=10), Ring(10)
    for x, y in batches(4, seed=1, batch=4, classes=3):
        mx, my = ring.references(len(x))
        expected = float(to_numpy(loss(np.concatenate([y, my]), np.concatenate([x, mx]),
                                       sample_weight=np.r_[np.ones(len(x)), np.zeros(len(mx))])))
        got = step_values(layer, [(x, y)])[0]
        np.testing.assert_allclose(got, expected, rtol=2e-5, atol=1e-6, err_msg=f"after {ring.filled} filled")
        ring.write(x, y)


def test_queue_contents_pointer_and_counts_after_n_steps():
    layer, ring = CrossBatchMemory(L.TripletLoss(), memory_size=10, warmup_steps=3), Ring(10)
    for step, (x, y) in enumerate(batches(4, batch=4, classes=3)):
        step_values(layer, [(x, y)])
        ring.write(x, y)
        assert int(to_numpy(layer.steps)) == min(step + 1, 3)  # counted up to warmup_steps only
    np.testing.assert_array_equal(to_numpy(layer.memory), ring.x)
    np.testing.assert_array_equal(to_numpy(layer.memory_labels), ring.y)
    assert (int(to_numpy(layer.pointer)), int(to_numpy(layer.filled))) == (ring.pointer, ring.filled) == (6, 10)
    assert layer.trainable_weights == []


def test_warmup_fills_the_queue_and_adds_the_plain_in_batch_loss():
    loss = L.BatchContrastiveLoss()
    sequence = batches(5)
    warm = step_values(CrossBatchMemory(loss, memory_size=16, warmup_steps=2), sequence)
    cold = step_values(CrossBatchMemory(loss, memory_size=16), sequence)
    plain = [float(to_numpy(loss(y, x))) for x, y in sequence]
    np.testing.assert_allclose(warm[:2], plain[:2], rtol=1e-6)
    np.testing.assert_allclose(warm[2:], cold[2:], rtol=1e-6)  # the queue was filled during the warm-up
    assert not np.allclose(cold[1:], plain[1:])


def test_outside_training_the_loss_is_the_in_batch_loss_and_the_queue_stays():
    loss = L.MultiSimilarityLoss()
    layer = CrossBatchMemory(loss, memory_size=12)
    train, test = batches(2), batches(1, seed=5)
    step_values(layer, train)
    before = to_numpy(layer.memory).copy()
    np.testing.assert_allclose(step_values(layer, test, training=False), float(to_numpy(loss(test[0][1], test[0][0]))),
                               rtol=1e-6)
    np.testing.assert_array_equal(to_numpy(layer.memory), before)
    assert int(to_numpy(layer.pointer)) == 0 and int(to_numpy(layer.filled)) == 12


# ------------------------------------------------------------------ gradient and compilation


def test_gradient_flows_through_the_batch_only_and_compiles():
    """The gradient w.r.t. the batch equals that of the loss on [batch;
    stop_gradient(queue)] with the queue rows weighted 0; the queue itself
    is a constant (non-trainable state). Checked eagerly and compiled
    (jax.jit / tf.function(jit_compile=True))."""
    loss = L.TripletLoss(mining="all", margin=0.5)
    layer, ring = CrossBatchMemory(loss, memory_size=10), Ring(10)
    train = batches(2, batch=4, classes=3)
    for x, y in train:
        step_values(layer, [(x, y)])
        ring.write(x, y)
    (x, y), = batches(1, seed=3, batch=4, classes=3)
    mx, my = ring.references(len(x))
    weights = np.r_[np.ones(len(x)), np.zeros(len(mx))].astype("float32")

    def plain(e):
        both = keras.ops.concatenate([e, keras.ops.convert_to_tensor(mx)], axis=0)
        return loss(np.concatenate([y, my]), both, sample_weight=weights)

    expected, expected_grad = value_and_grad(plain, x)
    value, grad = value_and_grad(lambda e: layer.memory_loss(e, keras.ops.convert_to_tensor(y)), x)
    np.testing.assert_allclose(value, expected, rtol=1e-5)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-4, atol=1e-6)
    assert np.abs(grad).sum() > 0
    cvalue, cgrad = compiled_value_and_grad(lambda labels, e: layer.memory_loss(e, labels))(
        keras.ops.convert_to_tensor(y), keras.ops.convert_to_tensor(x))
    np.testing.assert_allclose(to_numpy(cvalue), expected, rtol=1e-5)
    np.testing.assert_allclose(to_numpy(cgrad), expected_grad, rtol=1e-4, atol=1e-6)


def _model(memory_size=16, warmup_steps=0):
    inputs, labels = keras.Input((5,)), keras.Input((), dtype="int32")
    emb = keras.layers.Dense(D, name="encoder")(inputs)
    out = CrossBatchMemory(L.TripletLoss(mining="all", margin=0.5), memory_size=memory_size,
                           warmup_steps=warmup_steps, name="xbm")([emb, labels])
    return keras.Model([inputs, labels], out)


def _data(steps, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.concatenate([y for _, y in batches(steps, seed=seed)])
    return rng.normal(size=(len(labels), 5)).astype("float32"), labels


def test_state_is_updated_inside_compiled_fit_and_the_losses_match_eager_steps():
    """fit with jit_compile=True on JAX and TensorFlow (torch: its own
    compiled step). With a learning rate of 0 the embeddings are fixed, so the
    queue must hold the encoder's outputs of the last samples and the
    epoch's loss the mean of the layer's eager values on them."""
    model = _model(memory_size=16, warmup_steps=1)
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss=None, jit_compile=JIT)
    x, y = _data(5)
    emb = to_numpy(model.get_layer("encoder")(x))
    history = model.fit([x, y], None, batch_size=B, epochs=1, shuffle=False, verbose=0).history
    ring = Ring(16)
    for i in range(0, len(y), B):
        ring.write(emb[i:i + B], y[i:i + B])
    layer = model.get_layer("xbm")
    np.testing.assert_allclose(to_numpy(layer.memory), ring.x, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(to_numpy(layer.memory_labels), ring.y)
    assert int(to_numpy(layer.pointer)) == ring.pointer and int(to_numpy(layer.filled)) == 16
    assert int(to_numpy(layer.steps)) == 1
    eager = CrossBatchMemory(layer.loss, memory_size=16, warmup_steps=1)
    expected = step_values(eager, [(emb[i:i + B], y[i:i + B]) for i in range(0, len(y), B)])
    np.testing.assert_allclose(history["loss"][0], expected.mean(), rtol=1e-5)


def test_the_queue_is_saved_and_loaded_with_the_model(tmp_path):
    model = _model(memory_size=16)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=None, jit_compile=JIT)
    x, y = _data(3)
    model.fit([x, y], None, batch_size=B, epochs=1, shuffle=False, verbose=0)
    model.save(tmp_path / "xbm.keras")
    reloaded = keras.saving.load_model(tmp_path / "xbm.keras")
    old, new = model.get_layer("xbm"), reloaded.get_layer("xbm")
    for name in ("memory", "memory_labels", "pointer", "filled", "steps"):
        np.testing.assert_array_equal(to_numpy(getattr(new, name)), to_numpy(getattr(old, name)), err_msg=name)
    assert new.get_config() == old.get_config() and isinstance(new.loss, L.TripletLoss)
    # the next step continues from the loaded queue
    (xb, yb), = batches(1, seed=9)
    assert np.isclose(step_values(new, [(xb, yb)])[0], step_values(old, [(xb, yb)])[0], rtol=1e-6)


# ------------------------------------------------------------------ arguments


def test_bad_arguments():
    with pytest.raises(TypeError, match="`loss`"):
        CrossBatchMemory(keras.losses.MeanSquaredError())
    with pytest.raises(TypeError, match="`loss`"):
        CrossBatchMemory(L.triplet_loss)
    with pytest.raises(TypeError, match="`loss`.*BatchContrastiveLoss"):
        CrossBatchMemory(L.LiftedStructureLoss())  # needs each reference's own negatives
    with pytest.raises(ValueError, match="`loss`.*mining='none'"):
        CrossBatchMemory(L.TripletLoss(mining="none"))
    for bad in (0, -1, 2.5, True, "8"):
        with pytest.raises(ValueError, match="`memory_size`"):
            CrossBatchMemory(L.TripletLoss(), memory_size=bad)
    with pytest.raises(ValueError, match="`warmup_steps`"):
        CrossBatchMemory(L.TripletLoss(), warmup_steps=-1)
    layer = CrossBatchMemory(L.TripletLoss(), memory_size=4)
    with pytest.raises(ValueError, match="`memory_size` \\(4\\) must be at least the batch size \\(6\\)"):
        step_values(layer, batches(1))
    with pytest.raises(ValueError, match="`memory_size`"):
        CrossBatchMemory(L.TripletLoss(), memory_size=4).build([(6, D), (6,)])  # a static batch, at build
    with pytest.raises(ValueError, match="labels"):
        CrossBatchMemory(L.TripletLoss(), memory_size=8)([np.ones((2, D), "float32"), np.array([0.5, 1.0])])
