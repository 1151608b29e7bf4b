"""Run the benchmark suites on every backend and report keras_lossplus / peer ratios.

    .venv/bin/python benchmarks/report.py                 # run jax, tensorflow, torch
    .venv/bin/python benchmarks/report.py --quick         # smaller batch sizes, fewer blocks
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

When the metric-learning suite runs, the peak memory of the triplet losses is
measured too (`metric_memory.py`, one fresh process per configuration, into
`benchmarks/results/metric_learning_memory.json`; `--no-memory` skips it).

`--quick` runs the same suites on a smaller workload, through the suites'
environment variables (`QUICK_ENV`; recorded in each JSON and named in the
report): triplet losses at B = 256 ... 2048 (memory too, PML up to 1024, no
chunked runs), the Lovasz-softmax at 4 x 64 x 64 x 21 only, and the training
steps in 20 blocks instead of 60. Everything else is as in a full run.

Outputs (all generated, none to edit by hand):

* `benchmarks/results/report.md`: the markdown report (also printed to
  stdout; pytest's own output goes to stderr): the device, every
  implementation's median time and the ratio table against the targets;
* `benchmarks/results/metric_learning.md`: the triplet tables (`metric_plot.py`);
* `docs/performance.md`: the documentation's performance page (device,
  date, backend versions, the ratio table and the plots);
* `docs/performance/ratios.png` (the ratios as bars), `metric_learning.png`
  (time and peak memory of the triplet losses against the batch size, ours
  per backend and PML), and `<family>.png` for every other group timed at
  several batch sizes (`sinkhorn.png`: time, and JAX's XLA temporaries,
  against B);
* the "Latest report" block of `benchmarks/README.md` (device line, ratio
  table, chart).

`--no-docs` writes the page and the PNGs into `benchmarks/results/` instead,
and leaves `docs/` and the README alone.

The device is what each backend's process computed on (`harness.device()`,
recorded in its JSON): the GPU's name when a backend ran on one, else the
CPU's model and core count; `--device TEXT` names it explicitly
(`benchmarks/gpu.sh` passes the GPU that `nvidia-smi` reports).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
from pathlib import Path

import metric_plot
from results_io import (BACKENDS, DOCS_IMAGES, DOCS_PAGE, HERE, MEMORY, RESULTS, ROOT, load, result_files,
                        result_path, suite_file, suites_of)

OURS = "keras_lossplus"
COMPILED = {"jax": "XLA, `jax.jit`", "tensorflow": "XLA, `jit_compile=True`", "torch": "eager; no XLA"}

# `--quick`: the suites' own knobs (see each suite's docstring), and metric_memory.py's options
QUICK_ENV = {
    "METRIC_BENCH_BATCH_SIZES": "256,512,1024,2048",
    "SEGMENTATION_BENCH_SIZES": "4x64x64x21",
    "TRAIN_STEP_BENCH_BLOCKS": "20",
}
QUICK_MEMORY = ["--batch-sizes", "256", "512", "1024", "2048", "--pml-max-b", "1024", "--chunk-sizes"]

MULTI_OUTPUT_TASKS = 3  # test_bench_multi_output.py: PCGrad, Nash-MTL, IMTL, GradVac, Aligned-MTL, DB-MTL may cost (T + 1) plain steps

# (loss, ours, peer) -> (largest allowed ours / peer ratio, backends it applies to)
TARGETS = {
    ("focal", OURS, "keras"): (1.1, ("jax", "tensorflow")),
    ("focal", OURS, "optax"): (0.5, ("jax",)),
    ("l1_train_step", OURS, "activity_regularization"): (1.05, ("jax", "tensorflow")),
    ("multi_output_train_step", f"{OURS}+static", "keras"): (1.05, BACKENDS),
    ("multi_output_train_step", f"{OURS}+uncertainty", "keras"): (1.10, BACKENDS),
    ("multi_output_train_step", f"{OURS}+dwa", "keras"): (1.10, BACKENDS),
    ("multi_output_train_step", f"{OURS}+pcgrad", "keras"): (MULTI_OUTPUT_TASKS + 1.0, BACKENDS),
    ("multi_output_train_step", f"{OURS}+nash_mtl", "keras"): (MULTI_OUTPUT_TASKS + 1.0, BACKENDS),
    ("multi_output_train_step", f"{OURS}+imtl", "keras"): (MULTI_OUTPUT_TASKS + 1.0, BACKENDS),
    ("multi_output_train_step", f"{OURS}+gradvac", "keras"): (MULTI_OUTPUT_TASKS + 1.0, BACKENDS),
    ("multi_output_train_step", f"{OURS}+aligned_mtl", "keras"): (MULTI_OUTPUT_TASKS + 1.0, BACKENDS),
    ("multi_output_train_step", f"{OURS}+db_mtl", "keras"): (MULTI_OUTPUT_TASKS + 1.0, BACKENDS),
    # issue 6: at least 50x faster than pytorch-metric-learning at B = 1024 on CPU
    ("triplet_semihard B=1024", OURS, "pml"): (1 / 50, BACKENDS),
    ("triplet_all B=1024", OURS, "pml"): (1 / 50, BACKENDS),
    # issue 20: eager torch at least 10x faster than PML at B = 256, overlap losses within 1.2x of Keras' Dice
    ("triplet_semihard B=256", OURS, "pml"): (1 / 10, ("torch",)),
    **{("overlap 8x256x256x21", f"{OURS}+{loss}_{target}", "keras_dice"): (1.2, ("torch",))
       for loss in ("dice", "jaccard") for target in ("onehot", "labels")},
}
TORCH_OVER_JAX = 2.0
"""A torch ratio above this multiple of the JAX one is named in the report
(issue 20: each needs a stated reason)."""


def run_suite(backend: str, run: int, suites: tuple = (), env: dict = None) -> Path:
    """Run the suites (all, or the named ones) under `KERAS_BACKEND=backend`,
    with the variables `env` set too; return the JSON path."""
    path = result_path(backend, run, suites[0] if len(suites) == 1 else "+".join(suites))
    env = dict(os.environ, **(env or {}), KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    targets = [str(suite_file(s)) for s in suites] or [str(HERE)]
    command = [sys.executable, "-m", "pytest", *targets, "--benchmark-only", "-q",
               "-p", "no:cacheprovider", f"--benchmark-json={path}"]
    print(f"$ KERAS_BACKEND={backend} {' '.join(command[1:])}", file=sys.stderr)
    if subprocess.run(command, env=env, cwd=ROOT, stdout=sys.stderr).returncode != 0:
        sys.exit(f"benchmark suite failed on {backend}; no report written")
    return path


def run_memory(backends, quick: bool = False) -> None:
    """Peak memory of the triplet losses (`metric_memory.py`): first drops the
    earlier results of ours on these backends and of PML, so that the report
    shows this run's configurations only."""
    if MEMORY.exists():
        kept = [r for r in json.loads(MEMORY.read_text())
                if r["impl"] == "ours" and r["backend"] not in backends]
        MEMORY.write_text(json.dumps(kept, indent=1))
    command = [sys.executable, str(HERE / "metric_memory.py"), "--backends", *backends,
               *(QUICK_MEMORY if quick else [])]
    print(f"$ {' '.join(command[1:])}", file=sys.stderr)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    if subprocess.run(command, env=env, cwd=ROOT, stdout=sys.stderr).returncode != 0:
        sys.exit("metric_memory.py failed; no report written")


def natural(key) -> tuple:
    """Sort key that orders "B=256" before "B=1024"."""
    text = " ".join(map(str, key)) if isinstance(key, tuple) else str(key)
    return tuple((0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", text) if t)


def is_ours(implementation: str) -> bool:
    return implementation.startswith(OURS)


def summarize(runs: list) -> tuple:
    """Per implementation: median over runs of the run medians and their range;
    per (loss, backend, ours, peer): the median over runs of each run's ours / peer."""
    times = {}
    for medians in runs:
        for key, ms in medians.items():
            times.setdefault(key, []).append(ms)
    rows = {key: (statistics.median(v), min(v), max(v), len(v))
            for key, v in sorted(times.items(), key=lambda kv: natural(kv[0]))}
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


def measured_groups(measured: dict) -> list:
    """One line per distinct description of what is measured, with its groups
    (the triplet batch sizes folded into one "B = ..." list)."""
    groups = {}
    for loss, what in measured.items():
        groups.setdefault(what, []).append(loss)
    lines = []
    for what, losses in groups.items():
        if not what:
            continue
        families = {}
        for loss in sorted(losses, key=natural):
            m = re.fullmatch(r"(.+) B=(\d+)", loss)
            family, size = (m.group(1), m.group(2)) if m else (loss, None)
            families.setdefault(family, []).append(size)
        names = [f"{f} (B = {', '.join(b for b in sizes)})" if all(sizes) else f
                 for f, sizes in families.items()]
        lines.append(f"- {', '.join(names)}: {what}.")
    return lines


def markdown(rows: dict, temps: dict, measured: dict, table: list, context: dict,
             host: dict = None, images: str = None) -> str:
    """The report: device and versions, what is measured, every
    implementation's time, the ratio table (and the chart, from `images`)."""
    host = host or describe_host([context])
    lines = [
        "# keras_lossplus benchmark report", "",
        f"{host['dates']}; {host['device']}; {host['versions']}.", "",
        *([f"Settings: {host['settings']}.", ""] if host["settings"] else []),
        *([host["busy"], ""] if host.get("busy") else []),
        *measured_groups(measured), "",
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
    lines += ["", targets_summary(table), "", torch_behind_jax(table), "", *ratio_table(table)]
    if images:
        lines += ["", f"![ratios]({images}/ratios.png)"]
    return "\n".join(lines) + "\n"


def targets_summary(table: list) -> str:
    """"k of n targets met" and the missed ones."""
    with_target = [r for r in table if r["target"] is not None]
    if not with_target:
        return "No ratio here has a target."
    missed = [r for r in with_target if not r["met"]]
    text = f"**{len(with_target) - len(missed)} of {len(with_target)} targets met**"
    if missed:
        text += "; missed: " + "; ".join(
            f"{r['loss']} {r['ours'][len(OURS):] or OURS} / {r['peer']} on {r['backend']} "
            f"{r['ratio']:.3g} (target <= {r['target']:.3g})" for r in missed)
    return text + "."


def torch_behind_jax(table: list) -> str:
    """The rows whose torch ratio is more than `TORCH_OVER_JAX` times the
    JAX one of the same (loss, ours, peer)."""
    jax = {(r["loss"], r["ours"], r["peer"]): r["ratio"] for r in table if r["backend"] == "jax"}
    behind = [(r, jax[(r["loss"], r["ours"], r["peer"])]) for r in table if r["backend"] == "torch"
              and (r["loss"], r["ours"], r["peer"]) in jax
              and r["ratio"] > TORCH_OVER_JAX * jax[(r["loss"], r["ours"], r["peer"])]]
    if not behind:
        return f"No torch ratio is above {TORCH_OVER_JAX:g}x the JAX one."
    return (f"Torch ratios above {TORCH_OVER_JAX:g}x the JAX one: " + "; ".join(
        f"{r['loss']} {r['ours'][len(OURS):] or OURS} / {r['peer']} {r['ratio']:.3g} (JAX {j:.3g})"
        for r, j in behind) + ".")


def ratio_table(table: list) -> list:
    lines = ["Ratio = keras_lossplus / peer, median over runs of the ratio of the two "
             "medians of one run (below 1: ours is faster).", "",
             "| loss | backend | ours | peer | ratio | range | target | met |",
             "|---|---|---|---|---:|---:|---:|---|"]
    for r in table:
        target = "" if r["target"] is None else f"<= {r['target']:.3g}"
        met = "" if r["met"] is None else ("yes" if r["met"] else "**no**")
        digits = 3 if r["ratio"] >= 0.1 else 4
        lines.append(f"| {r['loss']} | {r['backend']} | {r['ours']} | {r['peer']} "
                     f"| {r['ratio']:.{digits}f} | {r['low']:.{digits}f}-{r['high']:.{digits}f} "
                     f"| {target} | {met} |")
    return lines


def bar_chart(table: list, path: Path) -> None:
    """The ratios as horizontal bars on a log axis (from 1/100 to a few x),
    one per (group, backend, ours, peer), with the range over runs and the target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['loss']}{r['ours'][len(OURS):]} vs {r['peer']} ({r['backend']})" for r in table]
    colors = ["tab:gray" if r["met"] is None else "tab:green" if r["met"] else "tab:red"
              for r in table]
    fig, ax = plt.subplots(figsize=(10, 0.26 * len(table) + 1.6))
    y = list(range(len(table)))[::-1]
    spread = [[r["ratio"] - r["low"] for r in table], [r["high"] - r["ratio"] for r in table]]
    ax.barh(y, [r["ratio"] for r in table], color=colors, xerr=spread, capsize=2, height=0.7)
    for yi, r in zip(y, table):
        ax.text(r["high"] * 1.08, yi, f"{r['ratio']:.3g}", va="center", fontsize=7)
        if r["target"] is not None:
            ax.vlines(r["target"], yi - 0.4, yi + 0.4, colors="black", linestyles="dashed")
    ax.set_yticks(y, labels, fontsize=7)
    ax.set_xscale("log")
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_ylim(-0.7, len(table) - 0.3)
    ax.set_xlabel("keras_lossplus / peer (median time; below 1: ours is faster)")
    ax.set_title("keras_lossplus / peer: median ratio, range over runs\n"
                 "(dashed: target; green met, red missed, grey no target)", fontsize=9)
    ax.grid(True, axis="x", which="both", linewidth=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# --------------------------------------------------------------------------- device and versions


def cpu_model(contexts: list) -> str:
    """The CPU's model: what pytest-benchmark recorded, else /proc/cpuinfo,
    else `platform`."""
    for c in contexts:
        if c.get("cpu") and c["cpu"] != "?":
            return c["cpu"]
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:  # pragma: no cover - not Linux
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def describe_host(contexts: list, device: str = None) -> dict:
    """What the report says about where and with what it ran: `device` (the
    GPU's name per backend, or the CPU model and core count), `gpu` (whether
    any backend ran on a GPU), `dates`, `versions`, `settings` (the workload
    knobs, e.g. `--quick`'s), `load` and `wall` (per backend) and `python`."""
    contexts = sorted(contexts, key=lambda c: c["datetime"])
    cores = next((c["cores"] for c in contexts if c.get("cores") not in (None, "?")), os.cpu_count())
    cpu = f"{cpu_model(contexts)}, {cores} CPU cores"
    per_backend = {}
    for c in contexts:
        per_backend[c.get("backend", "?")] = c.get("device") or {"kind": "cpu", "name": "CPU"}
    gpus = {}
    for backend, dev in per_backend.items():
        if dev["kind"] == "gpu":
            gpus.setdefault(dev["name"], []).append(backend)
    on_cpu = [b for b, dev in per_backend.items() if dev["kind"] != "gpu"]
    if device:  # named by the caller (gpu.sh); what the backends saw decides `gpu`
        text = f"{device}; host CPU {cpu}"
        if not gpus:
            text += " (no backend ran on a GPU)"
    elif gpus:
        text = "; ".join(f"GPU {name} ({', '.join(b)})" for name, b in gpus.items())
        text += f"; host CPU {cpu}" + (f" (runs {', '.join(on_cpu)})" if on_cpu else "")
    else:
        text = f"CPU {cpu}"
    libraries = {}
    for c in contexts:
        libraries.update(c.get("libraries") or {})
    versions = ", ".join(f"{k} {v}" + (f" ({COMPILED[k]})" if k in COMPILED else "")
                         for k, v in libraries.items())
    python = next((c["python"] for c in reversed(contexts) if c.get("python")), platform.python_version())
    system = next((c["system"] for c in reversed(contexts) if c.get("system")), "")
    dates = sorted({c["date"] for c in contexts})
    knobs = {}
    for c in contexts:
        knobs.update(c.get("bench_env") or {})
    quick = knobs == QUICK_ENV
    settings = ", ".join(f"`{k}={v}`" for k, v in sorted(knobs.items()))
    if settings:
        settings = ("`--quick` (" + settings + ")") if quick else settings
    load = {}
    wall = {}
    for c in contexts:
        b = c.get("backend", "?")
        if c.get("load_average"):
            load.setdefault(b, []).append(c["load_average"])
        if c.get("wall_seconds") is not None:
            wall[b] = wall.get(b, 0.0) + c["wall_seconds"]
    commits = sorted({(c["commit"].get("id", "")[:7], bool(c["commit"].get("dirty")))
                      for c in contexts if c.get("commit", {}).get("id")})
    code = ", ".join(f"`{cid}`" + (" with uncommitted changes" if dirty else "") for cid, dirty in commits)
    loads = [la[1] for v in load.values() for la in v if la and len(la) > 1]
    busy = None
    if loads and isinstance(cores, int) and max(loads) > cores:
        busy = (f"**Loaded machine:** the 5-minute load average reached {max(loads):.1f} on "
                f"{cores} CPU cores during these runs (other jobs shared the machine). The "
                "ratios are taken within one process and survive much of it; absolute times do not")
        busy += (", and torch's eager rows least of all (its intra-op threads wait for each other "
                 "when another process takes a core), so read the torch ratios with care."
                 if "torch" in load else ".")
    return dict(device=text, gpu=bool(gpus), cpu=cpu, busy=busy, code=code,
                dates=dates[0] if len(dates) == 1 else f"{dates[0]} to {dates[-1]}",
                versions=versions, python=python, system=system, settings=settings, quick=quick,
                load=load, wall=wall, runs=len(contexts))


# --------------------------------------------------------------------------- time and memory against B


def scaling_series(rows: dict, temps: dict) -> dict:
    """Groups timed at several batch sizes (`"<family> B=<n>"`), except the
    triplet losses (`metric_plot.py` draws those, with their memory):
    family -> (backend, implementation) -> sorted [(B, median ms, XLA temp MiB or None)]."""
    families = {}
    for (loss, backend, impl), (median, *_rest) in rows.items():
        m = re.fullmatch(r"(.+) B=(\d+)", loss)
        if not m or m.group(1).startswith("triplet_"):
            continue
        temp = temps.get((loss, backend, impl))
        families.setdefault(m.group(1), {}).setdefault((backend, impl), []).append(
            (int(m.group(2)), median, None if temp is None else temp / 2**20))
    out = {}
    for family, series in families.items():
        if len({b for points in series.values() for b, *_ in points}) > 1:
            out[family] = {k: sorted(v) for k, v in sorted(series.items())}
    return out


def scaling_figure(family: str, series: dict, path: Path) -> None:
    """Time (and, where recorded, XLA temporaries) of one family against B."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    colors = {"jax": "tab:blue", "tensorflow": "tab:orange", "torch": "tab:green"}
    with_memory = any(t is not None for points in series.values() for *_, t in points)
    fig, axes = plt.subplots(1, 2 if with_memory else 1, figsize=(11 if with_memory else 6, 4.2),
                             squeeze=False)
    for (backend, impl), points in series.items():
        style = "o-" if is_ours(impl) else "s--"
        label = f"{impl} ({backend})"
        axes[0, 0].plot([b for b, *_ in points], [ms for _, ms, _ in points], style,
                        color=colors.get(backend), label=label)
        mem = [(b, t) for b, _, t in points if t is not None]
        if with_memory and mem:
            axes[0, 1].plot([b for b, _ in mem], [max(t, 0.01) for _, t in mem], style,
                            color=colors.get(backend), label=label)
    axes[0, 0].set_title(f"{family}: time per call (median)")
    axes[0, 0].set_ylabel("ms per call")
    if with_memory:
        axes[0, 1].set_title(f"{family}: XLA temporaries of the compiled program (JAX)")
        axes[0, 1].set_ylabel("MiB")
    sizes = sorted({b for points in series.values() for b, *_ in points})
    for ax in axes.flat:
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(sizes, [str(b) for b in sizes])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("batch size B")
        ax.grid(True, which="both", linewidth=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# --------------------------------------------------------------------------- outputs


README = HERE / "README.md"
README_BEGIN = "<!-- latest report: generated by benchmarks/report.py, do not edit -->"
README_END = "<!-- end of the latest report -->"


def update_readme(path: Path, host: dict, table: list, images: str) -> bool:
    """Replace the block between `README_BEGIN` and `README_END` in `path`
    (if it has them) by the latest device line, ratio table and chart."""
    text = path.read_text() if path.exists() else ""
    if README_BEGIN not in text or README_END not in text:
        return False
    block = [README_BEGIN, "",
             f"{host['dates']}; {host['device']}"
             + ("" if host["gpu"] else " (no GPU)") + f"; {host['versions']}."
             + (f" Settings: {host['settings']}." if host["settings"] else ""), "",
             *([host["busy"], ""] if host.get("busy") else []),
             targets_summary(table), "", torch_behind_jax(table), "",
             *ratio_table(table), "",
             f"![keras_lossplus / peer ratios]({images}/ratios.png)", "", README_END]
    head, rest = text.split(README_BEGIN, 1)
    tail = rest.split(README_END, 1)[1]
    path.write_text(head + "\n".join(block) + tail)
    return True


def write_report(files: list, results: Path = RESULTS, page: Path = DOCS_PAGE,
                 images: Path = DOCS_IMAGES, memory: Path = MEMORY, device: str = None,
                 readme: Path = None) -> str:
    """Every output of the report from the result files (`(path, skip)` as
    `result_files` returns them): `results/report.md`,
    `results/metric_learning.md`, the PNGs in `images`, the docs page
    `page` (whose image links are relative to it) and, if `readme` is given,
    its latest-report block (`update_readme`). Returns the report's markdown."""
    loaded = [load(p, skip) for p, skip in files]
    rows, table = summarize([medians for medians, _, _, _ in loaded])
    temps = {k: v for _, t, _, _ in loaded for k, v in t.items()}
    measured = {k: v for _, _, m, _ in loaded for k, v in m.items()}
    contexts = [c for *_, c in loaded]
    host = describe_host(contexts, device)
    results.mkdir(parents=True, exist_ok=True)
    images.mkdir(parents=True, exist_ok=True)

    bar_chart(table, images / "ratios.png")
    figures = []  # (title, file name, markdown to show beside it)
    times = metric_plot.time_rows(metric_plot.timing_runs([(c["backend"], m) for m, _, _, c in loaded]))
    memory_rows = metric_plot.memory_rows(memory)
    if times or memory_rows:
        triplets = metric_plot.markdown(times, memory_rows)
        (results / "metric_learning.md").write_text(triplets)
        metric_plot.figure(times, memory_rows, images / "metric_learning.png")
        figures.append(("Triplet losses against pytorch-metric-learning", "metric_learning.png", triplets))
    for family, series in scaling_series(rows, temps).items():
        name = re.sub(r"[^A-Za-z0-9_]+", "_", family).strip("_") + ".png"
        scaling_figure(family, series, images / name)
        figures.append((family, name, ""))

    text = markdown(rows, temps, measured, table, contexts[-1], host,
                    images=Path(os.path.relpath(images, results)).as_posix())
    if figures:
        text += "\n" + "\n".join(f"![{title}]({Path(os.path.relpath(images, results)).as_posix()}/{name})"
                                  for title, name, _ in figures) + "\n"
    (results / "report.md").write_text(text)
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(performance_page(rows, temps, measured, table, host, figures,
                                     Path(os.path.relpath(images, page.parent)).as_posix()))
    if readme is not None:
        update_readme(readme, host, table, Path(os.path.relpath(images, readme.parent)).as_posix())
    return text


def _demote(markdown_text: str, levels: int = 2) -> list:
    """The lines of `markdown_text` with every heading `levels` deeper and
    the first heading (the title) left out."""
    lines = markdown_text.rstrip("\n").splitlines()
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
    while lines and not lines[0].strip():
        lines = lines[1:]
    return [("#" * levels + line) if line.startswith("#") else line for line in lines]


def performance_page(rows: dict, temps: dict, measured: dict, table: list, host: dict,
                     figures: list, images: str) -> str:
    """`docs/performance.md`: generated from the results, never edited by hand."""
    load = "; ".join(f"{b} " + ", ".join("/".join(f"{x:.1f}" for x in la) for la in v)
                     for b, v in host["load"].items())
    wall = ", ".join(f"{b} {s / 60:.1f} min" for b, s in host["wall"].items())
    counts = sorted({n for *_, n in rows.values()})
    runs = "no run" if not counts else f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    lines = [
        "# Performance", "",
        f"*Generated by `benchmarks/report.py` from the benchmark runs of {host['dates']}: "
        "do not edit this page by hand; run the script again (`python benchmarks/report.py` "
        "on CPU, `benchmarks/gpu.sh` on a GPU machine).*", "",
        "| | |", "|---|---|",
        f"| device | {host['device']} |",
        f"| backends | {host['versions']} |",
        f"| Python, system | {host['python']}, {host['system']} |",
        *([f"| keras_lossplus | commit {host['code']} |"] if host.get("code") else []),
        f"| runs | {runs} of each suite per backend; a run's figure is the median of its timed "
        "rounds, a ratio is taken within one run |",
    ]
    if host["settings"]:
        lines.append(f"| workload | {host['settings']} |")
    if wall:
        lines.append(f"| wall time of the suites | {wall} |")
    if load:
        lines.append(f"| load average (1/5/15 min) at the end of each backend's run | {load} |")
    lines.append("")
    if host.get("busy"):
        lines += [host["busy"], ""]
    if not host["gpu"]:
        lines += ["**No GPU was available; this is the CPU report.** "
                  "`benchmarks/gpu.sh` runs the same suites with JAX and TensorFlow on a GPU and "
                  "writes this page with the GPU named.", ""]
    lines += [
        "Only ratios measured in the same process are compared (ours / peer on the medians "
        "of one run), so that the load of a shared machine cancels as far as it can; the "
        "absolute times move with that load. \"Ours\" is every implementation whose name starts "
        "with `keras_lossplus`. What each group measures:", "",
        *measured_groups(measured), "",
        "## Ratios against the peers", "",
        targets_summary(table), "", torch_behind_jax(table), "",
        *ratio_table(table), "",
        f"![keras_lossplus / peer ratios]({images}/ratios.png)", "",
    ]
    if figures:
        lines += ["## Time and memory against batch size", ""]
        for title, name, text in figures:
            lines += [f"### {title}", "", f"![{title}]({images}/{name})", ""]
            if text:
                lines += [*_demote(text), ""]
    lines += ["## Every implementation's time", "",
              "Median over runs of each run's median; range over runs.", "",
              "| group | backend | implementation | median ms | range ms | runs | XLA temp MiB |",
              "|---|---|---|---:|---:|---:|---:|"]
    for (loss, backend, impl), (median, low, high, n) in rows.items():
        temp = temps.get((loss, backend, impl))
        temp = "" if temp is None else f"{temp / 2**20:.0f}"
        digits = 2 if median < 10 else 1
        lines.append(f"| {loss} | {backend} | {impl} | {median:.{digits}f} "
                     f"| {low:.{digits}f}-{high:.{digits}f} | {n} | {temp} |")
    lines += ["", "The suites, their peers and how each figure is measured are described in "
              "`benchmarks/README.md` and in each suite's docstring "
              "(`benchmarks/test_bench_*.py`)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--repeat", type=int, default=1, help="runs of each suite (default 1)")
    parser.add_argument("--no-run", action="store_true", help="report the existing JSON files")
    parser.add_argument("--suites", nargs="+", default=[], metavar="NAME",
                        help="run only benchmarks/test_bench_<NAME>.py and merge its results with "
                             "the other suites' last JSON files")
    parser.add_argument("--quick", action="store_true",
                        help="smaller workload: triplets at B <= 2048, Lovasz at 4x64x64x21 only, "
                             "20 blocks of training steps (QUICK_ENV)")
    parser.add_argument("--no-memory", action="store_true",
                        help="do not run metric_memory.py when the metric-learning suite runs")
    parser.add_argument("--device", default=None,
                        help="name the device in the report (default: what each backend ran on)")
    parser.add_argument("--no-docs", action="store_true",
                        help="do not write docs/performance.md and docs/performance/*.png "
                             "(the PNGs then go to benchmarks/results/)")
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
                run_suite(b, i, suites, QUICK_ENV if args.quick else None)
        if not args.no_memory and (not suites or "metric_learning" in suites):
            run_memory(args.backends, args.quick)
    files = result_files(args.backends)
    if not files:
        sys.exit(f"no results in {RESULTS}")
    if args.no_docs:
        text = write_report(files, page=RESULTS / "performance.md", images=RESULTS, device=args.device)
    else:
        text = write_report(files, device=args.device, readme=README)
    print(text)


if __name__ == "__main__":
    main()
