"""How much the latent carries and how well the digits move: curves from runs' metrics.jsonl.

    svg-pyro kl-curves runs/svg-lp runs/other --out kl.png [--labels A B] [--smooth 10]
        [--until STEP] [--x minutes]

Top left: KL(q || p) per transition (nats, mean over the T-1 steps and the videos) against the
training step (or training minutes), smoothed over ``--smooth`` logged rows. Top right: the KL of
each transition t, averaged over the last ``--smooth`` logged rows, which shows where in the video
the latent is used. When the runs logged the motion probe (SM-MNIST, ``svg_pyro.evaluation.motion``), a second
row shows its errors at each sample interval: the displacement error on the steps whose motion is
certain, and the position error of the best and the mean sample, each beside copy-last-frame's.
Where the probe also scored teacher-forced one-step predictions, a third row shows, per predicted
step at the last probe, the free-running displacement error beside the one-step error from the true
previous frame, and the one-step error (mean over the steps) over training.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from svg_pyro.errors import InvalidInput, MissingInput


def read_metrics(run) -> list[dict]:
    path = Path(run) / "metrics.jsonl"
    if not path.is_file():
        raise MissingInput(f"{path} does not exist; pass a run directory written by svi_train.py")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if "kl_t" in r]
    if not rows:
        raise InvalidInput(f"{path} has no per-step KL (kl_t); it was written before svg-pyro logged it")
    return rows


def smoothed(values, window: int) -> np.ndarray:
    """Trailing mean over ``window`` rows (shorter at the start)."""
    v = np.asarray(values, dtype=float)
    c = np.cumsum(np.insert(v, 0, 0.0))
    lo = np.maximum(np.arange(1, len(v) + 1) - window, 0)
    return (c[1:] - c[lo]) / (np.arange(1, len(v) + 1) - lo)


X_AXES = {"step": "training step", "minutes": "training minutes (sum of the logged step times)"}
PROBED = "certain_displacement_error"  # a key of the rows where the motion probe ran
ONE_STEP = "one_step_displacement_error"  # a key of the probes that also scored one-step predictions


def x_values(rows, x: str) -> np.ndarray:
    """The rows' training step, or the training minutes up to each row (probe time excluded)."""
    if x == "step":
        return np.array([r["step"] for r in rows], dtype=float)
    if x == "minutes":
        return np.cumsum([r["seconds"] for r in rows]) / 60
    raise InvalidInput(f"--x {x!r} is unknown; choose one of {sorted(X_AXES)}")


def plot_kl_curves(runs: dict, path, smooth: int = 10, title: str = "", x: str = "step",
                   x_label: str | None = None) -> None:
    """``runs``: {label: metric rows}. Writes the panels to a PNG at ``path``."""
    from matplotlib.figure import Figure  # no pyplot: leaves a notebook's backend alone

    motion = any(r.get(PROBED) is not None for rows in runs.values() for r in rows)
    one_step = any(ONE_STEP in r for rows in runs.values() for r in rows)
    x_label = x_label or X_AXES[x]
    panel_rows = 1 + motion + one_step
    fig = Figure(figsize=(10, 3.6 * panel_rows))
    axes = fig.subplots(panel_rows, 2, squeeze=False)
    over_training, per_step = axes[0]
    for label, rows in runs.items():
        line, = over_training.plot(x_values(rows, x), smoothed([r["kl_per_step"] for r in rows], smooth), lw=1.3,
                                   label=label)
        last = np.mean([r["kl_t"] for r in rows[-smooth:]], axis=0)
        per_step.plot(np.arange(1, len(last) + 1), last, "o-", ms=3, color=line.get_color(), label=label)
        if motion:
            _plot_motion(axes[1], rows, x, line.get_color())
        if one_step:
            _plot_one_step(axes[2], rows, x, line.get_color())
    if motion:
        axes[1][0].set_ylabel("displacement error, certain steps (px/frame)")
        axes[1][1].set_ylabel("position error (px): best sample -, mean --")
        for ax in axes[1]:
            ax.sharex(over_training)
            ax.set_xlabel(x_label)
            ax.set_ylim(bottom=0)
    if one_step:
        steps, over = axes[2]
        steps.set_xlabel("predicted step (last probe)")
        steps.set_ylabel("displacement error (px/frame):\nfree-running -, one-step from true frames --")
        over.sharex(over_training)
        over.set_xlabel(x_label)
        over.set_ylabel("one-step displacement error (px/frame)")
        for ax in axes[2]:
            ax.set_ylim(bottom=0)
    over_training.set_xlabel(x_label)
    over_training.set_ylabel("KL per transition (nats)")
    over_training.set_yscale("log")
    over_training.axhline(0.5, color="grey", ls=":", lw=1)  # the latent is clearly in use above this
    per_step.set_xlabel("transition t (predicts frame t)")
    per_step.set_ylabel(f"KL_t (nats), last {smooth} logged rows")
    for ax in axes.flat:
        ax.grid(alpha=0.3)
    rows = -(-len(runs) // 3)  # legend below the panels, three labels a row
    fig.set_figheight(fig.get_figheight() + 0.18 * rows)
    fig.legend(*over_training.get_legend_handles_labels(), loc="lower center", ncol=min(3, len(runs)), fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0.18 * rows / fig.get_figheight() + 0.02, 1, 1))
    fig.savefig(path, dpi=120)


def _plot_motion(axes, rows, x: str, color) -> None:
    """The probe's errors of one run, with copy-last-frame's level (dotted) for scale."""
    xs = x_values(rows, x)
    probed = [i for i, r in enumerate(rows) if r.get(PROBED) is not None]
    if not probed:
        return
    at = xs[probed]
    pick = [rows[i] for i in probed]
    displacement, position = axes
    displacement.plot(at, [r[PROBED] for r in pick], "o-", ms=3, color=color)
    displacement.axhline(pick[-1]["copy_last_certain_displacement_error"], color=color, ls=":", lw=1)
    position.plot(at, [r["position_error_best"] for r in pick], "o-", ms=3, color=color)
    position.plot(at, [r["position_error_mean"] for r in pick], "--", color=color, lw=1)
    position.axhline(pick[-1]["copy_last_position_error"], color=color, ls=":", lw=1)


def _plot_one_step(axes, rows, x: str, color) -> None:
    """Free-running against teacher-forced one-step displacement error: per step, and over training."""
    probed = [(x_values(rows, x)[i], r) for i, r in enumerate(rows) if ONE_STEP in r]
    if not probed:
        return
    steps, over = axes
    last = probed[-1][1]
    n = np.arange(1, len(last["displacement_error_t"]) + 1)
    steps.plot(n, last["displacement_error_t"], "o-", ms=3, color=color)
    steps.plot(n, last["one_step_displacement_error_t"], "s--", ms=3, color=color, lw=1)
    over.plot([at for at, _ in probed], [r[ONE_STEP] for _, r in probed], "o-", ms=3, color=color)


def check_image_path(out) -> None:
    """``out`` must name an image file in a format matplotlib writes (kl.png, kl.pdf, kl.svg, ...)."""
    from matplotlib.backend_bases import FigureCanvasBase

    path = Path(out)
    formats = FigureCanvasBase.get_supported_filetypes()
    if path.is_dir() or str(out).endswith(("/", "\\")):
        raise InvalidInput(f"--out {out} is a directory; name the image to write, e.g. {path / 'kl.png'}")
    if path.suffix[1:].lower() not in formats:
        raise InvalidInput(f"--out {out} is not an image file name; end it in .png, .pdf or .svg "
                           f"(matplotlib writes {', '.join(sorted(formats))})")


def compare_runs(run_dirs, out, labels=None, smooth: int = 10, until: int | None = None, title: str = "",
                 x: str = "step"):
    """Plot the runs' KL curves into ``out``; returns each label's metrics rows."""
    labels = labels or [Path(r).name for r in run_dirs]
    if len(labels) != len(run_dirs):
        raise InvalidInput(f"got {len(labels)} labels for {len(run_dirs)} runs; give one per run")
    if smooth < 1:
        raise InvalidInput("--smooth must be at least 1")
    check_image_path(out)
    runs = {label: read_metrics(run) for label, run in zip(labels, run_dirs)}
    if until is not None:
        runs = {label: [r for r in rows if r["step"] <= until] for label, rows in runs.items()}
        if not all(runs.values()):
            raise InvalidInput(f"a run has no logged row up to step {until}; raise --until")
    plot_kl_curves(runs, out, smooth, title, x)
    return runs

