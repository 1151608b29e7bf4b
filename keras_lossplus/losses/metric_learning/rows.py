"""Blocks of anchors (`Rows`) against the whole batch, and `per_anchor`, which
runs a per-anchor function over the batch in blocks of `chunk_size` anchors."""

from __future__ import annotations

from typing import Any, Callable, Optional

from keras import ops

from keras_lossplus import backend as klp_backend
from keras_lossplus.losses.metric_learning import references
from keras_lossplus.losses.metric_learning.distances import resolve_distance

Tensor = Any


class Rows:
    """A block of anchors (rows `start:stop` of the batch) against the whole batch.

    Attributes:
        embeddings: All embeddings `(B, D)`.
        anchors: The block's embeddings `(c, D)`.
        pos: `(c, B)` same label, not the anchor itself.
        neg: `(c, B)` different label.
        not_self: `(c, B)` every sample but the anchor.
        positives: `(c,)` int32 number of positives of each anchor.
        valid: `(c,)` the anchor has a positive and a negative.
        weights: `(c,)` the anchors' `sample_weight`, 0 for invalid anchors.
    """

    def __init__(
        self, embeddings: Tensor, labels: Tensor, start: Any = 0, stop: Any = None, sample_weight: Any = None
    ) -> None:
        self.embeddings = embeddings
        batch = ops.shape(embeddings)[0]
        self.start = start
        self.stop = batch if stop is None else stop
        whole = start == 0 and stop is None
        self.anchors = embeddings if whole else embeddings[start : self.stop]
        row_labels = labels if whole else labels[start : self.stop]
        masks = None if references.active() else klp_backend.anchor_masks(row_labels, labels, start)
        self._not_self = None
        if masks is None:
            self._not_self = references.valid_columns(self._others())
            same = ops.equal(ops.expand_dims(row_labels, 1), ops.expand_dims(labels, 0))
            self.pos = ops.logical_and(same, self._not_self)
            self.neg = references.valid_columns(ops.logical_not(same))
            self.positives = ops.sum(ops.cast(self.pos, "int32"), axis=1)
            self.valid = ops.logical_and(self.positives > 0, _any(self.neg))
        else:
            self.pos, self.neg, self.positives, self.valid = masks
        weights = ops.cast(self.valid, embeddings.dtype)
        if sample_weight is not None:
            weights = weights * ops.cast(self.row(ops.reshape(sample_weight, (-1,))), embeddings.dtype)
        self.weights = weights

    @property
    def not_self(self) -> Tensor:
        """`(c, B)` every sample but the anchor (built on first use where the
        backend gave the other masks)."""
        if self._not_self is None:
            self._not_self = self._others()
        return self._not_self

    def _others(self) -> Tensor:
        rows = ops.arange(self.start, self.stop)
        return ops.not_equal(ops.expand_dims(rows, 1), ops.expand_dims(ops.arange(ops.shape(self.embeddings)[0]), 0))

    def row(self, values: Tensor) -> Tensor:
        """The block's slice of a per-sample `(B, ...)` tensor."""
        return values[self.start : self.stop]

    def distances(self, distance: Any) -> Tensor:
        """`(c, B)` distances (a `Distance` or its name) from the anchors to
        every sample (0 to themselves)."""
        d = resolve_distance(distance).pairwise(self.anchors, self.embeddings)
        return ops.where(self.not_self, d, ops.zeros_like(d))

    def similarities(self, similarity: Any) -> Tensor:
        """`(c, B)` similarities (a `Distance` with `is_similarity`, or
        `"cosine"` / `"dot"`) of the anchors with every sample."""
        return resolve_distance(similarity, similarity=True).pairwise(self.anchors, self.embeddings)


def _any(mask: Tensor) -> Tensor:
    """`ops.any(mask, axis=1)` as a byte max: on torch's CPU several times
    faster than `any` of a `(c, B)` mask (and than a cast sum); the same
    under XLA."""
    return ops.max(ops.cast(mask, "uint8"), axis=1) > 0


def _block_bounds(batch: Optional[int], chunk_size: Optional[int]) -> list:
    if chunk_size is None or batch is None or chunk_size >= batch:
        return [(0, None)]
    return [(s, min(s + chunk_size, batch)) for s in range(0, batch, chunk_size)]


def per_anchor(
    embeddings: Tensor,
    labels: Tensor,
    chunk_size: Optional[int],
    fn: Callable[[Rows], tuple],
    sample_weight: Any = None,
) -> tuple:
    """Run `fn(rows) -> tuple of tensors` over the batch, in blocks of
    `chunk_size` anchors when given (and the batch size is static): `(c,)`
    results are joined into `(B,)` tensors, scalars are summed."""
    bounds = references.anchor_blocks(chunk_size) or _block_bounds(embeddings.shape[0], chunk_size)
    results = [fn(Rows(embeddings, labels, start, stop, sample_weight)) for start, stop in bounds]
    if len(results) == 1:
        return tuple(results[0])
    joined = []
    for parts in zip(*results):
        if len(parts[0].shape) == 0:
            total = parts[0]
            for part in parts[1:]:
                total = total + part
            joined.append(total)
        else:
            joined.append(ops.concatenate(parts, axis=0))
    return tuple(joined)
