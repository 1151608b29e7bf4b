"""The ranking losses side by side with their peers' own code on random
padded lists: keras-rs 0.4 (every loss of `keras_rs.losses`, every option,
every reduction, per-item weights; the rows of the keras-rs table in
docs/migration.md) and optax (`ranking_softmax_loss`)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_lossplus import losses as L
from tests.backend_utils import BACKEND, to_numpy, value_and_grad
from tests.losses.ranking_references import MASK, keras_reduced, ref_listmle
from tests.peers import keras_rs

REDUCTIONS = ["sum_over_batch_size", "sum", "mean_with_sample_weight", "none"]

# ours with pair_reduction="per_item" against keras-rs' class of the same name
PAIRWISE = {
    "PairwiseLogisticLoss": L.PairwiseLogisticLoss,
    "PairwiseHingeLoss": L.PairwiseHingeLoss,
    "PairwiseSoftZeroOneLoss": L.PairwiseSoftZeroOneLoss,
    "PairwiseMeanSquaredError": L.PairwiseMeanSquaredError,
}


def _lists(rng, batch=6, size=5, relevant=False):
    """Graded labels 0..3 with `-1` padding anywhere, tied labels and a tied
    score pair; `relevant`: every query has a label > 0."""
    y = rng.integers(0, 4, size=(batch, size)).astype("float32")
    y[rng.uniform(size=y.shape) < 0.25] = MASK
    y[1] = [2, 2, 0, 0, MASK]
    if relevant:
        y[:, 0] = 3.0
    s = rng.normal(size=(batch, size)).astype("float32")
    s[2, 1] = s[2, 2]
    return y, s


def values_and_gradients(fns, x):
    """`([f(x)], [grad f(x)])` for scalar functions `fns`: one compiled
    function on JAX (where a peer's eager ops would each compile), eager
    elsewhere."""
    if BACKEND == "jax":
        import jax

        def both(z):
            values, grads = zip(*(jax.value_and_grad(f)(z) for f in fns))
            return keras.ops.stack(values), keras.ops.stack(grads)

        return jax.jit(both)(x)
    values, grads = zip(*(value_and_grad(f, x) for f in fns))
    return np.stack(values), np.stack(grads)


def peer(loss, *args, **kwargs):
    """A peer's loss called as one compiled function on JAX (its eager ops
    would each compile), as it is elsewhere."""
    if BACKEND != "jax":
        return loss(*args, **kwargs)
    import jax

    return jax.jit(lambda *a: loss(*a, **kwargs))(*args)


def _close(a, b, **kw):
    np.testing.assert_allclose(to_numpy(a), to_numpy(b), rtol=kw.get("rtol", 1e-5), atol=kw.get("atol", 1e-6))


# ------------------------------------------------------------------ keras-rs


def test_keras_rs_exports_the_losses_the_table_covers():
    krs = keras_rs()
    exported = {n for n in dir(krs.losses) if not n.startswith("_")}
    assert exported == set(PAIRWISE) | {"ListMLELoss"}


@pytest.mark.parametrize("name", sorted(PAIRWISE))
def test_pairwise_per_item_is_keras_rs(name, rng):
    """`pair_reduction="per_item"` gives keras-rs' numbers: its per-item
    values, its weighted value, and (both being Keras losses with the same
    per-item values) every reduction. keras-rs' `PairwiseMeanSquaredError`
    ignores its `temperature`: it equals ours at 1."""
    krs = keras_rs()
    y, s = _lists(rng)
    w = rng.uniform(0, 2, size=y.shape).astype("float32")
    t = 0.5
    ours_t = 1.0 if name == "PairwiseMeanSquaredError" else t
    values = peer(getattr(krs.losses, name)(temperature=t, reduction="none"), y, s)
    for reduction in REDUCTIONS:
        ours = PAIRWISE[name](temperature=ours_t, pair_reduction="per_item", reduction=reduction)
        _close(ours(y, s), keras_reduced(values, reduction))
        _close(ours(y, s, sample_weight=w), keras_reduced(values, reduction, w))
    theirs = peer(getattr(krs.losses, name)(temperature=t), y, s, w)
    _close(PAIRWISE[name](temperature=ours_t, pair_reduction="per_item")(y, s, sample_weight=w), theirs)


def test_gradients_are_keras_rs(rng):
    """Value and gradient of keras-rs' losses against ours (the weighted
    logistic and squared-error pairs, ListMLE on lists with a relevant
    item; the values of the others are compared above), at untied
    scores: at exactly tied scores keras-rs' `PairwiseLogisticLoss`
    (`relu(-d) + log(1 + exp(-|d|))`) has gradient 0 on TensorFlow and
    torch (their subgradients of `relu` and `abs` at 0), where the
    derivative, ours (`softplus(-d)`, checked against finite differences in
    test_ranking.py), is `-1/2`."""
    krs = keras_rs()
    y, s = _lists(rng, relevant=True)
    s[2, 1] += 0.25  # untie
    w = rng.uniform(0, 2, size=y.shape).astype("float32")
    names = ("PairwiseLogisticLoss", "PairwiseMeanSquaredError")  # the two kinds of pairs (values: above)
    theirs = [getattr(krs.losses, n)(temperature=0.5, reduction="sum") for n in names]
    ours = [PAIRWISE[n](temperature=1.0 if n == "PairwiseMeanSquaredError" else 0.5, pair_reduction="per_item",
                        reduction="sum") for n in names]
    theirs.append(krs.losses.ListMLELoss(temperature=0.5, reduction="sum"))
    ours.append(L.ListMLELoss(temperature=0.5, reduction="sum"))
    weights = [w] * len(names) + [None]
    want = values_and_gradients([lambda z, f=f, sw=sw: f(y, z, sample_weight=sw) for f, sw in zip(theirs, weights)], s)
    got = values_and_gradients([lambda z, f=f, sw=sw: f(y, z, sample_weight=sw) for f, sw in zip(ours, weights)], s)
    _close(got[0], want[0])
    _close(got[1], want[1], atol=1e-5)


def test_pairwise_sum_and_mean_against_keras_rs(rng):
    """`pair_reduction="sum"` with `reduction="sum"` is keras-rs' `"sum"`;
    the default `"mean"` is keras-rs' per-item values summed per query and
    divided by the query's number of pairs (`y_i > y_j`; every `i != j`
    for the squared error)."""
    krs = keras_rs()
    y, s = _lists(rng)
    valid = y != MASK
    preferred = (y[:, :, None] > y[:, None, :]) & valid[:, :, None] & valid[:, None, :]
    distinct = valid[:, :, None] & valid[:, None, :] & ~np.eye(y.shape[1], dtype=bool)
    for name in ("PairwiseLogisticLoss", "PairwiseMeanSquaredError"):  # the two kinds of pairs
        cls = PAIRWISE[name]
        _close(cls(pair_reduction="sum", reduction="sum")(y, s), peer(getattr(krs.losses, name)(reduction="sum"), y, s))
        per_item = to_numpy(peer(getattr(krs.losses, name)(reduction="none"), y, s))
        pairs = (distinct if name == "PairwiseMeanSquaredError" else preferred).sum(axis=(1, 2))
        _close(cls(reduction="none")(y, s), per_item.sum(-1) / np.maximum(pairs, 1))


def test_keras_rs_mask_dict_is_mask_value(rng):
    """keras-rs' `y_true={"labels": y, "mask": m}` is ours with the masked
    items labelled `mask_value`."""
    krs = keras_rs()
    y, s = _lists(rng)
    y = np.where(y == MASK, 0.0, y).astype("float32")
    m = rng.uniform(size=y.shape) < 0.7
    theirs = peer(krs.losses.PairwiseLogisticLoss(), {"labels": y, "mask": m}, s)
    _close(L.PairwiseLogisticLoss(pair_reduction="per_item")(np.where(m, y, MASK), s), theirs)


def test_listmle_is_keras_rs(rng):
    """Every query with a relevant item: the same per-query values (ties in
    input order in both), so the same value for every reduction and
    per-query weight."""
    krs = keras_rs()
    y, s = _lists(rng, relevant=True)
    w = rng.uniform(0, 2, size=(y.shape[0],)).astype("float32")
    values = peer(krs.losses.ListMLELoss(temperature=0.5, reduction="none"), y, s)
    for reduction in REDUCTIONS:
        ours = L.ListMLELoss(temperature=0.5, reduction=reduction)
        _close(ours(y, s), keras_reduced(values, reduction))
        _close(ours(y, s, sample_weight=w), keras_reduced(values, reduction, w))
    _close(L.ListMLELoss(temperature=0.5)(y, s, sample_weight=w),
           peer(krs.losses.ListMLELoss(temperature=0.5), y, s, w))


def test_listmle_without_relevant_item_differs_from_keras_rs(rng):
    """A query whose valid labels are all 0: ours 0 (nothing to prefer),
    keras-rs the Plackett-Luce loss of the input order, which is ours on
    labels decreasing along the list."""
    krs = keras_rs()
    _, s = _lists(rng)
    zeros = np.zeros_like(s)
    zeros[:, -1] = MASK
    decreasing = np.where(zeros == MASK, MASK, np.arange(s.shape[1], 0, -1, dtype="float32"))
    theirs = to_numpy(peer(krs.losses.ListMLELoss(reduction="none"), zeros, s))
    assert np.all(theirs > 0)
    np.testing.assert_array_equal(to_numpy(L.ListMLELoss(reduction="none")(zeros, s)), 0.0)
    _close(L.ListMLELoss(reduction="none")(decreasing, s), theirs)


# ------------------------------------------------------------------ optax


def _optax():
    return pytest.importorskip("optax")


def test_softmax_is_optax_per_query_with_weights_and_temperature(rng):
    """`softmax_ranking_loss` is optax's `ranking_softmax_loss(s / T, y,
    where=valid, weights=w)` per query, value and gradient."""
    jax = pytest.importorskip("jax")
    optax = _optax()
    y, s = _lists(rng, batch=8)
    y[3] = MASK  # an all-padding list
    valid, w, t = y != MASK, rng.uniform(0, 2, size=y.shape).astype("float32"), 0.7

    def optax_loss(z, reduce_fn):
        return optax.losses.ranking_softmax_loss(z / t, y, where=valid, weights=w, reduce_fn=reduce_fn)

    expected = np.asarray(jax.jit(optax_loss, static_argnums=1)(s, None))
    _close(L.softmax_ranking_loss(y, s, temperature=t, sample_weight=w), expected)
    want = np.asarray(jax.jit(jax.grad(lambda z: optax_loss(z, jax.numpy.sum)))(s))
    _, got = value_and_grad(lambda z: keras.ops.sum(L.softmax_ranking_loss(y, z, temperature=t, sample_weight=w)), s)
    _close(got, want, atol=1e-5)


def test_softmax_batch_mean_against_optax(rng):
    """With `k` all-padding lists among `B`, Keras' mean is optax's (which
    leaves them out) times `(B - k) / B`; `skip_empty_lists=True` is optax's
    mean."""
    optax = _optax()
    y, s = _lists(rng, batch=8)
    y[[2, 5]] = MASK
    jax = pytest.importorskip("jax")
    theirs = float(jax.jit(lambda z: optax.losses.ranking_softmax_loss(z, y, where=y != MASK))(s))
    np.testing.assert_allclose(float(to_numpy(L.SoftmaxRankingLoss()(y, s))), theirs * 6 / 8, rtol=1e-5)
    np.testing.assert_allclose(float(to_numpy(L.SoftmaxRankingLoss(skip_empty_lists=True)(y, s))), theirs, rtol=1e-5)


def test_listnet_is_optax_softmax_with_softmax_targets(rng):
    """ListNet is optax's softmax loss with the target `softmax(y)` over the
    valid items (queries with a relevant item; ours 0 otherwise)."""
    optax = _optax()
    y, s = _lists(rng, batch=8)
    valid = y != MASK
    target = np.where(valid, np.exp(np.where(valid, y, -np.inf)), 0.0)
    target = target / np.maximum(target.sum(-1, keepdims=True), 1e-30)
    jax = pytest.importorskip("jax")
    theirs = np.asarray(jax.jit(lambda z: optax.losses.ranking_softmax_loss(z, target, where=valid, reduce_fn=None))(s))
    relevant = np.any(valid & (y > 0), axis=-1)
    _close(L.listnet_loss(y, s), np.where(relevant, theirs, 0.0))


def test_keras_rs_conventions_the_docs_state(rng):
    """The keras-rs behaviours docs/ranking.md reports: its
    `PairwiseLogisticLoss` gradient at exactly tied scores (the derivative,
    ours, is -1/2 per pair; keras-rs' is 0 on TensorFlow and torch), its
    ListMLE drifting from the exact value once the scores span ~15 or more
    (ours equals the float64 reference there), and its ListMLE refusing a
    per-item `sample_weight`."""
    krs = keras_rs()
    y, s = np.array([[1.0, 0.0]], "float32"), np.array([[0.3, 0.3]], "float32")
    losses = (krs.losses.PairwiseLogisticLoss(reduction="sum"), L.PairwiseLogisticLoss(reduction="sum"))
    _, (theirs, ours) = values_and_gradients([lambda z, f=f: f(y, z) for f in losses], s)
    _close(ours, [[-0.5, 0.5]])
    _close(theirs, [[-0.5, 0.5]] if BACKEND == "jax" else [[0.0, 0.0]])
    y = np.array([[3, 2, 1, 0, 0]], "float32")
    s = np.array([[0.0, -7.5, -15.0, -30.0, -30.0]], "float32")
    exact = ref_listmle(y, s)
    np.testing.assert_allclose(float(to_numpy(L.ListMLELoss()(y, s))), exact[0], rtol=1e-5)
    assert abs(float(to_numpy(peer(krs.losses.ListMLELoss(), y, s))) - exact[0]) > 10.0
    # keras-rs' ListMLE returns one value per query and cannot broadcast per-item weights against it
    y, s = _lists(rng, relevant=True)
    with pytest.raises(Exception):  # noqa: B017 - the backend's own broadcasting error
        to_numpy(krs.losses.ListMLELoss()(y, s, sample_weight=np.ones_like(y)))
