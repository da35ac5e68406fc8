"""Each subcommand: its options and the library function it calls."""
from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
from pathlib import Path

import numpy as np

from svg_pyro.checkpoint import export_weights
from svg_pyro.cli.options import (EXIT_PARTIAL, HelpFormatter, config_from_args, config_options,
                                  device_option, library_defaults, progress_option, rank, show_progress)
from svg_pyro.config import DEFAULT_PRESET, PRESETS
from svg_pyro.data.folder import prepare_folder
from svg_pyro.data.prepare import prepare_bair, prepare_kth
from svg_pyro.evaluation.conditioning import run_condition
from svg_pyro.inference.condition import PROPOSALS
from svg_pyro.evaluation.evaluate import evaluate
from svg_pyro.evaluation.options import EvaluationOptions
from svg_pyro.evaluation.summary import bounds_table, markdown_table, motion_table
from svg_pyro.evaluation.kl_curves import PROBED, compare_runs
from svg_pyro.evaluation.score import score
from svg_pyro.evaluation.trajectory import STUDY_STEPS, run_studies
from svg_pyro.training.train import train


class Command(typing.NamedTuple):
    add_options: typing.Callable[[argparse.ArgumentParser], None]
    run: typing.Callable[[argparse.Namespace], int]
    description: str


# ---------------------------------------------------------------------------------------------
# train


def _train_options(p: argparse.ArgumentParser) -> None:
    p.argument_default = argparse.SUPPRESS  # a flag not given leaves the preset's value
    p.add_argument("--preset", choices=sorted(PRESETS),
                   help=f"base configuration, default {DEFAULT_PRESET} (with --resume: the "
                        "checkpoint's own); the options below override it")
    p.add_argument("--out", help="output directory (default: runs/MODEL)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    progress_option(p)
    config_options(p.add_argument_group("settings (the fields of svg_pyro.config.Config)"))


def _train(args) -> int:
    config, out, resume = config_from_args(args)
    train(config, out, resume=resume, progress=show_progress(args))
    if rank() == 0:
        print(f"done: {out}")
    return 0


# ---------------------------------------------------------------------------------------------
# evaluate


def _evaluate_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="checkpoint.pt of the model to evaluate, or a shipped model's short name")
    p.add_argument("--out", help="output directory (default: runs/evaluate-NAME, NAME the checkpoint's "
                                 "short name or its run directory's name)")
    for f in dataclasses.fields(EvaluationOptions):  # one flag per setting, as the library declares it
        settings = {k: v for k, v in f.metadata.items() if k != "flag"}
        flag = f.metadata.get("flag", f"--{f.name.replace('_', '-')}")
        p.add_argument(flag, dest=f.name, default=list(f.default) if isinstance(f.default, tuple) else f.default,
                       **settings)
    progress_option(p)


def _evaluate(args) -> int:
    if args.out is None:
        given = Path(args.checkpoint)
        args.out = Path("runs") / f"evaluate-{given.parent.name if given.name == 'checkpoint.pt' else given.stem}"
    options = EvaluationOptions(**{f.name: getattr(args, f.name) for f in dataclasses.fields(EvaluationOptions)})
    metrics = evaluate(args.checkpoint, args.out, options, progress=show_progress(args))
    print(markdown_table(metrics), end="")
    print(bounds_table(metrics), end="")
    print(motion_table(metrics), end="")
    print(f"written: {Path(args.out) / 'metrics.json'}")
    return 0


# ---------------------------------------------------------------------------------------------
# trajectory


def _trajectory_options(p: argparse.ArgumentParser) -> None:
    default = library_defaults(run_studies)

    p.add_argument("--checkpoint", required=True, help="checkpoint (or shipped short name) of the model to study (normally SVG-LP)")
    p.add_argument("--fp-checkpoint", help="an SVG-FP checkpoint to compare")
    p.add_argument("--det-checkpoint", help="a deterministic-model checkpoint to compare")
    p.add_argument("--out", required=True, help="directory for study.json, distances.md and a folder of "
                                                "figures per trajectory")
    p.add_argument("--samples", type=int, default=default["samples"], help="samples per digit (the det model needs one)")
    p.add_argument("--digits", type=int, default=default["digits"], help="test digits rendered on each trajectory")
    p.add_argument("--trajectory-seed", type=int, default=default["trajectory_seed"],
                   help="seed of the test videos searched for the trajectories (and of the digit choice)")
    p.add_argument("--wall-steps", type=int, nargs="+", default=list(default["wall_steps"]),
                   help="one trajectory per value: predicted steps whose motion is certain before its wall hit")
    p.add_argument("--frames", type=int, help=f"video length (default: the checkpoint's n_past + {STUDY_STEPS})")
    p.add_argument("--seed", type=int, default=default["seed"], help="sampling seed")
    device_option(p, default["device"])
    progress_option(p)


def _trajectory(args) -> int:
    study = run_studies(args.checkpoint, args.out, args.fp_checkpoint, args.det_checkpoint, args.samples,
                        args.digits, args.trajectory_seed, args.frames, args.seed, args.device,
                        progress=show_progress(args), wall_steps=args.wall_steps)
    for name, s in study["average"].items():
        print(f"{name}: TV before/after the wall {s['tv_before_wall']:.3f} / {s['tv_after_wall']:.3f}; "
              f"W1 {s['w1_before_wall']:.3f} / {s['w1_after_wall']:.3f} "
              f"(mean of {len(study['trajectories'])} trajectories)")
    print(f"wrote {Path(args.out) / 'study.json'}, {Path(args.out) / 'distances.md'} and a folder per trajectory")
    return 0


# ---------------------------------------------------------------------------------------------
# prepare


def _prepare_options(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="dataset", required=True)
    kth = sub.add_parser("kth", help="KTH actions: a folder of personNN_ACTION_dN_uncomp.avi files")
    bair = sub.add_parser("bair", help="BAIR robot pushing: the unpacked softmotion30_44k TFRecords")
    folder = sub.add_parser("folder", help="your own videos: video files, folders of numbered frames, .npy/.npz "
                                           "arrays, anywhere under --src")
    for q in (kth, bair, folder):
        q.formatter_class = HelpFormatter
        q.add_argument("--src", required=True, help="folder holding the downloaded, unpacked files (only read)")
        q.add_argument("--out", required=True, help="store folder to create (or resume)")
        progress_option(q)
    for q in (kth, folder):
        q.add_argument("--size", type=int, default=64, choices=(64, 128), help="frame size")
    folder.add_argument("--channels", type=int, default=1, choices=(1, 3), help="1: grayscale, 3: RGB")
    folder.add_argument("--frames-per-clip", type=int, default=20, help="frames per clip (T)")
    folder.add_argument("--stride", type=int, help="frames between the starts of clips (default: T, back to back)")
    folder.add_argument("--test-fraction", type=float, default=0.1, help="share of the source files kept for testing")
    folder.add_argument("--seed", type=int, default=0, help="seed of the train/test split of the source files")
    folder.add_argument("--overwrite", action="store_true", help="replace a store already at --out")


def _prepare(args) -> int:
    progress = show_progress(args)
    if args.dataset == "kth":
        summary = prepare_kth(args.src, args.out, args.size, progress=progress)
    elif args.dataset == "bair":
        summary = prepare_bair(args.src, args.out, progress=progress)
    else:

        summary = prepare_folder(args.src, args.out, args.size, args.channels, args.frames_per_clip, args.stride,
                                 args.test_fraction, args.seed, args.overwrite, progress=progress)
    print(f"{args.dataset}: {len(summary.prepared)} files prepared, {len(summary.skipped)} already in "
          f"the store, {len(summary.failed)} failed -> {args.out}")
    if summary.ignored:
        print(f"ignored {len(summary.ignored)} files not named like dataset files, e.g. {summary.ignored[0]}")
    if summary.failed:
        print("FAILED (left out of the store; replace them and run the same command again):", file=sys.stderr)
        for key, reason in summary.failed.items():
            print(f"  {key}: {reason}", file=sys.stderr)
        return EXIT_PARTIAL
    return 0


# ---------------------------------------------------------------------------------------------
# kl-curves


def _kl_curves_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", help="run directories (each holds metrics.jsonl)")
    p.add_argument("--out", required=True, help="PNG to write")
    p.add_argument("--labels", nargs="+", help="one label per run (default: the directory names)")
    p.add_argument("--smooth", type=int, default=10, help="logged rows to average over")
    p.add_argument("--until", type=int, help="ignore rows after this training step (compare runs at one step)")
    p.add_argument("--title", default="")
    p.add_argument("--x", choices=("step", "minutes"), default="step",
                   help="horizontal axis: training step or training minutes")


def _numbers(values) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


def _kl_curves(args) -> int:
    runs = compare_runs(args.runs, args.out, args.labels, args.smooth, args.until, args.title, args.x)
    for label, rows in runs.items():
        line = f"{label}: KL per transition {rows[-1]['kl_per_step']:.3f} at step {rows[-1]['step']}"
        probed = [r for r in rows if r.get(PROBED) is not None]
        if probed:
            r = probed[-1]
            line += (f"; at step {r['step']}: displacement error on certain steps {r[PROBED]:.2f} px/frame "
                     f"(copy-last {r['copy_last_certain_displacement_error']:.2f}), position error best "
                     f"{r['position_error_best']:.2f} / mean {r['position_error_mean']:.2f} px "
                     f"(copy-last {r['copy_last_position_error']:.2f})")
            if "one_step_displacement_error_t" in r:
                line += ("; displacement error per predicted step, free-running "
                         f"{_numbers(r['displacement_error_t'])}, one-step from true frames "
                         f"{_numbers(r['one_step_displacement_error_t'])}")
        print(line)
    print(f"wrote {args.out}")
    return 0


# ---------------------------------------------------------------------------------------------
# score


def _score_options(p: argparse.ArgumentParser) -> None:
    default = library_defaults(score)
    p.add_argument("--checkpoint", required=True, help="checkpoint.pt of the model, or a shipped model's short name")
    p.add_argument("--input", help=".npy of videos (N, T, H, W) or (N, T, C, H, W), uint8 or float in [0, 1] "
                                   "(default: the model's test videos)")
    p.add_argument("--out", required=True, help="directory for scores.json and scores.png")
    p.add_argument("--videos", type=int, help="score the first N videos (default: all of --input, 64 of the test set)")
    p.add_argument("--particles", type=int, default=default["particles"],
                   help="latent paths per video of the importance-weighted estimate (K)")
    device_option(p, default["device"])
    p.add_argument("--batch", type=int, default=default["max_batch"], help="video-paths per forward pass")
    p.add_argument("--seed", type=int, default=default["seed"])
    progress_option(p)


def _score(args) -> int:
    result = score(args.checkpoint, args.out, args.input, args.videos, args.particles, args.device, args.batch,
                   args.seed, progress=show_progress(args))
    per_frame = np.array(result["per_frame"])
    top = np.unravel_index(per_frame.argmax(), per_frame.shape)
    print(f"{result['videos']} videos x {per_frame.shape[1]} frames: surprise median {np.median(per_frame):.1f} nats "
          f"per frame; the highest, {per_frame[top]:.1f}, at video {top[0]} frame {result['frames'][top[1]]}")
    print(f"wrote {Path(args.out) / 'scores.json'} and {Path(args.out) / 'scores.png'}")
    return 0


# ---------------------------------------------------------------------------------------------
# condition


def _condition_options(p: argparse.ArgumentParser) -> None:
    default = library_defaults(run_condition)
    p.add_argument("--checkpoint", required=True, help="checkpoint.pt of an SM-MNIST model, or a shipped model's short name")
    p.add_argument("--observe", default=default["observe"],
                   help="the frames given, as indices and ranges: the conditioning frames 0..n_past-1 and any later ones")
    p.add_argument("--frames", type=int, default=default["frames"], help="video length (frames 0..FRAMES-1)")
    p.add_argument("--videos", type=int, default=default["videos"], help="test videos to condition")
    p.add_argument("--samples", type=int, default=default["samples"],
                   help="futures per video, conditioned and unconditioned alike")
    p.add_argument("--particles", type=int, help="sequential Monte Carlo particles per video (default: --samples)")
    p.add_argument("--temperature", type=float, default=default["temperature"],
                   help="power on the observed frames' likelihood: 1 is the model's posterior, lower flattens the "
                        "weights (a higher ESS, a broader posterior)")
    p.add_argument("--proposal", choices=PROPOSALS, default=default["proposal"],
                   help="where z_t is proposed on the observed steps: the learned prior, or the guide q(z_t | x_1:t)")
    p.add_argument("--out", required=True, help="directory for condition.json and condition.png")
    device_option(p, default["device"])
    p.add_argument("--seed", type=int, default=default["seed"])
    progress_option(p)


def _condition(args) -> int:
    result = run_condition(args.checkpoint, args.out, args.observe, args.frames, args.videos, args.samples,
                           args.particles, args.temperature, args.device, args.seed, show_progress(args),
                           args.proposal)
    per_step = result["per_step"]
    if result["gap"]:
        print(f"mean position error over the unobserved frames {result['gap'][0]}-{result['gap'][-1]}: "
              f"conditioned {per_step['conditioned']['gap_position_error']:.2f} px, unconditioned "
              f"{per_step['unconditioned']['gap_position_error']:.2f} px")
    print(f"ESS per observed frame: {result['ess']} of {result['particles']} particles")
    if "exact" in result:
        print(f"W1 to the exact posterior after the wall: conditioned {per_step['conditioned']['w1_after_wall']}, "
              f"unconditioned {per_step['unconditioned']['w1_after_wall']} px")
    print(f"wrote {Path(args.out) / 'condition.json'} and {Path(args.out) / 'condition.png'}")
    return 0


# ---------------------------------------------------------------------------------------------
# export


def _export_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="training checkpoint (RUN/checkpoint.pt)")
    p.add_argument("out", help="weights-only file to write (checkpoints/NAME.pt makes NAME a short name)")
    p.add_argument("--half", action="store_true", help="store the weights in fp16 (half the size; loaded as fp32)")
    p.add_argument("--force", action="store_true", help="replace an existing weights file at OUT (a training "
                                                         "checkpoint is never replaced)")


def _export(args) -> int:
    weights = export_weights(args.checkpoint, args.out, args.half, overwrite=args.force)
    size = Path(args.out).stat().st_size / 2**20
    print(f"wrote {args.out}: {weights['config']['model']} at step {weights['step']}, {size:.1f} MiB")
    return 0


# ---------------------------------------------------------------------------------------------

COMMANDS = {
    "train": Command(_train_options, _train,
                     "Train SVG-LP / SVG-FP / the deterministic baseline with Pyro SVI (data-parallel "
                     "under torchrun)."),
    "evaluate": Command(_evaluate_options, _evaluate,
                        "Best-of-N PSNR / SSIM per predicted step against the ground truth (and the "
                        "deterministic baseline)."),
    "trajectory": Command(_trajectory_options, _trajectory,
                          "Per-step distribution of the digit's (dx, dy) in generated 1-digit SM-MNIST "
                          "videos against the exact one (supplement Fig. 3 and 4)."),
    "prepare": Command(_prepare_options, _prepare,
                       "Convert downloaded KTH / BAIR files into the frame store training reads."),
    "kl-curves": Command(_kl_curves_options, _kl_curves,
                         "How much the latent carries and how well the digits move: KL per step and the "
                         "motion probe's errors against training step or time, from runs' metrics.jsonl."),
    "score": Command(_score_options, _score,
                     "How surprising is each frame: -log p(x_t | x_<t) per video and frame, from the model's "
                     "importance-weighted bound (anomalies stand out)."),
    "condition": Command(_condition_options, _condition,
                         "Futures consistent with frames given at any steps (a goal frame, a gap to fill): "
                         "sequential Monte Carlo over the latent path, against the exact posterior on SM-MNIST."),
    "export": Command(_export_options, _export,
                      "Write a checkpoint's trained networks without the optimizer and RNG state (what "
                      "checkpoints/ ships; every command loads it by path or short name)."),
}
