"""Figures of the trajectory study (``svg_pyro.evaluation.trajectory``): the velocity tables (Fig. 3), the
per-step displacement distributions (Fig. 4), the distances per step and the sample grid.

They read only the study's report dict (and the velocity table), so they can redraw a saved
trajectory.json without the models.
"""
from __future__ import annotations

import numpy as np

from svg_pyro.data.smmnist import SPEEDS, WALLS, allowed_velocity_table
from svg_pyro.evaluation.plots import save_video_grid


def plot_velocity_tables(table: np.ndarray, path=None):
    """Heatmaps of the initial (dx, dy) distribution and of the draws after each wall hit."""
    import matplotlib.pyplot as plt

    titles = ["initial draw", "after top wall", "after bottom wall", "after left wall", "after right wall"]
    fig, axes = plt.subplots(1, 5, figsize=(13, 2.9), constrained_layout=True)
    for ax, wall, title in zip(axes, WALLS, titles):
        probs = allowed_velocity_table(table, wall)
        image = ax.imshow(probs, cmap="viridis", origin="lower", vmin=0, extent=(-4.5, 4.5, -4.5, 4.5))
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("dx", fontsize=8)
        ax.set_xticks(SPEEDS[::2])
        ax.set_yticks(SPEEDS[::2])
        ax.tick_params(labelsize=7)
        fig.colorbar(image, ax=ax, shrink=0.8).ax.tick_params(labelsize=6)
    axes[0].set_ylabel("dy (down is +)", fontsize=8)
    fig.suptitle("P(dx, dy) of the velocity draws (rows dy, columns dx)", fontsize=10)
    if path is not None:
        fig.savefig(path, dpi=120)
        plt.close(fig)
    return fig


def plot_distributions(report: dict, path=None):
    """Fig. 4: rows truth and models, columns predicted steps, 9x9 heatmaps of P(dx, dy)."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    truth = np.asarray(report["truth"])
    rows = [("truth", truth, None)] + [(name, np.asarray(r["distributions"]), r)
                                       for name, r in report["models"].items()]
    frames = report["trajectory"]["step_frames"]
    wall_step = report["trajectory"]["first_random_step"]
    n_cols = len(frames)
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(1.45 * n_cols + 0.8, 1.75 * len(rows) + 0.6),
                             squeeze=False, constrained_layout=True)
    norm = LogNorm(vmin=1e-3, vmax=1)  # a log scale shows a delta and a spread-out table alike
    cmap = plt.get_cmap("magma").with_extremes(bad="black", under="black")
    for r, (name, dists, res) in enumerate(rows):
        for c in range(n_cols):
            ax = axes[r, c]
            image = ax.imshow(np.ma.masked_equal(dists[c], 0), cmap=cmap, norm=norm, origin="lower",
                              extent=(-4.5, 4.5, -4.5, 4.5))
            ax.set_xticks([-4, 0, 4])
            ax.set_yticks([-4, 0, 4])
            ax.tick_params(labelsize=6, length=2)
            if res is not None:
                note = f"TV {res['total_variation'][c]:.2f}  W1 {res['wasserstein'][c]:.2f}"
                if res["off_grid"][c] > 0:
                    note += f"\noff grid {res['off_grid'][c]:.2f}"
                ax.set_xlabel(note, fontsize=6)
            if r == 0:
                title = f"frame {frames[c][0]}->{frames[c][1]}"
                if c == wall_step:
                    title = f"after wall hit\n{title}"
                ax.set_title(title, fontsize=7, color="red" if c == wall_step else "black")
            if c == 0:
                ax.set_ylabel(f"{name}\ndy", fontsize=8)
            if c == wall_step:
                for spine in ax.spines.values():
                    spine.set_edgecolor("red")
                    spine.set_linewidth(2)
    fig.colorbar(image, ax=axes, shrink=0.6, label="P(dx, dy) (black: 0)")
    s = report["settings"]
    fig.suptitle(f"displacement (dx, dy) per predicted step given {s['n_past']} frames; "
                 f"{s['digits']} digits x {s['samples']} samples; wall hit at frame "
                 f"{report['trajectory']['wall_hit_frame']}", fontsize=9)
    if path is not None:
        fig.savefig(path, dpi=120)
        plt.close(fig)
    return fig


def plot_distances(report: dict, path=None):
    """Per-step TV and W1 between each model and the truth; the wall hit marked."""
    import matplotlib.pyplot as plt

    frames = report["trajectory"]["step_frames"]
    x = [f[1] for f in frames]
    wall = report["trajectory"]["wall_hit_frame"]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), constrained_layout=True)
    for ax, key, label in ((axes[0], "total_variation", "total variation"),
                           (axes[1], "wasserstein", "Wasserstein-1 (pixels/frame)")):
        for name, res in report["models"].items():
            ax.plot(x, res[key], marker="o", label=name)
        ax.axvline(wall + 0.5, color="red", linestyle="--", linewidth=1, label="wall hit")
        ax.set_xlabel("predicted frame (displacement into it)")
        ax.set_xticks(x)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylim(0, 1.02)
    axes[0].legend(fontsize=8)
    fig.suptitle("distance between the model's and the true P(dx, dy) per step", fontsize=10)
    if path is not None:
        fig.savefig(path, dpi=120)
        plt.close(fig)
    return fig


def save_examples(path, example: dict, n_past: int) -> None:
    """The trajectory's ground truth and a model's samples (``example`` rows) as a labelled grid."""
    rows = example["rows"]
    labels = ["truth"] + [f"{example['name']} {i}" for i in range(1, len(rows))]
    save_video_grid(path, rows, labels, n_past, "the study's trajectory: truth and samples")
