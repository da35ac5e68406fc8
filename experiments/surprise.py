"""Does a digit that jumps stand out? Surprise per frame of test videos with and without a 20-px jump.

The first ``--videos`` SM-MNIST test videos of the model's own data, and the same videos with every
frame from ``--jump-frame`` on shifted ``--shift`` pixels to the right (the digits jump once, then
move on as before; what leaves the right edge comes back at the left). Both sets are scored with
``svg-pyro score``'s estimate (``svg_pyro.evaluation.score``, K latent paths). Reported: the fraction of
videos whose jump frame is more surprising than that frame of every unmodified video, than that
frame of the same video unmodified, and than every other frame of its own; the surprise at the
jump frame against the unmodified videos' (median and range); a figure beside.

    python experiments/surprise.py --checkpoint smmnist-1digit-svg-lp --out docs/images/surprise-jump.png
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import pyro
import torch

from svg_pyro.checkpoint import load_model
from svg_pyro.data.datasets import make_datasets, stack_videos
from svg_pyro.evaluation.score import score_videos


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", default="smmnist-1digit-svg-lp")
    p.add_argument("--videos", type=int, default=64)
    p.add_argument("--frames", type=int, default=15)
    p.add_argument("--jump-frame", type=int, default=10)
    p.add_argument("--shift", type=int, default=20)
    p.add_argument("--particles", type=int, default=100)
    p.add_argument("--out", help="PNG of the surprise per frame, both sets")
    args = p.parse_args()

    config, svg, step = load_model(args.checkpoint)
    test = make_datasets(config, split_lengths=(config.frames_per_video, args.frames))[1]
    videos = stack_videos(test, args.videos)
    jumped = videos.clone()
    jumped[:, args.jump_frame:] = torch.roll(videos[:, args.jump_frame:], shifts=args.shift, dims=-1)
    tick = time.perf_counter()
    pyro.set_rng_seed(0)
    plain = score_videos(svg, videos, config.n_past, args.particles)["surprise"]
    jump = score_videos(svg, jumped, config.n_past, args.particles)["surprise"]
    seconds = time.perf_counter() - tick
    at = args.jump_frame - 1  # column of the jump frame (frames 1..T-1)
    above_all = float((jump[:, at] > plain[:, at].max()).mean())
    summary = {
        "checkpoint": args.checkpoint, "step": step, "videos": args.videos, "frames": args.frames,
        "jump_frame": args.jump_frame, "shift": args.shift, "particles": args.particles,
        "jump_above_every_unmodified_video": above_all,
        "jump_frame_surprise": {"median": float(np.median(jump[:, at])), "min": float(jump[:, at].min())},
        "unmodified_frame_surprise": {"median": float(np.median(plain[:, at])), "max": float(plain[:, at].max())},
        "jump_is_the_videos_most_surprising_frame": float((jump.argmax(1) == at).mean()),
        "jump_above_the_same_video_unmodified": float((jump[:, at] > plain[:, at]).mean()),
        "jump_minus_same_video_unmodified": {"median": float(np.median(jump[:, at] - plain[:, at])),
                                             "min": float((jump[:, at] - plain[:, at]).min())},
        "seconds": round(seconds, 1), "threads": torch.get_num_threads(),
    }
    print(json.dumps(summary, indent=1))
    if args.out:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(7, 3.5))
        ax = fig.subplots()
        frames = np.arange(1, args.frames)
        for rows, color, label in ((plain, "tab:blue", "test videos"),
                                   (jump, "tab:red", f"the same, digits jump {args.shift} px at frame {args.jump_frame}")):
            for row in rows:
                ax.plot(frames, row, color=color, alpha=0.15, lw=0.7)
            ax.plot(frames, np.median(rows, axis=0), color=color, lw=2, label=f"{label} (median)")
        ax.set_xlabel("frame t")
        ax.set_ylabel(f"-log p(x_t | x_<t), nats (K={args.particles})")
        ax.set_title(f"{args.checkpoint}: surprise per frame, {args.videos} test videos", fontsize=9)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(args.out, dpi=120)


if __name__ == "__main__":
    main()
