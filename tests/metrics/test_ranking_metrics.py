"""List-wise ranking metrics (issue 29, item 4): the functions and the
`keras.metrics.Metric` classes of `keras_lossplus.metrics` (NDCG, DCG,
MeanReciprocalRank, MeanAveragePrecision, PrecisionAtK, RankingRecallAtK).

References:
  * keras-rs 0.4 (`keras_rs.metrics`), run side by side on the same backend:
    untied scores in (0, 1) (see `test_keras_rs_ranks_padding_ahead_on_torch`
    for why not larger), padding labels, a `{"labels", "mask"}` dict, item
    and list weights, lists without a relevant item, an all-padding list,
    several `k`, gain and discount options, two `update_state` calls and a
    reset;
  * keras-rs' random tie-breaking, averaged over thousands of copies of a
    tied list (its mean is what the tie-averaged value claims to be);
  * a numpy transcription of keras-rs' formulas that averages over every
    order of the tied items (brute force), for the functions, the list
    weights and `no_relevant="skip"`.
"""

from __future__ import annotations

import inspect
import itertools

import numpy as np
import pytest

import keras
import keras_lossplus as klp
from tests.backend_utils import BACKEND, XLA_BACKENDS, to_numpy, xla_compile
from tests.peers import keras_rs

M = klp.metrics
CLASSES = (M.NDCG, M.DCG, M.MeanReciprocalRank, M.MeanAveragePrecision, M.PrecisionAtK, M.RankingRecallAtK)
KIND = {  # class -> (numpy reference's name, function, keras-rs class name)
    M.NDCG: ("ndcg", M.ndcg, "NDCG"),
    M.DCG: ("dcg", M.dcg, "DCG"),
    M.MeanReciprocalRank: ("mrr", M.mean_reciprocal_rank, "MeanReciprocalRank"),
    M.MeanAveragePrecision: ("map", M.mean_average_precision, "MeanAveragePrecision"),
    M.PrecisionAtK: ("precision", M.precision_at_k, "PrecisionAtK"),
    M.RankingRecallAtK: ("recall", M.ranking_recall_at_k, "RecallAtK"),
}
GAINED = (M.NDCG, M.DCG)
DEFAULT_NAMES = {  # keras-rs' default names, so that a migrated model logs the same keys
    M.NDCG: "ndcg", M.DCG: "dcg", M.MeanReciprocalRank: "mean_reciprocal_rank",
    M.MeanAveragePrecision: "mean_average_precision", M.PrecisionAtK: "precision_at_k",
    M.RankingRecallAtK: "recall_at_k",
}
TOL = dict(rtol=2e-5, atol=2e-6)


@keras.saving.register_keras_serializable(package="klp_tests")
def reciprocal_discount(rank):
    """A custom discount, `1 / rank`, registered so that configs can name it."""
    return 1.0 / rank


NP_GAINS = {"exp2": lambda y: 2.0 ** y - 1.0, "identity": lambda y: y}
NP_DISCOUNTS = {"log2": lambda r: 1.0 / np.log2(1.0 + r), reciprocal_discount: lambda r: 1.0 / r}


# --------------------------------------------------------------------------- the numpy reference


def _orders(scores, items):
    """Every order of `items` by decreasing score (tied items in every order)."""
    groups = [[i for i in items if scores[i] == v] for v in sorted({scores[i] for i in items}, reverse=True)]
    for parts in itertools.product(*(itertools.permutations(g) for g in groups)):
        yield [i for part in parts for i in part]


def _one_order(kind, y, w, order, k, gain, discount):
    """keras-rs' formula of `kind` on the valid items in `order`."""
    n = len(order)
    top = np.arange(1, n + 1) <= (n if k is None else min(k, n))
    ys, ws, pos = y[order], w[order], np.arange(1.0, n + 1.0)
    rel = (ys >= 1).astype(float)
    if kind in ("dcg", "ndcg"):
        d = np.where(top, discount(pos), 0.0)
        value = np.sum(ws * gain(ys) * d)
        if kind == "dcg":
            return value
        ideal = np.sum(np.sort(ws * gain(ys))[::-1] * d)
        return value / ideal if ideal else 0.0
    if kind == "mrr":
        first = np.flatnonzero(rel * top)
        return 1.0 / (first[0] + 1.0) if len(first) else 0.0
    if kind == "map":
        precision = np.cumsum(rel) / pos
        return np.sum((ws * rel * precision)[top]) / np.sum(ws * rel) if np.sum(ws * rel) else 0.0
    if kind == "precision":
        return np.sum(rel[top]) / np.sum(top)
    return np.sum(rel[top]) / np.sum(rel) if np.sum(rel) else 0.0  # recall


def reference_values(kind, y, s, w, valid, k=None, gain="exp2", discount="log2"):
    """Per list: `(mean, std)` of the value over every order of the ties."""
    out = []
    for b in range(len(y)):
        items = list(np.flatnonzero(valid[b]))
        values = [_one_order(kind, y[b], w[b], o, k, NP_GAINS[gain], NP_DISCOUNTS[discount])
                  for o in _orders(s[b], items)] if items else [0.0]
        out.append((np.mean(values), np.std(values)))
    return np.array(out).T


def reference_result(kind, batches, k=None, gain="exp2", discount="log2", no_relevant="zero"):
    """The classes' result over `batches` of `(y, s, item weights, valid)`:
    keras-rs' list weights (`get_list_weights`) and weighted mean."""
    total = count = 0.0
    for y, s, w, valid in batches:
        w = np.where(valid, w, 0.0)
        values = reference_values(kind, y, s, w, valid, k, gain, discount)[0]
        relevance = np.where(valid, NP_GAINS[gain](np.where(valid, y, 0.0)), 0.0) if kind in ("dcg", "ndcg") \
            else (valid & (y >= 1)).astype(float)
        has_weight, rel_sum = w.sum(1) > 0, relevance.sum(1)
        per_list = np.divide(np.sum(w * relevance, 1), rel_sum, out=np.zeros(len(y)), where=rel_sum != 0)
        counted = has_weight & (rel_sum > 0)
        mean = per_list.sum() / counted.sum() if counted.sum() else 1.0
        weights = np.where(has_weight, np.where(rel_sum > 0, per_list, 0.0 if no_relevant == "skip" else mean), 0.0)
        if kind == "dcg":
            values = np.divide(values, weights, out=np.zeros(len(y)), where=weights != 0)
        total, count = total + np.sum(values * weights), count + np.sum(weights)
    return total / count if count else 0.0


# --------------------------------------------------------------------------- data


def lists(rng, batch=8, size=6, tied=False):
    """Labels with padding (-1), a list without a relevant item, one all
    padding; scores in (0, 1) (from 3 values when `tied`); item weights in
    [0.25, 2] with one 0; a mask hiding about one item in 8."""
    y = rng.integers(-1, 4, size=(batch, size)).astype("float32")
    y[1] = rng.integers(-1, 1, size=size)  # no label >= 1
    y[2] = -1.0  # all padding
    s = (rng.integers(1, 4, size=(batch, size)) / 4.0 if tied else rng.uniform(0.01, 1.0, size=(batch, size)))
    w = rng.uniform(0.25, 2.0, size=(batch, size)).astype("float32")
    w[3, 1] = 0.0
    mask = rng.uniform(size=(batch, size)) > 0.125
    return y, s.astype("float32"), w, mask


def _valid(y, w, mask):
    return (y >= 0) & mask & (w > 0)


# --------------------------------------------------------------------------- the functions


def test_functions_match_the_tie_averaged_reference(rng):
    """Ties, padding, a mask, item weights, every `k`, gain and discount options."""
    y, s, w, mask = lists(rng, tied=True)
    valid = _valid(y, w, mask)
    for cls, (kind, fn, _) in KIND.items():
        options = [("exp2", "log2"), ("identity", reciprocal_discount)] if cls in GAINED else [(None, None)]
        for (gain, discount), k in itertools.product(options, (None, 1, 3)):
            extra = {} if gain is None else {"gain_fn": gain, "rank_discount_fn": discount}
            got = to_numpy(fn({"labels": y, "mask": mask}, s, k=k, sample_weight=w, **extra))
            want = reference_values(kind, y, s, w * valid, valid, k, gain or "exp2", discount or "log2")[0]
            np.testing.assert_allclose(got, want, **TOL, err_msg=f"{kind} k={k} {gain} {discount}")
            assert got[2] == 0.0 and (kind == "dcg" or 0.0 <= got.min() <= got.max() <= 1.0 + 1e-6)


def test_ndcg_and_dcg_match_scikit_learn_on_tied_scores(rng):
    """scikit-learn averages tied scores the same way (`ignore_ties=False`),
    with the label as gain."""
    from sklearn.metrics import dcg_score, ndcg_score

    y, s, _, _ = lists(rng, tied=True)
    y = np.maximum(y, 0.0)
    for k in (None, 2):
        got_ndcg = to_numpy(M.ndcg(y, s, k=k, gain_fn="identity"))
        got_dcg = to_numpy(M.dcg(y, s, k=k, gain_fn="identity"))
        for b in range(len(y)):
            want = ndcg_score(y[b:b + 1], s[b:b + 1], k=k) if y[b].any() else 0.0
            assert got_ndcg[b] == pytest.approx(want, rel=1e-5, abs=1e-6), (k, b)
            assert got_dcg[b] == pytest.approx(dcg_score(y[b:b + 1], s[b:b + 1], k=k), rel=1e-5, abs=1e-6), (k, b)


def test_shapes_one_list_extra_axes_and_a_score_axis(rng):
    y, s, _, _ = lists(rng, tied=True)
    for kind, fn, _ in KIND.values():
        batched = to_numpy(fn(y, s, k=2))
        np.testing.assert_allclose(to_numpy(fn(y, s[..., None], k=2)), batched)
        # one weight per list scales DCG and changes no other per-list value; weight 0 drops the list
        weights = np.arange(8.0)
        per_list = to_numpy(fn(y, s, k=2, sample_weight=weights))
        np.testing.assert_allclose(per_list[1:], (batched * (weights if kind == "dcg" else 1.0))[1:], **TOL)
        assert per_list[0] == 0.0
        # new shapes cost compilations: one per way of ranking (pairwise counts; MRR's top group)
        if kind == "mrr":
            one = to_numpy(fn(y[0], s[0], k=2))
            assert one.shape == () and one == pytest.approx(batched[0])
        if kind == "ndcg":
            np.testing.assert_allclose(to_numpy(fn(y.reshape(2, 4, -1), s.reshape(2, 4, -1), k=2)),
                                       batched.reshape(2, 4))


def test_edge_values():
    y = np.tile(np.array([[2.0, 0.0, 1.0, -1.0, 0.0, 1.0], [1.0, 0.0, 1.0, 0.0, 3.0, -1.0]], "float32"), (4, 1))
    s = np.array([[1e30, -1e30, 3e29, 5.0, 0.0, 1e-30], [1e38, 1e37, -1e38, 0.0, 1e37, 1.0],
                  [np.inf, -np.inf, 0.0, np.nan, -np.inf, 1.0], [np.inf, np.inf, -np.inf, 1.0, np.inf, 2.0]] * 2,
                 "float32")  # each NaN score sits at a padded item: ignored
    for kind, fn, _ in KIND.values():
        got = to_numpy(fn(y, s))
        want = reference_values(kind, y, np.nan_to_num(s, nan=0.0), np.ones_like(y), y >= 0)[0]
        np.testing.assert_allclose(got, want, **TOL, err_msg=kind)
    half = to_numpy(M.ndcg(y, keras.ops.cast(np.clip(s, -1e4, 1e4), "bfloat16")))
    np.testing.assert_allclose(half, to_numpy(M.ndcg(y, np.clip(s, -1e4, 1e4))), **TOL)
    s[1, 0] = np.nan  # a valid item
    for _, fn, _ in KIND.values():
        got = to_numpy(fn(y, s))
        assert np.isnan(got[1]) and np.all(np.isfinite(np.delete(got, 1)))


# --------------------------------------------------------------------------- the classes against keras-rs


def _pair(cls, k, gained):
    """Our metric and keras-rs' with the same options."""
    krs = keras_rs()
    ours, theirs = {}, {}
    if gained == "identity":
        ours = {"gain_fn": "identity", "rank_discount_fn": reciprocal_discount}
        theirs = {"gain_fn": lambda t: t, "rank_discount_fn": reciprocal_discount}
    return cls(k=k, **ours), getattr(krs.metrics, KIND[cls][2])(k=k, **theirs)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_classes_match_keras_rs(cls, rng):
    first, second = lists(rng), lists(rng)
    weight_kinds = ("items", "lists", None)
    for i, k in enumerate((None, 2, 8)):  # 8: more than the list size
        gained = "identity" if cls in GAINED and k == 2 else "exp2"
        ours, theirs = _pair(cls, k, gained)
        y, s, w, mask = first
        weight = {"items": w, "lists": w[:, 0], None: None}[weight_kinds[i]]
        for metric in (ours, theirs):
            metric.update_state({"labels": y, "mask": mask}, s, sample_weight=weight)
            metric.update_state(second[0], second[1])
        assert float(ours.result()) == pytest.approx(float(theirs.result()), rel=2e-5, abs=2e-6), (k, weight_kinds[i])
        assert float(ours.count) == pytest.approx(float(theirs.count), rel=1e-6)
        ours.reset_state()
        assert float(ours.result()) == 0.0
        theirs.reset_state()
        for metric in (ours, theirs):
            metric.update_state(second[0], second[1], sample_weight=second[2])
        assert float(ours.result()) == pytest.approx(float(theirs.result()), rel=2e-5, abs=2e-6)


def test_tied_scores_give_the_mean_of_keras_rs_random_orders(rng):
    """keras-rs breaks ties at random at every call; its mean over 500
    copies of each list is within 6 standard errors of ours."""
    krs = keras_rs()
    y, s, _, _ = lists(rng, tied=True)
    copies, counted = 500, np.sum(np.any(y >= 0, axis=1))
    for cls, (kind, _, name) in KIND.items():
        for k in (None, 2) if kind in ("ndcg", "mrr", "map") else (2,):
            ours, theirs = cls(k=k), getattr(krs.metrics, name)(k=k, seed=7)
            ours.update_state(y, s)
            theirs.update_state(np.tile(y, (copies, 1)), np.tile(s, (copies, 1)))
            _, spread = reference_values(kind, y, s, np.ones_like(y), y >= 0, k)
            bound = 6 * np.sqrt(np.sum(spread**2) / copies) / counted + 1e-6
            assert 0 < bound < 0.1 * (1 + float(ours.result()))
            assert abs(float(ours.result()) - float(theirs.result())) < bound, (kind, k)


def test_keras_rs_ranks_padding_ahead_on_torch():
    """A keras-rs quirk the docs state: it scores padding `min(scores) - 1e-7`,
    which rounds to `min(scores)` in float32 once scores pass about 1, and
    torch's `top_k` does not keep the order of equal scores: padding can then
    rank ahead of the lowest valid item. Here the only relevant item is the
    second of two valid ones (reciprocal rank 1/2)."""
    krs = keras_rs()
    y = np.tile(np.array([[0.0, 1.0, -1.0, -1.0, -1.0, -1.0]], "float32"), (8, 1))
    s = np.tile(np.array([[5.0, 3.0, 9.0, 9.0, 9.0, 9.0]], "float32"), (8, 1))
    ours = M.MeanReciprocalRank()
    ours.update_state(y, s)
    assert float(ours.result()) == 0.5
    values = set()
    for _ in range(10):
        theirs = krs.metrics.MeanReciprocalRank()
        theirs.update_state(y, s)
        values.add(round(float(theirs.result()), 4))
    if BACKEND == "torch":
        assert min(values) < 0.5 and max(values) <= 0.5
    else:
        assert values == {0.5}


# --------------------------------------------------------------------------- weights, reduction, compilation


def test_no_relevant_skip_and_per_call_list_weights(rng):
    batches = [lists(rng, tied=True), lists(rng, tied=True)]
    for cls, (kind, _, _) in KIND.items():
        for no_relevant in ("zero", "skip"):
            metric = cls(k=3, no_relevant=no_relevant)
            for y, s, w, mask in batches:
                metric.update_state({"labels": y, "mask": mask}, s, sample_weight=w)
            want = reference_result(kind, [(y, s, w, _valid(y, w, mask)) for y, s, w, mask in batches], k=3,
                                    no_relevant=no_relevant)
            assert float(metric.result()) == pytest.approx(want, rel=2e-5, abs=2e-6), (kind, no_relevant)


def test_compiled_update_state_over_two_batches(rng):
    """Every class in one compiled step (`jax.jit` of the stateless update
    that Keras' train step runs, `tf.function(jit_compile=True)`; torch
    eagerly, as Keras runs it), two batches of the same shape."""
    metrics = [M.NDCG(k=3), M.DCG(gain_fn="identity", rank_discount_fn=reciprocal_discount),
               M.MeanReciprocalRank(no_relevant="skip"), M.MeanAveragePrecision(k=4), M.PrecisionAtK(k=2),
               M.RankingRecallAtK(k=2)]
    batches = [lists(rng, tied=True), lists(rng, tied=True)]
    if BACKEND == "jax":
        def step(variables, y, s, w):
            return [m.stateless_update_state(v, y, s, sample_weight=w) for m, v in zip(metrics, variables)]

        compiled = xla_compile(step)
        variables = [[v.value for v in m.variables] for m in metrics]
        for y, s, w, _ in batches:
            variables = compiled(variables, y, s, w)
        results = [float(m.stateless_result(v)) for m, v in zip(metrics, variables)]
    else:
        def step(y, s, w):
            for m in metrics:
                m.update_state(y, s, sample_weight=w)

        compiled = xla_compile(step) if BACKEND in XLA_BACKENDS else step
        for y, s, w, _ in batches:
            compiled(y, s, w)
        results = [float(m.result()) for m in metrics]
    for metric, got in zip(metrics, results):
        config = metric.get_config()
        gain = config.get("gain_fn", "exp2")
        discount = reciprocal_discount if gain == "identity" else "log2"
        unmasked = [(y, s, w, (y >= 0) & (w > 0)) for y, s, w, _ in batches]
        want = reference_result(KIND[type(metric)][0], unmasked, k=config["k"], gain=gain, discount=discount,
                                no_relevant=config["no_relevant"])
        assert got == pytest.approx(want, rel=2e-5, abs=2e-6), metric.name


# --------------------------------------------------------------------------- the house rules, per class


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_registered_complete_config_and_documented(cls):
    assert keras.saving.get_registered_name(cls) == f"keras_lossplus>{cls.__name__}"
    params = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    options = {"k": 4, "no_relevant": "skip", "name": "m", "dtype": "float16"}
    if cls in GAINED:
        options.update(gain_fn="identity", rank_discount_fn=reciprocal_discount)
    metric = cls(**options)
    config = metric.get_config()
    assert set(params) <= set(config)
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(metric))
    assert type(again) is cls and again.get_config() == config
    assert config["k"] == 4 and config["no_relevant"] == "skip" and config["name"] == "m"
    if cls in GAINED:
        assert again.rank_discount_fn is reciprocal_discount and config["gain_fn"] == "identity"
        named = cls(rank_discount_fn="klp_tests>reciprocal_discount")
        assert named.rank_discount_fn is reciprocal_discount
    assert cls().name == DEFAULT_NAMES[cls] and cls(k=3).name == DEFAULT_NAMES[cls].removesuffix("_at_k") + "_at_3"
    doc = inspect.cleandoc(cls.__doc__)
    assert ">>>" in doc and "keras-rs" in doc and any(str(y) in doc for y in range(1990, 2030))


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("bad", [0, -1, 1.5, "3", True])
def test_k_must_be_none_or_a_positive_integer(bad):
    for cls, (_, fn, _) in KIND.items():
        with pytest.raises(ValueError, match="`k`"):
            cls(k=bad)
        with pytest.raises(ValueError, match="`k`"):
            fn(np.zeros((2, 3)), np.ones((2, 3), "float32"), k=bad)


def test_bad_options_and_shapes_name_the_argument():
    y, s = np.zeros((2, 3), "float32"), np.ones((2, 3), "float32")
    with pytest.raises(ValueError, match="`gain_fn`.*'exp2', 'identity'"):
        M.NDCG(gain_fn="linear")
    with pytest.raises(ValueError, match="`rank_discount_fn`.*'log2'"):
        M.dcg(y, s, rank_discount_fn="reciprocal")
    with pytest.raises(TypeError, match="`gain_fn`"):
        M.DCG(gain_fn=2)
    with pytest.raises(ValueError, match="`no_relevant`.*'zero', 'skip'"):
        M.PrecisionAtK(no_relevant="one")
    cases = [
        (lambda: M.ndcg(y, s[:, :2]), "`y_true`.*`y_pred`"),
        (lambda: M.ndcg(np.zeros(()), np.ones((), "float32")), "`y_true`"),
        (lambda: M.mean_reciprocal_rank(y, s, mask=np.ones((2, 2), bool)), "`mask`"),
        (lambda: M.precision_at_k(y, s, sample_weight=np.ones(3)), "`sample_weight`"),
        (lambda: M.MeanAveragePrecision().update_state({"mask": y}, s), '"labels"'),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()
