"""Markdown table of the latent-use ablation from the runs' metrics.jsonl.

    python experiments/ablation_table.py runs/ablation/* [--at 300 600 1200 3000] [--window 100]

Per run: its settings that differ from the first run's, the KL per transition (nats, mean over
videos and transitions) averaged over the logged steps in (s - window, s] for each s of --at, the
first step where that average reaches 0.25 nats ("turn-on"), and the mean-pixel MSE per transition
at the last step (same window). "-" where the run did not reach the step.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from svg_pyro.evaluation.kl_curves import read_metrics


SHOWN = ("n_future", "elbo", "skip_frame", "g_dim", "rnn_size", "seed")


def window_mean(rows, key, step, window, divisor=1):
    vals = [r[key] / divisor for r in rows if step - window < r["step"] <= step]
    return float(np.mean(vals)) if vals and rows[-1]["step"] >= step else None


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+")
    p.add_argument("--at", type=int, nargs="+", default=[300, 600, 1200, 3000])
    p.add_argument("--window", type=int, default=100)
    p.add_argument("--turn-on", type=float, default=0.25)
    args = p.parse_args()
    print("| run | " + " | ".join(SHOWN) + " | " + " | ".join(f"KL/step @{s}" for s in args.at)
          + " | turn-on step | MSE/step (last) | steps |")
    print("|---" * (len(SHOWN) + len(args.at) + 4) + "|")
    for run in args.runs:
        config = json.loads((Path(run) / "config.json").read_text())
        rows = read_metrics(run)
        kl = [window_mean(rows, "kl_per_step", s, args.window) for s in args.at]
        on = next((r["step"] for r in rows if window_mean(rows, "kl_per_step", r["step"], args.window) >= args.turn_on
                   and r["step"] >= args.window), None)
        transitions = config["n_past"] + config["n_future"] - 1
        mse = window_mean(rows, "mse", rows[-1]["step"], args.window, transitions)
        cells = [str(config.get(k, "last" if k == "skip_frame" else "")) for k in SHOWN]
        cells += ["-" if v is None else f"{v:.3f}" for v in kl]
        cells += ["-" if on is None else str(on), f"{mse:.4f}", str(rows[-1]["step"])]
        print(f"| {Path(run).name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
