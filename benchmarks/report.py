"""Run the benchmark suites on every backend and report keras_lossplus / peer ratios.

    .venv/bin/python benchmarks/report.py                 # run jax, tensorflow, torch
    .venv/bin/python benchmarks/report.py --backends jax  # one backend
    .venv/bin/python benchmarks/report.py --repeat 3      # 3 runs, median of the ratios
    .venv/bin/python benchmarks/report.py --no-run        # re-report the last JSON files
    .venv/bin/python benchmarks/report.py --suites multi_output  # re-run one suite, keep the rest

Each backend runs in its own pytest process (`KERAS_BACKEND` set) writing
`benchmarks/results/<backend>.json` (`<backend>.<i>.json` for repeats). A
run's time for an implementation is the median of all its timed rounds (a
suite may time it in several blocks that take turns with its peers'). A
ratio is ours / peer on the medians of the same run, so that load on a shared
machine cancels as far as it can; with `--repeat` the backends take turns and
the reported ratio is the median over runs. "Ours" is every implementation
whose name starts with `keras_lossplus` (e.g. `keras_lossplus+logging`); the
others are peers. Below 1, keras_lossplus is faster.

`--suites NAME ...` runs only `benchmarks/test_bench_<NAME>.py` and writes
`<backend>.<NAME>.json` (`<backend>.<NAME>.<i>.json`), replacing only that
suite's earlier files; the report then merges them with the other JSON files
of the backends, whose results for the re-run suites are left out (a full
run deletes every suite file and starts over).

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

MULTI_OUTPUT_TASKS = 3  # test_bench_multi_output.py: PCGrad may cost (T + 1) plain steps

# (loss, ours, peer) -> (largest allowed ours / peer ratio, backends it applies to)
TARGETS = {
    ("focal", OURS, "keras"): (1.1, ("jax", "tensorflow")),
    ("focal", OURS, "optax"): (0.5, ("jax",)),
    ("l1_train_step", OURS, "activity_regularization"): (1.05, ("jax", "tensorflow")),
    ("multi_output_train_step", f"{OURS}+static", "keras"): (1.05, BACKENDS),
    ("multi_output_train_step", f"{OURS}+uncertainty", "keras"): (1.10, BACKENDS),
    ("multi_output_train_step", f"{OURS}+dwa", "keras"): (1.10, BACKENDS),
    ("multi_output_train_step", f"{OURS}+pcgrad", "keras"): (MULTI_OUTPUT_TASKS + 1.0, BACKENDS),
    # issue 6: at least 50x faster than pytorch-metric-learning at B = 1024 on CPU
    ("triplet_semihard B=1024", OURS, "pml"): (1 / 50, BACKENDS),
    ("triplet_all B=1024", OURS, "pml"): (1 / 50, BACKENDS),
}


def suite_file(suite: str) -> Path:
    return HERE / f"test_bench_{suite}.py"


def result_path(backend: str, run: int, suite: str = "") -> Path:
    """`<backend>[.<suite>][.<run>].json` (no run number for run 0)."""
    parts = [backend] + ([suite] if suite else []) + ([str(run)] if run else [])
    return RESULTS / (".".join(parts) + ".json")


def run_suite(backend: str, run: int, suites: tuple = ()) -> Path:
    """Run the suites (all, or the named ones) under `KERAS_BACKEND=backend`;
    return the JSON path."""
    path = result_path(backend, run, suites[0] if len(suites) == 1 else "+".join(suites))
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    targets = [str(suite_file(s)) for s in suites] or [str(HERE)]
    command = [sys.executable, "-m", "pytest", *targets, "--benchmark-only", "-q",
               "-p", "no:cacheprovider", f"--benchmark-json={path}"]
    print(f"$ KERAS_BACKEND={backend} {' '.join(command[1:])}", file=sys.stderr)
    if subprocess.run(command, env=env, cwd=ROOT, stdout=sys.stderr).returncode != 0:
        sys.exit(f"benchmark suite failed on {backend}; no report written")
    return path


def is_ours(implementation: str) -> bool:
    return implementation.startswith(OURS)


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
    context = dict(date=data["datetime"][:10], cpu=info["cpu"].get("brand_raw", "?"),
                   cores=info["cpu"].get("count", "?"), libraries=info.get("libraries", {}),
                   datetime=data["datetime"])
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


def summarize(runs: list) -> tuple:
    """Per implementation: median over runs of the run medians and their range;
    per (loss, backend, ours, peer): the median over runs of each run's ours / peer."""
    times = {}
    for medians in runs:
        for key, ms in medians.items():
            times.setdefault(key, []).append(ms)
    rows = {key: (statistics.median(v), min(v), max(v), len(v)) for key, v in sorted(times.items())}
    table = []
    for loss, backend, ours in rows:
        if not is_ours(ours):
            continue
        for peer in (p for l, b, p in rows if (l, b) == (loss, backend) and not is_ours(p)):
            per_run = [m[loss, backend, ours] / m[loss, backend, peer] for m in runs
                       if (loss, backend, peer) in m and (loss, backend, ours) in m]
            limit, backends = TARGETS.get((loss, ours, peer), (None, ()))
            limit = limit if backend in backends else None
            ratio = statistics.median(per_run)
            table.append(dict(loss=loss, backend=backend, ours=ours, peer=peer, ratio=ratio,
                              low=min(per_run), high=max(per_run), target=limit,
                              met=None if limit is None else ratio <= limit))
    return rows, table


def markdown(rows: dict, temps: dict, measured: dict, table: list, context: dict) -> str:
    libs = ", ".join(f"{k} {v}" for k, v in context["libraries"].items())
    groups = {}
    for loss, what in measured.items():
        groups.setdefault(what, []).append(loss)
    lines = [
        "# keras_lossplus benchmark report", "",
        f"{context['date']}, {context['cpu']} ({context['cores']} CPU cores), {libs}.", "",
        *(f"- {', '.join(losses)}: {what}." for what, losses in groups.items() if what), "",
        "Median over runs of each run's median (of all its timed rounds); range over runs.", "",
        "| loss | backend | implementation | median ms | range ms | runs | XLA temp MiB |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for (loss, backend, impl), (median, low, high, n) in rows.items():
        temp = temps.get((loss, backend, impl))
        temp = "" if temp is None else f"{temp / 2**20:.0f}"
        digits = 2 if median < 10 else 1  # steps of a few ms need the second decimal
        lines.append(f"| {loss} | {backend} | {impl} | {median:.{digits}f} "
                     f"| {low:.{digits}f}-{high:.{digits}f} | {n} | {temp} |")
    lines += ["", "Ratio = keras_lossplus / peer, median over runs of the ratio of the two "
              "medians of one run (below 1: ours is faster).", "",
              "| loss | backend | ours | peer | ratio | range | target | met |",
              "|---|---|---|---|---:|---:|---:|---|"]
    for r in table:
        target = "" if r["target"] is None else f"<= {r['target']:.2f}"
        met = "" if r["met"] is None else ("yes" if r["met"] else "**no**")
        lines.append(f"| {r['loss']} | {r['backend']} | {r['ours']} | {r['peer']} "
                     f"| {r['ratio']:.3f} | {r['low']:.3f}-{r['high']:.3f} | {target} | {met} |")
    return "\n".join(lines) + "\n"


def bar_chart(table: list, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['loss']}{r['ours'][len(OURS):]}\nvs {r['peer']}\n({r['backend']})"
              for r in table]
    colors = ["tab:gray" if r["met"] is None else "tab:green" if r["met"] else "tab:red"
              for r in table]
    fig, ax = plt.subplots(figsize=(2.0 * len(table) + 2, 4.5))
    spread = [[r["ratio"] - r["low"] for r in table], [r["high"] - r["ratio"] for r in table]]
    ax.bar(labels, [r["ratio"] for r in table], color=colors, yerr=spread, capsize=4)
    for i, r in enumerate(table):
        ax.text(i + 0.05, r["ratio"], f"{r['ratio']:.2f}", ha="left", va="bottom")
        if r["target"] is not None:
            ax.hlines(r["target"], i - 0.4, i + 0.4, colors="black", linestyles="dashed")
    ax.tick_params(axis="x", labelsize=8)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_ylabel("keras_lossplus / peer (median time)")
    ax.set_title("keras_lossplus / peer: median ratio, range over runs\n"
                 "(dashed: target; green met, red missed, grey no target)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--repeat", type=int, default=1, help="runs of each suite (default 1)")
    parser.add_argument("--no-run", action="store_true", help="report the existing JSON files")
    parser.add_argument("--suites", nargs="+", default=[], metavar="NAME",
                        help="run only benchmarks/test_bench_<NAME>.py and merge its results with "
                             "the other suites' last JSON files")
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    for suite in args.suites:
        if not suite_file(suite).exists():
            parser.error(f"no suite {suite_file(suite)}")
    suites = tuple(args.suites)
    if not args.no_run:
        if suites:  # replace this selection's earlier files only
            tag = suites[0] if len(suites) == 1 else "+".join(suites)
            stale = [p for b in args.backends for p in RESULTS.glob(f"{b}.{tag}.*json")
                     if suites_of(p, b) == set(suites)]
        else:  # a full run starts over
            stale = [p for b in args.backends for p in RESULTS.glob(f"{b}.*.json")]
        for path in stale:
            path.unlink()
        for i in range(args.repeat):
            for b in args.backends:
                run_suite(b, i, suites)
    files = result_files(args.backends)
    if not files:
        sys.exit(f"no results in {RESULTS}")
    loaded = [load(p, skip) for p, skip in files]
    rows, table = summarize([medians for medians, _, _, _ in loaded])
    temps = {k: v for _, t, _, _ in loaded for k, v in t.items()}
    measured = {k: v for _, _, m, _ in loaded for k, v in m.items()}
    text = markdown(rows, temps, measured, table, max((c for *_, c in loaded), key=lambda c: c["datetime"]))
    (RESULTS / "report.md").write_text(text)
    bar_chart(table, RESULTS / "ratios.png")
    print(text)


if __name__ == "__main__":
    main()
