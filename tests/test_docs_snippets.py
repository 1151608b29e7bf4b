"""The getting-started page's snippets run as written, in order, in one
namespace (on one backend: they are backend-neutral, and the suites cover
all three)."""

import re
from pathlib import Path

import pytest

from tests.backend_utils import BACKEND

PAGE = Path(__file__).resolve().parent.parent / "docs" / "index.md"


@pytest.mark.skipif(BACKEND != "jax", reason="backend-neutral snippets: run once")
def test_getting_started_snippets_run():
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), re.DOTALL)
    assert len(blocks) >= 4  # the setup and the three main uses
    namespace = {}
    for block in blocks:
        exec(compile(block, str(PAGE), "exec"), namespace)  # noqa: S102 - our own documentation
    assert set(namespace["history"].history) == {"loss", "sparsity"}
