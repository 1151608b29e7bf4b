#!/usr/bin/env bash
# Check the package as a user gets it from an index: build the wheel once,
# then for each backend extra install it into a clean virtual environment
# (under a temporary folder) and run the README's quickstart
# (examples/quickstart.py, copied out) with that backend, from the temporary
# folder so that this source tree cannot shadow the installed wheel.
#   bash scripts/check_wheel.sh                    jax, tensorflow and torch
#   EXTRAS="jax torch" bash scripts/check_wheel.sh  some of them
#   PYTHON       the interpreter for the venvs (default python3)
#   TORCH_SPEC   installed before the torch extra, as scripts/setup_env.sh does
#                (default torch==2.13.0, whose CPU-only wheel keeps the install small)
#   KEEP=1       keep the temporary folder (wheel, venvs) and say where it is
# Fails if any extra fails; pip's cache makes a repeat run's installs fast.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PYTHON=${PYTHON:-python3}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/check_wheel.XXXXXX")
if [ "${KEEP:-0}" = 1 ]; then
  trap 'echo "check_wheel: kept $WORK"' EXIT
else
  trap 'rm -rf "$WORK"' EXIT
fi
say() { echo "check_wheel: [$((SECONDS / 60))m$((SECONDS % 60))s] $*"; }
pip_install() { "$1/bin/python" -m pip install -q --disable-pip-version-check "${@:2}"; }

# build from a copy of the files git sees (tracked, or untracked and not ignored):
# no stale build/ output of an earlier build gets into the wheel, none is left here
say "copying the source of $ROOT (git ls-files) to $WORK/src"
mkdir "$WORK/src"
git ls-files -z --cached --others --exclude-standard \
  | tar --null -T - --ignore-failed-read -cf - 2>/dev/null | tar -xf - -C "$WORK/src"
say "building the wheel (pip wheel --no-deps) into $WORK/dist"
"$PYTHON" -m pip wheel -q --disable-pip-version-check --no-deps -w "$WORK/dist" "$WORK/src"
WHEEL=$(ls "$WORK"/dist/keras_lossplus-*.whl)
"$PYTHON" - "$WHEEL" <<'EOF'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), "LICENSE is not in the wheel"
print(f"check_wheel: {sys.argv[1].rsplit('/', 1)[-1]}: {len(names)} files, LICENSE included")
EOF
cp examples/quickstart.py "$WORK/quickstart.py"

failed=()
for extra in ${EXTRAS:-jax tensorflow torch}; do
  venv="$WORK/venv-$extra"
  say "=== $extra: clean virtual environment $venv"
  set +e  # the subshell's own `set -e` stops it at the first failing step (not under `||`)
  (
    set -e
    "$PYTHON" -m venv "$venv"
    pip_install "$venv" --upgrade pip
    if [ "$extra" = torch ]; then
      say "$extra: installing ${TORCH_SPEC:-torch==2.13.0} first"
      pip_install "$venv" "${TORCH_SPEC:-torch==2.13.0}"
    fi
    say "$extra: installing $(basename "$WHEEL")[$extra]"
    pip_install "$venv" "$WHEEL[$extra]"
    cd "$WORK"
    # the package must come from the venv, not from a source tree
    env -u PYTHONPATH "$venv/bin/python" -c "import importlib.util, sys
origin = importlib.util.find_spec('keras_lossplus').origin
assert origin.startswith(sys.prefix), origin
print('check_wheel: keras_lossplus imported from', origin)"
    say "$extra: KERAS_BACKEND=$extra python quickstart.py (in $WORK)"
    env -u PYTHONPATH KERAS_BACKEND="$extra" TF_CPP_MIN_LOG_LEVEL=3 "$venv/bin/python" quickstart.py
  )
  rc=$?
  set -e
  if [ "$rc" -ne 0 ]; then
    say "$extra: FAILED (exit $rc)"
    failed+=("$extra")
  fi
  [ "${KEEP:-0}" = 1 ] || rm -rf "$venv"
done
if [ "${#failed[@]}" -ne 0 ]; then
  say "FAILED on: ${failed[*]}" >&2
  exit 1
fi
say "the wheel installs and runs the quickstart with: ${EXTRAS:-jax tensorflow torch}"
