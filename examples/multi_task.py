"""Multi-task learning with `MultiOutputModel` on scikit-learn's digits
(1797 8x8 images): one shared trunk, three heads.

  digit   the class 0-9                      sparse categorical cross-entropy
  parity  even or odd                        binary cross-entropy
  ink     share of lit pixels, standardized  mean squared error

30% of the training parity labels are set to NaN: a missing label removes that
sample from the parity loss only; it still trains the digit and ink heads.

The same network (same initial weights, same batches) is trained three times,
with loss weights digit 1, parity 0.5, ink 0.1 and three weighting strategies:
"static" (the weights stay fixed), "uncertainty" (learned weights, Kendall et
al. 2018) and "pcgrad" (fixed weights, conflicting gradients of the shared
trunk projected, Yu et al. 2020). The script prints each strategy's held-out
metrics and saves `multi_task.png`: per-output training loss and weight by
epoch.

Run:  python examples/multi_task.py [--quick] [--epochs N] [--out DIR]
      (KERAS_BACKEND defaults to jax here)
"""

import argparse
import os
import time

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

import keras_lossplus as klp  # noqa: E402

TASKS = ("digit", "parity", "ink")
LOSSES = {"digit": "sparse_categorical_crossentropy", "parity": "binary_crossentropy", "ink": "mse"}
LOSS_WEIGHTS = {"digit": 1.0, "parity": 0.5, "ink": 0.1}
MISSING = 0.3  # share of the training parity labels made missing
BATCH_SIZE = 64
TRAIN_SIZE = 21 * BATCH_SIZE  # 1344 of 1797: whole batches only, so JAX compiles one training step


def load_data(seed: int) -> dict:
    """Train and test inputs and targets (dicts keyed by output name)."""
    images, digits = load_digits(return_X_y=True)
    x = (images / 16.0).astype("float32")
    lit = (images >= 8).mean(axis=1)  # share of pixels at least half on
    x_train, x_test, d_train, d_test, lit_train, lit_test = train_test_split(
        x, digits, lit, train_size=TRAIN_SIZE, stratify=digits, random_state=seed
    )
    mean, std = lit_train.mean(), lit_train.std()

    def targets(d, ink):
        return {"digit": d.astype("int32"), "parity": (d % 2).astype("float32")[:, None],
                "ink": ((ink - mean) / std).astype("float32")[:, None]}

    y_train, y_test = targets(d_train, lit_train), targets(d_test, lit_test)
    missing = np.random.default_rng(seed).permutation(len(x_train))[: round(MISSING * len(x_train))]
    y_train["parity"][missing] = np.nan
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def build_model() -> klp.MultiOutputModel:
    inputs = keras.Input((64,))
    h = keras.layers.Dense(64, activation="relu")(inputs)
    h = keras.layers.Dense(32, activation="relu")(h)
    outputs = {
        "digit": keras.layers.Dense(10, activation="softmax", name="digit")(h),
        "parity": keras.layers.Dense(1, activation="sigmoid", name="parity")(h),
        "ink": keras.layers.Dense(1, name="ink")(h),
    }
    return klp.MultiOutputModel(inputs, outputs, name="digits_multi_task")


def strategies(seed: int) -> dict:
    """The three weightings; by name works too (`weighting="uncertainty"`),
    the objects set their options."""
    return {
        "static": "static",
        # classification tasks use the exp(-s) * loss + s / 2 form, regression 0.5 * exp(-s) * loss + s / 2
        "uncertainty": klp.weighting.Uncertainty(task_types={"digit": "classification", "parity": "classification"}),
        "pcgrad": klp.weighting.PCGrad(seed=seed),
    }


def held_out_metrics(model: keras.Model, x: np.ndarray, y: dict) -> dict:
    pred = {k: keras.ops.convert_to_numpy(v) for k, v in model(x, training=False).items()}
    error = pred["ink"] - y["ink"]
    return {
        "digit_acc": float(np.mean(pred["digit"].argmax(axis=1) == y["digit"])),
        "parity_acc": float(np.mean((pred["parity"] > 0.5) == (y["parity"] > 0.5))),
        "ink_mse": float(np.mean(error**2)),
        "ink_mae": float(np.mean(np.abs(error))),
    }


def baseline(data: dict) -> dict:
    """Chance level: the most frequent training class and parity, the mean ink."""
    y_train, y_test = data["y_train"], data["y_test"]
    digit = np.bincount(y_train["digit"]).argmax()
    parity = np.nanmean(y_train["parity"]) > 0.5
    error = y_test["ink"] - y_train["ink"].mean()
    return {
        "digit_acc": float(np.mean(y_test["digit"] == digit)),
        "parity_acc": float(np.mean((y_test["parity"] > 0.5) == parity)),
        "ink_mse": float(np.mean(error**2)),
        "ink_mae": float(np.mean(np.abs(error))),
    }


def train(weighting, initial: list, data: dict, epochs: int, seed: int) -> dict:
    model = build_model()
    model.set_weights(initial)  # every strategy starts from the same weights
    # compiled metrics are Keras' own and see the NaN targets (a parity accuracy would count them as
    # errors), so only the fully labelled digit output gets one; the held-out metrics are computed below
    model.compile(optimizer=keras.optimizers.Adam(2e-3), loss=LOSSES, loss_weights=LOSS_WEIGHTS,
                  weighting=weighting, metrics={"digit": ["accuracy"]})
    keras.utils.set_random_seed(seed)  # and sees the same batches
    start = time.perf_counter()
    history = model.fit(data["x_train"], data["y_train"], epochs=epochs, batch_size=BATCH_SIZE, verbose=0)
    seconds = time.perf_counter() - start
    return {"history": history.history, "seconds": seconds,
            "test": held_out_metrics(model, data["x_test"], data["y_test"])}


def plot(results: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    styles = {"static": "-", "uncertainty": "-", "pcgrad": "--"}
    fig, axes = plt.subplots(2, len(TASKS), figsize=(4.2 * len(TASKS), 6.5), sharex=True)
    for column, task in enumerate(TASKS):
        for name, result in results.items():
            history = result["history"]
            epochs = np.arange(1, len(history["loss"]) + 1)
            axes[0, column].plot(epochs, history[f"{task}_loss"], styles.get(name, "-"), label=name)
            axes[1, column].plot(epochs, history[f"{task}_weight"], styles.get(name, "-"), label=name)
        axes[0, column].set_title(f"{task}: training loss" + (" (labelled samples)" if task == "parity" else ""))
        axes[0, column].set_yscale("log")
        axes[1, column].set_title(f"{task}: loss weight ({task}_weight)")
        axes[1, column].set_xlabel("epoch")
    axes[0, 0].legend()
    axes[1, 0].legend()
    fig.suptitle("MultiOutputModel on digits: per-output loss (unweighted) and weight, by weighting strategy")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def print_table(results: dict, chance: dict, epochs: int, n_test: int) -> None:
    print(f"\nHeld-out test set ({n_test} digits, every label present), after {epochs} epochs:")
    print(f"  {'weighting':<12} {'digit acc':>9} {'parity acc':>10} {'ink MSE':>8} {'ink MAE':>8}"
          f" {'fit s':>6}   final weights digit/parity/ink")
    for name, result in results.items():
        m, h = result["test"], result["history"]
        weights = "/".join(f"{h[f'{t}_weight'][-1]:.3f}" for t in TASKS)
        print(f"  {name:<12} {m['digit_acc']:9.3f} {m['parity_acc']:10.3f} {m['ink_mse']:8.3f} {m['ink_mae']:8.3f}"
              f" {result['seconds']:6.1f}   {weights}")
    print(f"  {'(chance)':<12} {chance['digit_acc']:9.3f} {chance['parity_acc']:10.3f} {chance['ink_mse']:8.3f}"
          f" {chance['ink_mae']:8.3f}")
    print("  (chance: the most frequent training class and parity, the mean training ink)")
    print("  uncertainty moves each weight towards c / loss (c = 1 classification, 0.5 regression), so its weights")
    print("  grow as the training losses fall; pcgrad keeps the loss weights and removes the conflicting part of")
    print("  each task's gradient on the shared trunk instead. One run each: on this small problem, gaps of about")
    print("  a point between the strategies are within the spread over seeds (try --seed).")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few epochs only (a smoke test)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per strategy (default 60, --quick 4)")
    parser.add_argument("--out", default=".", help="directory for multi_task.png (default: the current one)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    epochs = args.epochs or (4 if args.quick else 60)

    print(f"keras_lossplus {klp.__version__} on keras {keras.__version__} ({keras.backend.backend()})\n")
    data = load_data(args.seed)
    n_train = len(data["x_train"])
    n_missing = int(np.isnan(data["y_train"]["parity"]).sum())
    print(f"Digits: {n_train} training and {len(data['x_test'])} test images; outputs {', '.join(TASKS)}.")
    print(f"Missing labels: {n_missing} of the {n_train} training parity labels ({n_missing / n_train:.0%}) are NaN;")
    print("  those samples are left out of the parity loss only and still train the digit and ink heads.")
    print(f"Loss weights {LOSS_WEIGHTS}; the same initial weights and batches for each strategy.\n")

    keras.utils.set_random_seed(args.seed)
    initial = build_model().get_weights()
    results = {}
    for name, weighting in strategies(args.seed).items():
        print(f"  training with weighting={name!r} ...", flush=True)
        results[name] = train(weighting, initial, data, epochs, args.seed)

    print_table(results, baseline(data), epochs, len(data["x_test"]))
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "multi_task.png")
    plot(results, path)
    print(f"\nSaved {path}: training loss (top) and loss weight (bottom) of each output by epoch.")
    return {name: {**result["test"], "seconds": result["seconds"]} for name, result in results.items()}


if __name__ == "__main__":
    main()
