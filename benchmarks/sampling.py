"""Sampling speed: ``svg_pyro.inference.sampling.generate`` against the reference procedure, interleaved.

    python benchmarks/sampling.py --preset smmnist-cpu --videos 16 --samples 20 --horizon 25
    python benchmarks/sampling.py --preset smmnist --device cuda    # reference nets, on a GPU

The reference procedure is a plain-torch transcription of the published SVG-LP generator on this
project's networks: one sample at a time for the batch of videos; at every step it encodes the
input frame, and during the conditioning steps also the target frame for the posterior; after them
it draws z from the learned prior, predicts and decodes, and the decoded frame is the next input.
Both use BatchNorm running statistics (eval mode) and the same untrained weights (speed does not
depend on them). Prints a Markdown table; the ratio is reference time / project time.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import pyro
import torch

from svg_pyro.config import PRESETS, preset
from svg_pyro.data.datasets import make_datasets, stack_videos
from svg_pyro.devices import resolve_device
from svg_pyro.models.build import build_model
from svg_pyro.inference.sampling import generate

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for tests/reference.py
from tests.reference import reference_generate  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="smmnist-cpu", choices=sorted(PRESETS))
    p.add_argument("--device", default="auto")
    p.add_argument("--videos", type=int, default=16)
    p.add_argument("--samples", type=int, default=20)
    p.add_argument("--horizon", type=int, default=25, help="frames generated after the n_past given")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    device = resolve_device(args.device)
    config = preset(args.preset, model="svg-lp")
    pyro.set_rng_seed(0)
    svg = build_model(config)
    svg.to(device).eval()
    _, test_set = make_datasets(config, split_lengths=(config.frames_per_video, config.n_past))
    videos = stack_videos(test_set, args.videos).to(device)
    n_frames = config.n_past + args.horizon
    runs = {"reference procedure": lambda: reference_generate(svg, videos, config.n_past, n_frames, args.samples),
            "generate": lambda: generate(svg, videos, config.n_past, n_frames, args.samples)}
    times = {k: [] for k in runs}
    for i in range(args.repeats + 1):
        for label, fn in runs.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            tick = time.perf_counter()
            out = fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            assert out.shape == (args.samples, args.videos, n_frames, *videos.shape[2:])
            if i:  # the first round warms up
                times[label].append(time.perf_counter() - tick)
    ref = statistics.median(times["reference procedure"])
    print(f"{args.preset}, {args.videos} videos x {args.samples} samples, {config.n_past} -> {args.horizon}, "
          f"{device}, torch threads {torch.get_num_threads()}, median of {args.repeats}\n")
    print("| procedure | s per call | frames / s | x reference |")
    print("| --- | --- | --- | --- |")
    frames = args.videos * args.samples * args.horizon
    for label, ts in times.items():
        t = statistics.median(ts)
        print(f"| {label} | {t:.2f} | {frames / t:.0f} | {ref / t:.2f}x |")


if __name__ == "__main__":
    main()
