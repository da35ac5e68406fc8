"""Pictures of an evaluation: per-step SSIM/PSNR curves and the grid of truth vs samples."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from svg_pyro.evaluation.plots import save_gif, save_video_grid


STYLES = {"best": "-", "mean_of_n": "--"}


def plot_per_step(metrics: dict, path, title: str | None = None) -> None:
    """SSIM and PSNR per predicted frame, mean over videos with the 95% interval shaded; solid:
    best of N, dashed: mean of N (models with one prediction are drawn once). ``metrics`` is the
    dict of metrics.json, or a dict {label: metrics} to overlay several evaluations."""
    import matplotlib

    runs = {"": metrics} if "results" in metrics else metrics
    fig = Figure(figsize=(10, 3.6))  # no pyplot: the caller's backend (e.g. a notebook's) is left alone
    axes = fig.subplots(1, 2)
    colour = iter(matplotlib.rcParams["axes.prop_cycle"].by_key()["color"] * 4)
    for prefix, run in runs.items():
        steps = run["time_steps"]
        for result in run["results"].values():
            c = next(colour)
            kinds = ("best", "mean_of_n") if result["samples"] > 1 else ("best",)
            for kind in kinds:
                name = f"{prefix} {result['label']}".strip()
                if result["samples"] > 1:
                    name += f" ({'best of' if kind == 'best' else 'mean of'} {result['samples']})"
                for ax, metric in zip(axes, ("ssim", "psnr")):
                    s = result[metric][kind]
                    mean, ci = torch.tensor(s["per_step"]), torch.tensor(s["per_step_ci95"])
                    ax.plot(steps, mean, STYLES[kind], color=c, label=name, lw=1.4)
                    ax.fill_between(steps, mean - ci, mean + ci, color=c, alpha=0.2, lw=0)
    for ax, metric in zip(axes, ("SSIM", "PSNR (dB)")):
        ax.set_xlabel("frame (predicted)")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    first = next(iter(runs.values()))["protocol"]
    fig.suptitle(title or f"{first['dataset']}: {first['n_past']} given, {first['videos']} test videos, "
                 "mean and 95% interval over videos", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def save_shown(shown, n_past: int, prefix, title: str = "") -> None:
    """``prefix``.png and .gif: per video, the truth, the deterministic prediction (if any), the
    best-SSIM sample and random samples (``svg_pyro.evaluation.evaluate.Shown`` entries)."""
    rows, labels = [], []
    for v, entry in enumerate(shown):
        rows.append(entry.truth)
        labels.append(f"video {v}\ntruth")
        if entry.det is not None:
            rows.append(entry.det)
            labels.append("deterministic")
        rows.append(entry.best)
        labels.append("best SSIM")
        for i, frames in enumerate(entry.random):
            rows.append(frames)
            labels.append(f"random {i}")
    rows = torch.stack([r.cpu() for r in rows])
    prefix = Path(prefix)
    save_video_grid(prefix.with_suffix(".png"), rows, labels, n_past, title)
    save_gif(prefix.with_suffix(".gif"), rows)


def plot_bounds(metrics: dict, path) -> None:
    """The held-out ELBO's per-step terms of each bounded model: log p(x_t | ...) - KL_t (left) and
    the KL (right), nats per frame, against the frame index (frame 1 is the first one scored)."""
    fig = Figure(figsize=(10, 3.6))
    axes = fig.subplots(1, 2)
    for result in metrics["results"].values():
        bound = result.get("bound")
        if bound is None:
            continue
        frames = range(1, len(bound["per_step_elbo"]) + 1)
        axes[0].plot(frames, bound["per_step_elbo"], marker=".", label=result["label"])
        axes[1].plot(frames, bound["per_step_kl"], marker=".", label=result["label"])
    for ax, name in zip(axes, ("ELBO term: log p(x_t | ...) - KL_t (nats)", "KL_t (nats)")):
        ax.set_xlabel("frame t")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    p = metrics["protocol"]
    fig.suptitle(f"held-out ELBO per step, {p['dataset']}, {p['videos']} test videos (all frames observed)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def plot_kl_steps(kls: dict, ax=None):
    """Per-step KL curves ``{label: bounds.heldout_kl(...)}`` (step t = 1..T-1), in nats, on ``ax``
    (a new pyplot figure, for a notebook, when none is given)."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3))
    for label, kl in kls.items():
        ax.plot(np.arange(1, len(kl) + 1), kl, ".-", label=label)
    ax.set_xlabel("step t")
    ax.set_ylabel("KL(q || p) per step (nats)")
    ax.legend(fontsize=7)
    return ax
