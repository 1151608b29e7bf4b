"""Table and figure of the issue-6 triplet benchmarks: time and peak memory
against the batch size, keras_lossplus (per backend) against
pytorch-metric-learning (PML).

    .venv/bin/python benchmarks/metric_plot.py

`report.py` calls it on every report; run alone, it reads the timing runs
of `test_bench_metric_learning.py` from the result files `report.py` would
use (`benchmarks/results/<backend>[.<suite>][.<run>].json`) and the memory
results of `metric_memory.py` (`benchmarks/results/metric_learning_memory.json`),
and writes `benchmarks/results/metric_learning.md` (also printed) and
`docs/performance/metric_learning.png` (the figure of the docs' performance
page).

Time: a run's time for an implementation is the median of its timed rounds;
the table gives the median over runs, and the speed-up PML / ours as the
median over runs of the ratio of one run's two medians (PML runs in every
backend's process, beside ours). Memory: the steady-state peak RSS growth of
one call (`peak_mib`), the first call's (with compilation) and, on JAX, the
compiled program's temporaries.
"""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path

from results_io import BACKENDS, DOCS_IMAGES, MEMORY, RESULTS, load, result_files

GOAL_B, GOAL_SPEEDUP, GOAL_MEMORY, BIG_B, BIG_LIMIT_MIB = 1024, 50.0, 10.0, 8192, 2048.0
MININGS = ("semihard", "all")


def timing_runs(files: list = None) -> dict:
    """backend -> list of runs, each {(mining, B, implementation): median ms}.

    `files`: `(backend, medians)` of each result file, medians as `results_io.load`
    returns them (default: the files of `report.py --suites metric_learning`)."""
    if files is None:
        files = [(backend, load(path)[0]) for backend in BACKENDS
                 for path in sorted(RESULTS.glob(f"{backend}.metric_learning*.json"))]
    runs = {}
    for backend, medians in files:
        run = {}
        for (loss, _, impl), ms in medians.items():
            m = re.fullmatch(r"triplet_(\w+) B=(\d+)", loss)
            if m:
                run[m.group(1), int(m.group(2)), impl] = ms
        if run:
            runs.setdefault(backend, []).append(run)
    return runs


def time_rows(runs: dict) -> list:
    rows = []
    for backend, backend_runs in runs.items():
        keys = {(mining, b) for run in backend_runs for mining, b, _ in run}
        for mining, b in sorted(keys):
            ours = [r[mining, b, "keras_lossplus"] for r in backend_runs if (mining, b, "keras_lossplus") in r]
            pml = [r[mining, b, "pml"] for r in backend_runs if (mining, b, "pml") in r]
            ratios = [r[mining, b, "pml"] / r[mining, b, "keras_lossplus"] for r in backend_runs
                      if (mining, b, "pml") in r and (mining, b, "keras_lossplus") in r]
            rows.append(dict(
                mining=mining, batch=b, backend=backend, runs=len(ours),
                ours=statistics.median(ours) if ours else None,
                ours_range=(min(ours), max(ours)) if ours else None,
                pml=statistics.median(pml) if pml else None,
                speedup=statistics.median(ratios) if ratios else None,
                speedup_range=(min(ratios), max(ratios)) if ratios else None,
            ))
    return rows


def memory_rows(path: Path = None) -> list:
    """The results of `metric_memory.py`; for ours on a GPU the steady and
    first-call peaks are the GPU allocator's (`device_*_mib`), not the RSS's."""
    path = MEMORY if path is None else path
    rows = json.loads(path.read_text()) if path.exists() else []
    for r in rows:
        if "device_peak_mib" in r:
            r.update(host_peak_mib=r["peak_mib"], host_first_mib=r["first_mib"],
                     peak_mib=r["device_peak_mib"], first_mib=r["device_first_mib"])
    return rows


def _fmt(x, digits=None):
    if x is None:
        return "not run"
    if digits is None:
        digits = 2 if x < 10 else 1 if x < 100 else 0
    return f"{x:.{digits}f}"


def markdown(times: list, memory: list) -> str:
    lines = ["# Triplet losses: keras_lossplus vs pytorch-metric-learning (issue 6)", ""]
    lines += ["## Time, forward + backward (ms; speed-up = PML / ours, same process)", "",
              "| mining | B | backend | ours ms | PML ms | speed-up | range | runs |",
              "|---|---:|---|---:|---:|---:|---:|---:|"]
    for r in sorted(times, key=lambda r: (MININGS.index(r["mining"]), r["batch"], BACKENDS.index(r["backend"]))):
        low_high = "" if r["speedup_range"] is None else f"{r['speedup_range'][0]:.1f}-{r['speedup_range'][1]:.1f}"
        speedup = "" if r["speedup"] is None else f"{r['speedup']:.1f}x"
        lines.append(f"| {r['mining']} | {r['batch']} | {r['backend']} | {_fmt(r['ours'])} "
                     f"| {_fmt(r['pml'])} | {speedup} | {low_high} | {r['runs']} |")
    pml_mem = {(r["mining"], r["batch"]): r for r in memory if r["impl"] == "pml"}
    unit = ("MiB; ours: GPU allocator peak, PML: RSS growth on the CPU" if any("device_peak_mib" in r for r in memory)
            else "MiB of RSS growth")
    lines += ["", f"## Peak memory of one call ({unit}; PML / ours on the steady peak)", "",
              "| mining | B | implementation | chunk | steady peak | first call (compile) | XLA temp | PML peak | PML / ours |",
              "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    order = {"pml": -1}
    for r in sorted(memory, key=lambda r: (MININGS.index(r["mining"]), r["batch"], order.get(r["impl"], 0),
                                           BACKENDS.index(r["backend"]) if r["backend"] in BACKENDS else -1,
                                           r["chunk_size"] or 0)):
        name = "PML (torch eager)" if r["impl"] == "pml" else f"ours ({r['backend']})"
        chunk = r["chunk_size"] or ""
        if "not_run" in r:
            lines.append(f"| {r['mining']} | {r['batch']} | {name} | {chunk} | not run ({r['not_run']}; "
                         f"reached {r['reached_mib']:.0f}) | | | | |")
            continue
        peer = pml_mem.get((r["mining"], r["batch"]))
        peer_peak = peer.get("peak_mib") if peer and r["impl"] == "ours" else None
        ratio = "" if not peer_peak else f"{peer_peak / max(r['peak_mib'], 1e-9):.0f}x"
        temp = r.get("xla_temp_mib")
        lines.append(f"| {r['mining']} | {r['batch']} | {name} | {chunk} | {r['peak_mib']:.0f} "
                     f"| {r['first_mib']:.0f} | {'' if temp is None else f'{temp:.0f}'} "
                     f"| {'' if peer_peak is None else f'{peer_peak:.0f}'} | {ratio} |")
    lines += ["", "## Goals", ""]
    for mining in MININGS:
        for backend in BACKENDS:
            t = next((r for r in times if (r["mining"], r["batch"], r["backend"]) == (mining, GOAL_B, backend)), None)
            m = next((r for r in memory if r["impl"] == "ours" and not r.get("chunk_size") and "not_run" not in r
                      and (r["mining"], r["batch"], r["backend"]) == (mining, GOAL_B, backend)), None)
            p = pml_mem.get((mining, GOAL_B))
            parts = []
            if t and t["speedup"] is not None:
                parts.append(f"time {t['speedup']:.0f}x faster ({'met' if t['speedup'] >= GOAL_SPEEDUP else 'MISSED'}, "
                             f"goal {GOAL_SPEEDUP:.0f}x)")
            if m and p and "peak_mib" in p:
                ratio = p["peak_mib"] / max(m["peak_mib"], 1e-9)
                parts.append(f"memory {ratio:.0f}x less ({'met' if ratio >= GOAL_MEMORY else 'MISSED'}, "
                             f"goal {GOAL_MEMORY:.0f}x)")
            big = [r for r in memory if r["impl"] == "ours" and r["batch"] == BIG_B and r["backend"] == backend
                   and r["mining"] == mining and "not_run" not in r]
            for r in sorted(big, key=lambda r: r["chunk_size"] or 0):
                worst = max(r["peak_mib"], r["first_mib"])
                parts.append(f"B={BIG_B} chunk={r['chunk_size']}: {worst:.0f} MiB incl. first call "
                             f"({'met' if worst <= BIG_LIMIT_MIB else 'MISSED'}, goal <= 2 GiB)")
            if parts:
                lines.append(f"- {mining}, {backend} (B = {GOAL_B}): " + "; ".join(parts) + ".")
    return "\n".join(lines) + "\n"


def figure(times: list, memory: list, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"jax": "tab:blue", "tensorflow": "tab:orange", "torch": "tab:green", "pml": "tab:red"}
    fig, axes = plt.subplots(2, 2, figsize=(11, 8.5), sharex=True)
    for col, mining in enumerate(MININGS):
        ax = axes[0, col]
        pml_points = {}
        for backend in BACKENDS:
            rows = sorted((r for r in times if r["mining"] == mining and r["backend"] == backend and r["ours"]),
                          key=lambda r: r["batch"])
            if rows:
                ax.plot([r["batch"] for r in rows], [r["ours"] for r in rows], "o-", color=colors[backend],
                        label=f"ours ({backend})")
            for r in rows:
                if r["pml"] is not None:
                    pml_points.setdefault(r["batch"], []).append(r["pml"])
        if pml_points:
            bs = sorted(pml_points)
            ax.plot(bs, [statistics.median(pml_points[b]) for b in bs], "s--", color=colors["pml"],
                    label="PML (torch eager; median over the runs)")
        ax.set_title(f"TripletLoss(mining=\"{mining}\"): time, forward + backward")
        ax.set_ylabel("ms per call")
        ax.axvline(GOAL_B, color="gray", linewidth=0.6, linestyle=":")

        ax = axes[1, col]
        for backend in BACKENDS:
            rows = sorted((r for r in memory if r["impl"] == "ours" and r["mining"] == mining
                           and r["backend"] == backend and not r.get("chunk_size") and "not_run" not in r),
                          key=lambda r: r["batch"])
            if rows:
                ax.plot([r["batch"] for r in rows], [max(r["peak_mib"], 0.5) for r in rows], "o-",
                        color=colors[backend], label=f"ours ({backend})")
            chunked = [r for r in memory if r["impl"] == "ours" and r["mining"] == mining
                       and r["backend"] == backend and r.get("chunk_size") and "not_run" not in r]
            for r in chunked:
                ax.plot([r["batch"]], [r["peak_mib"]], "x", color=colors[backend], markersize=9,
                        label=f"ours ({backend}), chunk_size={r['chunk_size']}")
        rows = sorted((r for r in memory if r["impl"] == "pml" and r["mining"] == mining and "not_run" not in r),
                      key=lambda r: r["batch"])
        if rows:
            ax.plot([r["batch"] for r in rows], [r["peak_mib"] for r in rows], "s--", color=colors["pml"],
                    label="PML (torch eager)")
        ax.axhline(BIG_LIMIT_MIB, color="black", linewidth=0.8, linestyle="--", label="2 GiB")
        ax.axvline(GOAL_B, color="gray", linewidth=0.6, linestyle=":")
        on_gpu = any("device_peak_mib" in r for r in memory)
        what = "peak memory (ours: GPU allocator; PML: RSS)" if on_gpu else "peak RSS growth"
        ax.set_title(f"mining=\"{mining}\": {what} of one call (steady state)")
        ax.set_ylabel("MiB")
        ax.set_xlabel("batch size B (P x K, K = 8; D = 128)")
    for ax in axes.flat:
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.grid(True, which="both", linewidth=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    files = []
    for path, skip in result_files(BACKENDS):
        medians, *_, context = load(path, skip)
        files.append((context["backend"], medians))
    times, memory = time_rows(timing_runs(files)), memory_rows()
    text = markdown(times, memory)
    (RESULTS / "metric_learning.md").write_text(text)
    DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
    figure(times, memory, DOCS_IMAGES / "metric_learning.png")
    print(text)


if __name__ == "__main__":
    main()
