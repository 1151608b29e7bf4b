#!/usr/bin/env bash
# Set up a virtual environment (JAX backend) and run the demo.
#   bash scripts/demo.sh        (KERAS_BACKEND=tensorflow or torch works too,
#                                with EXTRAS=tensorflow,examples or torch,examples)
set -euo pipefail
cd "$(dirname "$0")/.."
extras=${EXTRAS:-jax,examples}
case "$extras" in
  *torch*) first=" (${TORCH_SPEC:-torch==2.13.0} first)" ;;
  *) first="" ;;
esac
echo "demo.sh: installing keras_lossplus[$extras]$first, editable from $(pwd), into the virtual"
echo "demo.sh: environment ${VENV:-.venv} (created if missing); pip runs quietly, the first time takes minutes"
. scripts/setup_env.sh "$extras"
backend=${KERAS_BACKEND:-jax}
KERAS_BACKEND=$backend "$PY" examples/demo.py
cat <<NEXT

Where to go next (paths relative to $(pwd)):
  README.md   "Quickstart", "Metric learning", "Segmentation", "What is in it" (every loss and layer)
  docs/       the user guide: docs/index.md (getting started), one page per family, docs/migration.md
              (from tensorflow-addons, TF-Similarity, pytorch-metric-learning); bash scripts/docs.sh serve
              builds the site and serves it on http://127.0.0.1:8000
  examples/   more scripts to run the same way, e.g.
              KERAS_BACKEND=$backend $PY examples/quickstart.py
              KERAS_BACKEND=$backend $PY examples/penalties.py       (sparse autoencoder and VAE)
              KERAS_BACKEND=$backend $PY examples/multi_task.py --quick
NEXT
