"""`torch.compile` against the eager torch kernels: semi-hard `TripletLoss`,
forward + backward, on the torch backend.

Under `torch.compile` the kernels of `keras_lossplus/backend/torch_mining.py`
step aside (dynamo cannot hold their data-dependent shapes) and dynamo
traces the backend-neutral `keras.ops` miner instead. This script times the
first compiled call (compilation included) and then both paths in the same
process, and checks that they agree (the first call of a later run is
shorter: inductor keeps what it compiled in an on-disk cache):

    .venv/bin/python benchmarks/torch_compile.py --batch-size 256
    .venv/bin/python benchmarks/torch_compile.py --batch-size 1024 --rounds 20
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings

os.environ["KERAS_BACKEND"] = "torch"

import torch  # noqa: E402

from metric_cases import ours_loss, pk_batch  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--mode", default="default", help="torch.compile mode")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")  # dynamo's notes on Keras' lru_cache-wrapped dtype helpers

    labels, embeddings = pk_batch(args.batch_size)
    loss = ours_loss("semihard")
    y = torch.from_numpy(labels)
    e = torch.from_numpy(embeddings).requires_grad_(True)
    compiled = torch.compile(lambda y_true, y_pred: loss(y_true, y_pred), mode=args.mode, dynamic=False)

    def step(fn):
        value = fn(y, e)
        (grad,) = torch.autograd.grad(value, e)
        return value.detach(), grad

    start = time.perf_counter()
    value_c, grad_c = step(compiled)
    first = time.perf_counter() - start
    value_e, grad_e = step(loss)
    print(f"B={args.batch_size}: first compiled call {first:.1f} s; |value diff| "
          f"{abs(float(value_c - value_e)):.2e}, max |grad diff| {float((grad_c - grad_e).abs().max()):.2e}")
    for name, fn in (("eager kernels", loss), ("torch.compile", compiled)):
        for _ in range(10):
            step(fn)
        times = []
        for _ in range(args.rounds):
            start = time.perf_counter()
            step(fn)
            times.append(time.perf_counter() - start)
        print(f"  {name:14s} median {statistics.median(times) * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
