"""Load every `<name>.keras` model in a folder in a fresh process, with
`compile=True`, evaluate it on `<name>.npz`, and print the losses as JSON.

Used by the contract suite: a loss only counts as serializable if a model
that uses it loads back in a process that never constructed it.

`python tests/fresh_load.py FOLDER` loads one folder and exits;
`python tests/fresh_load.py --serve` loads each folder named on a line of
its standard input and answers one `RESULT <json>` line per folder. The
tests use the second form through `load_in_fresh_process`: one server per
test session instead of one interpreter start (5-11 s with a backend) per
suite. The server constructs nothing before the first model it loads.
"""

import json
import os
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_lossplus  # noqa: E402,F401  (registers the losses, as a user's import does)

_PREFIX = "RESULT "


def load_folder(folder: str) -> dict:
    results = {}
    for path in sorted(Path(folder).glob("*.keras")):
        data = np.load(path.with_suffix(".npz"))
        # one input `x` or several `x0`, `x1`, ...; one target `y` or one `y_<output>` per output
        x = data["x"] if "x" in data.files else [data[f"x{i}"] for i in range(sum(k[:1] == "x" for k in data.files))]
        y = data["y"] if "y" in data.files else {k[2:]: data[k] for k in data.files if k.startswith("y_")}
        model = keras.saving.load_model(path, compile=True)
        loss = model.loss
        logs = model.evaluate(x, y, batch_size=len(data["x"] if "x" in data.files else data["x0"]), verbose=0,
                              return_dict=True)
        results[path.stem] = {
            "loss_class": loss if isinstance(loss, str) else type(loss).__name__,
            "loss_config": loss.get_config() if hasattr(loss, "get_config") else None,
            "evaluate": float(logs["loss"]),  # the total loss for a multi-output model
            "logs": {name: float(v) for name, v in logs.items()},  # the loss and every compiled metric
            "weights": [w.tolist() for w in model.get_weights()],
            "layer_classes": sorted({type(layer).__name__ for layer in model._flatten_layers()}),
            "weighting_class": type(getattr(model, "loss_weighting", None)).__name__,
        }
    return results


def serve() -> None:
    for line in sys.stdin:
        try:
            answer = {"ok": load_folder(line.strip())}
        except Exception:  # reported to the test, which fails with it
            answer = {"error": traceback.format_exc()}
        sys.stdout.write(_PREFIX + json.dumps(answer) + "\n")
        sys.stdout.flush()


class _Server:
    """The session's loading process, started on first use."""

    process = None
    log = None

    @classmethod
    def ask(cls, folder: str) -> dict:
        if cls.process is None or cls.process.poll() is not None:
            cls.log = tempfile.TemporaryFile(mode="w+")
            root = Path(__file__).resolve().parent.parent
            cls.process = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "--serve"], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=cls.log, text=True, cwd=root,
                # the checkout's package first, not an installed (editable) copy of another one
                env=dict(os.environ, KERAS_BACKEND=keras.backend.backend(),
                         PYTHONPATH=os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))),
            )
        cls.process.stdin.write(str(folder) + "\n")
        cls.process.stdin.flush()
        for line in cls.process.stdout:
            if line.startswith(_PREFIX):
                answer = json.loads(line[len(_PREFIX):])
                if "error" in answer:
                    raise AssertionError("loading in the fresh process failed:\n" + answer["error"][-3000:])
                return answer["ok"]
        cls.log.seek(0)
        raise AssertionError("the fresh loading process died:\n" + cls.log.read()[-3000:])


def load_in_fresh_process(folder) -> dict:
    """`{model name: {"loss_class", "loss_config", "evaluate", "logs", "weights"}}`
    for every model saved in `folder`, loaded in the session's separate
    process on the same backend."""
    return _Server.ask(str(folder))


if __name__ == "__main__":
    if sys.argv[1] == "--serve":
        serve()
    else:
        print(json.dumps(load_folder(sys.argv[1])))
