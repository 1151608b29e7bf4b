"""Release quality: the README renders on a package index (every link an
absolute URL, none leaving the repository), LICENSE and CHANGELOG.md are
there, and pyproject's metadata names the Python this runs on. Reads files
only; the same on every `KERAS_BACKEND`."""

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
REPO = "https://github.com/keras-lossplus/keras_lossplus"


def _prose(markdown: str) -> str:
    """The markdown without fenced code blocks and inline code spans, whose
    text is not a link (backticked link texts keep their brackets)."""
    text = re.sub(r"^```.*?^```", "", markdown, flags=re.DOTALL | re.MULTILINE)
    return re.sub(r"`[^`\n]*`", "code", text)


def links(markdown: str) -> list:
    """Every link target: inline links and images, reference definitions,
    autolinks and HTML href / src attributes."""
    text = _prose(markdown)
    return (re.findall(r"\]\(\s*<?([^)\s>]+)", text)
            + re.findall(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", text, re.MULTILINE)
            + re.findall(r"<(https?://[^>\s]+)>", text)
            + re.findall(r"""(?:href|src)\s*=\s*["']([^"']+)""", text))


def link_problem(target: str):
    """Why `target` would break on a package index, or None: not absolute, or
    an address in this repository that names no file or folder of it."""
    if not re.match(r"https?://", target):
        return "relative (resolves against the index, not the repository)"
    if not target.startswith(REPO + "/") and target != REPO:
        return None  # another site
    rest = target[len(REPO):].split("#")[0].strip("/")
    if rest in ("", "issues") or rest.startswith("issues/"):
        return None
    m = re.fullmatch(r"(blob|tree)/main/(.+)", rest)
    if not m:
        return "not a blob/main/ or tree/main/ address"
    path = (ROOT / m.group(2)).resolve()
    if ROOT not in path.parents:
        return "outside the repository"
    if not (path.is_file() if m.group(1) == "blob" else path.is_dir()):
        return f"no {'file' if m.group(1) == 'blob' else 'folder'} {m.group(2)} in the repository"
    return None


def test_link_checker_catches_bad_links():
    sample = ("[a](docs/x.md) ![b](img.png) [c](../shared/DESIGN.md) [d](#quickstart)\n"
              f"[e]: docs/\n<a href=\"examples/\">f</a> [g]({REPO}/blob/main/no_such_file.md)\n"
              f"[ok]({REPO}/blob/main/README.md) [ok2]({REPO}/tree/main/docs) `[code](not/a/link)`\n")
    found = links(sample)
    assert "not/a/link" not in found
    assert [t for t in found if link_problem(t)] == [
        "docs/x.md", "img.png", "../shared/DESIGN.md", "#quickstart", f"{REPO}/blob/main/no_such_file.md",
        "docs/", "examples/"]


def test_readme_links_are_absolute_and_inside_the_repository():
    text = README.read_text(encoding="utf-8")
    found = links(text)
    assert len(found) >= 20  # the docs, examples and benchmarks links
    bad = {t: link_problem(t) for t in found if link_problem(t)}
    assert not bad, bad
    assert "../" not in text, "the README names a path outside the repository"


def test_readme_quickstart_is_the_example_script():
    """Every line of the README's quickstart block is in examples/quickstart.py
    (which check_wheel.sh runs on each backend), so the two cannot drift."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## Quickstart\n", 1)[1]
    block = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)
    compile(block, "README.md", "exec")
    script = {re.sub(r"\s+# noqa.*$", "", line).rstrip()
              for line in (ROOT / "examples" / "quickstart.py").read_text().splitlines()}
    missing = [line for line in block.splitlines() if line.strip() and line.rstrip() not in script]
    assert not missing, missing
    for loss in ("FocalLoss(", "FBetaLoss(", "PinballLoss("):
        assert loss in block


def test_license_and_changelog():
    license_text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in license_text and "Version 2.0, January 2004" in license_text
    changelog = (ROOT / "CHANGELOG.md").read_text()
    version = re.search(r'__version__ = "([^"]+)"', (ROOT / "keras_lossplus" / "__init__.py").read_text()).group(1)
    assert "## [Unreleased]" in changelog
    assert f"## [{version}]" in changelog, f"no CHANGELOG.md entry for {version}"


def _classifiers() -> list:
    text = (ROOT / "pyproject.toml").read_text()
    return re.findall(r'"([^"]+)"', re.search(r"^classifiers = \[(.*?)^\]", text, re.DOTALL | re.MULTILINE).group(1))


def test_classifiers_name_the_running_python():
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert f"Programming Language :: Python :: {version}" in _classifiers(), (
        f"Python {version} runs the suite but pyproject.toml's classifiers do not list it")


def test_metadata():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0" and "LICENSE" in project["license-files"]
    # setuptools >= 77 refuses license classifiers beside an SPDX `license`
    assert not [c for c in project["classifiers"] if c.startswith("License ::")]
    assert "Operating System :: OS Independent" in project["classifiers"]
    assert set(project["urls"]) == {"Homepage", "Documentation", "Source", "Issues", "Changelog"}
    for url in project["urls"].values():
        assert link_problem(url) is None and url.startswith(REPO), url
