"""Data-parallel scaling: steps/s and frames/s of ``svi_train.py`` under torchrun with 1..N processes.

    python benchmarks/scaling.py --procs 1 2 --preset smmnist-cpu --steps 60 --rounds 3   # CPU
    python benchmarks/scaling.py --procs 1 2 4 8 --preset smmnist --device cuda --steps 200  # GPUs

Each run trains ``--steps`` steps of the preset at its global batch into a temporary directory,
launched as ``torchrun --nproc_per_node=N svi_train.py``; the step time is the median of the
logged intervals after the first (start-up and warm-up excluded). The world sizes take turns,
round by round, so machine noise hits them alike. On the CPU the processes share the machine's
cores (each gets cores/N threads): there the table shows the cost of the gradient exchange and of
smaller per-process batches, not a speed-up. Prints a Markdown table.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from svg_pyro.config import PRESETS, preset

ROOT = Path(__file__).resolve().parents[1]


def run_once(procs: int, args, out: Path) -> float:
    """Seconds per step of one run with ``procs`` processes."""
    threads = max(1, (os.cpu_count() or 1) // procs) if args.device == "cpu" else 1
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={procs}", "--master_port",
           str(args.port), "svi_train.py", "--preset", args.preset, "--steps", str(args.steps),
           "--device", args.device, "--out", str(out), "--no-progress", "--sample-every", "1000000",
           "--checkpoint-every", "1000000"]
    subprocess.run(cmd, cwd=ROOT, check=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)},
                   stdout=subprocess.DEVNULL)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    log_every = preset(args.preset).log_every
    return statistics.median(r["seconds"] / log_every for r in rows[1:])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    p.add_argument("--preset", default="smmnist-cpu", choices=sorted(PRESETS))
    p.add_argument("--device", default="cpu", help="cpu (gloo) or cuda (nccl, one GPU per process)")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--port", type=int, default=29517)
    args = p.parse_args()
    config = preset(args.preset)
    if config.log_every * 3 > args.steps:
        raise SystemExit(f"error: --steps must cover at least 3 logging intervals ({3 * config.log_every})")
    times = {n: [] for n in args.procs}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for n in args.procs:
                times[n].append(run_once(n, args, Path(tmp) / f"r{r}-n{n}"))
                print(f"round {r + 1}: {n} process(es) {times[n][-1] * 1e3:.0f} ms/step", file=sys.stderr)
    frames = config.batch_size * config.frames_per_video
    base = statistics.median(times[args.procs[0]])
    print(f"\n{args.preset}, global batch {config.batch_size}, {args.device}, median of {args.rounds} rounds\n")
    print("| processes | ms / step | steps / s | frames / s | vs 1st row |")
    print("| --- | --- | --- | --- | --- |")
    for n in args.procs:
        t = statistics.median(times[n])
        print(f"| {n} | {t * 1e3:.0f} | {1 / t:.2f} | {frames / t:.0f} | {base / t:.2f}x |")


if __name__ == "__main__":
    main()
