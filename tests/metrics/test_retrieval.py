"""Retrieval metrics (issue 19, item 5): the functions and the
`keras.metrics.Metric` classes of `keras_lossplus.metrics`.

References:
  * pytorch-metric-learning 2.9 `AccuracyCalculator` (`precision_at_1`,
    `r_precision`, `mean_average_precision_at_r`) with a `CustomKNN` over
    `CosineSimilarity` / `LpDistance` (no faiss), in-batch
    (`get_accuracy(query, query_labels)`, its `embeddings_come_from_same_source`)
    and held-out (`get_accuracy(query, labels, reference, reference_labels)`);
  * `sklearn.metrics.ndcg_score(k=...)` for NDCG@K, per query;
  * the numpy references of tests/metrics/references.py for every metric and
    distance, with ties broken by reference index.
Data: clustered float32 Gaussians (no ties), with one lone label (a query
without a positive, left out of the mean by PML and by the classes).
"""

from __future__ import annotations

import inspect
import re

import numpy as np
import pytest

import keras
import keras_lossplus as klp
from keras_lossplus.metrics import retrieval
from tests.backend_utils import BACKEND, XLA_BACKENDS, to_numpy, xla_compile
from tests.fresh_load import load_in_fresh_process
from tests.metrics import references as R

DISTANCES = ("cosine", "dot", "euclidean", "squared_euclidean")
FUNCTIONS = {name: getattr(klp.metrics, name) for name in R.METRICS}
# the retrieval metrics' classes (the list-wise ranking metrics are tested in test_ranking_metrics.py)
CLASSES = [getattr(klp.metrics, n) for n in klp.metrics.__all__
           if inspect.isclass(getattr(klp.metrics, n)) and getattr(klp.metrics, n).__module__.endswith(".classes")]
CLASS_OF = {  # class -> (function name, k)
    klp.metrics.RecallAtK: ("recall_at_k", 1),
    klp.metrics.PrecisionAtOne: ("precision_at_one", None),
    klp.metrics.RPrecision: ("r_precision", None),
    klp.metrics.MAPAtR: ("map_at_r", None),
    klp.metrics.NDCGAtK: ("ndcg_at_k", 10),
}
TOL = dict(rtol=1e-5, atol=1e-6)


def _call(name, *args, k=None, **kwargs):
    if k is not None:
        kwargs["k"] = k
    return to_numpy(FUNCTIONS[name](*args, **kwargs))


def _k(name, k):
    return k if name in ("recall_at_k", "ndcg_at_k") else None


def _masked_mean(values, mask):
    return float(np.sum(values * mask) / np.sum(mask))


# --------------------------------------------------------------------------- reference values


@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("held_out", [False, True], ids=["in_batch", "held_out"])
def test_every_function_matches_the_numpy_reference(distance, held_out, rng):
    labels, x = R.batch(rng)
    refs = R.batch(rng, lone=0) if held_out else (None, None)
    for name in R.METRICS:
        for k in ((1, 3, 50) if _k(name, 1) else (None,)):  # 50: more than the references
            got = _call(name, labels, x, *refs, k=k, distance=distance)
            want, mask = R.per_query(name, labels, x, *refs, k=k or 1, distance=distance)
            np.testing.assert_allclose(got, want, **TOL, err_msg=f"{name} k={k} {distance}")
    np.testing.assert_array_equal(to_numpy(klp.metrics.has_positive(labels, refs[0])), mask)
    assert 0 < mask.sum() < len(mask) or held_out


def _pml_accuracy(distance, labels, x, ref_labels=None, ref_x=None):
    pytest.importorskip("pytorch_metric_learning")
    import torch
    from pytorch_metric_learning.distances import CosineSimilarity, LpDistance
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
    from pytorch_metric_learning.utils.inference import CustomKNN

    pml_distance = CosineSimilarity() if distance == "cosine" else LpDistance(normalize_embeddings=False, p=2)
    calculator = AccuracyCalculator(
        include=("precision_at_1", "r_precision", "mean_average_precision_at_r"),
        knn_func=CustomKNN(pml_distance), device=torch.device("cpu"),
    )
    t = lambda a: torch.tensor(np.asarray(a, "float64"))  # noqa: E731
    if ref_x is None:
        return calculator.get_accuracy(t(x), t(labels))
    return calculator.get_accuracy(t(x), t(labels), t(ref_x), t(ref_labels), ref_includes_query=False)


@pytest.mark.parametrize("distance", ["cosine", "euclidean"])
@pytest.mark.parametrize("held_out", [False, True], ids=["in_batch", "held_out"])
def test_functions_match_pytorch_metric_learning(distance, held_out, rng):
    # the queries' lone label 4 is absent from the references too (the shapes of the
    # other tests: eager JAX compiles each operation once per shape)
    labels, x = R.batch(rng)
    refs = R.batch(rng, lone=0) if held_out else (None, None)
    peer = _pml_accuracy(distance, labels, x, *refs)
    mask = to_numpy(klp.metrics.has_positive(labels, refs[0]))
    assert 0 < mask.sum() < len(mask)
    for ours, theirs in (("precision_at_one", "precision_at_1"), ("r_precision", "r_precision"),
                         ("map_at_r", "mean_average_precision_at_r")):
        got = _masked_mean(_call(ours, labels, x, *refs, distance=distance), mask)
        assert got == pytest.approx(peer[theirs], rel=1e-5), (ours, got, peer[theirs])
    # Recall@1 is Precision@1
    got = _masked_mean(_call("recall_at_k", labels, x, *refs, k=1, distance=distance), mask)
    assert got == pytest.approx(peer["precision_at_1"], rel=1e-5)


@pytest.mark.parametrize("held_out", [False, True], ids=["in_batch", "held_out"])
def test_ndcg_matches_sklearn(held_out, rng):
    from sklearn.metrics import ndcg_score

    labels, x = R.batch(rng)
    ref_labels, ref_x = R.batch(rng, lone=0) if held_out else (labels, x)
    s = R.similarities(x, ref_x, "cosine")
    for k in (1, 4, 10):
        got = _call("ndcg_at_k", labels, x, *((ref_labels, ref_x) if held_out else ()), k=k)
        for i in range(len(labels)):
            keep = np.arange(len(ref_labels)) != i if not held_out else np.ones(len(ref_labels), bool)
            relevance = (ref_labels[keep] == labels[i]).astype(float)
            if relevance.sum() == 0:
                assert got[i] == 0.0
                continue
            want = ndcg_score(relevance[None], s[i, keep][None], k=k)
            assert got[i] == pytest.approx(want, rel=1e-5, abs=1e-6), (k, i)


# --------------------------------------------------------------------------- ties and edge cases


def test_ties_go_to_the_lower_reference_index():
    labels = np.array([0, 1, 0, 1, 2], "int32")
    x = np.ones((5, 4), "float32")  # every distance ties
    for distance in DISTANCES:
        # query 0 ranks 1, 2, 3, 4 and query 1 ranks 0, 2, 3, 4 (index order):
        # only query 2 has a positive first; at k=2 query 1 still has none
        assert _call("recall_at_k", labels, x, k=1, distance=distance).tolist() == [0, 0, 1, 0, 0]
        assert _call("recall_at_k", labels, x, k=2, distance=distance).tolist() == [1, 0, 1, 1, 0]
        want, _ = R.per_query("map_at_r", labels, x, distance=distance)
        np.testing.assert_allclose(_call("map_at_r", labels, x, distance=distance), want, **TOL)


@pytest.mark.parametrize("distance", DISTANCES)
def test_finite_at_identical_and_zero_embeddings_and_half_precision(distance, rng):
    labels = np.array([0, 0, 1, 1, 2], "int32")
    cases = {
        "zeros": np.zeros((5, 4), "float32"),
        "identical": np.tile(rng.normal(size=(1, 4)).astype("float32"), (5, 1)),
        "one_zero": np.concatenate([np.zeros((1, 4)), rng.normal(size=(4, 4))]).astype("float32"),
        "huge": 1e30 * rng.normal(size=(5, 4)).astype("float32"),
    }
    for case, x in cases.items():
        for name in R.METRICS:
            got = _call(name, labels, x, k=_k(name, 2), distance=distance)
            assert np.all(np.isfinite(got)) and np.all((got >= 0) & (got <= 1)), (case, name, got)
            assert got[4] == 0.0  # the lone query
        if case in ("zeros", "identical"):  # every distance ties: the index order decides
            want, _ = R.per_query("map_at_r", labels, np.ones_like(x), distance="dot")
            np.testing.assert_allclose(_call("map_at_r", labels, x, distance=distance), want, **TOL)
    x = rng.normal(size=(5, 4))
    for dtype in ("float16", "bfloat16"):
        half = keras.ops.cast(x, dtype)
        np.testing.assert_allclose(_call("map_at_r", labels, half, distance=distance),
                                   _call("map_at_r", labels, keras.ops.cast(half, "float32"), distance=distance),
                                   **TOL)


def test_a_batch_of_one_and_a_batch_without_positives_give_zero():
    # one class per way of ranking: the count (Recall@K) and the sort (MAP@R)
    for cls in (klp.metrics.RecallAtK, klp.metrics.MAPAtR):
        metric = cls()
        metric.update_state(np.array([3]), np.ones((1, 4), "float32"))
        metric.update_state(np.array([0, 1, 2]), np.eye(3, 4, dtype="float32"))
        assert float(metric.result()) == 0.0 and float(metric.count) == 0.0


# --------------------------------------------------------------------------- the classes


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_metric_accumulates_the_weighted_mean_over_queries_with_a_positive(cls, rng):
    name, k = CLASS_OF[cls]
    metric = cls(k=3) if k else cls()
    batches = [R.batch(rng), R.batch(rng)]
    weights = [rng.uniform(0.5, 2.0, size=len(b[0])).astype("float32") for b in batches]
    weights[1][:3] = 0.0  # weight 0: neither a query nor a reference
    total = count = 0.0
    for (labels, x), w in zip(batches, weights):
        metric.update_state(labels[:, None], x, sample_weight=w)
        keep = w > 0
        values, mask = R.per_query(name, labels[keep], x[keep], k=3, distance="cosine")
        total, count = total + np.sum(values * mask * w[keep]), count + np.sum(mask * w[keep])
    assert float(metric.result()) == pytest.approx(total / count, rel=1e-5)
    metric.reset_state()
    assert float(metric.result()) == 0.0
    labels, x = batches[0]
    metric.update_state(labels, x)
    values, mask = R.per_query(name, labels, x, k=3)
    assert float(metric.result()) == pytest.approx(_masked_mean(values, mask), rel=1e-5)


@pytest.mark.skipif(BACKEND not in XLA_BACKENDS, reason="XLA compilation is for jax and tensorflow")
def test_functions_compile_with_xla(rng):
    labels, x = R.batch(rng)
    ref_labels, ref_x = R.batch(rng, lone=0)
    for name in R.METRICS:
        k = _k(name, 3)
        kwargs = {} if k is None else {"k": k}
        in_batch = xla_compile(lambda a, b, f=FUNCTIONS[name], kw=kwargs: f(a, b, **kw))
        held_out = xla_compile(lambda a, b, c, d, f=FUNCTIONS[name], kw=kwargs: f(a, b, c, d, **kw))
        np.testing.assert_allclose(to_numpy(in_batch(labels, x)), _call(name, labels, x, k=k), **TOL)
        np.testing.assert_allclose(to_numpy(held_out(labels, x, ref_labels, ref_x)),
                                   _call(name, labels, x, ref_labels, ref_x, k=k), **TOL)


def _embedding_model():
    inputs = keras.Input((6,))
    model = keras.Model(inputs, keras.layers.Dense(4)(keras.layers.Dense(8, activation="relu")(inputs)))
    metrics = [klp.metrics.RecallAtK(k=1), klp.metrics.RecallAtK(k=3, distance="euclidean"),
               klp.metrics.PrecisionAtOne(distance="dot"), klp.metrics.RPrecision(),
               klp.metrics.MAPAtR(distance="squared_euclidean"), klp.metrics.NDCGAtK(k=5)]
    model.compile(keras.optimizers.Adam(0.01), loss=klp.losses.SupConLoss(), metrics=metrics,
                  jit_compile=BACKEND in XLA_BACKENDS)
    return model, metrics


def test_compiled_fit_logs_the_metrics_and_saved_model_loads_them_in_a_fresh_process(tmp_path, rng):
    """Every class in a compiled `fit`, then `evaluate` of the whole set as one
    batch equals the functions on `predict`; the model saved to `.keras`
    evaluates the same in a fresh process (compile=True)."""
    labels, x = R.batch(rng)
    labels = labels.astype("float32")  # as a dataset usually hands them over
    model, metrics = _embedding_model()
    history = model.fit(x, labels, batch_size=len(x), epochs=2, verbose=0)
    assert {m.name for m in metrics} <= set(history.history)
    logs = model.evaluate(x, labels, batch_size=len(x), verbose=0, return_dict=True)
    emb = model.predict(x, batch_size=len(x), verbose=0)
    mask = R.per_query("map_at_r", labels, emb)[1]
    for metric in metrics:
        name, _ = CLASS_OF[type(metric)]
        config = metric.get_config()
        values = _call(name, labels, emb, k=config.get("k"), distance=config["distance"])
        assert logs[metric.name] == pytest.approx(_masked_mean(values, mask), rel=1e-4, abs=1e-6), metric.name
    model.save(tmp_path / "retrieval.keras")
    np.savez(tmp_path / "retrieval.npz", x=x, y=labels)
    loaded = load_in_fresh_process(tmp_path)["retrieval"]
    for name, value in logs.items():
        assert loaded["logs"][name] == pytest.approx(value, rel=1e-5, abs=1e-6), name
    assert {type(m).__name__ for m in metrics} == {c.__name__ for c in CLASSES}  # every class was in it


# --------------------------------------------------------------------------- the house rules, per class


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_registered_complete_config_and_documented(cls):
    assert keras.saving.get_registered_name(cls) == f"keras_lossplus>{cls.__name__}"
    params = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    metric = cls(distance="dot", name="m", dtype="float16", **({"k": 4} if "k" in params else {}))
    config = metric.get_config()
    assert set(params) <= set(config)
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(metric))
    assert type(again) is cls and again.get_config() == config
    assert config["distance"] == "dot" and config["name"] == "m" and config["dtype"] == "float16"
    doc = inspect.cleandoc(cls.__doc__)
    assert ">>>" in doc and re.search(r"(19|20)\d\d", doc)
    assert CLASSES == sorted(CLASS_OF, key=lambda c: klp.metrics.__all__.index(c.__name__))


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("bad", [0, -1, 1.5, "3", True, None])
def test_k_must_be_a_positive_integer(bad):
    x, labels = np.ones((3, 2), "float32"), np.zeros(3)
    for make in (lambda: klp.metrics.RecallAtK(k=bad), lambda: klp.metrics.NDCGAtK(k=bad),
                 lambda: klp.metrics.recall_at_k(labels, x, k=bad), lambda: klp.metrics.ndcg_at_k(labels, x, k=bad)):
        with pytest.raises(ValueError, match="`k`"):
            make()


def test_unknown_distance_is_refused():
    for cls in CLASSES:
        with pytest.raises(ValueError, match="`distance`.*cosine"):
            cls(distance="manhattan")
    for name in R.METRICS:
        with pytest.raises(ValueError, match="`distance`"):
            FUNCTIONS[name](np.zeros(3), np.ones((3, 2), "float32"), distance="cityblock")


def test_mismatched_shapes_name_the_argument():
    labels, x = np.zeros(4), np.ones((4, 3), "float32")
    cases = [
        ((labels[:3], x), "query_labels"),
        ((labels, x[:, :, None]), "query_embeddings"),
        ((np.zeros((4, 2)), x), "query_labels"),
        ((labels, x, labels[:2], x), "reference_labels"),
        ((labels, x, labels, x[:, :2]), "reference_embeddings"),
        ((labels, x, labels), "reference_labels"),
        ((labels, x, None, x), "reference_embeddings"),
    ]
    for args, argument in cases:
        with pytest.raises(ValueError, match=f"`{argument}`"):
            klp.metrics.map_at_r(*args)
    with pytest.raises(TypeError, match="`query_embeddings`"):
        klp.metrics.recall_at_k(labels, np.ones((4, 3), "int32"))
    metric = klp.metrics.RecallAtK()
    with pytest.raises(ValueError, match="`y_true`"):
        metric.update_state(labels[:3], x)
    with pytest.raises(ValueError, match="`y_pred`"):
        metric.update_state(labels, x[0])


def test_ranking_helpers_are_not_public():
    assert not hasattr(klp.metrics, "retrieval_inputs") and hasattr(retrieval, "retrieval_inputs")
