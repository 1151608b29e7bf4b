"""Semantic segmentation of synthetic shapes with `DiceFocalLoss`.

  data      grey 32 x 32 images, generated here (no download): 1 to 3 shapes
            per image (disc, square, triangle; random size, position and
            brightness) on a noisy background; the label map has 4 classes
            (0 background, 1 disc, 2 square, 3 triangle). Shapes cover about
            15% of the pixels, so the classes are imbalanced.
  model     a small U-Net (two poolings, skip connections), logits out
  loss      `klp.losses.DiceFocalLoss(mode="multiclass", from_logits=True)`
            with the label maps as targets (no one-hot needed); with
            `--compare`, the same network trained with Keras'
            `SparseCategoricalCrossentropy` as well
  metric    intersection over union per class on held-out images, and
            its mean (mIoU), against predicting background everywhere

`--out DIR` saves `segmentation.png`: held-out images, their labels and the
predictions.

Run:  python examples/segmentation.py [--quick] [--compare] [--epochs N] [--backend jax|tensorflow|torch]
                                      [--out DIR] [--seed S]
"""

import argparse
import os
import sys
import time

import numpy as np

SIZE = 32
CLASSES = ("background", "disc", "square", "triangle")


def select_backend(backend) -> None:
    """Set KERAS_BACKEND before keras is imported."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if backend:
        os.environ["KERAS_BACKEND"] = backend
    os.environ.setdefault("KERAS_BACKEND", "jax")


def make_shapes(n: int, rng: np.random.Generator) -> tuple:
    """`n` images `(n, 32, 32, 1)` and label maps `(n, 32, 32)`."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    images = rng.normal(0.2, 0.08, size=(n, SIZE, SIZE)).astype("float32")
    labels = np.zeros((n, SIZE, SIZE), dtype="int32")
    for i in range(n):
        for _ in range(rng.integers(1, 4)):
            kind = rng.integers(1, 4)
            r = rng.uniform(3.5, 7.0)
            cy, cx = rng.uniform(r, SIZE - r, size=2)
            if kind == 1:
                inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2
            elif kind == 2:
                inside = (np.abs(yy - cy) <= r * 0.85) & (np.abs(xx - cx) <= r * 0.85)
            else:  # upward triangle: below the apex, inside both slanted edges
                top, bottom = cy - r, cy + r
                half = (yy - top) / (bottom - top) * r
                inside = (yy >= top) & (yy <= bottom) & (np.abs(xx - cx) <= half)
            images[i][inside] = rng.uniform(0.55, 1.0)
            labels[i][inside] = kind
    images += rng.normal(0.0, 0.05, size=images.shape).astype("float32")
    return images[..., None], labels


def build_unet(keras, seed: int):
    layers = keras.layers
    init = keras.initializers.HeNormal(seed=seed)

    def block(x, width):
        for _ in range(2):
            x = layers.Conv2D(width, 3, padding="same", activation="relu", kernel_initializer=init)(x)
        return x

    inputs = keras.Input((SIZE, SIZE, 1))
    d1 = block(inputs, 16)
    d2 = block(layers.MaxPooling2D()(d1), 32)
    bottom = block(layers.MaxPooling2D()(d2), 64)
    u2 = block(layers.Concatenate()([layers.UpSampling2D()(bottom), d2]), 32)
    u1 = block(layers.Concatenate()([layers.UpSampling2D()(u2), d1]), 16)
    logits = layers.Conv2D(len(CLASSES), 1, kernel_initializer=init)(u1)
    return keras.Model(inputs, logits)


def iou_per_class(labels: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    out = []
    for c in range(len(CLASSES)):
        inter = np.sum((labels == c) & (predicted == c))
        union = np.sum((labels == c) | (predicted == c))
        out.append(inter / union if union else 1.0)
    return np.array(out)


def train(keras, loss, data, epochs: int, seed: int):
    keras.utils.set_random_seed(seed)
    model = build_unet(keras, seed)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss=loss)
    start = time.perf_counter()
    history = model.fit(data["x_train"], data["y_train"], batch_size=32, epochs=epochs, verbose=0)
    seconds = time.perf_counter() - start
    predicted = np.argmax(model.predict(data["x_test"], batch_size=128, verbose=0), axis=-1)
    return predicted, history.history["loss"], seconds


def save_plot(path, data, predicted) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    cmap = ListedColormap(["#202020", "#e41a1c", "#377eb8", "#4daf4a"])
    shown = 6
    fig, axes = plt.subplots(3, shown, figsize=(2 * shown, 6.3))
    for j in range(shown):
        axes[0, j].imshow(data["x_test"][j, ..., 0], cmap="gray", vmin=0, vmax=1)
        axes[1, j].imshow(data["y_test"][j], cmap=cmap, vmin=0, vmax=3, interpolation="nearest")
        axes[2, j].imshow(predicted[j], cmap=cmap, vmin=0, vmax=3, interpolation="nearest")
    for row, title in enumerate(("image", "label", "DiceFocalLoss")):
        axes[row, 0].set_ylabel(title)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("keras_lossplus DiceFocalLoss on synthetic shapes (red disc, blue square, green triangle)")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer images and epochs (CI)")
    parser.add_argument("--compare", action="store_true", help="also train with plain cross-entropy")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--backend", choices=("jax", "tensorflow", "torch"), default=None)
    parser.add_argument("--out", default=None, help="folder for segmentation.png")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    select_backend(args.backend)

    import keras

    import keras_lossplus as klp

    rng = np.random.default_rng(args.seed)
    n_train, epochs = (384, 8) if args.quick else (1536, 20)
    epochs = args.epochs or epochs
    x_train, y_train = make_shapes(n_train, rng)
    x_test, y_test = make_shapes(256, rng)
    data = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    share = np.mean(y_train > 0)
    print(f"keras_lossplus {klp.__version__} on {keras.backend.backend()}: {n_train} training images, "
          f"256 held out, shapes cover {share:.1%} of the pixels, {epochs} epochs")

    runs = {"DiceFocalLoss": klp.losses.DiceFocalLoss(mode="multiclass", from_logits=True, gamma=2.0)}
    if args.compare:
        runs["crossentropy"] = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    rows, shown = [], None
    for name, loss in runs.items():
        predicted, losses, seconds = train(keras, loss, data, epochs, args.seed)
        if not np.all(np.isfinite(losses)):
            raise SystemExit(f"{name}: non-finite training loss {losses}")
        ious = iou_per_class(y_test, predicted)
        rows.append((name, ious, losses[0], losses[-1], seconds))
        shown = predicted if shown is None else shown
    baseline = iou_per_class(y_test, np.zeros_like(y_test))
    rows.append(("(all background)", baseline, float("nan"), float("nan"), 0.0))

    print("\n| training loss | " + " | ".join(f"IoU {c}" for c in CLASSES) + " | mIoU | loss first -> last | fit s |")
    print("|---" * (len(CLASSES) + 4) + "|")
    for name, ious, first, last, seconds in rows:
        cells = " | ".join(f"{v:.3f}" for v in ious)
        print(f"| {name} | {cells} | {ious.mean():.3f} | {first:.3f} -> {last:.3f} | {seconds:.0f} |")
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        path = os.path.join(args.out, "segmentation.png")
        save_plot(path, data, shown)
        print(f"\nsaved {path}")


if __name__ == "__main__":
    sys.exit(main())
