"""Numpy (float64) references for the segmentation losses, written from the
papers and from segmentation_models_pytorch's / MONAI's definitions, with
explicit loops over images and classes where that is clearest."""

from __future__ import annotations

import numpy as np

from tests.losses.references import log_sigmoid, log_softmax, sigmoid, softmax

EPS = 1e-7


def layout(y_true, y_pred, mode, from_logits=False, ignore_index=None, data_format="channels_last"):
    """`(raw, probs, target, valid)`, channels-last, `valid` per entry of `target`."""
    y_true = np.asarray(y_true, "float64")
    raw = np.asarray(y_pred, "float64")
    if data_format == "channels_first":
        raw = np.moveaxis(raw, 1, -1)
        if y_true.ndim == raw.ndim:
            y_true = np.moveaxis(y_true, 1, -1)
    channels = raw.shape[-1]
    if mode == "multiclass":
        probs = softmax(raw) if from_logits else raw
        if y_true.ndim == raw.ndim and channels > 1 and y_true.shape[-1] == channels:
            return raw, probs, y_true, np.ones_like(y_true)
        labels = y_true[..., 0] if y_true.ndim == raw.ndim else y_true
        labels = np.round(labels)
        valid = np.ones(labels.shape) if ignore_index is None else (labels != ignore_index).astype("float64")
        target = np.zeros(labels.shape + (channels,))
        for c in range(channels):
            target[..., c] = (labels == c) * valid
        return raw, probs, target, np.repeat(valid[..., None], channels, -1)
    probs = sigmoid(raw) if from_logits else raw
    target = y_true if y_true.ndim == raw.ndim else y_true[..., None]
    valid = np.ones(target.shape) if ignore_index is None else (target != ignore_index).astype("float64")
    target = np.where(valid > 0, target, 0.0)
    return raw, probs, target, np.broadcast_to(valid, probs.shape).astype("float64")


def _image_weights(sample_weight, batch):
    return np.ones(batch) if sample_weight is None else np.asarray(sample_weight, "float64").reshape(batch)


def counts(target, probs, weights, per_image, squared=False, soft_labels=False):
    """`[(tp, fp, fn, tn, support) per class]` for each row (image or batch);
    `squared`: `fp = sum p^2 - tp`, `fn = sum t^2 - tp` (MONAI's
    `squared_pred`); `soft_labels`: `tp = sum min(p, t)`."""
    rows = range(len(target)) if per_image else [slice(None)]
    out = []
    for r in rows:
        t, p, w = target[r], probs[r], weights[r]
        row = []
        for c in range(t.shape[-1]):
            tc, pc, wc = t[..., c].ravel(), p[..., c].ravel(), w[..., c].ravel()
            tp = np.sum(wc * (np.minimum(tc, pc) if soft_labels and not squared else tc * pc))
            fp = np.sum(wc * pc ** (2 if squared else 1)) - tp
            fn = np.sum(wc * tc ** (2 if squared else 1)) - tp
            tn = np.sum(wc * (1 - tc) * (1 - pc))
            row.append((tp, fp, fn, tn, np.sum(wc * tc)))
        out.append(row)
    return out


def _finish(values, per_image):
    values = np.asarray(values, "float64")
    return values if per_image else values[0]


def _weights(target, valid, sample_weight):
    w = _image_weights(sample_weight, len(target))
    return valid * w.reshape((-1,) + (1,) * (valid.ndim - 1))


def chosen_classes(channels, classes=None, include_background=True):
    """`(C,)` 1 for each class a loss scores."""
    m = np.zeros(channels) if classes is not None else np.ones(channels)
    if classes is not None:
        m[list(classes)] = 1.0
    if not include_background:
        m[0] = 0.0
    return m


def class_mean(losses, supports, class_weights=None, classes=None, include_background=True, convention="smp"):
    """segmentation_models_pytorch: absent classes count 0, weighted mean
    `sum w l / sum w` over the chosen classes; MONAI: `mean(w l)` over the
    chosen classes (no weight when one class is chosen)."""
    losses, supports = np.asarray(losses, "float64"), np.asarray(supports)
    m = chosen_classes(len(losses), classes, include_background)
    w = np.ones(len(losses)) if class_weights is None else np.asarray(class_weights, "float64")
    if convention == "smp":
        losses = np.where(supports > 0, losses, 0.0)
        return np.sum(m * w * losses) / np.sum(m * w)
    if m.sum() == 1:
        w = np.ones_like(w)
    return np.sum(m * w * losses) / m.sum()


def _score(numerator, denominator, eps):
    return 1.0 if denominator == 0 else numerator / max(denominator, eps)


def overlap(kind, y_true, y_pred, mode, from_logits=False, ignore_index=None, per_image=False, smooth=0.0,
            data_format="channels_last", sample_weight=None, alpha=0.5, beta=0.5, gamma=1.0, weight_type="square",
            class_weights=None, classes=None, include_background=True, log_loss=False, squared=False,
            soft_labels=False, eps=EPS, convention="smp"):
    """Dice / Jaccard / focal Tversky (per class, then `class_mean`),
    generalized Dice (MONAI) and MCC (segmentation_models_pytorch)."""
    nr, dr = (smooth, smooth) if np.ndim(smooth) == 0 else smooth
    _, probs, target, valid = layout(y_true, y_pred, mode, from_logits, ignore_index, data_format)
    rows = counts(target, probs, _weights(target, valid, sample_weight), per_image, squared, soft_labels)
    out = []
    for row in rows:
        support = np.array([c[4] for c in row])
        if kind == "generalized_dice":
            m = chosen_classes(len(row), classes, include_background) > 0
            present = m & (support > 0)
            w = {"square": 1 / np.maximum(support, 1e-300) ** 2, "simple": 1 / np.maximum(support, 1e-300),
                 "uniform": np.ones_like(support)}[weight_type]
            if weight_type != "uniform":
                w = np.where(present, w, 0.0)
                w = np.where(m & ~present, w.max(), w)
            w = np.where(m, w, 0.0)
            num = 2 * sum(w[c] * row[c][0] for c in range(len(row))) + nr
            den = sum(w[c] * (2 * row[c][0] + row[c][1] + row[c][2]) for c in range(len(row))) + dr
            out.append(1 - _score(num, den, EPS))
            continue
        losses = []
        for tp, fp, fn, tn, _ in row:
            if kind == "mcc":
                tp, fp, fn, tn = tp + nr, fp + nr, fn + nr, tn + nr
                mcc = (tp * tn - fp * fn) / max(np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)), EPS)
                losses.append(1 - mcc)
                continue
            if kind == "dice":  # (2 TP + s) / (2 TP + FP + FN + s), denominator floored at 2 eps
                score = _score(2 * tp + nr, 2 * tp + fp + fn + dr, 2 * eps)
            elif kind == "jaccard":
                score = _score(tp + nr, tp + fp + fn + dr, eps)
            else:  # focal Tversky: alpha on FP, beta on FN
                score = _score(tp + nr, tp + alpha * fp + beta * fn + dr, eps)
            value = -np.log(max(score, eps)) if log_loss else 1 - score
            losses.append(max(value, 0.0) ** gamma if gamma != 1 else value)
        if kind == "mcc":
            out.append(np.mean(losses))
        else:
            out.append(class_mean(losses, support, class_weights, classes, include_background, convention))
    return _finish(out, per_image)


def crossentropy_map(raw, target, mode, from_logits, gamma=0.0, alpha=None, beta=None):
    """Per-pixel (multiclass, summed over the classes; `(..., 1)`) or
    per-entry cross-entropy terms."""
    if beta is not None:
        if mode != "multiclass" and from_logits:
            lp, lnp = log_sigmoid(raw), log_sigmoid(-raw)
        else:
            p = softmax(raw) if from_logits else raw
            p = np.clip(p, EPS, 1 - EPS)
            lp, lnp = np.log(p), np.log(1 - p)
        terms = -(beta * target * lp + (1 - beta) * (1 - target) * lnp)
        return terms.sum(-1, keepdims=True) if mode == "multiclass" else terms
    if mode == "multiclass":
        if from_logits:
            p = softmax(raw)
        else:
            p = np.clip(raw / raw.sum(-1, keepdims=True), EPS, 1 - EPS)
        terms = -target * np.log(p) * (1 - p) ** gamma
        if alpha is not None:
            terms = terms * np.asarray(alpha)
        return terms.sum(-1, keepdims=True)
    if from_logits:
        p = sigmoid(raw)
        bce = -(target * log_sigmoid(raw) + (1 - target) * log_sigmoid(-raw))
    else:
        p = np.clip(raw, EPS, 1 - EPS)
        bce = -(target * np.log(p) + (1 - target) * np.log(1 - p))
    pt = target * p + (1 - target) * (1 - p)
    terms = (1 - pt) ** gamma * bce
    if alpha is not None:
        terms = terms * (target * np.asarray(alpha) + (1 - target) * (1 - np.asarray(alpha)))
    return terms


def _row_means(values, w, per_image):
    rows = range(len(values)) if per_image else [slice(None)]
    out = []
    for r in rows:
        total = w[r].sum()
        out.append((w[r] * values[r]).sum() / total if total > 0 else 0.0)
    return out


def monai_term(raw, target, w, term, gamma, alpha, class_weights, chosen, label_map, per_image):
    """MONAI's pixel terms from logits: `DiceFocalLoss`'s sigmoid focal term
    per channel (its `FocalLoss`), `DiceCELoss`'s `CrossEntropyLoss(weight)`
    (several channels; a label map's mean weighted by the pixels' class
    weights over the batch, per image its even share) or
    `BCEWithLogitsLoss(pos_weight)` (one channel)."""
    channels = raw.shape[-1]
    cw = np.ones(channels) if class_weights is None else np.asarray(class_weights, "float64")
    if term == "focal":
        p = sigmoid(raw)
        bce = -(target * log_sigmoid(raw) + (1 - target) * log_sigmoid(-raw))
        terms = (1 - (target * p + (1 - target) * (1 - p))) ** gamma * bce
        if isinstance(alpha, (list, tuple)):
            terms = terms * np.where(target == 1, np.asarray(alpha), 1.0)
        elif alpha is not None:
            terms = terms * (target * alpha + (1 - target) * (1 - alpha))
        return _row_means(terms * cw, np.broadcast_to(w, terms.shape) * chosen, per_image)
    if channels == 1:
        terms = -(cw[0] * target * log_sigmoid(raw) + (1 - target) * log_sigmoid(-raw))
        return _row_means(terms, np.broadcast_to(w, terms.shape), per_image)
    terms = -(cw * target * log_softmax(raw)).sum(-1, keepdims=True)
    w = np.broadcast_to(w[..., :1], terms.shape)
    if not (label_map and class_weights is not None):
        return _row_means(terms, w, per_image)
    total = (w * (cw * target).sum(-1, keepdims=True)).sum() / (len(raw) if per_image else 1)
    rows = range(len(raw)) if per_image else [slice(None)]
    return [(w[r] * terms[r]).sum() / total if total > 0 else 0.0 for r in rows]


def compound(y_true, y_pred, mode, from_logits=False, ignore_index=None, per_image=False, smooth=0.0,
             data_format="channels_last", sample_weight=None, dice_weight=1.0, ce_weight=1.0, gamma=0.0,
             alpha=None, beta=None, crossentropy_weight=None, focal_weight=None, convention="smp", **scoring):
    """`dice_weight * Dice + ce_weight * mean over counted pixels of the (focal / balanced) CE`
    (`crossentropy_weight` / `focal_weight`: the classes' names for `ce_weight`); with
    `convention="monai"` the pixel term is `monai_term` (from logits)."""
    for named in (crossentropy_weight, focal_weight):
        ce_weight = ce_weight if named is None else named
    dice = overlap("dice", y_true, y_pred, mode, from_logits, ignore_index, per_image, smooth, data_format,
                   sample_weight, convention=convention, **scoring)
    raw, _, target, valid = layout(y_true, y_pred, mode, from_logits, ignore_index, data_format)
    w = _weights(target, valid, sample_weight)
    if convention == "monai":
        assert from_logits
        label_map = mode == "multiclass" and (np.ndim(y_true) < raw.ndim or np.shape(y_true)[-1] == 1)
        chosen = chosen_classes(raw.shape[-1], scoring.get("classes"), scoring.get("include_background", True))
        term = "focal" if focal_weight is not None else "crossentropy"
        means = monai_term(raw, target, w, term, gamma, alpha, scoring.get("class_weights"), chosen, label_map,
                           per_image)
        return dice_weight * dice + ce_weight * _finish(means, per_image)
    ce = crossentropy_map(raw, target, mode, from_logits, gamma, alpha, beta)
    if mode == "multiclass":
        w = w[..., :1]
    means = _row_means(ce, np.broadcast_to(w, ce.shape), per_image)
    return dice_weight * dice + ce_weight * _finish(means, per_image)


def lovasz_grad(gt_sorted, w_sorted):
    """Berman et al., Alg. 1, with each pixel's count scaled by its weight
    (weight 1 everywhere: segmentation_models_pytorch's `_lovasz_grad`)."""
    gts = np.sum(w_sorted * gt_sorted)
    intersection = gts - np.cumsum(w_sorted * gt_sorted)
    union = gts + np.cumsum(w_sorted * (1 - gt_sorted))
    jaccard = 1.0 - intersection / np.maximum(union, EPS)
    jaccard[1:] = jaccard[1:] - jaccard[:-1]
    return jaccard


def _lovasz_flat(errors, gt, w, hinge):
    keep = w > 0  # zero-weight pixels are removed, as segmentation_models_pytorch removes ignored ones
    errors, gt, w = errors[keep], gt[keep], w[keep]
    if errors.size == 0:
        return 0.0
    order = np.argsort(-errors, kind="stable")
    e = errors[order]
    return float(np.dot(np.maximum(e, 0) if hinge else e, lovasz_grad(gt[order], w[order])))


def lovasz(y_true, y_pred, mode, from_logits=False, ignore_index=None, per_image=False,
           data_format="channels_last", sample_weight=None):
    raw, probs, target, valid = layout(y_true, y_pred, mode, from_logits, ignore_index, data_format)
    w = _weights(target, valid, sample_weight)
    rows = range(len(raw)) if per_image else [slice(None)]
    out = []
    for r in rows:
        if mode == "multiclass":
            losses = []
            for c in range(target.shape[-1]):
                fg, wc = target[r][..., c].ravel(), w[r][..., c].ravel()
                if np.sum(wc * fg) == 0:  # classes="present"
                    continue
                losses.append(_lovasz_flat(np.abs(fg - probs[r][..., c].ravel()), fg, wc, hinge=False))
            out.append(np.mean(losses) if losses else 0.0)
        else:
            logits = raw[r] if from_logits else np.log(np.clip(raw[r], EPS, 1 - EPS) / (1 - np.clip(raw[r], EPS, 1 - EPS)))
            gt = target[r].ravel()
            errors = 1.0 - logits.ravel() * (2 * gt - 1)
            out.append(_lovasz_flat(errors, gt, w[r].ravel(), hinge=True))
    return _finish(out, per_image)
