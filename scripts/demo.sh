#!/usr/bin/env bash
# Set up a virtual environment (JAX backend) and run the demo.
#   bash scripts/demo.sh        (KERAS_BACKEND=tensorflow or torch works too,
#                                with EXTRAS=tensorflow,examples or torch,examples)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup_env.sh "${EXTRAS:-jax,examples}"
KERAS_BACKEND=${KERAS_BACKEND:-jax} "$PY" examples/demo.py
