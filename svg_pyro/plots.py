"""Pictures of videos: a labelled PNG grid and an animated GIF."""
from __future__ import annotations

from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import torch


def _to_uint8(frames: torch.Tensor) -> np.ndarray:
    """(..., C, H, W) in [0, 1] -> (..., H, W, 3) uint8."""
    x = frames.detach().float().clamp(0, 1).cpu()
    if x.shape[-3] == 1:
        x = x.expand(*x.shape[:-3], 3, *x.shape[-2:])
    return (x.movedim(-3, -1).numpy() * 255 + 0.5).astype(np.uint8)


def save_video_grid(path, rows: torch.Tensor, labels: list[str], n_past: int, title: str = "") -> None:
    """PNG with one row per video (R, T, C, H, W); conditioning frames framed in green."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = _to_uint8(rows)
    n_rows, n_cols = images.shape[:2]
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(0.8 * n_cols + 1.2, 0.8 * n_rows + 0.5),
                             squeeze=False, gridspec_kw=dict(wspace=0.04, hspace=0.04))
    for r in range(n_rows):
        for c in range(n_cols):
            ax = axes[r, c]
            ax.imshow(images[r, c])
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_color("tab:green" if c < n_past else "0.7")
                spine.set_linewidth(2 if c < n_past else 0.5)
            if r == 0:
                ax.set_title(f"t={c}", fontsize=7)
        axes[r, 0].set_ylabel(labels[r], fontsize=7, rotation=0, ha="right", va="center")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def save_gif(path, rows: torch.Tensor, fps: int = 4) -> None:
    """Animated GIF of R videos (R, T, C, H, W) side by side."""
    images = _to_uint8(rows)  # (R, T, H, W, 3)
    pad = np.full((*images.shape[:2], images.shape[2], 2, 3), 255, np.uint8)
    strip = np.concatenate([np.concatenate([v, p], axis=2) for v, p in zip(images, pad)], axis=2)
    imageio.mimsave(Path(path), list(strip), duration=1000 / fps, loop=0)
