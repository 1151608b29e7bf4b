"""The table of typical user mistakes (docs/troubleshooting.md) as data: each
row makes the mistake, and the error must be of the listed type, name the
argument (the regex) and start with the message the docs page shows. The docs
table and this one list the same mistakes with the same exception types."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, NamedTuple

import keras
import numpy as np
import pytest

import keras_lossplus as klp
from keras_lossplus import layers as KL
from keras_lossplus import losses as L

PAGE = Path(__file__).resolve().parent.parent / "docs" / "troubleshooting.md"

EMB = np.random.default_rng(0).normal(size=(4, 3)).astype("float32")
LABELS = np.array([0, 0, 1, 1], "int32")


class Mistake(NamedTuple):
    mistake: str  # the first column of the docs table, verbatim
    make: Callable[[], object]
    error: type
    message: str  # a regex the message must match (it names the argument)


def _model() -> klp.MultiOutputModel:
    x = keras.Input((3,))
    outputs = {"a": keras.layers.Dense(1, name="a")(x), "b": keras.layers.Dense(1, name="b")(x)}
    return klp.MultiOutputModel(x, outputs)


def _float_labels(value: float) -> np.ndarray:
    y = LABELS.astype("float32")
    y[1] = value
    return y


TABLE = [
    Mistake(
        "One-hot labels to an in-batch loss (`TripletLoss` with `y_true` of shape `(B, C)`)",
        lambda: L.TripletLoss()(np.eye(4, 3, dtype="float32"), EMB),
        ValueError, r"`y_true` must hold one integer class label per sample.*one-hot.*argmax",
    ),
    Mistake(
        "A NaN label (a missing value) to a label-based loss (`TripletLoss`, eager)",
        lambda: L.TripletLoss()(_float_labels(np.nan), EMB),
        ValueError, r"`y_true` must hold integer class labels.*e\.g\. \[nan\]",
    ),
    Mistake(
        "Fractional ranks to an ordinal loss (`CoralLoss` with `y_true=0.5`)",
        lambda: L.CoralLoss()(np.array([0.0, 0.5, 1.0, 3.0], "float32"), EMB),
        ValueError, r"`y_true` must hold integer class labels.*e\.g\. \[0\.5\]",
    ),
    Mistake(
        "Labels and embeddings of different batch sizes",
        lambda: L.TripletLoss()(LABELS[:3], EMB),
        ValueError, r"`y_true` and `y_pred` must have the same batch size.*y_true\.shape=\(3,\), y_pred\.shape=\(4, 3\)",
    ),
    Mistake(
        "Integer `y_pred` (an argmax fed to the loss, or `y_true` and `y_pred` swapped)",
        lambda: L.TripletLoss()(LABELS, EMB.astype("int32")),
        TypeError, r"Argument `y_pred` must be a floating-point tensor.*dtype=int32",
    ),
    Mistake(
        'A factor passed as a string to a loss (`FocalLoss(gamma="2")`)',
        lambda: L.FocalLoss(gamma="2"),
        TypeError, r"Argument `gamma` must be a number in \[0\.0, inf\)\. Received: gamma='2'",
    ),
    Mistake(
        'A factor passed as a string to a penalty layer (`L1Penalty("1e-4")`)',
        lambda: KL.L1Penalty("1e-4"),
        TypeError, r"Argument `factor` must be a number or a non-trainable scalar keras\.Variable.*factor='1e-4'",
    ),
    Mistake(
        'A string `"False"` for a boolean option (`TripletLoss(soft="False")`)',
        lambda: L.TripletLoss(soft="False"),
        TypeError, r"Argument `soft` must be True or False\. Received: soft='False'",
    ),
    Mistake(
        'An unknown option value (`TripletLoss(mining="semi-hard")`)',
        lambda: L.TripletLoss(mining="semi-hard"),
        ValueError, r"Invalid value for argument `mining`\. Expected one of \(.*'semihard'.*\)\. Received: mining='semi-hard'",
    ),
    Mistake(
        "A number out of range (`TripletLoss(margin=-1.0)`)",
        lambda: L.TripletLoss(margin=-1.0),
        ValueError, r"Argument `margin` must be in \[0\.0, inf\)\. Received: margin=-1\.0",
    ),
    Mistake(
        "`PinballLoss` with 3 quantiles and a model of 2 outputs",
        lambda: L.PinballLoss(quantiles=[0.1, 0.5, 0.9])(np.zeros((4, 2), "float32"), np.zeros((4, 2), "float32")),
        ValueError, r"`y_pred` must have one column per quantile.*quantiles=\[0\.1, 0\.5, 0\.9\]",
    ),
    Mistake(
        'A segmentation loss with `mode="binary"` on a 3-channel output',
        lambda: L.DiceLoss(mode="binary")(np.zeros((1, 2, 2), "float32"), np.full((1, 2, 2, 3), 0.5, "float32")),
        ValueError, r"mode='binary' needs one channel in `y_pred`; received 3 channels",
    ),
    Mistake(
        "Embeddings that blew up (magnitude 1e30) to a loss on squared distances (`SoftNearestNeighborLoss`, eager)",
        lambda: L.SoftNearestNeighborLoss()(LABELS, 1e30 * EMB),
        ValueError, r"soft_nearest_neighbor_loss: `y_pred` holds values of magnitude up to .*; this loss takes their squares",
    ),
    Mistake(
        "Float labels to `CenterPenalty`",
        lambda: KL.CenterPenalty(num_classes=2)([EMB, LABELS.astype("float32")]),
        TypeError, r"CenterPenalty needs integer class labels: its second input, `labels`.*dtype=float32",
    ),
    Mistake(
        "A `MultiOutputModel` loss dict with a key that is not an output name",
        lambda: _model().compile("sgd", loss={"a": "mse", "c": "mse"}),
        ValueError, r"`loss` names unknown outputs \['c'\]\. The model's outputs are \['a', 'b'\]",
    ),
    Mistake(
        "A `MultiOutputModel` `loss_weights` dict with a key that is not an output name",
        lambda: _model().compile("sgd", loss={"a": "mse", "b": "mse"}, loss_weights={"a": 1.0, "z": 1.0}),
        ValueError, r"`loss_weights` names unknown outputs \['z'\]",
    ),
    Mistake(
        'An unknown weighting name (`weighting="uncertanity"`)',
        lambda: _model().compile("sgd", loss={"a": "mse", "b": "mse"}, weighting="uncertanity"),
        ValueError, r"Invalid value for argument `weighting`\. Expected one of \(.*'uncertainty'.*\).*"
                    r"Received: weighting='uncertanity'",
    ),
]


def docs_table() -> dict:
    """`{mistake: (exception type name, quoted message start)}` from the docs page's table."""
    rows = {}
    for line in PAGE.read_text(encoding="utf-8").splitlines():
        if not line.startswith("| ") or line.startswith(("| mistake |", "| ---")):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        assert len(cells) == 3, f"a row of the mistakes table needs 3 cells: {line}"
        seen = re.fullmatch(r'\*\*(\w+)\*\*: "(.*)"', cells[1])
        assert seen, f"'what you see' must read **ErrorType**: \"start of the message\": {cells[1]}"
        rows[cells[0]] = (seen.group(1), seen.group(2))
    return rows


@pytest.mark.parametrize("row", TABLE, ids=[f"{i:02d}" for i in range(len(TABLE))])
def test_each_mistake_gives_its_message(row):
    with pytest.raises(row.error) as info:
        row.make()
    message = str(info.value)
    assert type(info.value) is row.error
    assert re.search(row.message, message), message
    assert re.search(r"`\w+`|labels", message), f"the message names no argument: {message}"
    _, shown = docs_table()[row.mistake]
    # (Keras wraps an error raised in a layer's call() in its own text: the message is inside)
    assert shown in re.sub(r"\x1b\[[0-9;]*m", "", message), f"docs/troubleshooting.md shows {shown!r}; the message is {message!r}"


def test_docs_table_and_test_table_agree():
    docs = docs_table()
    tested = {row.mistake: row.error.__name__ for row in TABLE}
    assert len(tested) == len(TABLE), "a mistake is listed twice"
    assert set(docs) == set(tested), (
        f"only in docs/troubleshooting.md: {sorted(set(docs) - set(tested))}; "
        f"only in tests/test_user_mistakes.py: {sorted(set(tested) - set(docs))}"
    )
    assert {m: docs[m][0] for m in docs} == tested


def test_the_table_covers_the_issue():
    text = " ".join(docs_table())
    for needle in ("One-hot", "loss dict", "weighting name", "Integer `y_pred`", "as a string", "batch sizes",
                   "PinballLoss", '"False"', "NaN"):
        assert needle in text, needle
