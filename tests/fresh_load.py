"""Load every `<name>.keras` model in a folder in a fresh process, with
`compile=True`, evaluate it on `<name>.npz`, and print the losses as JSON.

Used by the contract suite: a loss only counts as serializable if a model
that uses it loads back in a process that never constructed it.
"""

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_lossplus  # noqa: E402,F401  (registers the losses, as a user's import does)


def main(folder: str) -> None:
    results = {}
    for path in sorted(Path(folder).glob("*.keras")):
        data = np.load(path.with_suffix(".npz"))
        model = keras.saving.load_model(path, compile=True)
        loss = model.loss
        results[path.stem] = {
            "loss_class": loss if isinstance(loss, str) else type(loss).__name__,
            "loss_config": loss.get_config() if hasattr(loss, "get_config") else None,
            "evaluate": float(model.evaluate(data["x"], data["y"], batch_size=len(data["x"]), verbose=0)),
            "weights": [w.tolist() for w in model.get_weights()],
        }
    print(json.dumps(results))


if __name__ == "__main__":
    main(sys.argv[1])
