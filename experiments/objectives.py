"""Objectives and frame likelihoods at equal CPU time: which trains SVG-LP best per CPU-minute?

Every arm is 1-digit non-uniform SVG-LP (``smmnist-1digit-cpu``) with one choice changed: the
objective (``--elbo``, ``--num-particles``), the frame likelihood (``--likelihood``, ``--beta``), or
the learning rate (two arms of the recipe screen, docs/recipe.md, on the same footing). Arms whose
steps cost more run fewer of them (steps chosen from a measured step cost), so that all train for
about the same time; each is then evaluated on the same test videos: held-out ELBO and IWAE bounds,
best-of-N SSIM / PSNR, and the motion probe's last scores from training.

    python experiments/objectives.py run [ARM ...] [--root runs/objectives]   # trains and evaluates
    python experiments/objectives.py table [--root runs/objectives]
    python experiments/objectives.py figure --out samples.png [--root runs/objectives]

``figure`` draws, for two test videos, the truth and one generated future of every arm over the
trained horizon (the same seed for all).

Results and their discussion: docs/objectives.md.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from recipe import PROBES_AVERAGED, last_probes, read_rows, step_minutes

BASE = ["--preset", "smmnist-1digit-cpu", "--sample-every", "250", "--checkpoint-every", "500"]
EVALUATE = ["--videos", "64", "--samples", "20", "--horizon", "10", "--bound-particles", "1", "10", "100"]

# name: (flags that differ from the preset, steps); steps from the step cost measured with 60-step
# runs on the 2-core machine (s/step: base 0.31, iwae-4 0.39, bernoulli 0.27), ~10 minutes each
ARMS = {
    "base": ([], 2000),
    "laplace": (["--likelihood", "laplace"], 2000),
    "bernoulli": (["--likelihood", "bernoulli"], 2200),
    "iwae-4": (["--elbo", "iwae", "--num-particles", "4"], 1600),
    "trace-4": (["--elbo", "trace", "--num-particles", "4"], 1600),
    "beta-1e-3": (["--beta", "1e-3"], 2000),  # the Gaussian's scale sqrt(10) times wider
    "base-seed-1": (["--seed", "1"], 2000),  # the seed-to-seed spread of the base
    # two training settings of the recipe screen (docs/recipe.md), on this page's footing
    "lr-1e-3": (["--lr", "1e-3"], 2000),
    "lr-4e-3": (["--lr", "4e-3"], 2000),
}


def run(names, root: Path) -> None:
    for name in names or ARMS:
        out = root / name
        flags, steps = ARMS[name]
        commands = []
        if not (out / "checkpoint.pt").exists():
            commands.append(["svg-pyro", "train", *BASE, *flags, "--steps", str(steps), "--out", str(out),
                             "--no-progress"])
        if not (out / "evaluate" / "metrics.json").exists():
            commands.append(["svg-pyro", "evaluate", "--checkpoint", str(out / "checkpoint.pt"), *EVALUATE,
                             "--out", str(out / "evaluate"), "--no-progress"])
        for command in commands:
            print(" ".join(command), flush=True)
            subprocess.run(command, check=True)


def table(root: Path) -> str:
    done = [name for name in ARMS if (root / name / "evaluate" / "metrics.json").exists()]
    if not done:
        raise SystemExit(f"no arm has been evaluated under {root}")
    lines = ["| arm | steps | s/step | minutes | KL/step | certain-step displacement error (px/frame) "
             "| position error best / mean (px) | ELBO / IWAE-100 (nats/frame) | best-of-20 SSIM | best-of-20 PSNR "
             "| mean-of-20 SSIM |", "| --- " * 11 + "|"]
    copy = None
    for name in done:
        rows = read_rows(root / name)
        pace = step_minutes(rows)
        probes, _ = last_probes(rows, float("inf"), pace)
        metrics = json.loads((root / name / "evaluate" / "metrics.json").read_text())
        svg = metrics["results"]["svg"]
        copy = metrics["results"]["copy_last_frame"]
        bound = svg["bound"]

        def mean(key):
            return sum(r[key] for r in probes) / len(probes)

        def score(metric, kind="best"):
            s = svg[metric][kind]
            return f"{s['mean']:.4f} ± {s['ci95']:.4f}" if metric == "ssim" else f"{s['mean']:.2f} ± {s['ci95']:.2f}"

        lines.append(f"| {name} | {rows[-1]['step']} | {pace * 60:.3f} | {rows[-1]['step'] * pace:.1f} "
                     f"| {mean('kl_per_step'):.2f} | {mean('certain_displacement_error'):.2f} "
                     f"| {mean('position_error_best'):.2f} / {mean('position_error_mean'):.2f} "
                     f"| {bound['elbo']['per_frame']:.1f} / {bound['iwae']['100']['per_frame']:.1f} "
                     f"| {score('ssim')} | {score('psnr')} | {score('ssim', 'mean_of_n')} |")
    lines += ["", f"Motion figures: means of the last {PROBES_AVERAGED} probes (one every 250 steps). "
              f"Copy-last-frame on the same test videos: SSIM {copy['ssim']['best']['mean']:.4f}, "
              f"PSNR {copy['psnr']['best']['mean']:.2f}."]
    return "\n".join(lines)


def figure(root: Path, out: Path, videos=(2, 3)) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from svg_pyro.checkpoint import load_model
    from svg_pyro.datasets import make_datasets
    from svg_pyro.sampling import generate

    names = [name for name in ARMS if (root / name / "checkpoint.pt").exists()]
    rows = []
    for name in names:
        config, svg, guide, _ = load_model(root / name / "checkpoint.pt")
        test = make_datasets(config)[1]
        truth = torch.stack([test[i] for i in videos])  # the trained length: n_past + n_future frames
        horizon = truth.shape[1] - config.n_past
        with torch.random.fork_rng():
            torch.manual_seed(0)
            frames = generate(svg, guide, truth[:, : config.n_past], config.n_past, config.n_past + horizon)[0]
        rows.append((name, frames))
    n_past = config.n_past
    lines = [line for i, v in enumerate(videos)
             for line in [(f"video {v}: truth", truth[i])] + [(name, frames[i]) for name, frames in rows]]
    cols = 3 + horizon  # the last 3 given frames, then the predicted ones
    fig, axes = plt.subplots(len(lines), cols, figsize=(cols * 0.8, len(lines) * 0.85), squeeze=False)
    for r, (label, video) in enumerate(lines):
        for c in range(cols):
            ax = axes[r, c]
            ax.imshow(video[n_past - 3 + c, 0].clamp(0, 1).numpy(), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([]), ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_color("tab:green" if c < 3 else "0.7")
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    for c in range(cols):
        axes[-1, c].set_xlabel(str(n_past - 3 + c), fontsize=7)
    fig.savefig(out, dpi=80, bbox_inches="tight")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("action", choices=("run", "table", "figure"))
    p.add_argument("arms", nargs="*", help=f"arms to run (default all): {', '.join(ARMS)}")
    p.add_argument("--root", type=Path, default=Path("runs/objectives"))
    p.add_argument("--out", type=Path, help="PNG written by figure")
    args = p.parse_args(argv)
    unknown = sorted(set(args.arms) - set(ARMS))
    if unknown:
        p.error(f"unknown arms {unknown}; choose from {list(ARMS)}")
    if args.action == "run":
        run(args.arms, args.root)
    elif args.action == "figure":
        figure(args.root, args.out or p.error("figure needs --out"))
    else:
        print(table(args.root))
    return 0


if __name__ == "__main__":
    sys.exit(main())
