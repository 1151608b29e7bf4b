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

from harness import to_backend, value_and_grad_step  # noqa: E402
from metric_cases import ours_loss, pk_batch  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--mode", default="default", help="torch.compile mode")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")  # dynamo's notes on Keras' lru_cache-wrapped dtype helpers
    import torch

    labels, embeddings = pk_batch(args.batch_size)
    y, e = to_backend(labels), to_backend(embeddings)
    loss = ours_loss("semihard")
    compiled = torch.compile(loss, mode=args.mode, dynamic=False)

    start = time.perf_counter()
    steps = {"torch.compile": value_and_grad_step(compiled, y, e, warmup=1)}  # compiles
    first = time.perf_counter() - start
    steps["eager kernels"] = value_and_grad_step(loss, y, e, warmup=1)
    (value_c, grad_c), (value_e, grad_e) = steps["torch.compile"](), steps["eager kernels"]()
    print(f"B={args.batch_size}: first compiled call {first:.1f} s; |value diff| "
          f"{abs(float(value_c - value_e)):.2e}, max |grad diff| {float((grad_c - grad_e).abs().max()):.2e}")
    for name in ("eager kernels", "torch.compile"):
        for _ in range(10):
            steps[name]()
        times = []
        for _ in range(args.rounds):
            start = time.perf_counter()
            steps[name]()
            times.append(time.perf_counter() - start)
        print(f"  {name:14s} median {statistics.median(times) * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
