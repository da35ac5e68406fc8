"""The ``svg-pyro`` command: train, evaluate, trajectory, prepare, kl-curves, score, export.

Each subcommand declares its options here and calls a library function; ``run`` holds the one rule
that turns an expected failure into a one-line error and an exit code. The training options are made
from the fields of ``Config``, so every setting has a flag and its help is the field's own.
``python svi_train.py`` runs its train subcommand; ``python -m svg_pyro`` is ``svg-pyro``.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import types
import typing
import warnings
from pathlib import Path

from svg_pyro.config import CHOICES, DEFAULT_PRESET, PRESETS, Config, preset
from svg_pyro.errors import SvgPyroError

EXIT_USAGE = 2  # a problem the user can fix: bad option, missing file, diverged run, ...
EXIT_PARTIAL = 1  # prepare: some source files failed and were left out


class Command(typing.NamedTuple):
    add_options: typing.Callable[[argparse.ArgumentParser], None]
    run: typing.Callable[[argparse.Namespace], int]
    description: str


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))  # set by torchrun


def _say_error(message: str) -> None:
    print(f"{f'rank {_rank()}: ' if _rank() else ''}error: {message}", file=sys.stderr)


def _say_warning(message, category, *_, **__) -> None:
    print(f"warning: {message}", file=sys.stderr)


def run(command: Command, args: argparse.Namespace) -> int:
    """Run a subcommand; expected failures become one line on stderr and exit code 2."""
    from svg_pyro.distributed import PeerError
    from svg_pyro.signals import Stopped

    try:
        with warnings.catch_warnings():  # what the library warns about, as one line too
            warnings.showwarning = _say_warning
            return command.run(args)
    except PeerError:
        return EXIT_USAGE  # rank 0 printed the reason
    except Stopped as stopped:  # the checkpoint is written; the message says how to resume
        if _rank() == 0:
            print(stopped, file=sys.stderr)
        return 128 + stopped.signum
    except SvgPyroError as err:  # expected: the message names the problem and the fix
        _say_error(str(err))
        return EXIT_USAGE
    except OSError as err:  # a file where a directory should be, a read-only or full disk, ...
        where = err.filename or getattr(args, "out", None) or "the output"
        _say_error(f"cannot write {where}: {err.strerror or err}; choose another --out, or free space / "
                   "fix permissions there (what was saved before is intact)")
        return EXIT_USAGE


# ---------------------------------------------------------------------------------------------
# options shared by several subcommands


def _device_option(p: argparse.ArgumentParser, default: str = "auto") -> None:
    p.add_argument("--device", default=default, help="auto (a GPU when there is one), cpu or cuda[:N]")


def _defaults(function) -> dict:
    """The keyword defaults of the library function a subcommand calls: its options take them from
    there, so the command line and the Python API cannot drift apart."""
    import inspect

    return {name: parameter.default for name, parameter in inspect.signature(function).parameters.items()
            if parameter.default is not inspect.Parameter.empty}


def _progress_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")


def _progress(args) -> bool:
    return not getattr(args, "no_progress", False)


# ---------------------------------------------------------------------------------------------
# train


def _field_type(hint):
    """int for ``int``, ``int | None``; ``None`` for a bool (a switch)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        (hint,) = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    return None if hint is bool else hint


def config_options(p: argparse.ArgumentParser) -> None:
    """One --flag per Config field (``--batch-size`` for ``batch_size``), typed as the field."""
    hints = typing.get_type_hints(Config)
    for f in dataclasses.fields(Config):
        flag, kind = f"--{f.name.replace('_', '-')}", _field_type(hints[f.name])
        if kind is None:
            p.add_argument(flag, action=argparse.BooleanOptionalAction, help=f.metadata["help"])
        else:
            p.add_argument(flag, type=kind, choices=CHOICES.get(f.name), help=f.metadata["help"])


def _train_options(p: argparse.ArgumentParser) -> None:
    p.argument_default = argparse.SUPPRESS  # a flag not given leaves the preset's value
    p.add_argument("--preset", choices=sorted(PRESETS),
                   help=f"base configuration, default {DEFAULT_PRESET} (with --resume: the "
                        "checkpoint's own); the options below override it")
    p.add_argument("--out", help="output directory (default: runs/MODEL)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    _progress_option(p)
    config_options(p.add_argument_group("settings (the fields of svg_pyro.config.Config)"))


def config_from_args(args: argparse.Namespace) -> tuple[Config, Path, bool]:
    """The run's config, output directory and resume flag: the preset (or, with --resume and no
    --preset, the checkpoint's own config) with the options the user gave on top."""
    from svg_pyro.checkpoint import load_checkpoint

    given = vars(args).copy()
    out = Path(given.pop("out", None) or f"runs/{given.get('model', 'svg-lp')}")
    resume = given.pop("resume", False)
    given.pop("no_progress", None)
    given.pop("command", None)
    name = given.pop("preset", None)
    if resume and name is None:
        base = load_checkpoint(out / "checkpoint.pt")["config"]
    else:
        default = "folder-cpu" if given.get("dataset") == "folder" else DEFAULT_PRESET
        base = preset(name or default).to_dict()
    merged = {**base, **given}
    if merged["dataset"] == "folder" and merged.get("data_root"):
        merged.update(_store_frame(merged["data_root"], given))
    return Config(**merged).validate(), out, resume


def _store_frame(data_root, given: dict) -> dict:
    """A folder store's frame size and channels, for the settings the user did not give (those given
    are checked against the store when training starts)."""
    import json

    from svg_pyro.video_store import MANIFEST

    try:
        channels, size, _ = json.loads((Path(data_root) / MANIFEST).read_text())["frame_shape"]
    except (OSError, ValueError, KeyError):
        return {}  # no readable store: training names the problem
    return {k: v for k, v in (("channels", channels), ("image_size", size)) if k not in given}


def _train(args) -> int:
    from svg_pyro.train import train

    config, out, resume = config_from_args(args)
    train(config, out, resume=resume, progress=_progress(args))
    if _rank() == 0:
        print(f"done: {out}")
    return 0


# ---------------------------------------------------------------------------------------------
# evaluate


def _evaluate_options(p: argparse.ArgumentParser) -> None:
    from svg_pyro.evaluate import BN_MODES, evaluate

    default = _defaults(evaluate)

    p.add_argument("--checkpoint", required=True, help="checkpoint.pt of the model to evaluate, or a shipped model's short name")
    p.add_argument("--out", help="output directory (default: runs/evaluate-NAME, NAME the checkpoint's "
                                 "short name or its run directory's name)")
    p.add_argument("--samples", type=int, default=default["samples"], help="futures drawn per test video")
    p.add_argument("--videos", type=int, default=default["videos"], help="test videos (the first ones of the test set)")
    p.add_argument("--n-past", type=int, help="conditioning frames (default: the checkpoint's n_past)")
    p.add_argument("--horizon", type=int, help="predicted frames (default: 25 SM-MNIST, 30 KTH, 28 BAIR)")
    p.add_argument("--prior", choices=("learned", "fixed"), default=default["prior"],
                   help="learned: the checkpoint's own prior; fixed: swap in N(0, I) at sampling time")
    p.add_argument("--prior-checkpoint", help="sample under the learned prior of this SVG-LP checkpoint")
    p.add_argument("--det-checkpoint", help="checkpoint of the deterministic baseline")
    _device_option(p, default["device"])
    p.add_argument("--bn", choices=BN_MODES, default=default["bn"],
                   help="BatchNorm at sampling time: eval = running statistics, train = batch statistics")
    p.add_argument("--batch", type=int, default=default["max_batch"], help="(sample, video) rows per forward pass")
    p.add_argument("--seed", type=int, default=default["seed"])
    p.add_argument("--window", type=int, nargs=2, metavar=("FIRST", "LAST"),
                   help="also report best-of-N averaged over these frame indices (e.g. 10 20)")
    p.add_argument("--data-root", help="prepared KTH/BAIR store, if it moved since training")
    p.add_argument("--mnist-root", help="MNIST IDX files, if they moved since training")
    p.add_argument("--bound-particles", type=int, nargs="+", default=list(default["bound_particles"]), metavar="K",
                   help="also the held-out ELBO and importance-weighted bounds on log p(x) with K latent "
                        "paths each (e.g. 1 10 100; nats per frame; svg_pyro.bounds)")
    p.add_argument("--motion-videos", type=int, default=default["motion_videos"], metavar="N",
                   help="SM-MNIST: also find the digits in 5 futures of the first N test videos, free-running and "
                        "teacher-forced one-step (svg_pyro.motion; 0 = off)")
    _progress_option(p)


def _evaluate(args) -> int:
    from svg_pyro.evaluate import bounds_table, evaluate, markdown_table, motion_table

    if args.out is None:
        given = Path(args.checkpoint)
        args.out = Path("runs") / f"evaluate-{given.parent.name if given.name == 'checkpoint.pt' else given.stem}"
    metrics = evaluate(args.checkpoint, args.out, samples=args.samples, videos=args.videos,
                       n_past=args.n_past, horizon=args.horizon, prior=args.prior,
                       prior_checkpoint=args.prior_checkpoint, det_checkpoint=args.det_checkpoint,
                       device=args.device, bn=args.bn, max_batch=args.batch, seed=args.seed,
                       data_root=args.data_root, mnist_root=args.mnist_root,
                       window=None if args.window is None else tuple(args.window),
                       bound_particles=tuple(args.bound_particles), motion_videos=args.motion_videos,
                       progress=_progress(args))
    print(markdown_table(metrics), end="")
    print(bounds_table(metrics), end="")
    print(motion_table(metrics), end="")
    print(f"written: {Path(args.out) / 'metrics.json'}")
    return 0


# ---------------------------------------------------------------------------------------------
# trajectory


def _trajectory_options(p: argparse.ArgumentParser) -> None:
    from svg_pyro.trajectory import STUDY_STEPS, run_studies

    default = _defaults(run_studies)

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
    _device_option(p, default["device"])
    _progress_option(p)


def _trajectory(args) -> int:
    from svg_pyro.trajectory import run_studies

    study = run_studies(args.checkpoint, args.out, args.fp_checkpoint, args.det_checkpoint, args.samples,
                        args.digits, args.trajectory_seed, args.frames, args.seed, args.device,
                        progress=_progress(args), wall_steps=args.wall_steps)
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
        q.formatter_class = _HelpFormatter
        q.add_argument("--src", required=True, help="folder holding the downloaded, unpacked files (only read)")
        q.add_argument("--out", required=True, help="store folder to create (or resume)")
        _progress_option(q)
    for q in (kth, folder):
        q.add_argument("--size", type=int, default=64, choices=(64, 128), help="frame size")
    folder.add_argument("--channels", type=int, default=1, choices=(1, 3), help="1: grayscale, 3: RGB")
    folder.add_argument("--frames-per-clip", type=int, default=20, help="frames per clip (T)")
    folder.add_argument("--stride", type=int, help="frames between the starts of clips (default: T, back to back)")
    folder.add_argument("--test-fraction", type=float, default=0.1, help="share of the source files kept for testing")
    folder.add_argument("--seed", type=int, default=0, help="seed of the train/test split of the source files")
    folder.add_argument("--overwrite", action="store_true", help="replace a store already at --out")


def _prepare(args) -> int:
    from svg_pyro.prepare import prepare_bair, prepare_kth

    progress = _progress(args)
    if args.dataset == "kth":
        summary = prepare_kth(args.src, args.out, args.size, progress=progress)
    elif args.dataset == "bair":
        summary = prepare_bair(args.src, args.out, progress=progress)
    else:
        from svg_pyro.folder import prepare_folder

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
    from svg_pyro.kl_curves import PROBED, compare_runs

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
    from svg_pyro.score import score

    default = _defaults(score)
    p.add_argument("--checkpoint", required=True, help="checkpoint.pt of the model, or a shipped model's short name")
    p.add_argument("--input", help=".npy of videos (N, T, H, W) or (N, T, C, H, W), uint8 or float in [0, 1] "
                                   "(default: the model's test videos)")
    p.add_argument("--out", required=True, help="directory for scores.json and scores.png")
    p.add_argument("--videos", type=int, help="score the first N videos (default: all of --input, 64 of the test set)")
    p.add_argument("--particles", type=int, default=default["particles"],
                   help="latent paths per video of the importance-weighted estimate (K)")
    _device_option(p, default["device"])
    p.add_argument("--batch", type=int, default=default["max_batch"], help="video-paths per forward pass")
    p.add_argument("--seed", type=int, default=default["seed"])
    _progress_option(p)


def _score(args) -> int:
    import numpy as np

    from svg_pyro.score import score

    result = score(args.checkpoint, args.out, args.input, args.videos, args.particles, args.device, args.batch,
                   args.seed, progress=_progress(args))
    per_frame = np.array(result["per_frame"])
    top = np.unravel_index(per_frame.argmax(), per_frame.shape)
    print(f"{result['videos']} videos x {per_frame.shape[1]} frames: surprise median {np.median(per_frame):.1f} nats "
          f"per frame; the highest, {per_frame[top]:.1f}, at video {top[0]} frame {result['frames'][top[1]]}")
    print(f"wrote {Path(args.out) / 'scores.json'} and {Path(args.out) / 'scores.png'}")
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
    from svg_pyro.checkpoint import export_weights

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
    "export": Command(_export_options, _export,
                      "Write a checkpoint's trained networks without the optimizer and RNG state (what "
                      "checkpoints/ ships; every command loads it by path or short name)."),
}


class _Parser(argparse.ArgumentParser):
    """argparse's own errors (an unknown option, ``--steps abc``) as one line too, exit 2."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(EXIT_USAGE, f"error: {message}; see {self.prog} --help\n")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: X)" only where there is one to say and the help does not already say it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or action.nargs == 0 or "default" in (action.help or ""):
            return action.help or ""
        return super()._get_help_string(action)


def _subcommand_parser(p: argparse.ArgumentParser, command: Command) -> argparse.ArgumentParser:
    p.formatter_class = _HelpFormatter
    p.description = command.description
    command.add_options(p)
    p.set_defaults(command=command)
    return p


def parser(prog: str = "svg-pyro") -> argparse.ArgumentParser:
    p = _Parser(prog=prog, description="Stochastic Video Generation (SVG-LP, SVG-FP and "
                                       "the deterministic baseline) in Pyro.")
    sub = p.add_subparsers(metavar="COMMAND", required=True)
    for name, command in COMMANDS.items():
        _subcommand_parser(sub.add_parser(name, help=command.description), command)
    return p


def main(argv: list[str] | None = None) -> int:
    """``svg-pyro COMMAND [options]``."""
    args = parser().parse_args(argv)
    return run(args.command, args)


def run_subcommand(name: str, argv: list[str] | None = None, prog: str | None = None) -> int:
    """One subcommand on its own: what ``python svi_train.py`` runs."""
    command = COMMANDS[name]
    p = _subcommand_parser(_Parser(prog=prog or f"svg-pyro {name}"), command)
    return run(command, p.parse_args(argv))
