"""Peak memory of one forward + backward of the triplet losses: keras_lossplus'
`TripletLoss` on each Keras backend against pytorch-metric-learning (PML).

    .venv/bin/python benchmarks/metric_memory.py                  # every configuration
    .venv/bin/python benchmarks/metric_memory.py --backends jax --batch-sizes 1024 8192
    .venv/bin/python benchmarks/metric_memory.py --one ours jax semihard 8192 --chunk-size 1024

Every configuration (implementation, backend, mining, B, chunk size) runs in
a fresh subprocess (`--one`), which prints one JSON line:

* imports, builds the batch (`metric_cases.pk_batch`: P x K labels, K = 8,
  N(0, 1) float32 embeddings, D = 128) and the loss;
* `first_*`: the first call, i.e. tracing and XLA compilation (JAX,
  TensorFlow) plus one forward + backward;
* `peak_mib`: the steady state, two more calls (what every training step
  after the first costs).

A peak is the growth of the process's resident set: the high-water mark
(`resource.getrusage(RUSAGE_SELF).ru_maxrss`) after the calls minus the
resident set just before them. The high-water mark is reset before each
measurement (`echo 5 > /proc/self/clear_refs`, Linux >= 4.0, which resets
`ru_maxrss` too), so what imports or the first call left behind does not
hide a smaller later peak. On JAX the compiled program's own figure is
added: `xla_temp_mib`, the temporaries of `jax.jit(value_and_grad(loss))`
(`.lower(...).compile().memory_analysis().temp_size_in_bytes`).

When ours runs on a GPU (`harness.device()`), the resident set says little
about it: the GPU allocator's peak is recorded as well, `device_first_mib`
(first call) and `device_peak_mib` (steady state), each the peak minus what
was in use before (JAX's allocator keeps one peak per process, so there the
steady figure includes the first call); `device` names the GPU.
`metric_plot.py` then shows the device figure for ours. PML runs on the CPU.

The parent runs the subprocesses one at a time, polls each child's resident
set every 0.1 s and stops it when it passes `--cap-gib` or when the machine
has less than 1.5 GiB available (PML is O(B^3) in memory); such a case is
reported as "not run" with the size it had reached. Results go to
`benchmarks/results/metric_learning_memory.json` (merged with the earlier
results of other configurations) and a table to stdout.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from results_io import BACKENDS, RESULTS
from results_io import MEMORY as OUT  # noqa: N811  (this script's output)

HERE = Path(__file__).resolve().parent
MIB = 2**20


# --------------------------------------------------------------------------- in the child


def _rss() -> int:
    """Current resident set, bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:  # pragma: no cover - not Linux, or not allowed
        return False


def _peak() -> int:
    """High-water mark of the resident set since the last reset, bytes."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _trim() -> None:
    """Hand the memory freed so far back to the OS (glibc `malloc_trim`), so
    that a later call that reuses it shows in the resident set again."""
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        pass


def measure(calls, runs: int = 2) -> dict:
    """Peak RSS growth of `calls()` made `runs` times, and the time per call."""
    _trim()
    base = _rss()
    reset = _reset_peak()
    start = time.perf_counter()
    for _ in range(runs):
        out = calls()
        del out
    seconds = (time.perf_counter() - start) / runs
    return dict(peak=_peak() - base, base=base, seconds=seconds, reset=reset)


def _gpu_memory(backend: str, reset: bool = False) -> tuple:
    """`(bytes in use, peak bytes)` of the backend's GPU allocator; `reset`
    starts a new peak first (TensorFlow and torch; JAX keeps the process's)."""
    if backend == "jax":
        import jax

        stats = jax.devices()[0].memory_stats() or {}
        return stats.get("bytes_in_use", 0), stats.get("peak_bytes_in_use", 0)
    if backend == "tensorflow":
        import tensorflow as tf

        if reset:
            tf.config.experimental.reset_memory_stats("GPU:0")
        info = tf.config.experimental.get_memory_info("GPU:0")
        return info["current"], info["peak"]
    import torch

    if reset:
        torch.cuda.reset_peak_memory_stats()
    return torch.cuda.memory_allocated(), torch.cuda.max_memory_allocated()


def child(impl: str, backend: str, mining: str, batch: int, chunk_size) -> dict:
    sys.path.insert(0, str(HERE))
    from metric_cases import D, pk_batch

    labels, embeddings = pk_batch(batch)
    result = dict(impl=impl, backend=backend if impl == "ours" else "torch-eager",
                  mining=mining, batch=batch, chunk_size=chunk_size, dim=D)
    if impl == "pml":
        import pytorch_metric_learning.losses  # noqa: F401  (imports outside the measurement)
        import pytorch_metric_learning.miners  # noqa: F401
        import torch  # noqa: F401
        from metric_cases import pml_step

        holder = {}

        def first():
            holder["step"] = pml_step(mining, labels, embeddings, warmup=1)

    else:
        os.environ["KERAS_BACKEND"] = backend
        import keras  # noqa: F401  (the backend is fixed here)
        from harness import to_backend, value_and_grad_step, xla_temp_bytes
        from metric_cases import ours_loss

        loss = ours_loss(mining, chunk_size)
        y_true, y_pred = to_backend(labels), to_backend(embeddings)
        holder = {}

        def first():
            holder["step"] = value_and_grad_step(loss, y_true, y_pred, warmup=1)

    gpu = impl == "ours" and _on_gpu()
    if gpu:
        result["device"] = gpu
        in_use, _ = _gpu_memory(backend)
    cold = measure(first, runs=1)
    if gpu:
        _, peak = _gpu_memory(backend)
        result["device_first_mib"] = (peak - in_use) / MIB
        in_use, _ = _gpu_memory(backend, reset=True)
    warm = measure(holder["step"], runs=2)
    if gpu:  # on JAX the peak of the whole process (first call included)
        _, peak = _gpu_memory(backend)
        result["device_peak_mib"] = (peak - in_use) / MIB
    result.update(
        first_mib=cold["peak"] / MIB, first_s=cold["seconds"],
        peak_mib=warm["peak"] / MIB, seconds=warm["seconds"],
        baseline_mib=warm["base"] / MIB, peak_reset=warm["reset"] and cold["reset"],
    )
    if impl == "ours" and backend == "jax":
        temp = xla_temp_bytes(loss, y_true, y_pred)
        result["xla_temp_mib"] = None if temp is None else temp / MIB
    return result


def _on_gpu():
    """The name of the GPU the current backend computes on, or None (CPU)."""
    from harness import device

    found = device()
    return found["name"] if found["kind"] == "gpu" else None


# --------------------------------------------------------------------------- in the parent


def _available() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 1 << 62  # pragma: no cover


def _child_rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def run_one(impl, backend, mining, batch, chunk_size, cap: float, timeout: float) -> dict:
    """One configuration in a fresh subprocess, watched for its memory."""
    command = [sys.executable, str(Path(__file__).resolve()), "--one", impl, backend, mining, str(batch)]
    if chunk_size:
        command += ["--chunk-size", str(chunk_size)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND=backend if impl == "ours" else "torch")
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    start, high, why = time.time(), 0, None
    while proc.poll() is None:
        rss = _child_rss(proc.pid)
        high = max(high, rss)
        if rss > cap:
            why = f"stopped above the {cap / 2**30:.0f} GiB cap"
        elif _available() < 1.5 * 2**30:
            why = f"stopped: the machine had < 1.5 GiB left (child at {rss / 2**30:.1f} GiB)"
        elif time.time() - start > timeout:
            why = f"stopped after {timeout:.0f} s"
        if why:
            proc.kill()
            proc.wait()
            break
        time.sleep(0.1)
    out, err = proc.communicate()
    base = dict(impl=impl, backend=backend if impl == "ours" else "torch-eager", mining=mining,
                batch=batch, chunk_size=chunk_size)
    if why:
        return dict(base, not_run=why, reached_mib=high / MIB)
    if proc.returncode != 0:
        tail = (err or "").strip().splitlines()[-3:]
        return dict(base, not_run=f"failed (exit {proc.returncode}): {' | '.join(tail)}", reached_mib=high / MIB)
    return json.loads(out.strip().splitlines()[-1])


def key(r: dict) -> tuple:
    return r["impl"], r["backend"], r["mining"], r["batch"], r["chunk_size"] or 0


def table(results: list) -> str:
    lines = ["| mining | B | implementation | chunk | steady peak MiB | first call MiB | XLA temp MiB "
             "| s / call |", "|---|---:|---|---:|---:|---:|---:|---:|"]
    for r in sorted(results, key=lambda r: (r["mining"], r["batch"], r["impl"] != "pml", r["backend"],
                                            r["chunk_size"] or 0)):
        name = "PML (torch eager)" if r["impl"] == "pml" else f"ours ({r['backend']})"
        chunk = r["chunk_size"] or ""
        if "not_run" in r:
            lines.append(f"| {r['mining']} | {r['batch']} | {name} | {chunk} | not run: {r['not_run']} "
                         f"(reached {r['reached_mib']:.0f} MiB) | | | |")
            continue
        temp = r.get("xla_temp_mib")
        lines.append(f"| {r['mining']} | {r['batch']} | {name} | {chunk} | {r['peak_mib']:.0f} "
                     f"| {r['first_mib']:.0f} | {'' if temp is None else f'{temp:.0f}'} | {r['seconds']:.3g} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--one", nargs=4, metavar=("IMPL", "BACKEND", "MINING", "B"),
                        help="child mode: one configuration (IMPL ours|pml)")
    parser.add_argument("--chunk-size", type=int, default=None)
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--minings", nargs="+", default=["semihard", "all"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[256, 512, 1024, 2048, 4096, 8192])
    parser.add_argument("--chunk-sizes", nargs="*", type=int, default=[1024],
                        help="chunk sizes tried for ours at B > each chunk size, besides no chunking "
                             "(default 1024; at the largest B only unless --chunk-all; none if empty)")
    parser.add_argument("--chunk-all", action="store_true", help="chunked runs at every B > chunk size")
    parser.add_argument("--impls", nargs="+", default=["ours", "pml"], choices=["ours", "pml"])
    parser.add_argument("--pml-max-b", type=int, default=4096, help="largest B run for PML (default 4096)")
    parser.add_argument("--cap-gib", type=float, default=14.0, help="stop a child above this RSS")
    parser.add_argument("--timeout", type=float, default=900.0, help="stop a child after this many s")
    args = parser.parse_args()

    if args.one:
        impl, backend, mining, batch = args.one
        print(json.dumps(child(impl, backend, mining, int(batch), args.chunk_size)))
        return

    configs = []
    for mining in args.minings:
        for batch in args.batch_sizes:
            if "pml" in args.impls and batch <= args.pml_max_b:
                configs.append(("pml", "torch", mining, batch, None))
            if "ours" in args.impls:
                for backend in args.backends:
                    configs.append(("ours", backend, mining, batch, None))
                    for chunk in args.chunk_sizes:
                        if chunk < batch and (args.chunk_all or batch == max(args.batch_sizes)):
                            configs.append(("ours", backend, mining, batch, chunk))
    previous = json.loads(OUT.read_text()) if OUT.exists() else []
    done = {}
    for r in previous:
        done[key(r)] = r
    for config in configs:
        r = run_one(*config, cap=args.cap_gib * 2**30, timeout=args.timeout)
        done[key(r)] = r
        print(json.dumps(r), file=sys.stderr, flush=True)
        RESULTS.mkdir(exist_ok=True)
        OUT.write_text(json.dumps(sorted(done.values(), key=key), indent=1))
    print(table(list(done.values())))


if __name__ == "__main__":
    main()
