"""Evaluation protocol: ``python -m svg_pyro.evaluate --checkpoint PATH --out DIR``.

For each test video: condition on ``n_past`` frames, draw N futures of ``horizon`` frames, and score
every predicted frame against the truth with SSIM and PSNR (``svg_pyro.metrics``). Per metric, the
*best* sample of a video is the one with the highest score averaged over the predicted frames
(conditioning frames excluded); its per-step scores are kept. Reported per model: the mean over
videos and the 95% interval 1.96 * std / sqrt(videos) (sample std), for the best sample
("best-of-N", the published protocol) and for the average over samples ("mean-of-N"), overall and
per step. Baselines: the deterministic model (``--det-checkpoint``) and copying the last
conditioning frame; they make one prediction, so their best and mean coincide.

Writes ``DIR/metrics.json`` (settings under "protocol", per-step arrays and summaries under
"results"), ``DIR/table.md``, ``DIR/per_step.png``, ``DIR/samples.png`` and ``DIR/samples.gif``.
See docs/evaluation.md.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import pyro
import torch
from tqdm.auto import tqdm

from svg_pyro.build import resolve_device
from svg_pyro.checkpoint import CheckpointError, load_model
from svg_pyro.datasets import check_video_values, make_datasets
from svg_pyro.metrics import METRICS, describe
from svg_pyro.sampling import BN_MODES, DEFAULT_MAX_BATCH, sample_chunks

# Published test horizons (Denton & Fergus 2018): SM-MNIST 5 -> 25, KTH 10 -> 30, BAIR 2 -> 28.
DEFAULT_HORIZON = {"smmnist": 25, "kth": 30, "bair": 28}
VIDEO_BLOCK = 64  # test videos held in memory at a time
GRID_VIDEOS = 4  # videos shown in samples.png / samples.gif
RANDOM_SAMPLES = 2  # samples shown beside the best one (samples are i.i.d.: the first ones)
RESULT_KEYS = ("svg", "deterministic", "copy_last_frame")
MAX_MEMORY = 64 * 2**30  # bytes of scores and sampled frames an evaluation may ask for


# ---------------------------------------------------------------------------------------------
# the protocol on score arrays


def interval(per_video: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean over videos (axis 0) and the 95% half-width 1.96 * std / sqrt(videos)."""
    n = per_video.shape[0]
    std = per_video.std(axis=0, ddof=1) if n > 1 else np.zeros(per_video.shape[1:])
    return per_video.mean(axis=0), 1.96 * std / np.sqrt(n)


def best_of_n(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """scores (samples, videos, steps) -> (index of the best sample per video, its per-step scores
    (videos, steps)); best = highest mean over the steps (the predicted frames)."""
    best = scores.mean(axis=2).argmax(axis=0)
    return best, scores[best, np.arange(scores.shape[1])]


def summarize(scores: np.ndarray, window: slice | None = None) -> dict:
    """Best-of-N and mean-of-N summaries of one metric's scores (samples, videos, steps); with
    ``window`` (a slice of steps), also the mean and interval of each video's average over it
    (the best sample is still the best over all predicted steps)."""
    out = {}
    for name, per_step in (("best", best_of_n(scores)[1]), ("mean_of_n", scores.mean(axis=0))):
        mean, ci = interval(per_step.mean(axis=1))
        step_mean, step_ci = interval(per_step)
        out[name] = {"mean": float(mean), "ci95": float(ci),
                     "per_step": step_mean.tolist(), "per_step_ci95": step_ci.tolist()}
        if window is not None:
            w_mean, w_ci = interval(per_step[:, window].mean(axis=1))
            out[name]["window"] = {"mean": float(w_mean), "ci95": float(w_ci)}
    return out


def frame_scores(predicted: torch.Tensor, truth: torch.Tensor) -> dict:
    """Per-frame scores of ``predicted`` (..., steps, C, H, W) against ``truth`` (broadcast)."""
    truth = truth.expand_as(predicted)
    return {name: fn(predicted, truth).cpu().numpy() for name, fn in METRICS.items()}


# ---------------------------------------------------------------------------------------------
# running models over the test set


@dataclasses.dataclass
class Shown:
    """Frames kept for the sample grid of one video."""
    truth: torch.Tensor
    best_score: float = -np.inf
    best: torch.Tensor | None = None
    random: list = dataclasses.field(default_factory=list)
    det: torch.Tensor | None = None


def _score_model(svg, guide, test_set, num_videos, n_past, n_frames, num_samples, *, prior, bn,
                 max_batch, shown: list[Shown] | None, progress, desc):
    """Scores (samples, videos, steps) per metric of a model; fills ``shown`` (grid videos)."""
    horizon = n_frames - n_past
    scores = {name: np.empty((num_samples, num_videos, horizon), np.float32) for name in METRICS}
    bar = tqdm(total=num_videos, unit="video", desc=desc, disable=not progress, dynamic_ncols=True)
    for b0 in range(0, num_videos, VIDEO_BLOCK):
        block = torch.stack([test_set[i] for i in range(b0, min(b0 + VIDEO_BLOCK, num_videos))])
        check_video_values(block)
        for chunk in sample_chunks(svg, guide, block, n_past, n_frames, num_samples, prior=prior,
                                   bn=bn, max_batch=max_batch):
            truth = block[chunk.videos, n_past:].to(chunk.frames.device)
            chunk_scores = frame_scores(chunk.frames[:, :, n_past:], truth)
            v = slice(b0 + chunk.videos.start, b0 + chunk.videos.stop)
            for name, values in chunk_scores.items():
                scores[name][chunk.samples, v] = values
            if shown is not None:
                _keep_shown(shown, chunk, b0, chunk_scores["ssim"])
            bar.update((v.stop - v.start) * (chunk.samples.stop - chunk.samples.start) / num_samples)
    bar.close()
    return scores


def _keep_shown(shown: list[Shown], chunk, block_start: int, ssim_scores: np.ndarray) -> None:
    """Track, for the grid videos, the best-SSIM sample so far and the first samples."""
    for j in range(chunk.videos.stop - chunk.videos.start):
        video = block_start + chunk.videos.start + j
        if video >= len(shown):
            continue
        entry, mean = shown[video], ssim_scores[:, j].mean(axis=1)
        if mean.max() > entry.best_score:
            entry.best_score = float(mean.max())
            entry.best = chunk.frames[int(mean.argmax()), j].cpu()
        for s in range(chunk.samples.start, min(chunk.samples.stop, RANDOM_SAMPLES)):
            entry.random.append(chunk.frames[s - chunk.samples.start, j].cpu())


def _load(path, device, role: str):
    try:
        return load_model(path, device)
    except CheckpointError as err:
        raise CheckpointError(f"{role}: {err}") from err


def _check_same_data(config, other, path) -> None:
    for name in ("dataset", "channels", "image_size"):
        if getattr(config, name) != getattr(other, name):
            raise ValueError(f"{path} was trained on {name}={getattr(other, name)!r} but the evaluated "
                             f"checkpoint on {getattr(config, name)!r}; compare models of the same data")


def evaluate(checkpoint, out, *, samples: int = 100, videos: int = 256, n_past: int | None = None,
             horizon: int | None = None, prior: str = "learned", prior_checkpoint=None,
             det_checkpoint=None, device: str = "auto", bn: str = "eval",
             max_batch: int = DEFAULT_MAX_BATCH, seed: int = 0, data_root: str | None = None,
             mnist_root: str | None = None, window: tuple[int, int] | None = None,
             progress: bool = True) -> dict:
    """Run the protocol (module doc) and write its outputs to ``out``; returns metrics.json's dict.
    ``window`` = (first, last) frame index: also summarise each video's scores over those frames."""
    if prior not in ("learned", "fixed"):
        raise ValueError(f"--prior must be 'learned' or 'fixed', not {prior!r}")
    if prior == "fixed" and prior_checkpoint is not None:
        raise ValueError("give either --prior fixed or --prior-checkpoint, not both")
    if bn not in BN_MODES:
        raise ValueError(f"--bn must be one of {BN_MODES}, not {bn!r}")
    if samples < 1 or videos < 1:
        raise ValueError("--samples and --videos must be at least 1")
    torch_device = resolve_device(device)
    config, svg, guide, step = _load(checkpoint, torch_device, "--checkpoint")
    if data_root is not None or mnist_root is not None:
        config = dataclasses.replace(config, data_root=data_root or config.data_root,
                                     mnist_root=mnist_root or config.mnist_root)
    n_past = config.n_past if n_past is None else n_past
    horizon = DEFAULT_HORIZON[config.dataset] if horizon is None else horizon
    if n_past < 1 or horizon < 1:
        raise ValueError(f"--n-past ({n_past}) and --horizon ({horizon}) must be at least 1")
    n_frames = n_past + horizon
    if window is not None and not n_past <= window[0] <= window[1] < n_frames:
        raise ValueError(f"--window {window[0]} {window[1]} must lie within the predicted frames "
                         f"{n_past}..{n_frames - 1}; lower it or raise --horizon")
    steps = None if window is None else slice(window[0] - n_past, window[1] - n_past + 1)
    # what the score arrays and one chunk of sampled frames hold, refused before allocating
    need = 4 * (len(METRICS) * samples * videos * horizon
                + max_batch * n_frames * config.channels * config.image_size**2)
    if need > MAX_MEMORY:
        raise ValueError(f"{samples} samples of {videos} videos over {horizon} frames (--batch {max_batch}) "
                         f"need about {need / 2**30:,.0f} GiB of memory; lower --horizon, --samples, "
                         "--videos or --batch")
    _, test_set = make_datasets(config, split_lengths=(config.frames_per_video, n_frames))
    if videos > len(test_set):
        raise ValueError(f"--videos {videos} asks for more test videos than the {config.dataset} test "
                         f"set holds ({len(test_set)})")

    prior_arg, prior_label = ("fixed", "fixed N(0, I)") if prior == "fixed" else (None, "own")
    if svg.prior is None:
        if prior == "fixed" or prior_checkpoint is not None:
            raise ValueError("the checkpoint is the deterministic model (no z): it has no prior to swap")
        samples, prior_label = 1, "none (deterministic)"
    if prior_checkpoint is not None:
        other_config, other, _, _ = _load(prior_checkpoint, torch_device, "--prior-checkpoint")
        _check_same_data(config, other_config, prior_checkpoint)
        if other_config.model != "svg-lp" or other_config.z_dim != config.z_dim:
            raise ValueError(f"--prior-checkpoint must be an SVG-LP model with z_dim {config.z_dim}; "
                             f"{prior_checkpoint} is {other_config.model} with z_dim {other_config.z_dim}")
        prior_arg, prior_label = other, f"learned prior of {prior_checkpoint}"

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pyro.set_rng_seed(seed)
    started = time.perf_counter()
    shown = [Shown(truth=test_set[i]) for i in range(min(GRID_VIDEOS, videos))]
    common = dict(num_videos=videos, n_past=n_past, n_frames=n_frames, bn=bn, max_batch=max_batch,
                  progress=progress)
    label = f"{config.model}" + ("" if prior_label == "own" or svg.prior is None else f" under {prior_label}")
    scores = {"svg": _score_model(svg, guide, test_set, num_samples=samples, prior=prior_arg,
                                  shown=shown, desc=label, **common)}
    labels = {"svg": label}
    if det_checkpoint is not None:
        det_config, det, det_guide, _ = _load(det_checkpoint, torch_device, "--det-checkpoint")
        _check_same_data(config, det_config, det_checkpoint)
        if det_config.model != "det":
            raise ValueError(f"--det-checkpoint must be a deterministic model (model 'det'); "
                             f"{det_checkpoint} is {det_config.model}")
        det_shown = [Shown(truth=s.truth) for s in shown]
        scores["deterministic"] = _score_model(det, det_guide, test_set, num_samples=1, prior=None,
                                               shown=det_shown, desc="det", **common)
        for s, d in zip(shown, det_shown):
            s.det = d.best
        labels["deterministic"] = "deterministic"
    truth = torch.stack([test_set[i] for i in range(videos)])
    last = truth[:, n_past - 1:n_past].expand(-1, horizon, *truth.shape[2:])
    scores["copy_last_frame"] = {k: v[None] for k, v in frame_scores(last, truth[:, n_past:]).items()}
    labels["copy_last_frame"] = "copy last frame"

    results = {key: {"label": labels[key], "samples": int(next(iter(s.values())).shape[0]),
                     **{name: summarize(values, steps) for name, values in s.items()}}
               for key, s in scores.items()}
    metrics = {
        "protocol": {
            "checkpoint": str(checkpoint), "step": step, "model": config.model, "dataset": config.dataset,
            "samples": samples, "videos": videos, "n_past": n_past, "horizon": horizon,
            "prior": prior_label, "batchnorm": bn, "seed": seed, "device": str(torch_device),
            "max_batch": max_batch, "window": None if window is None else list(window),
            "det_checkpoint": None if det_checkpoint is None else str(det_checkpoint),
            "metrics": describe(),
            "selection": "per metric and video, the sample with the highest score averaged over the "
                         "predicted frames (conditioning frames excluded)",
            "interval": "95%: 1.96 * sample std over videos / sqrt(videos)",
            "seconds": round(time.perf_counter() - started, 1),
        },
        "time_steps": list(range(n_past, n_frames)),
        "results": results,
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    (out / "table.md").write_text(markdown_table(metrics))
    from svg_pyro.eval_plots import plot_per_step, save_shown

    plot_per_step(metrics, out / "per_step.png")
    save_shown(shown, n_past, out / "samples", title=f"{label}, step {step}: truth, best-SSIM of "
               f"{samples} and random samples")
    return metrics


def markdown_table(metrics: dict) -> str:
    p = metrics["protocol"]
    lines = [f"{p['dataset']}, {p['videos']} test videos, {p['n_past']} given -> {p['horizon']} predicted, "
             f"{p['samples']} samples per video (mean over videos +- 95% interval)", "",
             "| model | SSIM best | SSIM mean-of-N | PSNR best | PSNR mean-of-N |",
             "| --- | --- | --- | --- | --- |"]
    window = p.get("window")
    if window:
        lines[-2] = lines[-2] + f" SSIM best, frames {window[0]}-{window[1]} | PSNR best, frames {window[0]}-{window[1]} |"
        lines[-1] = lines[-1] + " --- | --- |"

    def cell(summary, metric):
        digits = 4 if metric == "ssim" else 2
        return f"{summary['mean']:.{digits}f} +- {summary['ci95']:.{digits}f}"

    for r in metrics["results"].values():
        cells = [cell(r[m][k], m) for m in ("ssim", "psnr") for k in ("best", "mean_of_n")]
        if window:
            cells += [cell(r[m]["best"]["window"], m) for m in ("ssim", "psnr")]
        lines.append(f"| {r['label']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# command line


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m svg_pyro.evaluate", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="checkpoint.pt of the model to evaluate")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--samples", type=int, default=100, help="futures drawn per test video")
    p.add_argument("--videos", type=int, default=256, help="test videos (the first ones of the test set)")
    p.add_argument("--n-past", type=int, help="conditioning frames (default: the checkpoint's n_past)")
    p.add_argument("--horizon", type=int, help="predicted frames (default: 25 SM-MNIST, 30 KTH, 28 BAIR)")
    p.add_argument("--prior", choices=("learned", "fixed"), default="learned",
                   help="learned: the checkpoint's own prior; fixed: swap in N(0, I) at sampling time")
    p.add_argument("--prior-checkpoint", help="sample under the learned prior of this SVG-LP checkpoint")
    p.add_argument("--det-checkpoint", help="checkpoint of the deterministic baseline")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    p.add_argument("--bn", choices=BN_MODES, default="eval",
                   help="BatchNorm at sampling time: eval = running statistics, train = batch statistics")
    p.add_argument("--batch", type=int, default=DEFAULT_MAX_BATCH, help="(sample, video) rows per forward pass")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--window", type=int, nargs=2, metavar=("FIRST", "LAST"),
                   help="also report best-of-N averaged over these frame indices (e.g. 10 20)")
    p.add_argument("--data-root", help="prepared KTH/BAIR store, if it moved since training")
    p.add_argument("--mnist-root", help="MNIST IDX files, if they moved since training")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        metrics = evaluate(args.checkpoint, args.out, samples=args.samples, videos=args.videos,
                           n_past=args.n_past, horizon=args.horizon, prior=args.prior,
                           prior_checkpoint=args.prior_checkpoint, det_checkpoint=args.det_checkpoint,
                           device=args.device, bn=args.bn, max_batch=args.batch, seed=args.seed,
                           data_root=args.data_root, mnist_root=args.mnist_root,
                           window=None if args.window is None else tuple(args.window),
                           progress=not args.no_progress)
    except (CheckpointError, ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # an --out that is a file, a read-only or full disk, ...
        print(f"error: cannot write {err.filename or args.out}: {err.strerror or err}; choose another --out",
              file=sys.stderr)
        return 2
    print(markdown_table(metrics), end="")
    print(f"written: {Path(args.out) / 'metrics.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
