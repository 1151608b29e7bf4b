"""Run the benchmark suites on every backend and report keras_lossplus / peer ratios.

    .venv/bin/python benchmarks/report.py                 # run jax, tensorflow, torch
    .venv/bin/python benchmarks/report.py --backends jax  # one backend
    .venv/bin/python benchmarks/report.py --repeat 3      # 3 runs, median of the ratios
    .venv/bin/python benchmarks/report.py --no-run        # re-report the last JSON files

Each backend runs in its own pytest process (`KERAS_BACKEND` set) writing
`benchmarks/results/<backend>.json` (`<backend>.<i>.json` for repeats). A
ratio is ours / peer on the medians of the same run, so that load on a shared
machine cancels as far as it can; with `--repeat` the backends take turns and
the reported ratio is the median over runs. Below 1, keras_lossplus is faster.

The markdown goes to stdout (pytest's own output to stderr) and to
`benchmarks/results/report.md`, the bar chart to `benchmarks/results/ratios.png`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
BACKENDS = ("jax", "tensorflow", "torch")
OURS = "keras_lossplus"

# (loss, peer) -> (largest allowed ours / peer ratio, backends it applies to)
TARGETS = {
    ("focal", "keras"): (1.1, ("jax", "tensorflow")),
    ("focal", "optax"): (0.5, ("jax",)),
}


def run_suite(backend: str, run: int) -> Path:
    """Run the suites under `KERAS_BACKEND=backend`; return the JSON path."""
    path = RESULTS / (f"{backend}.json" if run == 0 else f"{backend}.{run}.json")
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    command = [sys.executable, "-m", "pytest", str(HERE), "--benchmark-only", "-q",
               "-p", "no:cacheprovider", f"--benchmark-json={path}"]
    print(f"$ KERAS_BACKEND={backend} {' '.join(command[1:])}", file=sys.stderr)
    if subprocess.run(command, env=env, cwd=ROOT, stdout=sys.stderr).returncode != 0:
        sys.exit(f"benchmark suite failed on {backend}; no report written")
    return path


def load(path: Path) -> tuple:
    """One run's medians in ms per (loss, backend, implementation), and its context."""
    data = json.loads(path.read_text())
    info = data["machine_info"]
    context = dict(date=data["datetime"][:10], cpu=info["cpu"].get("brand_raw", "?"),
                   cores=info["cpu"].get("count", "?"), libraries=info.get("libraries", {}))
    medians, temps = {}, {}
    for bench in data["benchmarks"]:
        extra = bench["extra_info"]
        key = extra["loss"], extra["backend"], extra["implementation"]
        medians[key] = bench["stats"]["median"] * 1e3
        temps[key] = extra.get("xla_temp_bytes")
    return medians, temps, context


def summarize(runs: list) -> tuple:
    """Per implementation: median over runs of the run medians and their range;
    per (loss, backend, peer): the median over runs of each run's ours / peer."""
    times = {}
    for medians in runs:
        for key, ms in medians.items():
            times.setdefault(key, []).append(ms)
    rows = {key: (statistics.median(v), min(v), max(v), len(v)) for key, v in sorted(times.items())}
    table = []
    for loss, backend, peer in rows:
        if peer == OURS or (loss, backend, OURS) not in rows:
            continue
        per_run = [m[loss, backend, OURS] / m[loss, backend, peer] for m in runs
                   if (loss, backend, peer) in m and (loss, backend, OURS) in m]
        limit, backends = TARGETS.get((loss, peer), (None, ()))
        limit = limit if backend in backends else None
        ratio = statistics.median(per_run)
        table.append(dict(loss=loss, backend=backend, peer=peer, ratio=ratio, low=min(per_run),
                          high=max(per_run), target=limit,
                          met=None if limit is None else ratio <= limit))
    return rows, table


def markdown(rows: dict, temps: dict, table: list, context: dict) -> str:
    libs = ", ".join(f"{k} {v}" for k, v in context["libraries"].items())
    lines = [
        "# keras_lossplus benchmark report", "",
        f"{context['date']}, {context['cpu']} ({context['cores']} CPU cores), {libs}.",
        "Forward + backward w.r.t. `y_pred`, 4096 x 1000 float32; XLA jit on jax and "
        "tensorflow, eager autograd on torch. Median of each run's median; range over runs.", "",
        "| loss | backend | implementation | median ms | range ms | runs | XLA temp MiB |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for (loss, backend, impl), (median, low, high, n) in rows.items():
        temp = temps.get((loss, backend, impl))
        temp = "" if temp is None else f"{temp / 2**20:.0f}"
        lines.append(f"| {loss} | {backend} | {impl} | {median:.1f} | {low:.1f}-{high:.1f} "
                     f"| {n} | {temp} |")
    lines += ["", "Ratio = keras_lossplus / peer, median over runs of the ratio of the two "
              "medians of one run (below 1: ours is faster).", "",
              "| loss | backend | peer | ratio | range | target | met |",
              "|---|---|---|---:|---:|---:|---|"]
    for r in table:
        target = "" if r["target"] is None else f"<= {r['target']:.2f}"
        met = "" if r["met"] is None else ("yes" if r["met"] else "**no**")
        lines.append(f"| {r['loss']} | {r['backend']} | {r['peer']} | {r['ratio']:.2f} "
                     f"| {r['low']:.2f}-{r['high']:.2f} | {target} | {met} |")
    return "\n".join(lines) + "\n"


def bar_chart(table: list, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['loss']} vs {r['peer']}\n({r['backend']})" for r in table]
    colors = ["tab:gray" if r["met"] is None else "tab:green" if r["met"] else "tab:red"
              for r in table]
    fig, ax = plt.subplots(figsize=(1.6 * len(table) + 2, 4))
    spread = [[r["ratio"] - r["low"] for r in table], [r["high"] - r["ratio"] for r in table]]
    ax.bar(labels, [r["ratio"] for r in table], color=colors, yerr=spread, capsize=4)
    for i, r in enumerate(table):
        ax.text(i + 0.05, r["ratio"], f"{r['ratio']:.2f}", ha="left", va="bottom")
        if r["target"] is not None:
            ax.hlines(r["target"], i - 0.4, i + 0.4, colors="black", linestyles="dashed")
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_ylabel("keras_lossplus / peer (median time)")
    ax.set_title("Forward + backward, 4096 x 1000: median ratio, range over runs\n"
                 "(dashed: target; green met, red missed, grey no target)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--repeat", type=int, default=1, help="runs of each suite (default 1)")
    parser.add_argument("--no-run", action="store_true", help="report the existing JSON files")
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    if args.no_run:
        paths = [p for b in args.backends for p in sorted(RESULTS.glob(f"{b}*.json"))]
    else:
        for stale in (p for b in args.backends for p in RESULTS.glob(f"{b}.*.json")):
            stale.unlink()
        paths = [run_suite(b, i) for i in range(args.repeat) for b in args.backends]
    if not paths:
        sys.exit(f"no results in {RESULTS}")
    loaded = [load(p) for p in paths]
    rows, table = summarize([medians for medians, _, _ in loaded])
    temps = {k: v for _, t, _ in loaded for k, v in t.items()}
    text = markdown(rows, temps, table, loaded[-1][2])
    (RESULTS / "report.md").write_text(text)
    bar_chart(table, RESULTS / "ratios.png")
    print(text)


if __name__ == "__main__":
    main()
