"""Numpy (float64) references for the segmentation losses, written from the
papers and from segmentation_models_pytorch's / MONAI's definitions, with
explicit loops over images and classes where that is clearest."""

from __future__ import annotations

import numpy as np

from tests.losses.references import log_sigmoid, sigmoid, softmax

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


def counts(target, probs, weights, per_image):
    """`[(tp, fp, fn, tn, support) per class]` for each row (image or batch)."""
    rows = range(len(target)) if per_image else [slice(None)]
    out = []
    for r in rows:
        t, p, w = target[r], probs[r], weights[r]
        row = []
        for c in range(t.shape[-1]):
            tc, pc, wc = t[..., c].ravel(), p[..., c].ravel(), w[..., c].ravel()
            tp = np.sum(wc * tc * pc)
            fp = np.sum(wc * (1 - tc) * pc)
            fn = np.sum(wc * tc * (1 - pc))
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


def overlap(kind, y_true, y_pred, mode, from_logits=False, ignore_index=None, per_image=False, smooth=0.0,
            data_format="channels_last", sample_weight=None, alpha=0.5, beta=0.5, gamma=1.0, weight_type="square"):
    """Dice / Jaccard / focal Tversky (absent classes count 0, mean over the
    classes), generalized Dice (MONAI) and MCC (segmentation_models_pytorch)."""
    _, probs, target, valid = layout(y_true, y_pred, mode, from_logits, ignore_index, data_format)
    rows = counts(target, probs, _weights(target, valid, sample_weight), per_image)
    out = []
    for row in rows:
        if kind == "generalized_dice":
            support = np.array([c[4] for c in row])
            w = {"square": 1 / np.maximum(support, 1e-300) ** 2, "simple": 1 / np.maximum(support, 1e-300),
                 "uniform": np.ones_like(support)}[weight_type]
            w = np.where(support > 0, w, 0.0)
            w = np.where(support > 0, w, w.max())
            num = 2 * sum(w[c] * row[c][0] for c in range(len(row))) + smooth
            den = sum(w[c] * (2 * row[c][0] + row[c][1] + row[c][2]) for c in range(len(row))) + smooth
            out.append(1 - num / max(den, EPS))
            continue
        losses = []
        for tp, fp, fn, tn, support in row:
            if kind == "mcc":
                tp, fp, fn, tn = tp + smooth, fp + smooth, fn + smooth, tn + smooth
                mcc = (tp * tn - fp * fn) / max(np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)), EPS)
                losses.append(1 - mcc)
                continue
            if kind == "dice":
                score = (2 * tp + smooth) / max(2 * tp + fp + fn + smooth, EPS)
                value = 1 - score
            elif kind == "jaccard":
                value = 1 - (tp + smooth) / max(tp + fp + fn + smooth, EPS)
            else:  # focal Tversky: alpha on FP, beta on FN
                value = (1 - (tp + smooth) / max(tp + alpha * fp + beta * fn + smooth, EPS)) ** gamma
            losses.append(value if support > 0 else 0.0)
        out.append(np.mean(losses))
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


def compound(y_true, y_pred, mode, from_logits=False, ignore_index=None, per_image=False, smooth=0.0,
             data_format="channels_last", sample_weight=None, dice_weight=1.0, ce_weight=1.0, gamma=0.0,
             alpha=None, beta=None, crossentropy_weight=None, focal_weight=None):
    """`dice_weight * Dice + ce_weight * mean over counted pixels of the (focal / balanced) CE`
    (`crossentropy_weight` / `focal_weight`: the classes' names for `ce_weight`)."""
    for named in (crossentropy_weight, focal_weight):
        ce_weight = ce_weight if named is None else named
    dice = overlap("dice", y_true, y_pred, mode, from_logits, ignore_index, per_image, smooth, data_format,
                   sample_weight)
    raw, _, target, valid = layout(y_true, y_pred, mode, from_logits, ignore_index, data_format)
    ce = crossentropy_map(raw, target, mode, from_logits, gamma, alpha, beta)
    w = _weights(target, valid, sample_weight)
    if mode == "multiclass":
        w = w[..., :1]
    w = np.broadcast_to(w, ce.shape)
    rows = range(len(ce)) if per_image else [slice(None)]
    means = []
    for r in rows:
        total = w[r].sum()
        means.append((w[r] * ce[r]).sum() / total if total > 0 else 0.0)
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
