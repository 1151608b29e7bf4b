"""The linear cross-entropy's chunk on eager torch, in place.

`keras_lossplus.losses.language.chunks` builds each chunk's `(chunk, V)`
logits and their gradient with `keras.ops`, one new tensor per operation
(about ten passes over the logits). Here the logits' buffer is turned into
their gradient in place (`addmm`, `exp_`, `scatter_add_`), the softmax's
normaliser from the same exponentials: about as many passes as torch's own
`cross_entropy` forward and backward take. Runs without autograd
(inside the loss's custom gradient).
"""

from typing import Any, Optional

import torch


def chunk_loss_and_logit_grad(h: Any, kernel: Any, bias: Any, labels: Any, coef: Any, transpose_kernel: bool,
                              label_smoothing: float, z_loss: float, logit_soft_cap: Optional[float],
                              dtype: Any) -> tuple:
    """`(loss, g)` of one chunk: per-token losses `(chunk,)` and
    `g = coef * dloss/dlogits` `(chunk, V)` (the formulas of
    `chunks.loss_terms` and `chunks._dlogits`)."""
    dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    weight = kernel.t() if transpose_kernel else kernel
    if h.dtype == weight.dtype == bias.dtype == dtype:
        z = torch.addmm(bias, h, weight)
    else:  # half-precision inputs: the matmul in their dtype (as the keras.ops path), the rest in `dtype`
        common = torch.promote_types(h.dtype, weight.dtype)
        z = torch.matmul(h.to(common), weight.to(common)).to(dtype).add_(bias.to(dtype))
    vocabulary = z.shape[-1]
    slope = None
    if logit_soft_cap is not None:
        z.div_(logit_soft_cap).tanh_()
        slope = torch.mul(z, z).neg_().add_(1.0)
        z.mul_(logit_soft_cap)
    index = labels.long().unsqueeze(-1)
    picked = z.gather(-1, index).squeeze(-1)
    total = z.sum(-1) if label_smoothing else None
    top = z.amax(-1, keepdim=True)
    e = z.sub_(top).exp_()  # the logits' buffer now holds exp(z - max)
    norm = e.sum(-1)
    lse = top.squeeze(-1) + norm.log()
    loss = lse - (1.0 - label_smoothing) * picked
    if label_smoothing:
        loss = loss - label_smoothing / vocabulary * total
    if z_loss:
        loss = loss + z_loss * lse.square()
    scale = coef if not z_loss else coef * (1.0 + 2.0 * z_loss * lse)
    g = e.mul_((scale / norm).unsqueeze(-1))  # softmax * scale
    g.scatter_add_(-1, index, (-(1.0 - label_smoothing) * coef).unsqueeze(-1).to(g.dtype))
    if label_smoothing:
        g.sub_((coef * (label_smoothing / vocabulary)).unsqueeze(-1))
    if slope is not None:
        g.mul_(slope)
    return loss, g
