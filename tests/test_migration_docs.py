"""docs/migration.md names every loss of tensorflow-addons, TensorFlow
Similarity and pytorch-metric-learning, and every keras_lossplus (and Keras)
name it mentions exists.

The page's peer tables have four columns, `| <namespace> | keras_lossplus |
status | notes |`, the namespace (e.g. `pml.losses`) heading the first one and
the peer's names in backquotes in each row's first cell. Everything here reads
the markdown file: no backend computation, so the test runs the same under
every `KERAS_BACKEND`. Only the pytorch-metric-learning check imports the
peer (it is in the `test` extra).
"""

from __future__ import annotations

import inspect
import re
import unicodedata
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
PAGE = DOCS / "migration.md"

STATUSES = {"same", "close", "Keras", "not covered"}
NONE_CELL = "—"

# tensorflow-addons 0.23: every name imported by
# tensorflow_addons/losses/__init__.py (github.com/tensorflow/addons, master).
TFA_LOSSES = {
    "contrastive_loss", "ContrastiveLoss",
    "sigmoid_focal_crossentropy", "SigmoidFocalCrossEntropy",
    "giou_loss", "GIoULoss",
    "lifted_struct_loss", "LiftedStructLoss",
    "sparsemax_loss", "SparsemaxLoss",
    "triplet_semihard_loss", "triplet_hard_loss", "TripletSemiHardLoss", "TripletHardLoss",
    "pinball_loss", "PinballLoss",
    "npairs_loss", "NpairsLoss", "npairs_multilabel_loss", "NpairsMultilabelLoss",
    "WeightedKappaLoss",
}

# TensorFlow Similarity 0.18.0.dev13 (github.com/tensorflow/similarity, branches
# master and development): the names imported by
# tensorflow_similarity/losses/__init__.py ...
TFSIM_LOSSES = {
    "Barlow", "CircleLoss", "LiftedStructLoss", "MetricLoss", "MultiNegativesRankLoss",
    "MultiSimilarityLoss", "PNLoss", "SimCLRLoss", "SimSiamLoss", "SoftNearestNeighborLoss",
    "TripletLoss", "VicReg", "XBM",
}
# ... the distance classes imported by tensorflow_similarity/distances/__init__.py ...
TFSIM_DISTANCES = {
    "CosineDistance", "Distance", "EuclideanDistance", "SquaredEuclideanDistance",
    "InnerProductSimilarity", "ManhattanDistance", "SNRDistance",
}
# ... and the sampler classes imported by tensorflow_similarity/samplers/__init__.py.
TFSIM_SAMPLERS = {
    "MultiShotFileSampler", "MultiShotMemorySampler", "SingleShotMemorySampler",
    "TFDataSampler", "TFDatasetMultiShotMemorySampler", "TFRecordDatasetSampler",
}

# pytorch-metric-learning modules whose every class must have a row (found by
# introspecting the installed package), by the namespace heading their table.
PML_MODULES = {
    "pml.losses": "pytorch_metric_learning.losses",
    "pml.miners": "pytorch_metric_learning.miners",
    "pml.reducers": "pytorch_metric_learning.reducers",
    "pml.distances": "pytorch_metric_learning.distances",
    "pml.regularizers": "pytorch_metric_learning.regularizers",
    "pml.samplers": "pytorch_metric_learning.samplers",
    "pml.utils.distributed": "pytorch_metric_learning.utils.distributed",
}
# keras-rs modules whose every exported name must have a row, by the namespace heading their table.
KERAS_RS_MODULES = {
    "keras_rs.losses": "keras_rs.losses",
    "keras_rs.metrics": "keras_rs.metrics",
}
# The segmentation peers' losses that docs/migration.md maps (their other losses are
# not overlap losses: smp's focal / BCE / CE rows live in docs/losses.md).
SEGMENTATION_TABLES = {
    "smp.losses": {"DiceLoss", "JaccardLoss", "TverskyLoss", "MCCLoss", "LovaszLoss"},
    "monai.losses": {"DiceLoss", "TverskyLoss", "GeneralizedDiceLoss", "DiceCELoss", "DiceFocalLoss",
                     "GeneralizedDiceFocalLoss", "GeneralizedWassersteinDiceLoss"},
}
NAMESPACES = {"tfa.losses", "tfsim.losses", "tfsim.distances", "tfsim.samplers", *PML_MODULES, *KERAS_RS_MODULES,
              *SEGMENTATION_TABLES}


# --------------------------------------------------------------------------- parsing


def _without_code_blocks(text: str) -> str:
    return re.sub(r"^```.*?^```", "", text, flags=re.DOTALL | re.MULTILINE)


def _code_blocks(text: str) -> list:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE)


def _cells(line: str) -> list:
    line = line.strip().removeprefix("|")
    if line.endswith("|") and not line.endswith("\\|"):
        line = line[:-1]
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", line)]


def _tables(text: str) -> list:
    """Every pipe table outside code blocks: `(header, rows)`, cells stripped."""
    tables, block = [], []
    for line in _without_code_blocks(text).splitlines() + [""]:
        if line.lstrip().startswith("|"):
            block.append(_cells(line))
            continue
        if block:
            assert len(block) >= 2 and all(re.fullmatch(r":?-{3,}:?", c) for c in block[1]), block[:2]
            tables.append((block[0], block[2:]))
            block = []
    return tables


def _namespace(header_cell: str) -> str:
    return header_cell.strip("`")


def _peer_tables() -> dict:
    """Namespace -> rows of the table it heads."""
    found = {}
    for header, rows in _tables(PAGE.read_text(encoding="utf-8")):
        namespace = _namespace(header[0])
        if namespace in NAMESPACES:
            assert namespace not in found, f"two tables for {namespace}"
            assert header[1:] == ["keras_lossplus", "status", "notes"], header
            found[namespace] = rows
    return found


def _names(cell: str) -> list:
    return re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)`", cell)


def _names_by_namespace() -> dict:
    return {ns: [n for row in rows for n in _names(row[0])] for ns, rows in _peer_tables().items()}


# --------------------------------------------------------------------------- the tables


def test_every_namespace_has_one_well_formed_table():
    tables = _peer_tables()
    assert set(tables) == NAMESPACES
    for namespace, rows in tables.items():
        assert rows, namespace
        names = []
        for row in rows:
            assert len(row) == 4, (namespace, row)
            peer, ours, status, notes = row
            assert _names(peer), f"{namespace}: no `name` in {peer!r}"
            names += _names(peer)
            assert status in STATUSES, (namespace, peer, status)
            if status == "not covered":
                assert ours == NONE_CELL, (namespace, peer, ours)
                assert len(notes) > 10, f"{namespace} {peer}: say the nearest alternative or why"
            else:
                assert ours != NONE_CELL and ours, (namespace, peer)
            if status in ("close", "Keras"):
                assert notes, f"{namespace} {peer}: say how it differs"
        assert len(names) == len(set(names)), f"{namespace}: a name twice"


def test_tensorflow_addons_names():
    assert set(_names_by_namespace()["tfa.losses"]) == TFA_LOSSES


def test_tensorflow_similarity_names():
    names = _names_by_namespace()
    assert set(names["tfsim.losses"]) == TFSIM_LOSSES
    assert set(names["tfsim.distances"]) == TFSIM_DISTANCES
    assert set(names["tfsim.samplers"]) == TFSIM_SAMPLERS


def _pml_classes(module_name: str) -> set:
    import importlib

    module = importlib.import_module(module_name)
    return {
        name
        for name, obj in vars(module).items()
        if inspect.isclass(obj) and not name.startswith("_") and obj.__module__.startswith("pytorch_metric_learning")
        # utils.distributed also imports the base classes it checks against
        and (not module_name.endswith(".distributed") or obj.__module__ == module_name)
    }


def test_pytorch_metric_learning_names():
    pytest.importorskip("pytorch_metric_learning")
    names = _names_by_namespace()
    for namespace, module_name in PML_MODULES.items():
        installed = _pml_classes(module_name)
        assert installed, module_name
        documented = set(names[namespace])
        assert installed - documented == set(), f"{module_name}: classes without a row in docs/migration.md"
        assert documented - installed == set(), f"{namespace}: rows naming no class of {module_name}"


def test_segmentation_peer_names():
    names = _names_by_namespace()
    for namespace, expected in SEGMENTATION_TABLES.items():
        assert set(names[namespace]) == expected, namespace


def test_keras_rs_names():
    pytest.importorskip("keras_rs")
    import importlib

    names = _names_by_namespace()
    for namespace, module_name in KERAS_RS_MODULES.items():
        exported = {n for n in dir(importlib.import_module(module_name)) if not n.startswith("_")}
        assert exported, module_name
        assert set(names[namespace]) == exported, f"{namespace}: rows and the exported names differ"


# --------------------------------------------------------------------------- our names


_REF = re.compile(r"(?<![\w.])(klp|keras)((?:\.[A-Za-z_][A-Za-z0-9_]*)+)")
_CALL = re.compile(r"(?<![\w.])((?:klp|keras)(?:\.[A-Za-z_][A-Za-z0-9_]*)+)\(([^()]*)\)")


def _texts() -> list:
    """The table cells and the python code blocks of the page."""
    text = PAGE.read_text(encoding="utf-8")
    cells = [cell for header, rows in _tables(text) for row in [header, *rows] for cell in row]
    return cells + _code_blocks(text)


def _resolve(path: str):
    import keras

    import keras_lossplus as klp

    root, *attrs = path.split(".")
    obj = {"klp": klp, "keras": keras}[root]
    for attr in attrs:
        assert hasattr(obj, attr), f"{path}: no attribute {attr!r}"
        obj = getattr(obj, attr)
    return obj


def _keywords(obj) -> set:
    """Keyword arguments `obj(...)` accepts; for classes, those of every
    `__init__` up the MRO when they pass `**kwargs` on."""
    if not inspect.isclass(obj):
        return set(inspect.signature(obj).parameters)
    names = set()
    for cls in obj.__mro__:
        init = cls.__dict__.get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters
        names |= {n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
            break
    return names


def test_every_keras_lossplus_and_keras_name_exists():
    refs = {root + rest for text in _texts() for root, rest in _REF.findall(text)}
    assert any(r.startswith("klp.losses.") for r in refs)
    for ref in sorted(refs):
        _resolve(ref)


def test_keyword_arguments_exist():
    checked = 0
    for text in _texts():
        for path, args in _CALL.findall(text):
            keywords = re.findall(r"(?:^|,)\s*([A-Za-z_]\w*)\s*=(?!=)", args)
            if not keywords:
                continue
            accepted = _keywords(_resolve(path))
            unknown = set(keywords) - accepted
            assert not unknown, f"{path}({args}): {sorted(unknown)} not in its signature"
            checked += 1
    assert checked > 20


# --------------------------------------------------------------------------- links


def _slug(heading: str) -> str:
    """Python-Markdown's `toc` slug of a heading's text (MkDocs' default)."""
    text = re.sub(r"`([^`]*)`", r"\1", heading)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def _anchors(path: Path) -> set:
    text = _without_code_blocks(path.read_text(encoding="utf-8"))
    return {_slug(m) for m in re.findall(r"^#{1,6}\s+(.*?)\s*#*\s*$", text, flags=re.MULTILINE)}


def test_links_are_relative_and_resolve():
    """MkDocs `--strict` fails on a link to a missing page or anchor."""
    links = re.findall(r"\]\(([^)\s]+)\)", _without_code_blocks(PAGE.read_text(encoding="utf-8")))
    assert links
    for link in links:
        assert not link.startswith(("http:", "https:", "/")), f"use a relative link: {link}"
        target, _, anchor = link.partition("#")
        path = DOCS / target if target else PAGE
        assert path.is_file() and path.resolve().is_relative_to(DOCS.resolve()), f"{link}: no such page in docs/"
        if anchor:
            assert anchor in _anchors(path), f"{link}: no such heading in {path.name}"
