"""Eager PyTorch kernels of the segmentation losses' soft confusion counts.

`TP_c = sum_i p_ic t_ic`, `sum_i p_ic` and `sum_i t_ic` per class (per image
or over the batch), without the full-size temporaries that eager autograd
makes of `sum(t * p)` (the product, then in the backward pass one tensor per
term): on the CPU, writing those tensors (and faulting in their fresh memory)
costs more than the arithmetic.

* label maps: `TP` gathers each pixel's probability of its own class and
  adds it into its class (`scatter_add`), the support is a per-class count:
  no one-hot tensor at all;
* one-hot (or soft) targets: `TP` is the diagonal of `T^T P` per image, one
  batched matmul that reads both tensors once;
* the backward pass writes the probabilities' gradient once:
  `g_pred + t * g_tp` (`addcmul`), or `g_pred` plus `g_tp` scattered at each
  pixel's label.

Each returns `None` (the caller then runs the `keras.ops` code) for tensors
it does not take: not contiguous (channels-first views), or not float32.
"""

from __future__ import annotations

from typing import Any, Optional

import torch

from keras_lossplus.backend.torch_eager import is_compiling

Tensor = Any


def _applies(probs: Tensor) -> bool:
    return probs.dtype == torch.float32 and probs.is_contiguous() and not is_compiling()


def _rows(x: Tensor, per_image: bool) -> Tensor:
    """`(R, P, C)`: one row per image (`per_image`) or one for the batch."""
    return x.reshape(x.shape[0] if per_image else 1, -1, x.shape[-1])


def _shaped(x: Tensor, per_image: bool) -> Tensor:
    return x if per_image else x[0]


class _LabelCounts(torch.autograd.Function):
    @staticmethod
    def forward(ctx, labels, probs, per_image):
        p = _rows(probs, per_image)
        index = labels.reshape(p.shape[0], p.shape[1], 1)
        own = p.gather(2, index)  # each pixel's probability of its own class
        tp = torch.zeros((p.shape[0], p.shape[2]), dtype=p.dtype, device=p.device)
        tp.scatter_add_(1, index[:, :, 0], own[:, :, 0])
        support = torch.zeros_like(tp).scatter_add_(1, index[:, :, 0], torch.ones_like(own[:, :, 0]))
        ctx.save_for_backward(index)
        ctx.shape, ctx.per_image = probs.shape, per_image
        return _shaped(tp, per_image), _shaped(p.sum(1), per_image), _shaped(support, per_image)

    @staticmethod
    def backward(ctx, g_tp, g_pred, g_support):
        (index,) = ctx.saved_tensors
        rows = index.shape[0]
        g_tp, g_pred = g_tp.reshape(rows, 1, -1), g_pred.reshape(rows, 1, -1)
        grad = g_pred.expand(rows, index.shape[1], g_pred.shape[2]).contiguous()
        grad.scatter_add_(2, index, g_tp.expand(rows, index.shape[1], g_tp.shape[2]).gather(2, index))
        return None, grad.reshape(ctx.shape), None


class _SoftCounts(torch.autograd.Function):
    @staticmethod
    def forward(ctx, target, probs, per_image):
        t, p = _rows(target, per_image), _rows(probs, per_image)
        tp = torch.bmm(t.transpose(1, 2), p).diagonal(dim1=1, dim2=2)  # reads t and p once
        ctx.save_for_backward(target, probs)
        ctx.per_image = per_image
        return _shaped(tp, per_image), _shaped(p.sum(1), per_image), _shaped(t.sum(1), per_image)

    @staticmethod
    def backward(ctx, g_tp, g_pred, g_support):
        target, probs = ctx.saved_tensors
        t, p = _rows(target, ctx.per_image), _rows(probs, ctx.per_image)
        rows = t.shape[0]
        g_tp, g_pred, g_support = (g.reshape(rows, 1, -1) for g in (g_tp, g_pred, g_support))
        grad_p = torch.addcmul(g_pred, t, g_tp).reshape(probs.shape)
        grad_t = None
        if ctx.needs_input_grad[0]:  # soft targets that carry a gradient
            grad_t = torch.addcmul(g_support, p, g_tp).reshape(target.shape)
        return grad_t, grad_p, None


def label_counts(labels: Tensor, probs: Tensor, per_image: bool) -> Optional[tuple]:
    """`(TP, sum p, support)` per class of integer `labels` `(B, *spatial)`
    and class probabilities `probs` `(B, *spatial, C)`: `(B, C)` per image,
    else `(C,)`."""
    if not _applies(probs):
        return None
    return _LabelCounts.apply(labels.to(torch.int64), probs, bool(per_image))


def soft_counts(target: Tensor, probs: Tensor, per_image: bool) -> Optional[tuple]:
    """`(TP, sum p, sum t)` per class of a target `(B, *spatial, C)` (one-hot,
    0/1 or soft) and `probs` of the same shape; shapes as `label_counts`."""
    if not (_applies(probs) and target.dtype == probs.dtype and target.is_contiguous()
            and target.shape == probs.shape):
        return None
    return _SoftCounts.apply(target, probs, bool(per_image))
