"""Run the benchmark suites on every backend and report keras_lossplus / peer ratios.

    .venv/bin/python benchmarks/report.py                 # run jax, tensorflow, torch
    .venv/bin/python benchmarks/report.py --backends jax  # one backend
    .venv/bin/python benchmarks/report.py --no-run        # re-report the last JSON files

Each backend runs in its own pytest process (`KERAS_BACKEND` set) writing
`benchmarks/results/<backend>.json`. Ratios are ours / peer on the medians of
the same run, so that load on a shared machine cancels as far as it can; a
ratio below 1 means keras_lossplus is faster. The markdown goes to stdout and
`benchmarks/results/report.md` (pytest's own output to stderr), the bar chart to `benchmarks/results/ratios.png`.
"""

from __future__ import annotations

import argparse
import json
import os
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


def run_suite(backend: str) -> Path:
    """Run the suites under `KERAS_BACKEND=backend`; return the JSON path."""
    path = RESULTS / f"{backend}.json"
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    command = [sys.executable, "-m", "pytest", str(HERE), "--benchmark-only", "-q",
               "-p", "no:cacheprovider", f"--benchmark-json={path}"]
    print(f"$ KERAS_BACKEND={backend} {' '.join(command[1:])}", file=sys.stderr)
    if subprocess.run(command, env=env, cwd=ROOT, stdout=sys.stderr).returncode != 0:
        sys.exit(f"benchmark suite failed on {backend}; no report written")
    return path


def load(paths: list) -> tuple:
    """Medians per (loss, backend, implementation) in ms, and the run's context."""
    rows, context = {}, {}
    for path in paths:
        data = json.loads(path.read_text())
        info = data["machine_info"]
        context = dict(context, date=data["datetime"][:10], cpu=info["cpu"].get("brand_raw", "?"),
                       cores=info["cpu"].get("count", "?"), libraries=info.get("libraries", {}))
        for bench in data["benchmarks"]:
            extra, stats = bench["extra_info"], bench["stats"]
            rows[extra["loss"], extra["backend"], extra["implementation"]] = dict(
                median=stats["median"] * 1e3, iqr=stats["iqr"] * 1e3, rounds=stats["rounds"],
                temp_mb=None if extra.get("xla_temp_bytes") is None else extra["xla_temp_bytes"] / 2**20,
            )
    return rows, context


def ratios(rows: dict) -> list:
    """One entry per (loss, backend, peer): ours / peer, target and verdict."""
    out = []
    for (loss, backend, impl), row in sorted(rows.items()):
        ours = rows.get((loss, backend, OURS))
        if impl == OURS or ours is None:
            continue
        limit, backends = TARGETS.get((loss, impl), (None, ()))
        limit = limit if backend in backends else None
        ratio = ours["median"] / row["median"]
        out.append(dict(loss=loss, backend=backend, peer=impl, ratio=ratio, target=limit,
                        met=None if limit is None else ratio <= limit))
    return out


def markdown(rows: dict, table: list, context: dict) -> str:
    libs = ", ".join(f"{k} {v}" for k, v in context["libraries"].items())
    lines = [
        "# keras_lossplus benchmark report", "",
        f"{context['date']}, {context['cpu']} ({context['cores']} CPU cores), {libs}.",
        "Forward + backward w.r.t. `y_pred`, 4096 x 1000 float32; XLA jit on jax and "
        "tensorflow, eager autograd on torch.", "",
        "| loss | backend | implementation | median ms | IQR ms | rounds | XLA temp MiB |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for (loss, backend, impl), r in sorted(rows.items()):
        temp = "" if r["temp_mb"] is None else f"{r['temp_mb']:.0f}"
        lines.append(f"| {loss} | {backend} | {impl} | {r['median']:.1f} | {r['iqr']:.1f} "
                     f"| {r['rounds']} | {temp} |")
    lines += ["", "Ratio = keras_lossplus median / peer median (below 1: ours is faster).", "",
              "| loss | backend | peer | ratio | target | met |", "|---|---|---|---:|---:|---|"]
    for r in table:
        target = "" if r["target"] is None else f"<= {r['target']:.2f}"
        met = "" if r["met"] is None else ("yes" if r["met"] else "**no**")
        lines.append(f"| {r['loss']} | {r['backend']} | {r['peer']} | {r['ratio']:.2f} "
                     f"| {target} | {met} |")
    return "\n".join(lines) + "\n"


def bar_chart(table: list, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['loss']} vs {r['peer']}\n({r['backend']})" for r in table]
    colors = ["tab:gray" if r["met"] is None else "tab:green" if r["met"] else "tab:red"
              for r in table]
    fig, ax = plt.subplots(figsize=(1.6 * len(table) + 2, 4))
    ax.bar(labels, [r["ratio"] for r in table], color=colors)
    for i, r in enumerate(table):
        ax.text(i, r["ratio"], f"{r['ratio']:.2f}", ha="center", va="bottom")
        if r["target"] is not None:
            ax.hlines(r["target"], i - 0.4, i + 0.4, colors="black", linestyles="dashed")
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_ylabel("keras_lossplus / peer (median time)")
    ax.set_title("Forward + backward, 4096 x 1000 (dashed: target; green met, red missed)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--no-run", action="store_true", help="report the existing JSON files")
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    if args.no_run:
        paths = [p for p in (RESULTS / f"{b}.json" for b in args.backends) if p.exists()]
    else:
        paths = [run_suite(backend) for backend in args.backends]
    rows, context = load(paths)
    table = ratios(rows)
    text = markdown(rows, table, context)
    (RESULTS / "report.md").write_text(text)
    bar_chart(table, RESULTS / "ratios.png")
    print(text)


if __name__ == "__main__":
    main()
