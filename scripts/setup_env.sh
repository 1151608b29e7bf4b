# Sourced by demo.sh and test.sh: create (or reuse) the virtual environment
# $VENV (default .venv) and install keras_lossplus into it with the extras
# given as arguments.
#   TORCH_SPEC  the torch requirement installed first when the extras need torch
#               (the test and bench extras do, through pytorch-metric-learning)
#               (default torch==2.13.0, whose CPU-only wheel keeps the install small
#               on machines that provide it; set TORCH_SPEC=torch for any build)
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
"$PY" -m pip install -q --disable-pip-version-check --upgrade pip
case "$1" in
  *all*|*torch*|*test*|*bench*) "$PY" -m pip install -q --disable-pip-version-check "${TORCH_SPEC:-torch==2.13.0}" ;;
esac
"$PY" -m pip install -q --disable-pip-version-check -e ".[$1]"
case "$1" in
  # a test peer whose package __init__ needs torchvision (see tests/peers.py):
  # its dependencies other than torch are not needed by the losses it tests
  *test*) "$PY" -m pip install -q --disable-pip-version-check --no-deps "segmentation_models_pytorch==0.6.*" ;;
esac
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-3}
