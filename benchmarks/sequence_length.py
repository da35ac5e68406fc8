"""Training-step time and peak memory per frame against the sequence length T.

    python benchmarks/sequence_length.py --preset smmnist-cpu --lengths 10 20 40 --rounds 2

Each (T, round) runs in a fresh process: the preset with n_past = 5 and n_future = T - 5, one
warm-up step, then ``--repeats`` timed training steps (``svg_pyro.training.train.training_step``). Peak
memory is the process's peak resident set during the steps minus its size before them. Both are
divided by T: a training step whose cost is linear in T shows flat columns. Prints a Markdown table.
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def measure(name: str, length: int, repeats: int) -> dict:
    import pyro
    import torch

    from svg_pyro.config import preset
    from svg_pyro.data.datasets import make_datasets, training_batch
    from svg_pyro.models.build import build_model
    from svg_pyro.training.distributed import World
    from svg_pyro.training.objective import training_objective
    from svg_pyro.training.train import training_step

    config = preset(name, n_past=5, n_future=length - 5)
    pyro.set_rng_seed(0)
    svg = build_model(config)
    objective = training_objective(svg, config.elbo)
    optimizer = torch.optim.Adam(list(svg.parameters()), lr=config.lr)
    batch = training_batch(make_datasets(config)[0], 0, 0, config.batch_size)
    before = _rss_mib()
    times = []
    for i in range(repeats + 1):
        tick = time.perf_counter()
        training_step(objective, optimizer, svg, batch, config.n_past, World())[0].item()
        if i:
            times.append(time.perf_counter() - tick)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {"seconds": statistics.median(times), "peak_mib": peak - before}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="smmnist-cpu")
    p.add_argument("--lengths", type=int, nargs="+", default=[10, 20, 40])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--worker", type=int, help=argparse.SUPPRESS)  # one measurement, in this process
    args = p.parse_args()
    if args.worker:
        print(json.dumps(measure(args.preset, args.worker, args.repeats)))
        return
    results = {t: [] for t in args.lengths}
    for _ in range(args.rounds):
        for t in args.lengths:
            out = subprocess.run([sys.executable, __file__, "--preset", args.preset, "--worker", str(t),
                                  "--repeats", str(args.repeats)], check=True, capture_output=True, text=True)
            results[t].append(json.loads(out.stdout.splitlines()[-1]))
            print(f"T={t}: {results[t][-1]}", file=sys.stderr)
    print(f"\n{args.preset}, median over {args.rounds} processes x {args.repeats} steps\n")
    print("| T | ms / step | ms / frame | peak MiB | peak MiB / frame |")
    print("| --- | --- | --- | --- | --- |")
    for t, runs in results.items():
        sec = statistics.median(r["seconds"] for r in runs)
        mib = statistics.median(r["peak_mib"] for r in runs)
        print(f"| {t} | {sec * 1e3:.0f} | {sec * 1e3 / t:.1f} | {mib:.0f} | {mib / t:.1f} |")


if __name__ == "__main__":
    main()
