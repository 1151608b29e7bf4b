"""The API reference of the docs site (docs/api/*.md, mkdocstrings `:::`
directives) covers every public class and function, and every directive
names an object that imports. Reads the markdown only: mkdocs is not needed
here (scripts/docs.sh builds the site with --strict)."""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import pytest

import keras_lossplus
from keras_lossplus import layers, losses, metrics, multi_output, ops, schedules, weighting

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
API = DOCS / "api"
DIRECTIVE = re.compile(r"^:::\s+(\S+)\s*$", re.MULTILINE)


def _defined_here(module):
    """Public functions and classes defined in a module without `__all__`."""
    return [
        name
        for name, obj in vars(module).items()
        if not name.startswith("_")
        and (inspect.isfunction(obj) or inspect.isclass(obj))
        and obj.__module__ == module.__name__
    ]


def public_objects():
    """`{"module.name": object}` for every public class and function."""
    found = {}
    namespaces = [
        (keras_lossplus, keras_lossplus.__all__),
        (losses, losses.__all__),
        (layers, layers.__all__),
        (metrics, metrics.__all__),
        (weighting, weighting.__all__),
        (multi_output, multi_output.__all__),
        (ops, getattr(ops, "__all__", None) or _defined_here(ops)),
        (schedules, getattr(schedules, "__all__", None) or _defined_here(schedules)),
    ]
    for module, names in namespaces:
        for name in names:
            obj = getattr(module, name)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                found[f"{module.__name__}.{name}"] = obj
    return found


def directives():
    """`[(page, target)]` for every `::: target` line under docs/api/."""
    pages = sorted(API.glob("*.md"))
    assert pages, f"no API reference pages under {API}"
    return [(page.name, target) for page in pages for target in DIRECTIVE.findall(page.read_text(encoding="utf-8"))]


def resolve(path):
    """The object a dotted path names: the longest importable module
    prefix, then attributes."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(f"no importable module in {path!r}")


@pytest.mark.parametrize("page, target", directives(), ids=lambda v: str(v))
def test_every_directive_imports(page, target):
    assert target.startswith("keras_lossplus"), f"{page}: `::: {target}` is not in keras_lossplus"
    try:
        resolve(target)
    except (ImportError, AttributeError) as error:
        pytest.fail(f"docs/api/{page}: `::: {target}` does not import: {error}")


def test_every_public_name_is_in_the_api_reference():
    documented = set()
    for _, target in directives():
        try:
            documented.add(id(resolve(target)))
        except (ImportError, AttributeError):
            pass  # reported by test_every_directive_imports
    missing = sorted(name for name, obj in public_objects().items() if id(obj) not in documented)
    assert not missing, (
        "public names missing from the API reference (add a `::: <name>` line to a page "
        f"under docs/api/): {missing}"
    )


def test_no_object_is_documented_twice():
    seen = {}
    for page, target in directives():
        try:
            obj = resolve(target)
        except (ImportError, AttributeError):
            continue
        if inspect.ismodule(obj):
            continue  # a module's own docstring (members: false)
        seen.setdefault(id(obj), []).append(f"{page}: {target}")
    twice = [places for places in seen.values() if len(places) > 1]
    assert not twice, f"documented more than once (duplicate anchors): {twice}"


def _docstrings():
    """`(name, docstring)` of every public object and of its public methods."""
    for name, obj in public_objects().items():
        yield name, inspect.cleandoc(obj.__doc__ or "")  # its own, not an inherited one
        if inspect.isclass(obj):
            for attr, member in vars(obj).items():
                if not attr.startswith("_") and inspect.isfunction(member):
                    yield f"{name}.{attr}", inspect.cleandoc(member.__doc__ or "")


def test_examples_sections_render_as_code():
    """The API reference (griffe's Google-style parser) renders a doctest as
    code only under an `Examples:` header with the `>>>` lines indented below
    it; `Example:`, or `>>>` at the header's level, shows up as plain text."""
    bad = []
    for name, doc in _docstrings():
        lines = doc.splitlines()
        for i, line in enumerate(lines):
            header = re.match(r"^(\s*)(Examples?):\s*$", line)
            if not header:
                continue
            following = next((l for l in lines[i + 1 :] if l.strip()), "")
            indent = len(header.group(1))
            if header.group(2) != "Examples" or len(following) - len(following.lstrip()) <= indent:
                bad.append(name)
    assert not bad, f"write `Examples:` and indent the `>>>` lines under it in: {bad}"


def test_every_page_is_in_the_nav():
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    pages = [p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")]
    missing = sorted(p for p in pages if not re.search(rf"(^|[\s:]){re.escape(p)}\s*$", nav, re.MULTILINE))
    assert not missing, f"pages under docs/ missing from the nav in mkdocs.yml: {missing}"
