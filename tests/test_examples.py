"""The examples run end to end (on the JAX backend only, to keep CI short:
the examples are backend-neutral and the suites cover the three backends)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.backend_utils import BACKEND

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted(p.name for p in (ROOT / "examples").glob("*.py"))

if BACKEND == "jax":

    @pytest.mark.parametrize("script", EXAMPLES)
    def test_example_runs(script):
        env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="3")
        out = subprocess.run([sys.executable, str(ROOT / "examples" / script)], capture_output=True, text=True,
                             cwd=ROOT, env=env, timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]
        assert "keras_lossplus" in out.stdout
