"""Bi-tempered logistic loss and the class-balanced wrapper: references
written from the papers (and the authors' bi-tempered code), and the shared
contract."""

import keras
import numpy as np
import pytest

from keras_lossplus import losses as L
from tests.backend_utils import to_numpy, value_and_grad
from tests.contract import LossCase, contract_suite
from tests.losses import references as R
from tests.losses.classification.test_classification import ref_focal


# ------------------------------------------------------------------ bi-tempered reference


def _log_t(u, t):
    return np.log(u) if t == 1 else (u ** (1 - t) - 1) / (1 - t)


def _exp_t(u, t):
    return np.exp(u) if t == 1 else np.maximum(1 + (1 - t) * u, 0) ** (1 / (1 - t))


def np_tempered_softmax(a, t, num_iters=5):
    """The authors' normalisation (github.com/google/bi-tempered-loss), in numpy."""
    a = np.asarray(a, "float64")
    mu = a.max(-1, keepdims=True)
    a0 = a - mu
    if t == 1:
        return R.softmax(a)
    if t > 1:
        n = a0
        for _ in range(num_iters):
            z = _exp_t(n, t).sum(-1, keepdims=True)
            n = a0 * z ** (1 - t)
        z = _exp_t(n, t).sum(-1, keepdims=True)
        lam = -_log_t(1 / z, t) + mu
    else:
        eff = (a0 > -1 / (1 - t)).sum(-1, keepdims=True).astype("float64")
        lo, hi = np.zeros_like(mu), -_log_t(1 / eff, t)
        for _ in range(num_iters):
            mid = (lo + hi) / 2
            below = _exp_t(a0 - mid, t).sum(-1, keepdims=True) < 1
            lo, hi = np.where(below, lo, mid), np.where(below, mid, hi)
        lam = (lo + hi) / 2 + mu
    return _exp_t(a - lam, t)


def ref_bi_tempered(y, a, t1=0.8, t2=1.2, label_smoothing=0.0, num_iters=5):
    y = np.asarray(y, "float64")
    if label_smoothing > 0:
        c = y.shape[-1]
        y = (1 - c / (c - 1) * label_smoothing) * y + label_smoothing / (c - 1)
    p = np_tempered_softmax(a, t2, num_iters)
    first = (_log_t(y + 1e-10, t1) - _log_t(np.maximum(p, 1e-30), t1)) * y
    second = (y ** (2 - t1) - p ** (2 - t1)) / (2 - t1)
    return (first - second).sum(-1)


def _ref(fn, **kw):
    return lambda y, x: fn(y, x, **kw)


_softmax_edges = {
    "logits_pm100": (np.eye(3)[[0, 1, 2]], np.array([[100.0, -100.0, 0.0], [-100.0, 100.0, 0.0], [100.0, -100.0, 0.0]])),
    "identical_logits": (np.eye(3)[[0, 1, 2]], np.zeros((3, 3))),
}


def bt_case(id, **kw):
    return LossCase(
        id=id, cls=L.BiTemperedLogisticLoss, fn=L.bi_tempered_logistic_loss, kwargs=kw,
        reference=_ref(ref_bi_tempered, **kw), make_inputs=R.one_hot_logits(), edge_inputs=_softmax_edges,
        rtol=2e-5, atol=2e-6,
        bad_args=[({"t1": 1.5}, "t1"), ({"t2": 0.0}, "t2"), ({"label_smoothing": 1.0}, "label_smoothing"),
                  ({"num_iters": 0}, "num_iters")],
    )


# ------------------------------------------------------------------ class-balanced reference


def ref_cb_weights(counts, beta):
    w = (1 - beta) / (1 - np.power(beta, np.asarray(counts, "float64")))
    return w / w.sum() * len(counts)


def ref_class_balanced_focal(y, x, samples_per_class, beta, **focal):
    w = ref_cb_weights(samples_per_class, beta)
    y = np.asarray(y, "float64")
    per_sample = y[..., 0] * w[1] + (1 - y[..., 0]) * w[0] if y.shape[-1] == 1 else y @ w
    return per_sample * ref_focal(y, x, **focal)


def cb_case(id, make, samples_per_class, beta, activation, **focal):
    base = L.FocalLoss(**focal)
    return LossCase(
        id=id, cls=L.ClassBalancedLoss, fn=L.class_balanced_loss,
        kwargs={"base_loss": base, "samples_per_class": samples_per_class, "beta": beta},
        reference=lambda y, x: ref_class_balanced_focal(y, x, samples_per_class, beta, **focal),
        make_inputs=make, activation=activation,
        edge_inputs={"logits_pm100": (np.array([[1.0], [0.0]]), np.array([[-100.0], [100.0]]))}
        if focal.get("mode", "binary") == "binary" else _softmax_edges,
        bad_args=[({"samples_per_class": [10, 0]}, "samples_per_class"), ({"beta": 1.0}, "beta"),
                  ({"base_loss": "focal"}, "base_loss")],
    )


CASES = [
    bt_case("bi_tempered_default"),
    bt_case("bi_tempered_t1_1_t2_1", t1=1.0, t2=1.0),
    bt_case("bi_tempered_heavy_tail_smoothing", t1=0.5, t2=2.0, label_smoothing=0.1, num_iters=8),
    bt_case("bi_tempered_finite_support", t1=0.7, t2=0.8, num_iters=25),
    cb_case("class_balanced_binary_focal", R.binary_logits(), [900, 100], 0.99, "linear", gamma=2.0, from_logits=True),
    cb_case("class_balanced_multiclass_focal", R.one_hot_logits(classes=3), [500, 50, 5], 0.999, "linear",
            gamma=1.0, from_logits=True, mode="multiclass"),
]

# ClassBalancedLoss's bad `base_loss` is refused by the class; the function takes any callable.
# the (slow) fit-save-reload check once per class; every case's config round
# trip is checked by test_config_round_trip
TestContract = contract_suite(CASES, fit_ids={"bi_tempered_default", "class_balanced_multiclass_focal"})


def test_bi_tempered_with_unit_temperatures_is_softmax_crossentropy(rng):
    y, x = R.one_hot_logits()(rng)
    ours = L.BiTemperedLogisticLoss(t1=1.0, t2=1.0)(y, x)
    theirs = keras.losses.CategoricalCrossentropy(from_logits=True)(y, x)
    np.testing.assert_allclose(to_numpy(ours), to_numpy(theirs), rtol=1e-5)


def test_tempered_softmax_sums_to_one(rng):
    x = rng.normal(size=(5, 7)).astype("float32") * 3
    for t in (0.7, 1.0, 1.5, 3.0):
        p = to_numpy(L.tempered_softmax(x, t=t, num_iters=30))
        np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-4)
        np.testing.assert_allclose(p, np_tempered_softmax(x, t, 30), atol=1e-5)


@pytest.mark.parametrize("t1,t2", [(0.8, 1.2), (0.5, 2.5)])
def test_bi_tempered_gradient_is_the_exact_implicit_gradient(t1, t2, rng):
    """Our gradient vs central finite differences of a converged (60
    iterations) float64 reference."""
    y, x = R.one_hot_logits(batch=3, classes=4)(rng)
    _, grad = value_and_grad(lambda a: L.BiTemperedLogisticLoss(t1=t1, t2=t2, num_iters=20, reduction="sum")(y, a), x)
    h = 1e-5
    numeric = np.zeros_like(x, dtype="float64")
    x64 = x.astype("float64")
    for idx in np.ndindex(*x.shape):
        plus, minus = x64.copy(), x64.copy()
        plus[idx] += h
        minus[idx] -= h
        numeric[idx] = (ref_bi_tempered(y, plus, t1, t2, num_iters=60).sum()
                        - ref_bi_tempered(y, minus, t1, t2, num_iters=60).sum()) / (2 * h)
    np.testing.assert_allclose(grad, numeric, rtol=2e-3, atol=2e-4)


def test_bi_tempered_is_bounded_for_t1_below_one():
    # A confidently wrong prediction costs at most a bounded amount when t1 < 1.
    y = np.eye(3, dtype="float32")[[0]]
    wrong = np.array([[-1000.0, 1000.0, 0.0]], "float32")
    bounded = float(to_numpy(L.bi_tempered_logistic_loss(y, wrong, t1=0.5, t2=1.0))[0])
    assert np.isfinite(bounded) and bounded < 3.0
    unbounded = float(to_numpy(L.bi_tempered_logistic_loss(y, wrong, t1=1.0, t2=1.0))[0])
    assert unbounded > 100


def test_class_balanced_weights_match_the_paper():
    counts = [1000, 100, 10]
    for beta in (0.0, 0.9, 0.999):
        np.testing.assert_allclose(L.class_balanced_weights(counts, beta), ref_cb_weights(counts, beta), rtol=1e-12)
    np.testing.assert_allclose(L.class_balanced_weights(counts, 0.0), [1.0, 1.0, 1.0])


def test_class_balanced_with_sparse_labels_and_keras_base_loss(rng):
    labels = rng.integers(0, 3, size=(10, 1))
    x = rng.normal(size=(10, 3)).astype("float32")
    base = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    loss = L.ClassBalancedLoss(base, samples_per_class=[300, 30, 3], beta=0.99, reduction="none")
    w = ref_cb_weights([300, 30, 3], 0.99)[labels[:, 0]]
    ce = -R.log_softmax(x)[np.arange(10), labels[:, 0]]
    np.testing.assert_allclose(to_numpy(loss(labels.astype("float32"), x)), w * ce, rtol=1e-5)


def test_class_balanced_refuses_batch_level_base():
    with pytest.raises(ValueError, match="base_loss"):
        L.ClassBalancedLoss(L.FBetaLoss(), samples_per_class=[1, 2])
