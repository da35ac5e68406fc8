"""Objectives and frame likelihoods at equal CPU time: which trains SVG-LP best per CPU-minute?

Every arm is 1-digit non-uniform SVG-LP (``smmnist-1digit-cpu``) with one choice changed: the
objective (``--elbo``, ``--num-particles``), the frame likelihood (``--likelihood``, ``--beta``), or
the training settings of the recipe screen (docs/recipe.md: learning rate, horizon, skip frame,
batch size, LSTM sizes) on the same footing. Arms whose steps cost more run fewer of them (steps
chosen from a measured step cost), so that all train for about the same time; each is then
evaluated on the same test videos: held-out ELBO and IWAE bounds, best-of-N SSIM / PSNR, the motion
probe's last scores from training, and a final probe of the trained model over 5 and 10 steps.

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
PROBE_HORIZONS = (5, 10)  # predicted steps of the final model's motion probe
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
    # training settings of the recipe screen (docs/recipe.md), on this page's footing
    "lr-1e-3": (["--lr", "1e-3"], 2000),
    "lr-4e-3": (["--lr", "4e-3"], 2000),
    "n-future-10": (["--n-future", "10"], 1300),  # the paper's 5 + 10 frames: 1.5 times the frames a step
    "n-future-10-seed-1": (["--n-future", "10", "--seed", "1"], 1300),
    "skip-second-last": (["--skip-frame", "second-last"], 2000),  # the reference code's skip frame
    "batch-4": (["--batch-size", "4"], 2800),  # half the preset's batch; a step costs ~0.7 times as much
    "small": (["--g-dim", "32", "--rnn-size", "64"], 2400),  # half the encoding and LSTM sizes
    "small-seed-1": (["--g-dim", "32", "--rnn-size", "64", "--seed", "1"], 2400),
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
        for horizon in PROBE_HORIZONS:
            if not (out / "evaluate" / f"probe-{horizon}.json").exists():
                probe = final_probe(out / "checkpoint.pt", horizon)
                (out / "evaluate" / f"probe-{horizon}.json").write_text(json.dumps(probe, indent=1))


def final_probe(checkpoint: Path, horizon: int, videos: int = 64) -> dict:
    """The motion probe of the trained model over ``horizon`` predicted steps of ``videos`` test
    videos: the same footing for arms trained on other horizons, and less noise than one training probe."""
    from svg_pyro.checkpoint import load_model
    from svg_pyro.data.datasets import make_datasets
    from svg_pyro.evaluation.motion import MotionProbe

    config, svg, _ = load_model(checkpoint)
    test = make_datasets(config, split_lengths=(config.frames_per_video, config.n_past + horizon))[1]
    return MotionProbe(test, config.n_past, videos)(svg)


def per_horizon(probes, key: str) -> str:
    return " / ".join(f"{probe[key]:.2f}" for probe in probes)


def table(root: Path) -> str:
    done = [name for name in ARMS if (root / name / "evaluate" / "metrics.json").exists()]
    if not done:
        raise SystemExit(f"no arm has been evaluated under {root}")
    lines = ["| arm | steps | s/step | minutes | KL/step | certain-step displacement error (px/frame) "
             "| position error best / mean (px) | ELBO / IWAE-100 (nats/frame) | best-of-20 SSIM | best-of-20 PSNR "
             "| mean-of-20 SSIM | final probe, 5 / 10 steps: certain-step error (px/frame) "
             "| final probe, 5 / 10 steps: best position error (px) |", "| --- " * 13 + "|"]
    copy = None
    for name in done:
        rows = read_rows(root / name)
        pace = step_minutes(rows)
        probes, _ = last_probes(rows, float("inf"), pace)
        metrics = json.loads((root / name / "evaluate" / "metrics.json").read_text())
        final = [json.loads((root / name / "evaluate" / f"probe-{h}.json").read_text()) for h in PROBE_HORIZONS]
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
                     f"| {score('ssim')} | {score('psnr')} | {score('ssim', 'mean_of_n')} "
                     f"| {per_horizon(final, 'certain_displacement_error')} "
                     f"| {per_horizon(final, 'position_error_best')} |")
    lines += ["", f"Motion figures: means of the last {PROBES_AVERAGED} probes (one every 250 steps; 16 test "
              "videos, each arm's trained horizon); the final probe scores the trained model on 64 test videos "
              "(5 samples each) over 5 and 10 predicted steps, where copy-last-frame scores "
              f"{per_horizon(final, 'copy_last_certain_displacement_error')} px/frame and "
              f"{per_horizon(final, 'copy_last_position_error')} px. "
              f"Copy-last-frame on the same test videos: SSIM {copy['ssim']['best']['mean']:.4f}, "
              f"PSNR {copy['psnr']['best']['mean']:.2f}."]
    return "\n".join(lines)


def figure(root: Path, out: Path, videos=(2, 3), names=None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from svg_pyro.checkpoint import load_model
    from svg_pyro.data.datasets import make_datasets
    from svg_pyro.inference.sampling import generate

    names = [name for name in names or ARMS if (root / name / "checkpoint.pt").exists()]
    models = {name: load_model(root / name / "checkpoint.pt")[:2] for name in names}
    horizon = min(config.n_future for config, _ in models.values())  # the shortest trained horizon
    rows = []
    for name, (config, svg) in models.items():
        test = make_datasets(config)[1]
        truth = torch.stack([test[i][: config.n_past + horizon] for i in videos])
        with torch.random.fork_rng():
            torch.manual_seed(0)
            frames = generate(svg, truth[:, : config.n_past], config.n_past, config.n_past + horizon)[0]
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
