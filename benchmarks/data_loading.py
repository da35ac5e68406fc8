"""How long the training loop waits for its batches, with 0..N DataLoader workers.

    python benchmarks/data_loading.py --batch-size 100 --frames 15 --step-ms 150 --workers 0 1 2 4

The loop is the training loop's data path (``training_batches``) with the networks replaced by a
pause of ``--step-ms`` that leaves the CPU free, as a step on a GPU does. Reported per worker count:
the median wait for a batch and that wait as a share of the step (the issue's target: below 5% at
the reference batch of 100). SM-MNIST, 2 digits, 64x64.
"""
from __future__ import annotations

import argparse
import statistics
import time

from svg_pyro.config import preset
from svg_pyro.data.datasets import make_datasets, training_batches


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--frames", type=int, default=15, help="frames per video (the reference trains on 5 + 10)")
    p.add_argument("--step-ms", type=float, default=150.0, help="time of one training step on the accelerator")
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2, 4])
    p.add_argument("--steps", type=int, default=40)
    args = p.parse_args()
    config = preset("smmnist", n_past=5, n_future=args.frames - 5, batch_size=args.batch_size)
    train_set, _ = make_datasets(config)
    print(f"SM-MNIST batch {args.batch_size} x {args.frames} frames, simulated step {args.step_ms:.0f} ms, "
          f"median over steps 5..{args.steps}\n")
    print("| workers | wait per step (ms) | wait / step |")
    print("| --- | --- | --- |")
    for workers in args.workers:
        batches = training_batches(train_set, 0, args.batch_size, range(args.steps), workers=workers)
        waits = []
        for _ in range(args.steps):
            tick = time.perf_counter()
            next(batches)
            waits.append(time.perf_counter() - tick)
            time.sleep(args.step_ms / 1e3)
        wait = statistics.median(waits[5:])  # after the workers' start-up
        print(f"| {workers} | {wait * 1e3:.1f} | {wait * 1e3 / args.step_ms:.1%} |", flush=True)


if __name__ == "__main__":
    main()
