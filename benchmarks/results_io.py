"""Where the benchmark results live and how one result file is read: the
paths, the backends, the result-file names and `load`. Shared by
`report.py`, `metric_plot.py` and `metric_memory.py`; imports none of them."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
MEMORY = RESULTS / "metric_learning_memory.json"
DOCS_PAGE = ROOT / "docs" / "performance.md"
DOCS_IMAGES = ROOT / "docs" / "performance"
BACKENDS = ("jax", "tensorflow", "torch")


def suite_file(suite: str) -> Path:
    return HERE / f"test_bench_{suite}.py"


def result_path(backend: str, run: int, suite: str = "") -> Path:
    """`<backend>[.<suite>][.<run>].json` (no run number for run 0)."""
    parts = [backend] + ([suite] if suite else []) + ([str(run)] if run else [])
    return RESULTS / (".".join(parts) + ".json")


def suites_of(path: Path, backend: str) -> set:
    """The suites a result file holds on its own (`<backend>.<suite>[.<run>].json`),
    none for a full run's `<backend>[.<run>].json`."""
    names = path.name[len(backend) + 1:-len(".json")].split(".")
    return {s for s in names[0].split("+") if s and not s.isdigit()}


def result_files(backends) -> list:
    """Every result file of the backends, each with the suites (test files)
    whose results in it are superseded by a suite file of the same backend."""
    files = []
    for backend in backends:
        paths = sorted(RESULTS.glob(f"{backend}.*json"))  # <backend>.json, <backend>.<...>.json
        rerun = set().union(*(suites_of(p, backend) for p in paths))
        for path in paths:
            own = suites_of(path, backend)
            files.append((path, set() if own else {suite_file(s).name for s in rerun}))
    return files


def load(path: Path, skip: set = frozenset()) -> tuple:
    """One run's medians in ms per (loss, backend, implementation), the XLA
    temporaries, what each loss group measures, and the run's context;
    benchmarks from the test files named in `skip` are left out."""
    data = json.loads(path.read_text())
    info = data["machine_info"]
    context = dict(date=data["datetime"][:10], cpu=info.get("cpu", {}).get("brand_raw", "?"),
                   cores=info.get("cpu", {}).get("count", "?"), libraries=info.get("libraries", {}),
                   datetime=data["datetime"], backend=info.get("keras_backend", path.name.split(".")[0]),
                   device=info.get("device") or {"kind": "cpu", "name": "CPU"},
                   bench_env=info.get("bench_env") or {}, load_average=info.get("load_average"),
                   wall_seconds=info.get("wall_seconds"), python=info.get("python_version"),
                   system=" ".join(x for x in (info.get("system"), info.get("release"),
                                               info.get("machine")) if x),
                   commit=data.get("commit_info") or {})
    rounds, temps, measured = {}, {}, {}
    for bench in data["benchmarks"]:
        if bench["fullname"].split("::")[0].rsplit("/", 1)[-1] in skip:
            continue
        extra, stats = bench["extra_info"], bench["stats"]
        key = extra["loss"], extra["backend"], extra["implementation"]
        rounds.setdefault(key, []).extend(stats.get("data") or [stats["median"]])
        temps[key] = extra.get("xla_temp_bytes")
        measured[extra["loss"]] = extra.get("measured", "")
    medians = {key: statistics.median(v) * 1e3 for key, v in rounds.items()}
    return medians, temps, measured, context
