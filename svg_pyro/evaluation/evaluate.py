"""Evaluation protocol: ``svg-pyro evaluate --checkpoint PATH --out DIR``.

For each test video: condition on ``n_past`` frames, draw N futures of ``horizon`` frames, and score
every predicted frame against the truth with SSIM and PSNR (``svg_pyro.evaluation.metrics``). Per metric, the
*best* sample of a video is the one with the highest score averaged over the predicted frames
(conditioning frames excluded); its per-step scores are kept. Reported per model: the mean over
videos and the 95% interval 1.96 * std / sqrt(videos) (sample std), for the best sample
("best-of-N", the published protocol) and for the average over samples ("mean-of-N"), overall and
per step. Baselines: the deterministic model (``--det-checkpoint``) and copying the last
conditioning frame; they make one prediction, so their best and mean coincide.

Writes ``DIR/metrics.json`` (settings under "protocol", per-step arrays and summaries under
"results"), ``DIR/table.md``, ``DIR/per_step.png``, ``DIR/samples.png`` and ``DIR/samples.gif``, and
with ``--bound-particles`` the held-out bounds (``svg_pyro.evaluation.bounds``) and ``DIR/bounds.png``. On
SM-MNIST (1 or 2 digits) it also runs the motion probe (``svg_pyro.evaluation.motion``) on the first
``--motion-videos`` test videos: where the generated digits are, per predicted step free-running
and teacher-forced one-step, under "motion". See docs/evaluation.md.
"""
from __future__ import annotations

import dataclasses
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pyro
import torch
from tqdm.auto import tqdm

from svg_pyro.checkpoint import CheckpointError, load_model
from svg_pyro.config import check_same_data
from svg_pyro.data.datasets import check_video_values, make_datasets, stack_videos
from svg_pyro.devices import resolve_device
from svg_pyro.errors import InvalidInput
from svg_pyro.evaluation.bounds import heldout_bounds
from svg_pyro.evaluation.eval_plots import plot_bounds, plot_per_step, save_shown
from svg_pyro.evaluation.metrics import METRICS, describe
from svg_pyro.evaluation.motion import MotionProbe
from svg_pyro.evaluation.options import EvaluationOptions, evaluation_options
from svg_pyro.evaluation.summary import bounds_table, markdown_table, motion_table, summarize_results
from svg_pyro.inference.sampling import sample_chunks


# Published test horizons (Denton & Fergus 2018): SM-MNIST 5 -> 25, KTH 10 -> 30, BAIR 2 -> 28.
DEFAULT_HORIZON = {"smmnist": 25, "kth": 30, "bair": 28, "folder": 10}
VIDEO_BLOCK = 64  # test videos held in memory at a time
GRID_VIDEOS = 4  # videos shown in samples.png / samples.gif
RANDOM_SAMPLES = 2  # samples shown beside the best one (samples are i.i.d.: the first ones)
RESULT_KEYS = ("svg", "deterministic", "copy_last_frame")
MAX_MEMORY = 64 * 2**30  # bytes of scores and sampled frames an evaluation may ask for


# ---------------------------------------------------------------------------------------------
# the protocol on score arrays


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


ESTIMATE_AFTER = 30  # seconds of sampling after which a run without a progress bar says how long it takes


def _score_model(svg, test_set, num_videos, n_past, n_frames, num_samples, *, prior, bn,
                 max_batch, shown: list[Shown] | None, progress, desc):
    """Scores (samples, videos, steps) per metric of a model; fills ``shown`` (grid videos)."""
    horizon = n_frames - n_past
    scores = {name: np.empty((num_samples, num_videos, horizon), np.float32) for name in METRICS}
    bar = tqdm(total=num_videos, unit="video", desc=desc, disable=not progress, dynamic_ncols=True)
    started, estimated = time.perf_counter(), progress  # the bar shows its own estimate
    for b0 in range(0, num_videos, VIDEO_BLOCK):
        block = stack_videos(test_set, range(b0, min(b0 + VIDEO_BLOCK, num_videos)))
        check_video_values(block)
        for chunk in sample_chunks(svg, block, n_past, n_frames, num_samples, prior=prior,
                                   bn=bn, max_batch=max_batch):
            truth = block[chunk.videos, n_past:].to(chunk.frames.device)
            chunk_scores = frame_scores(chunk.frames[:, :, n_past:], truth)
            v = slice(b0 + chunk.videos.start, b0 + chunk.videos.stop)
            for name, values in chunk_scores.items():
                scores[name][chunk.samples, v] = values
            if shown is not None:
                _keep_shown(shown, chunk, b0, chunk_scores["ssim"])
            bar.update((v.stop - v.start) * (chunk.samples.stop - chunk.samples.start) / num_samples)
            done = b0 + (chunk.videos.start + (chunk.videos.stop - chunk.videos.start)
                         * chunk.samples.stop / num_samples)
            if not estimated and time.perf_counter() - started > ESTIMATE_AFTER:
                left = (time.perf_counter() - started) * (num_videos / done - 1)
                print(f"{desc}: {done:.1f} of {num_videos} videos in {time.perf_counter() - started:.0f} s; "
                      f"about {left / 60:.0f} more minutes at this pace", file=sys.stderr, flush=True)
                estimated = True
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


# ---------------------------------------------------------------------------------------------
# the protocol, step by step: check and load, score, summarise, write


@dataclasses.dataclass
class Evaluation:
    """A checked request: the model, its test set and the settings the protocol runs with."""
    checkpoint: object  # the path as given
    config: object  # the checkpoint's Config, with the data roots it was pointed to
    svg: object  # the SVG module: its Pyro model and guide
    step: int
    device: torch.device
    test_set: object
    samples: int  # 1 for the deterministic model, whatever was asked
    videos: int
    n_past: int
    horizon: int
    prior: object  # sample_chunks' prior: None (the model's own), "fixed" or another SVG-LP model
    prior_label: str
    bn: str
    max_batch: int
    window: tuple[int, int] | None
    det: object | None = None  # the deterministic baseline's SVG module, when one was given

    @property
    def n_frames(self) -> int:
        return self.n_past + self.horizon

    @property
    def window_steps(self) -> slice | None:
        """``window`` as a slice of the predicted steps."""
        w = self.window
        return None if w is None else slice(w[0] - self.n_past, w[1] - self.n_past + 1)

    @property
    def label(self) -> str:
        """The model's name in the table and figures, naming a swapped-in prior."""
        own = self.prior_label == "own" or self.svg.prior is None
        return f"{self.config.model}" + ("" if own else f" under {self.prior_label}")


def load_evaluation(checkpoint, options: EvaluationOptions | None = None, **settings) -> Evaluation:
    """Check the settings (``EvaluationOptions``, or keywords) and load the model, the test set, any
    swapped-in prior and the deterministic baseline. Requests that cannot run (or would not fit in
    memory) are refused here, before anything is sampled or written."""
    o = evaluation_options(options, **settings)
    device = resolve_device(o.device)
    config, svg, step = _load(checkpoint, device, "--checkpoint")
    config, n_past, horizon = _data_settings(config, o)
    _, test_set = make_datasets(config, split_lengths=(config.frames_per_video, n_past + horizon))
    if o.videos > len(test_set):
        raise InvalidInput(f"--videos {o.videos} asks for more test videos than the {config.dataset} test "
                           f"set holds ({len(test_set)})")
    prior, prior_label = ("fixed", "fixed N(0, I)") if o.prior == "fixed" else (None, "own")
    samples = o.samples
    if svg.prior is None:
        if o.prior == "fixed" or o.prior_checkpoint is not None:
            raise InvalidInput("the checkpoint is the deterministic model (no z): it has no prior to swap")
        samples, prior_label = 1, "none (deterministic)"
    if o.prior_checkpoint is not None:
        other_config, other, _ = _load(o.prior_checkpoint, device, "--prior-checkpoint")
        check_same_data(config, other_config, o.prior_checkpoint, "--prior-checkpoint")
        if other_config.model != "svg-lp" or other_config.z_dim != config.z_dim:
            raise InvalidInput(f"--prior-checkpoint must be an SVG-LP model with z_dim {config.z_dim}; "
                               f"{o.prior_checkpoint} is {other_config.model} with z_dim {other_config.z_dim}")
        prior, prior_label = other, f"learned prior of {o.prior_checkpoint}"
    det = None
    if o.det_checkpoint is not None:
        det_config, det, _ = _load(o.det_checkpoint, device, "--det-checkpoint")
        if det_config.model != "det":
            raise InvalidInput(f"--det-checkpoint must be a deterministic model (model 'det'); "
                               f"{o.det_checkpoint} is {det_config.model}")
        check_same_data(config, det_config, o.det_checkpoint, "--det-checkpoint")
    return Evaluation(checkpoint=checkpoint, config=config, svg=svg, step=step, device=device, test_set=test_set,
                      samples=samples, videos=o.videos, n_past=n_past, horizon=horizon, prior=prior,
                      prior_label=prior_label, bn=o.bn, max_batch=o.max_batch, window=o.window, det=det)


def _data_settings(config, o: EvaluationOptions):
    """(config with the data roots given, n_past, horizon), checked against the model's data and
    against the memory the scores and one chunk of sampled frames would take."""
    if o.data_root is not None and config.dataset == "smmnist":
        raise InvalidInput("--data-root is for prepared KTH/BAIR stores; SM-MNIST is generated (its digits "
                           "come from --mnist-root, if they moved)")
    if o.mnist_root is not None and config.dataset != "smmnist":
        raise InvalidInput(f"--mnist-root is for SM-MNIST models; this one was trained on {config.dataset} "
                           "(point to its store with --data-root)")
    if o.data_root is not None or o.mnist_root is not None:
        config = dataclasses.replace(config, data_root=o.data_root or config.data_root,
                                     mnist_root=o.mnist_root or config.mnist_root)
    if o.n_past is not None and o.n_past != config.n_past:
        warnings.warn(f"--n-past {o.n_past} differs from the {config.n_past} conditioning frames the model was "
                      "trained with; its recurrence and skips never saw that split", stacklevel=3)
    n_past = config.n_past if o.n_past is None else o.n_past
    horizon = DEFAULT_HORIZON[config.dataset] if o.horizon is None else o.horizon
    if n_past < 2 or horizon < 1:
        raise InvalidInput(f"--n-past ({n_past}) must be at least 2 and --horizon ({horizon}) at least 1")
    n_frames = n_past + horizon
    if o.window is not None and not n_past <= o.window[0] <= o.window[1] < n_frames:
        raise InvalidInput(f"--window {o.window[0]} {o.window[1]} must lie within the predicted frames "
                           f"{n_past}..{n_frames - 1}; lower it or raise --horizon")
    need = 4 * (len(METRICS) * o.samples * o.videos * horizon
                + o.max_batch * n_frames * config.channels * config.image_size**2)
    if need > MAX_MEMORY:
        raise InvalidInput(f"{o.samples} samples of {o.videos} videos over {horizon} frames (--batch {o.max_batch}) "
                           f"need about {need / 2**30:,.0f} GiB of memory; lower --horizon, --samples, "
                           "--videos or --batch")
    return config, n_past, horizon


def score_all(ev: Evaluation, progress: bool = True):
    """(scores, labels, shown): per result key (RESULT_KEYS) the scores (samples, videos, steps) per
    metric and the label, and the frames of the sample grid."""
    shown = [Shown(truth=ev.test_set[i]) for i in range(min(GRID_VIDEOS, ev.videos))]
    common = dict(num_videos=ev.videos, n_past=ev.n_past, n_frames=ev.n_frames, bn=ev.bn,
                  max_batch=ev.max_batch, progress=progress)
    scores = {"svg": _score_model(ev.svg, ev.test_set, num_samples=ev.samples, prior=ev.prior,
                                  shown=shown, desc=ev.label, **common)}
    labels = {"svg": ev.label}
    if ev.det is not None:
        det_shown = [Shown(truth=s.truth) for s in shown]
        scores["deterministic"] = _score_model(ev.det, ev.test_set, num_samples=1, prior=None,
                                               shown=det_shown, desc="det", **common)
        for s, d in zip(shown, det_shown):
            s.det = d.best
        labels["deterministic"] = "deterministic"
    truth = stack_videos(ev.test_set, ev.videos)
    last = truth[:, ev.n_past - 1:ev.n_past].expand(-1, ev.horizon, *truth.shape[2:])
    scores["copy_last_frame"] = {k: v[None] for k, v in frame_scores(last, truth[:, ev.n_past:]).items()}
    labels["copy_last_frame"] = "copy last frame"
    return scores, labels, shown


def build_metrics(ev: Evaluation, results: dict, *, seed: int, det_checkpoint=None, seconds: float) -> dict:
    """metrics.json's content: the settings under "protocol", the predicted frames and ``results``."""
    return {
        "protocol": {
            "checkpoint": str(ev.checkpoint), "step": ev.step, "model": ev.config.model,
            "dataset": ev.config.dataset, "samples": ev.samples, "videos": ev.videos, "n_past": ev.n_past,
            "horizon": ev.horizon, "prior": ev.prior_label, "batchnorm": ev.bn, "seed": seed,
            "device": str(ev.device), "max_batch": ev.max_batch,
            "window": None if ev.window is None else list(ev.window),
            "det_checkpoint": None if det_checkpoint is None else str(det_checkpoint),
            "metrics": describe(),
            "selection": "per metric and video, the sample with the highest score averaged over the "
                         "predicted frames (conditioning frames excluded)",
            "interval": "95%: 1.96 * sample std over videos / sqrt(videos)",
            "seconds": round(seconds, 1),
        },
        "time_steps": list(range(ev.n_past, ev.n_frames)),
        "results": results,
    }


def write_outputs(out, metrics: dict, shown: list[Shown]) -> None:
    """metrics.json, table.md, per_step.png and samples.png/.gif (the grid of ``shown``) in ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    (out / "table.md").write_text("\n".join(t for t in (markdown_table(metrics), bounds_table(metrics),
                                                      motion_table(metrics)) if t))

    p = metrics["protocol"]
    plot_per_step(metrics, out / "per_step.png")
    if any("bound" in r for r in metrics["results"].values()):
        plot_bounds(metrics, out / "bounds.png")
    save_shown(shown, p["n_past"], out / "samples", title=f"{metrics['results']['svg']['label']}, step "
               f"{p['step']}: truth, best-SSIM of {p['samples']} and random samples")


def evaluate(checkpoint, out, options: EvaluationOptions | None = None, *, progress: bool = True,
             **settings) -> dict:
    """Run the protocol (module doc) and write its outputs to ``out``; returns metrics.json's dict.
    The settings (``svg_pyro.evaluation.options.EvaluationOptions``, or the same names as keywords):
    ``window`` = (first, last) frame index: also summarise each video's scores over those frames;
    ``bound_particles`` = (K, ...): also the held-out ELBO and the importance-weighted bounds with
    these K (``svg_pyro.evaluation.bounds``) of the model and the deterministic baseline, under "bound";
    ``motion_videos``: test videos of the motion probe (SM-MNIST, the model's own prior; 0 = off)."""
    o = evaluation_options(options, **settings)
    ev = load_evaluation(checkpoint, o)
    Path(out).mkdir(parents=True, exist_ok=True)  # before sampling: an unusable --out fails at once
    pyro.set_rng_seed(o.seed)
    started = time.perf_counter()
    scores, labels, shown = score_all(ev, progress)
    results = summarize_results(scores, labels, ev.window_steps)
    if o.bound_particles:

        common = dict(test_set=ev.test_set, videos=ev.videos, n_past=ev.n_past, particles=o.bound_particles,
                      max_batch=ev.max_batch, progress=progress)

        def timed_bounds(svg, desc):  # the bounds' own cost, reported beside them
            tick = time.perf_counter()
            return {**heldout_bounds(svg, desc=desc, **common), "seconds": round(time.perf_counter() - tick, 1)}

        results["svg"]["bound"] = timed_bounds(ev.svg, f"bounds {ev.label}")
        if ev.det is not None:
            results["deterministic"]["bound"] = timed_bounds(ev.det, "bounds det")
    if o.motion_videos and ev.config.dataset == "smmnist" and ev.config.num_digits in (1, 2) and ev.prior is None:

        probe = MotionProbe(ev.test_set, ev.n_past, min(o.motion_videos, ev.videos))
        results["svg"]["motion"] = probe(ev.svg)
        if ev.det is not None:
            results["deterministic"]["motion"] = probe(ev.det)
    metrics = build_metrics(ev, results, seed=o.seed, det_checkpoint=o.det_checkpoint,
                            seconds=time.perf_counter() - started)
    write_outputs(out, metrics, shown)
    return metrics
