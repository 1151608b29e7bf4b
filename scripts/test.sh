#!/usr/bin/env bash
# Set up a virtual environment with all three backends and run the whole test
# suite once per backend. Extra arguments go to pytest.
#   bash scripts/test.sh                 all backends
#   BACKENDS=jax bash scripts/test.sh    one backend
#   PYTEST_WORKERS=0 bash scripts/test.sh   in one process (default: 2 pytest-xdist
#                                        workers; most of the time goes to single-
#                                        threaded XLA compilation, so 2 cores run
#                                        2 workers in about half the wall time)
# Fails if any backend fails, and if a backend collects no test at all.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup_env.sh "all,test"
failed=()
for backend in ${BACKENDS:-jax tensorflow torch}; do
  echo "=== KERAS_BACKEND=$backend"
  rc=0
  KERAS_BACKEND=$backend "$PY" -m pytest -q -p no:cacheprovider -n "${PYTEST_WORKERS:-2}" --dist loadscope \
    --doctest-modules keras_lossplus tests "$@" || rc=$?
  if [ "$rc" -eq 5 ]; then
    echo "no tests were collected on $backend" >&2
  fi
  if [ "$rc" -ne 0 ]; then
    failed+=("$backend")
  fi
done
if [ "${#failed[@]}" -ne 0 ]; then
  echo "FAILED on: ${failed[*]}" >&2
  exit 1
fi
echo "all backends passed: ${BACKENDS:-jax tensorflow torch}"
