"""Loop-based numpy (float64) references of the ranking losses, one query at
a time, written from the papers' formulas independently of the package's
code; and the input lists the ranking tests share."""

from __future__ import annotations

import functools
import math

import keras
import numpy as np

MASK = -1.0


# ------------------------------------------------------------------ helpers


def _lse(x):
    x = np.asarray(x, "float64")
    m = x.max()
    return m + math.log(np.exp(x - m).sum())


def _softplus(x):
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


def _sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def _valid(y, mask_value):
    return [i for i in range(len(y)) if (mask_value is None or y[i] != mask_value) and y[i] >= 0]


def per_query(fn):
    """`fn(y, s, valid, w, **options)` of one query, applied to every row;
    `sample_weight` the per-item weights (1 without), `temperature` divides
    the scores before `fn` sees them."""

    @functools.wraps(fn)
    def wrapper(y_true, y_pred, mask_value=MASK, temperature=1.0, sample_weight=None, **kwargs):
        y_true = np.asarray(y_true, "float64").reshape(-1, np.shape(y_true)[-1])
        y_pred = np.asarray(y_pred, "float64").reshape(y_true.shape) / temperature
        w = np.ones_like(y_true) if sample_weight is None else np.asarray(sample_weight, "float64")
        w = w.reshape(y_true.shape)
        out = [fn(list(y), list(s), _valid(y, mask_value), list(ww), **kwargs) for y, s, ww in zip(y_true, y_pred, w)]
        return np.array(out)

    return wrapper


def _pairs(y, v):
    return [(i, j) for i in v for j in v if y[i] > y[j]]


def _reduce(terms, size, pair_reduction):
    """`terms`: `[(i, value)]` (the pair's leading item, its weighted term)."""
    if pair_reduction == "per_item":
        out = [0.0] * size
        for i, t in terms:
            out[i] += t
        return out
    total = sum(t for _, t in terms)
    return total if pair_reduction == "sum" or not terms else total / len(terms)


# ------------------------------------------------------------------ the losses


def _pairwise(term, every_pair=False):
    def ref(y, s, v, w, pair_reduction="mean", **kwargs):
        pairs = [(i, j) for i in v for j in v if i != j] if every_pair else _pairs(y, v)
        return _reduce([(i, w[i] * term(y, s, i, j, **kwargs)) for i, j in pairs], len(y), pair_reduction)

    return ref


ref_pairwise_logistic = per_query(_pairwise(lambda y, s, i, j: _softplus(-(s[i] - s[j]))))
ref_pairwise_soft_zero_one = per_query(_pairwise(lambda y, s, i, j: _sigmoid(-(s[i] - s[j]))))
ref_pairwise_mse = per_query(_pairwise(lambda y, s, i, j: ((y[i] - y[j]) - (s[i] - s[j])) ** 2, every_pair=True))
ref_pairwise_hinge = per_query(_pairwise(lambda y, s, i, j, margin=1.0: max(0.0, margin - (s[i] - s[j]))))


def _softmax_weights(values):
    m = max(values)
    e = [math.exp(x - m) for x in values]
    return [x / sum(e) for x in e]


@per_query
def ref_listnet(y, s, v, w):
    if not any(y[i] > 0 for i in v):
        return 0.0
    target = dict(zip(v, _softmax_weights([y[i] for i in v])))
    ls = _lse([s[i] for i in v])
    return -sum(w[i] * target[i] * (s[i] - ls) for i in v)


@per_query
def ref_listmle(y, s, v, w):
    if not any(y[i] > 0 for i in v):
        return 0.0
    order = sorted(v, key=lambda i: -y[i])  # Python's sort is stable: ties keep input order
    return sum(w[order[k]] * (_lse([s[j] for j in order[k:]]) - s[order[k]]) for k in range(len(order)))


@per_query
def ref_softmax(y, s, v, w):
    if not v:
        return 0.0
    ls = _lse([s[i] for i in v])
    return -sum(w[i] * y[i] * (s[i] - ls) for i in v)


def _gain(label):
    return 2.0**label - 1.0


def _dcg_of_sorted(gains):
    return sum(g / math.log2(1 + k) for k, g in enumerate(gains, start=1))


@per_query
def ref_approx_ndcg(y, s, v, w):
    gains = {i: w[i] * _gain(y[i]) for i in v}
    idcg = _dcg_of_sorted(sorted(gains.values(), reverse=True))
    if idcg == 0:
        return 0.0
    dcg = 0.0
    for i in v:
        rank = 1.0 + sum(_sigmoid(s[j] - s[i]) for j in v if j != i)  # s already divided by T
        dcg += gains[i] / math.log2(1 + rank)
    return 1.0 - dcg / idcg


def ref_lambda(y_true, y_pred, weighting="ndcg_loss2", rank_scores=None, **kwargs):
    """`rank_scores`: the scores the ranks are taken from (default `y_pred`;
    held fixed for finite differences, as the loss holds them constant)."""
    rank_rows = np.asarray(y_pred if rank_scores is None else rank_scores, "float64").reshape(-1, np.shape(y_true)[-1])
    rows = iter(rank_rows)

    @per_query
    def one(y, s, v, w):
        r_scores = next(rows)
        order = sorted(v, key=lambda i: -r_scores[i])  # ties in input order
        rank = {i: k for k, i in enumerate(order, start=1)}
        idcg = _dcg_of_sorted(sorted((_gain(y[i]) for i in v), reverse=True))
        inv = lambda r: 1.0 / math.log2(1 + r)  # noqa: E731
        total = 0.0
        for i, j in _pairs(y, v):
            if weighting == "ndcg_loss2":
                gap = abs(rank[i] - rank[j])
                delta = abs(inv(gap) - inv(gap + 1))
            else:
                delta = abs(inv(rank[i]) - inv(rank[j]))
            total += w[i] * delta * abs(_gain(y[i]) - _gain(y[j])) / idcg * _softplus(-(s[i] - s[j]))
        return total

    return one(y_true, y_pred, **kwargs)


class _Values(keras.losses.Loss):
    """A Keras loss whose per-sample values are given as `y_pred`."""

    def call(self, y_true, y_pred):
        return y_pred


def keras_reduced(values, reduction, sample_weight=None):
    """Keras' own reduction (and weighting) of given per-sample values."""
    values = np.asarray(keras.ops.convert_to_numpy(values), "float32")
    return _Values(reduction=reduction)(values, values, sample_weight=sample_weight)


# ------------------------------------------------------------------ inputs


def make_lists(batch=10, size=6):
    def make(rng):
        labels = rng.integers(0, 4, size=(batch, size)).astype("float32")
        labels[rng.uniform(size=(batch, size)) < 0.2] = MASK  # padding anywhere in a list
        labels[0] = MASK  # a list that is all padding
        labels[1] = [0, 0, 0, 0, MASK, 0]  # no relevant item
        labels[2] = [2, 2, 1, 1, 0, 2]  # ties
        scores = (2.0 * rng.normal(size=(batch, size))).astype("float32")
        scores[3] = scores[3, 0]  # tied scores
        return labels, scores

    return make


def edge(y, p, batch=10):
    """An edge case with the shape of `make_lists()` (10 lists of 6): on JAX
    every new shape is one more compilation."""
    reps = -(-batch // len(y))
    return np.tile(np.asarray(y, "float32"), (reps, 1))[:batch], np.tile(np.asarray(p, "float32"), (reps, 1))[:batch]


def gradient_lists():
    """Ten lists of six where gradients are easy to get wrong: tied scores
    (the issue's ListMLE case first), scores of +-100, padding anywhere, an
    all-padding list, a list without a relevant item, generic scores."""
    y = np.array([
        [1, 0, 1, 0, MASK, MASK],
        [2, 2, 1, 1, 0, 2],
        [3, 0, 1, 2, 0, 1],
        [0, 1, MASK, 2, 1, 0],
        [MASK] * 6,
        [0, 0, MASK, 0, 0, 0],
        [2, MASK, 0, 1, MASK, 3],
        [1, 1, 1, 0, 0, 0],
        [3, 2, 1, 0, 1, 2],
        [0, 2, 1, MASK, 3, 1],
    ], "float32")
    s = np.array([
        [0.0] * 6,
        [0.5] * 6,
        [-100, 100, 0, 100, -100, -60],
        [100, -100, 3, 100, -100, 100],
        [0.3, -0.2, 0.1, 0.0, 0.4, 0.9],
        [0.3, -0.2, 0.1, 0.0, 0.4, 0.9],
        [0.7, 0.1, -0.35, 0.7, 2.0, 0.2],
        [1.0, 1.0, 0.0, 0.0, 2.0, 2.0],
        [0.13, -0.71, 1.27, 0.42, -0.38, 0.91],
        [-1.1, 0.6, 0.25, 1.8, -0.45, 0.05],
    ], "float32")
    return y, s
