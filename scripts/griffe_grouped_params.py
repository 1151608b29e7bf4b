"""Griffe extension for the docs site (mkdocs.yml loads it): expands the
grouped parameter entries of the package's Google-style docstrings,

    Args:
        reduction, name, dtype: As for every `keras.losses.Loss`.

into one entry per name, each with the same description, so that the API
reference shows every parameter with its type and default and griffe can
check each name against the signature (its Google parser reads a grouped
entry as one unknown parameter called "reduction, name, dtype").

Only the docs build uses this file; the package does not import it.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_SECTION = re.compile(
    r"^(?P<indent>\s*)(Args|Arguments|Params|Parameters|Keyword Args|Keyword Arguments|Other Parameters):\s*$"
)
_GROUPED = re.compile(r"^(?P<indent>\s+)(?P<names>[A-Za-z_]\w*(?:\s*,\s*[A-Za-z_]\w*)+)\s*:(?P<rest>.*)$")


def expand_grouped_params(text: str) -> str:
    """`text` with every grouped entry of its parameter sections split."""
    lines = text.split("\n")
    out: list[str] = []
    section_indent = None  # indentation of the current parameter section's header
    i = 0
    while i < len(lines):
        line = lines[i]
        header = _SECTION.match(line)
        if header:
            section_indent = len(header.group("indent"))
            out.append(line)
            i += 1
            continue
        if section_indent is not None and line.strip():
            indent = len(line) - len(line.lstrip())
            if indent <= section_indent:
                section_indent = None
        grouped = _GROUPED.match(line) if section_indent is not None else None
        if grouped is None:
            out.append(line)
            i += 1
            continue
        item_indent = len(grouped.group("indent"))
        body = [grouped.group("rest")]
        i += 1
        # continuation lines: indented deeper than the entry, or blank lines inside it
        while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > item_indent):
            if not lines[i].strip() and (i + 1 >= len(lines) or not _deeper(lines[i + 1], item_indent)):
                break
            body.append(lines[i])
            i += 1
        for name in (n.strip() for n in grouped.group("names").split(",")):
            out.append(f"{grouped.group('indent')}{name}:{body[0]}")
            out.extend(body[1:])
    return "\n".join(out)


def _deeper(line: str, indent: int) -> bool:
    return bool(line.strip()) and len(line) - len(line.lstrip()) > indent


class GroupedParams(griffe.Extension):
    """Split "a, b, c: description" parameter entries (see the module docstring)."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None and "," in obj.docstring.value:
            obj.docstring.value = expand_grouped_params(obj.docstring.value)
