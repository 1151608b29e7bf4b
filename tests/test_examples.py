"""The examples run end to end (on the JAX backend only, to keep CI short:
the examples are backend-neutral and the suites cover the three backends)."""

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.backend_utils import BACKEND

ROOT = Path(__file__).resolve().parent.parent
OWN_TEST = {"multi_task.py", "metric_learning.py", "segmentation.py", "distributed.py",
            "embedding_gradcache.py"}  # run in their quick modes by their own tests below
EXAMPLES = sorted(p.name for p in (ROOT / "examples").glob("*.py") if p.name not in OWN_TEST)


def run_example(script: str, *args: str) -> str:
    """Run `examples/<script>` on JAX; check that it exits 0 and names the
    package; return its standard output."""
    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run([sys.executable, str(ROOT / "examples" / script), *args], capture_output=True, text=True,
                         cwd=ROOT, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "keras_lossplus" in out.stdout
    return out.stdout


if BACKEND == "jax":

    @pytest.mark.parametrize("script", EXAMPLES)
    def test_example_runs(script):
        run_example(script)

    def test_multi_task_example(tmp_path):
        stdout = run_example("multi_task.py", "--quick", "--out", str(tmp_path))
        assert "NaN" in stdout  # says that parity labels are missing
        assert (tmp_path / "multi_task.png").stat().st_size > 10_000
        # table rows: name, digit acc, parity acc, ink MSE, ink MAE, fit seconds[, weights digit/parity/ink]
        rows = {m[1]: m[2].split() for m in re.finditer(r"^  (static|uncertainty|pcgrad|\(chance\)) +(\d.*)$",
                                                         stdout, re.MULTILINE)}
        assert set(rows) == {"static", "uncertainty", "pcgrad", "(chance)"}, stdout
        for name, cells in rows.items():
            values = [float(v) for v in cells[:4]]
            if name != "(chance)":
                values += [float(w) for w in cells[5].split("/")]
            assert all(math.isfinite(v) for v in values), (name, cells)
        chance = float(rows["(chance)"][0])
        assert chance < 0.2
        assert float(rows["static"][0]) > chance + 0.3  # digit accuracy well above chance

    def test_metric_learning_example(tmp_path):
        stdout = run_example("metric_learning.py", "--quick", "--plot", "--out", str(tmp_path))
        assert (tmp_path / "metric_learning.png").stat().st_size > 10_000
        # markdown rows: | name | dim | recall@1 | fit s |
        rows = {m[1]: float(m[2]) for m in re.finditer(r"^\| ([^|]+?) \| \d+ \| ([\d.]+) \|", stdout, re.MULTILINE)}
        assert set(rows) == {"TripletLoss, mining='semihard'", "random projection (Gaussian)", "raw pixels",
                             "untrained network"}, stdout
        assert all(0.0 <= v <= 1.0 for v in rows.values()), rows
        trained = rows["TripletLoss, mining='semihard'"]
        # digits are easy for pixel distances (a 32-d random projection keeps about 0.93-0.95 recall@1),
        # so the margin asked of a 10-epoch run is modest; the untrained network is far below
        assert trained >= rows["random projection (Gaussian)"] + 0.01, rows
        assert trained >= rows["untrained network"] + 0.05, rows

    def test_segmentation_example(tmp_path):
        stdout = run_example("segmentation.py", "--quick", "--out", str(tmp_path))
        assert (tmp_path / "segmentation.png").stat().st_size > 10_000
        # markdown rows: | name | IoU x 4 | mIoU | ...
        miou = {m[1]: float(m[2]) for m in re.finditer(r"^\| ([^|]+?) \|(?: [\d.]+ \|){4} ([\d.]+) \|", stdout,
                                                       re.MULTILINE)}
        assert set(miou) == {"DiceFocalLoss", "(all background)"}, stdout
        assert miou["DiceFocalLoss"] > miou["(all background)"] + 0.15, stdout

    def test_distributed_example_equals_one_device():
        stdout = run_example("distributed.py", "--devices", "2", "--epochs", "2")
        assert "2 devices" in stdout
        rows = re.findall(r"^ +(\d) +([\d.]+) +([\d.]+) +([\d.]+) +([\d.]+)$", stdout, re.MULTILINE)
        assert len(rows) == 2, stdout
        for _, many, one, decov_many, decov_one in rows:
            assert abs(float(many) - float(one)) <= 1e-5 and abs(float(decov_many) - float(decov_one)) <= 1e-5
        gap = float(re.search(r"largest weight difference after 2 epochs: ([\d.e+-]+)", stdout)[1])
        assert gap < 1e-5

    def test_embedding_gradcache_example():
        stdout = run_example("embedding_gradcache.py", "--epochs", "8")
        losses = re.search(r"loss ([\d.]+) vs ([\d.]+), largest weight difference ([\d.e+-]+)", stdout)
        assert losses, stdout
        assert abs(float(losses[1]) - float(losses[2])) <= 1e-5 and float(losses[3]) < 1e-4, stdout
        # markdown rows: | name | dim | recall@1 | fit s |
        rows = {m[1]: float(m[2]) for m in re.finditer(r"^\| ([^|]+?) \| \d+ \| ([\d.]+) \|", stdout, re.MULTILINE)}
        assert set(rows) == {"GradCache + ranking loss", "raw pixels", "untrained network"}, stdout
        assert rows["GradCache + ranking loss"] >= rows["untrained network"] + 0.05, rows
