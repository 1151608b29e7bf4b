#!/usr/bin/env bash
# Run the benchmark suites on a GPU machine (JAX and TensorFlow, both with
# XLA on the GPU) and write the same report as on CPU:
# benchmarks/results/report.md, benchmarks/results/metric_learning.md,
# docs/performance.md and docs/performance/*.png, with the GPU named.
#
#   benchmarks/gpu.sh                    # full suites, one run per backend
#   benchmarks/gpu.sh --repeat 3         # any option of benchmarks/report.py is passed on
#   benchmarks/gpu.sh --quick            # the smaller workload
#   NO_INSTALL=1 benchmarks/gpu.sh       # use the installed jax / tensorflow as they are
#   GPU_BACKENDS="jax" benchmarks/gpu.sh # one backend
#
# What it does:
#   1. finds the GPU with `nvidia-smi` (name, memory, driver);
#   2. unless NO_INSTALL=1, installs the CUDA builds where the installed ones
#      do not see the GPU: `jax[cuda12]` and `tensorflow[and-cuda]` (pip
#      wheels that bring their own CUDA and cuDNN; only the NVIDIA driver is
#      needed on the machine), at the installed version of each;
#   3. keeps the backends that see the GPU (a backend that does not is left
#      out, and said so), and runs `benchmarks/report.py --backends ...
#      --device "<GPU name>" "$@"`. JAX's preallocation is off and
#      TensorFlow's memory grows on demand, so that the peak-memory script
#      (metric_memory.py, one process per configuration) reads the allocator's
#      real peaks. torch (eager, no XLA) is not run on the GPU; the
#      pytorch-metric-learning peer of the triplet suite runs on the CPU in
#      the JAX and TensorFlow processes, as on a CPU machine.
#
# CPU fallback: with no usable GPU (no `nvidia-smi`, no GPU listed, or
# neither JAX nor TensorFlow sees it) the script says why and runs the CPU
# report instead (`benchmarks/report.py "$@"`, all three backends), whose
# docs page then says that no GPU was available. Set GPU_REQUIRED=1 to stop
# with an error instead.
#
# The linear cross-entropy suite (test_bench_linear_cross_entropy.py, issue
# 30) runs the issue's sizes here, tokens x D x V = 4096 x 1024 x 32k,
# 4096 x 1024 x 128k and the Gemma-2-2B head 8192 x 2304 x 256k
# (LINEAR_CE_BENCH_SIZES=issue; set it to e.g. "4096x1024x32768" for fewer),
# fused against the naive logits path: time, and working memory (the
# allocator's peak growth less the gradients on TensorFlow, XLA's
# temporaries on JAX); a naive path that runs out of GPU memory is skipped
# with the error as the reason. Alone: `benchmarks/gpu.sh --suites linear_cross_entropy`.
#
# Environment: PYTHON (default .venv/bin/python, else python3), GPU_BACKENDS
# (default "jax tensorflow"), NO_INSTALL, GPU_REQUIRED, LINEAR_CE_BENCH_SIZES
# (default "issue").
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
GPU_BACKENDS="${GPU_BACKENDS:-jax tensorflow}"
export TF_CPP_MIN_LOG_LEVEL=3
export XLA_PYTHON_CLIENT_PREALLOCATE=false  # JAX: allocate on demand, so peaks are real
export TF_FORCE_GPU_ALLOW_GROWTH=true       # TensorFlow: the same

say() { echo "gpu.sh: $*" >&2; }

cpu_fallback() {  # cpu_fallback WHY [report.py options...]
    say "$1"
    shift
    if [[ "${GPU_REQUIRED:-0}" == 1 ]]; then
        say "GPU_REQUIRED=1: stopping"
        exit 1
    fi
    say "no usable GPU: writing the CPU report instead (benchmarks/report.py $*)"
    exec "$PYTHON" benchmarks/report.py "$@"
}

# 1. the GPU, as the driver lists it
if ! command -v nvidia-smi > /dev/null 2>&1; then
    cpu_fallback "nvidia-smi not found" "$@"
fi
if ! GPU_INFO="$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2> /dev/null)" \
        || [[ -z "$GPU_INFO" ]]; then
    cpu_fallback "nvidia-smi lists no GPU" "$@"
fi
GPU_COUNT="$(printf '%s\n' "$GPU_INFO" | wc -l)"
IFS=',' read -r GPU_NAME GPU_MEMORY GPU_DRIVER <<< "$(printf '%s\n' "$GPU_INFO" | head -n 1)"
GPU_NAME="$(echo "$GPU_NAME" | xargs)"
GPU_MEMORY="$(echo "$GPU_MEMORY" | xargs)"
GPU_DRIVER="$(echo "$GPU_DRIVER" | xargs)"
say "GPU: $GPU_NAME ($GPU_MEMORY, driver $GPU_DRIVER; $GPU_COUNT listed, the first one is used)"
export CUDA_VISIBLE_DEVICES="${CUDA_VISIBLE_DEVICES:-0}"

# 2. backends that see the GPU (installing the CUDA builds where needed)
sees_gpu() {
    case "$1" in
        jax) "$PYTHON" -c 'import jax, sys; sys.exit(jax.default_backend() != "gpu")' > /dev/null 2>&1 ;;
        tensorflow) "$PYTHON" -c 'import tensorflow as tf, sys; sys.exit(not tf.config.list_physical_devices("GPU"))' \
            > /dev/null 2>&1 ;;
        *) return 1 ;;
    esac
}

wheel_for() {  # the CUDA build of the installed version (the latest if none)
    local version
    version="$("$PYTHON" -c "import importlib.metadata as m; print(m.version('$1'))" 2> /dev/null || true)"
    case "$1" in
        jax) echo "jax[cuda12]${version:+==$version}" ;;
        tensorflow) echo "tensorflow[and-cuda]${version:+==$version}" ;;
    esac
}

"$PYTHON" -m pip --version > /dev/null 2>&1 || cpu_fallback "no pip for $PYTHON" "$@"
"$PYTHON" -c 'import pytest_benchmark, matplotlib' > /dev/null 2>&1 \
    || { [[ "${NO_INSTALL:-0}" != 1 ]] && "$PYTHON" -m pip install -q -e ".[bench]"; } \
    || cpu_fallback "the bench extra is missing (pip install -e '.[bench]')" "$@"

BACKENDS=()
for backend in $GPU_BACKENDS; do
    if ! sees_gpu "$backend" && [[ "${NO_INSTALL:-0}" != 1 ]]; then
        wheel="$(wheel_for "$backend")"
        say "$backend does not see the GPU: pip install '$wheel'"
        "$PYTHON" -m pip install -q "$wheel" || say "installing $wheel failed"
    fi
    if sees_gpu "$backend"; then
        BACKENDS+=("$backend")
    else
        say "$backend does not see the GPU: left out"
    fi
done
if [[ ${#BACKENDS[@]} -eq 0 ]]; then
    cpu_fallback "neither of ($GPU_BACKENDS) sees the GPU" "$@"
fi

# 3. the report, with the GPU named
export LINEAR_CE_BENCH_SIZES="${LINEAR_CE_BENCH_SIZES:-issue}"  # issue 30's sizes (not in the CPU fallback)
DEVICE="GPU $GPU_NAME ($GPU_MEMORY, driver $GPU_DRIVER) for ${BACKENDS[*]}"
say "running benchmarks/report.py --backends ${BACKENDS[*]} $*"
exec "$PYTHON" benchmarks/report.py --backends "${BACKENDS[@]}" --device "$DEVICE" "$@"
