"""Numpy (float64) reference implementations of the in-batch metric-learning
losses of issue 6, written from the shared spec and the papers with explicit
Python loops over anchors, pairs and triplets. They are deliberately slow and
obvious; they do not share code with the package.

Conventions (spec):
  * ``y_true``: integer labels (B,) or (B, 1); ``y_pred``: embeddings (B, D).
  * d = pairwise distance ("euclidean", "squared_euclidean", "cosine" = 1 - cos)
    of the embeddings, after L2-normalising them when ``normalize=True``.
  * S = similarity ("cosine" = cos, "dot" = <e_a, e_b>).
  * pos(a) = {p != a : y_p == y_a}, neg(a) = {n : y_n != y_a}.
  * An anchor is VALID iff pos(a) and neg(a) are both non-empty; a batch loss is
        sum_a w_a num_a / sum_a w_a cnt_a   over valid anchors,
    and 0 when that denominator is 0.
  * Per-sample forms (triplet/quadruplet ``mining="none"``, ``contrastive_loss``)
    return a (B,) numpy array of unweighted per-sample values.
"""

from __future__ import annotations

import math

import numpy as np

DISTANCES = ("euclidean", "squared_euclidean", "cosine")
SIMILARITIES = ("cosine", "dot")


# ------------------------------------------------------------------ basics


def softplus(x):
    """log(1 + exp(x)), stable."""
    x = float(x)
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


def relu(x):
    return max(float(x), 0.0)


def logsumexp(values):
    """log(sum(exp(v))) of a non-empty list, stable."""
    values = [float(v) for v in values]
    m = max(values)
    return m + math.log(sum(math.exp(v - m) for v in values))


def normalize(x):
    """Row-wise L2 normalisation x / ||x||; a zero row stays zero."""
    x = np.asarray(x, dtype="float64")
    norm = np.sqrt((x * x).sum(-1, keepdims=True))
    return x / np.where(norm > 0, norm, 1.0)


_unit = normalize  # for functions whose `normalize` argument shadows the name


def _cos(u, v):
    """cos(u, v); 0 when either vector is zero."""
    nu, nv = math.sqrt(float(u @ u)), math.sqrt(float(v @ v))
    if nu == 0.0 or nv == 0.0:
        return 0.0
    return float(u @ v) / (nu * nv)


def pair_distance(u, v, distance="euclidean"):
    """Distance between two vectors: ||u - v||, ||u - v||^2 or 1 - cos(u, v)
    (a zero vector is at cosine distance 1 from every vector)."""
    u = np.asarray(u, dtype="float64")
    v = np.asarray(v, dtype="float64")
    if distance == "euclidean":
        return math.sqrt(float(((u - v) ** 2).sum()))
    if distance == "squared_euclidean":
        return float(((u - v) ** 2).sum())
    if distance == "cosine":
        return 1.0 - _cos(u, v)
    raise ValueError(f"distance must be one of {DISTANCES}, got {distance!r}")


def pair_similarity(u, v, similarity="cosine"):
    """Similarity of two vectors: cos(u, v) (0 with a zero vector) or <u, v>."""
    u = np.asarray(u, dtype="float64")
    v = np.asarray(v, dtype="float64")
    if similarity == "cosine":
        return _cos(u, v)
    if similarity == "dot":
        return float(u @ v)
    raise ValueError(f"distance must be one of {SIMILARITIES}, got {similarity!r}")


def distance_matrix(x, distance="euclidean", normalize_first=False):
    """B x B matrix d[i, j] = pair_distance(x_i, x_j), after L2-normalising
    the rows when ``normalize_first``."""
    x = np.asarray(x, dtype="float64")
    if normalize_first:
        x = normalize(x)
    b = x.shape[0]
    d = np.zeros((b, b))
    for i in range(b):
        for j in range(b):
            d[i, j] = pair_distance(x[i], x[j], distance)
    return d


def similarity_matrix(x, similarity="cosine", normalize_first=False):
    """B x B matrix S[i, j] = pair_similarity(x_i, x_j)."""
    x = np.asarray(x, dtype="float64")
    if normalize_first:
        x = normalize(x)
    b = x.shape[0]
    s = np.zeros((b, b))
    for i in range(b):
        for j in range(b):
            s[i, j] = pair_similarity(x[i], x[j], similarity)
    return s


# ------------------------------------------------------------------ helpers


def _labels(y_true):
    y = np.asarray(y_true)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"y_true must have shape (B,) or (B, 1), got {y.shape}")
    return [int(round(float(v))) for v in y]


def _embeddings(y_pred):
    x = np.asarray(y_pred, dtype="float64")
    if x.ndim != 2:
        raise ValueError(f"y_pred must have shape (B, D), got {x.shape}")
    return x


def _weights(sample_weight, b):
    if sample_weight is None:
        return [1.0] * b
    w = np.asarray(sample_weight, dtype="float64").reshape(-1)
    if w.shape[0] != b:
        raise ValueError(f"sample_weight must have {b} entries, got {w.shape}")
    return [float(v) for v in w]


def positives(labels, a):
    """pos(a) = {p != a : y_p == y_a}."""
    return [p for p in range(len(labels)) if p != a and labels[p] == labels[a]]


def negatives(labels, a):
    """neg(a) = {n : y_n != y_a}."""
    return [n for n in range(len(labels)) if labels[n] != labels[a]]


def valid_anchors(labels):
    """Anchors with at least one positive and one negative."""
    return [a for a in range(len(labels)) if positives(labels, a) and negatives(labels, a)]


def _ratio(num, den):
    """num / den, 0 when den == 0 (the spec's zero-denominator rule)."""
    return num / den if den != 0 else 0.0


def _reduce(per_anchor, weights):
    """sum_a w_a num_a / sum_a w_a cnt_a over the (num_a, cnt_a) of valid anchors."""
    num = sum(weights[a] * n for a, (n, _) in per_anchor.items())
    den = sum(weights[a] * c for a, (_, c) in per_anchor.items())
    return float(_ratio(num, den))


def _split(y_pred, parts, name="y_pred"):
    x = np.asarray(y_pred, dtype="float64")
    if x.ndim != 2:
        raise ValueError(f"{name} must have shape (B, {parts}D), got {x.shape}")
    if x.shape[1] % parts:
        raise ValueError(f"{name} width {x.shape[1]} is not divisible by {parts}")
    return np.split(x, parts, axis=1)


# ------------------------------------------------------------------ triplet


def ref_triplet_loss(
    y_true,
    y_pred,
    margin=1.0,
    mining="semihard",
    distance="euclidean",
    soft=False,
    normalize=False,
    sample_weight=None,
):
    """Triplet loss (Schroff et al. 2015; Hermans et al. 2017).

    f(t) = max(t, 0); soft=True: f = softplus and the margin is NOT added.
      semihard: for p in pos(a): S = {n in neg(a): d_an > d_ap};
                d* = min_S d_an if S else max_{neg(a)} d_an;
                l_ap = f(d_ap - d* + margin); num_a = sum_p l_ap, cnt_a = |pos(a)|.
      hard:     num_a = f(max_pos d_ap - min_neg d_an + margin), cnt_a = 1.
      all:      t = d_ap - d_an + margin over pos(a) x neg(a);
                hinge: num_a = sum_{t>0} t, cnt_a = #{t > 0};
                soft:  num_a = sum softplus(d_ap - d_an), cnt_a = |pos||neg|.
      none:     y_pred = [a | p | n]; per-sample f(d(a,p) - d(a,n) + margin).
    """
    m = 0.0 if soft else float(margin)

    def f(t):
        return softplus(t) if soft else relu(t)

    if mining == "none":
        anc, pos, neg = _split(y_pred, 3)
        if normalize:
            anc, pos, neg = _unit(anc), _unit(pos), _unit(neg)
        return np.array(
            [
                f(pair_distance(anc[i], pos[i], distance) - pair_distance(anc[i], neg[i], distance) + m)
                for i in range(anc.shape[0])
            ]
        )
    if mining not in ("semihard", "hard", "all"):
        raise ValueError(f"mining must be one of semihard/hard/all/none, got {mining!r}")
    labels = _labels(y_true)
    x = _embeddings(y_pred)
    w = _weights(sample_weight, len(labels))
    d = distance_matrix(x, distance, normalize)

    per_anchor = {}
    for a in valid_anchors(labels):
        P, N = positives(labels, a), negatives(labels, a)
        if mining == "semihard":
            total = 0.0
            for p in P:
                farther = [d[a, n] for n in N if d[a, n] > d[a, p]]
                d_star = min(farther) if farther else max(d[a, n] for n in N)
                total += f(d[a, p] - d_star + m)
            per_anchor[a] = (total, len(P))
        elif mining == "hard":
            hardest_p = max(d[a, p] for p in P)
            hardest_n = min(d[a, n] for n in N)
            per_anchor[a] = (f(hardest_p - hardest_n + m), 1)
        else:  # all
            if soft:
                total = sum(softplus(d[a, p] - d[a, n]) for p in P for n in N)
                per_anchor[a] = (total, len(P) * len(N))
            else:
                ts = [d[a, p] - d[a, n] + m for p in P for n in N]
                active = [t for t in ts if t > 0]
                per_anchor[a] = (sum(active), len(active))
    return _reduce(per_anchor, w)


# ------------------------------------------------------------------ quadruplet


def ref_quadruplet_loss(
    y_true,
    y_pred,
    margin1=1.0,
    margin2=0.5,
    mining="hard",
    distance="euclidean",
    normalize=False,
    sample_weight=None,
):
    """Quadruplet loss (Chen et al. 2017).

      hard: d_hp = max_pos d_ap, d_hn = min_neg d_an,
            Q(a) = {(k, l): y_k != y_a, y_l != y_a, y_k != y_l};
            num_a = relu(d_hp - d_hn + margin1)
                    + (relu(d_hp - min_Q d_kl + margin2) if Q(a) else 0);  cnt_a = 1.
      none: y_pred = [a | p | n1 | n2]; per-sample
            relu(d(a,p) - d(a,n1) + margin1) + relu(d(a,p) - d(n1,n2) + margin2).
    """
    if mining == "none":
        anc, pos, n1, n2 = _split(y_pred, 4)
        if normalize:
            anc, pos, n1, n2 = _unit(anc), _unit(pos), _unit(n1), _unit(n2)
        out = []
        for i in range(anc.shape[0]):
            d_ap = pair_distance(anc[i], pos[i], distance)
            d_an = pair_distance(anc[i], n1[i], distance)
            d_nn = pair_distance(n1[i], n2[i], distance)
            out.append(relu(d_ap - d_an + margin1) + relu(d_ap - d_nn + margin2))
        return np.array(out)
    if mining != "hard":
        raise ValueError(f"mining must be 'hard' or 'none', got {mining!r}")
    labels = _labels(y_true)
    x = _embeddings(y_pred)
    w = _weights(sample_weight, len(labels))
    d = distance_matrix(x, distance, normalize)
    b = len(labels)

    per_anchor = {}
    for a in valid_anchors(labels):
        d_hp = max(d[a, p] for p in positives(labels, a))
        d_hn = min(d[a, n] for n in negatives(labels, a))
        num = relu(d_hp - d_hn + margin1)
        q = [
            d[k, l]
            for k in range(b)
            for l in range(b)
            if labels[k] != labels[a] and labels[l] != labels[a] and labels[k] != labels[l]
        ]
        if q:
            num += relu(d_hp - min(q) + margin2)
        per_anchor[a] = (num, 1)
    return _reduce(per_anchor, w)


# ------------------------------------------------------------------ contrastive


def ref_contrastive_loss(y_true, y_pred, margin=1.0):
    """Per-sample contrastive loss on given distances (Hadsell et al. 2006, TFA):
    y * d^2 + (1 - y) * max(margin - d, 0)^2, y = 1 similar / 0 dissimilar."""
    y = np.asarray(y_true, dtype="float64").reshape(-1)
    d = np.asarray(y_pred, dtype="float64").reshape(-1)
    return np.array([yi * di**2 + (1 - yi) * relu(margin - di) ** 2 for yi, di in zip(y, d)])


def ref_batch_contrastive_loss(
    y_true,
    y_pred,
    pos_margin=0.0,
    neg_margin=1.0,
    distance="euclidean",
    normalize=False,
    sample_weight=None,
):
    """In-batch contrastive loss (PML ContrastiveLoss, AvgNonZeroReducer):
      pos = sum_a w_a sum_{p: d_ap > pos_margin} (d_ap - pos_margin)
            / sum_a w_a #{p: d_ap > pos_margin}
      neg = sum_a w_a sum_{n: d_an < neg_margin} (neg_margin - d_an)
            / sum_a w_a #{n: d_an < neg_margin}
    over valid anchors, each 0 when its count is 0; loss = pos + neg."""
    labels = _labels(y_true)
    x = _embeddings(y_pred)
    w = _weights(sample_weight, len(labels))
    d = distance_matrix(x, distance, normalize)
    pos_num = pos_den = neg_num = neg_den = 0.0
    for a in valid_anchors(labels):
        for p in positives(labels, a):
            if d[a, p] > pos_margin:
                pos_num += w[a] * (d[a, p] - pos_margin)
                pos_den += w[a]
        for n in negatives(labels, a):
            if d[a, n] < neg_margin:
                neg_num += w[a] * (neg_margin - d[a, n])
                neg_den += w[a]
    return float(_ratio(pos_num, pos_den) + _ratio(neg_num, neg_den))


# ------------------------------------------------------------------ similarity-based


def ref_multi_similarity_loss(
    y_true,
    y_pred,
    alpha=2.0,
    beta=50.0,
    base=0.5,
    epsilon=0.1,
    distance="cosine",
    sample_weight=None,
):
    """Multi-similarity loss with its miner (Wang et al. 2019):
      Pm(a) = {p in pos(a): S_ap - eps < max_neg S_an},
      Nm(a) = {n in neg(a): S_an + eps > min_pos S_ap};
      num_a = 1/alpha log(1 + sum_Pm exp(-alpha (S_ap - base)))
              + 1/beta log(1 + sum_Nm exp(beta (S_an - base))),  cnt_a = 1."""
    labels = _labels(y_true)
    x = _embeddings(y_pred)
    w = _weights(sample_weight, len(labels))
    s = similarity_matrix(x, distance)
    per_anchor = {}
    for a in valid_anchors(labels):
        P, N = positives(labels, a), negatives(labels, a)
        max_neg = max(s[a, n] for n in N)
        min_pos = min(s[a, p] for p in P)
        Pm = [p for p in P if s[a, p] - epsilon < max_neg]
        Nm = [n for n in N if s[a, n] + epsilon > min_pos]
        # log(1 + sum exp(z)) = logsumexp([0] + z)
        pos_term = logsumexp([0.0] + [-alpha * (s[a, p] - base) for p in Pm]) / alpha
        neg_term = logsumexp([0.0] + [beta * (s[a, n] - base) for n in Nm]) / beta
        per_anchor[a] = (pos_term + neg_term, 1)
    return _reduce(per_anchor, w)


def ref_lifted_structure_loss(
    y_true,
    y_pred,
    margin=1.0,
    distance="euclidean",
    normalize=False,
    sample_weight=None,
):
    """Lifted structured loss, smooth form (Song et al. 2016):
      L_i = log sum_{k in neg(i)} exp(margin - d_ik);
      J_ap = log(exp(L_a) + exp(L_p)) + d_ap;
      num_a = 0.5 sum_{p in pos(a)} relu(J_ap)^2,  cnt_a = |pos(a)|."""
    labels = _labels(y_true)
    x = _embeddings(y_pred)
    w = _weights(sample_weight, len(labels))
    d = distance_matrix(x, distance, normalize)

    def L(i):
        return logsumexp([margin - d[i, k] for k in negatives(labels, i)])

    per_anchor = {}
    for a in valid_anchors(labels):
        P = positives(labels, a)
        total = 0.0
        for p in P:
            j = logsumexp([L(a), L(p)]) + d[a, p]
            total += 0.5 * relu(j) ** 2
        per_anchor[a] = (total, len(P))
    return _reduce(per_anchor, w)


def ref_npair_loss(y_true, y_pred, distance="dot", normalize=False, sample_weight=None):
    """Multi-class N-pair loss, in-batch form (Sohn 2016):
      l_ap = log(1 + sum_{n in neg(a)} exp(S_an - S_ap));
      num_a = sum_p l_ap,  cnt_a = |pos(a)|."""
    labels = _labels(y_true)
    x = _embeddings(y_pred)
    w = _weights(sample_weight, len(labels))
    s = similarity_matrix(x, distance, normalize)
    per_anchor = {}
    for a in valid_anchors(labels):
        P, N = positives(labels, a), negatives(labels, a)
        total = sum(logsumexp([0.0] + [s[a, n] - s[a, p] for n in N]) for p in P)
        per_anchor[a] = (total, len(P))
    return _reduce(per_anchor, w)


def ref_supcon_loss(y_true, y_pred, temperature=0.1, distance="cosine", sample_weight=None):
    """Supervised contrastive loss, L_out (Khosla et al. 2020):
      num_a = -(1/|pos(a)|) sum_p [S_ap/T - log sum_{k != a} exp(S_ak/T)],  cnt_a = 1."""
    labels = _labels(y_true)
    x = _embeddings(y_pred)
    w = _weights(sample_weight, len(labels))
    s = similarity_matrix(x, distance)
    t = float(temperature)
    per_anchor = {}
    for a in valid_anchors(labels):
        P = positives(labels, a)
        log_denominator = logsumexp([s[a, k] / t for k in range(len(labels)) if k != a])
        total = sum(s[a, p] / t - log_denominator for p in P)
        per_anchor[a] = (-total / len(P), 1)
    return _reduce(per_anchor, w)


def ref_nt_xent_loss(y_true, y_pred, temperature=0.07, distance="cosine", sample_weight=None):
    """NT-Xent (Chen et al. 2020; PML NTXentLoss):
      l_ap = -log( exp(S_ap/T) / (exp(S_ap/T) + sum_{n in neg(a)} exp(S_an/T)) );
      num_a = sum_p l_ap,  cnt_a = |pos(a)|."""
    labels = _labels(y_true)
    x = _embeddings(y_pred)
    w = _weights(sample_weight, len(labels))
    s = similarity_matrix(x, distance)
    t = float(temperature)
    per_anchor = {}
    for a in valid_anchors(labels):
        P, N = positives(labels, a), negatives(labels, a)
        total = 0.0
        for p in P:
            log_den = logsumexp([s[a, p] / t] + [s[a, n] / t for n in N])
            total += -(s[a, p] / t - log_den)
        per_anchor[a] = (total, len(P))
    return _reduce(per_anchor, w)


def ref_soft_nearest_neighbor_loss(
    y_true,
    y_pred,
    temperature=1.0,
    distance="squared_euclidean",
    normalize=False,
    sample_weight=None,
):
    """Soft nearest neighbour loss (Frosst et al. 2019):
      num_a = -log( sum_{p in pos(a)} exp(-d_ap/T) / sum_{k != a} exp(-d_ak/T) ),  cnt_a = 1."""
    labels = _labels(y_true)
    x = _embeddings(y_pred)
    w = _weights(sample_weight, len(labels))
    d = distance_matrix(x, distance, normalize)
    t = float(temperature)
    per_anchor = {}
    for a in valid_anchors(labels):
        log_num = logsumexp([-d[a, p] / t for p in positives(labels, a)])
        log_den = logsumexp([-d[a, k] / t for k in range(len(labels)) if k != a])
        per_anchor[a] = (-(log_num - log_den), 1)
    return _reduce(per_anchor, w)


# ------------------------------------------------------------------ inputs


def grouped_batch(rng, classes=4, per_class=3, dim=5, scale=1.0, dtype="float32"):
    """Shuffled labels with `per_class` samples of each of `classes` classes
    (so every anchor is valid) and Gaussian embeddings."""
    labels = np.repeat(np.arange(classes), per_class)
    rng.shuffle(labels)
    x = rng.normal(size=(labels.shape[0], dim)) * scale
    return labels.astype("int32"), x.astype(dtype)
