"""Pictures of videos: a labelled PNG grid and an animated GIF."""
from __future__ import annotations

from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import torch

from svg_pyro.atomic import atomic_path

PAD = 2
GREEN = np.array([40, 160, 40], np.uint8)
GREY = np.array([200, 200, 200], np.uint8)


def _to_uint8(frames: torch.Tensor) -> np.ndarray:
    """(..., C, H, W) in [0, 1] -> (..., H, W, 3) uint8."""
    x = frames.detach().float().clamp(0, 1).cpu()
    if x.shape[-3] == 1:
        x = x.expand(*x.shape[:-3], 3, *x.shape[-2:])
    return (x.movedim(-3, -1).numpy() * 255 + 0.5).astype(np.uint8)


def video_mosaic(rows: torch.Tensor, given=0) -> np.ndarray:
    """One image of R videos (R, T, C, H, W): a row per video, the given frames framed green
    (``given``: the first so many, or a list of frame indices)."""
    images = _to_uint8(rows)
    n_rows, n_cols, h, w = images.shape[:4]
    given = set(range(given)) if isinstance(given, int) else set(given)
    cell_h, cell_w = h + 2 * PAD, w + 2 * PAD
    mosaic = np.empty((n_rows * cell_h, n_cols * cell_w, 3), np.uint8)
    for c in range(n_cols):
        mosaic[:, c * cell_w:(c + 1) * cell_w] = GREEN if c in given else GREY
    for r in range(n_rows):
        for c in range(n_cols):
            y, x = r * cell_h + PAD, c * cell_w + PAD
            mosaic[y:y + h, x:x + w] = images[r, c]
    return mosaic


def save_video_grid(path, rows: torch.Tensor, labels: list[str], n_past, title: str = "") -> None:
    """PNG of R videos (R, T, C, H, W) with row labels and frame numbers; the given frames (the
    first ``n_past``, or a list of indices) framed green."""
    from matplotlib.figure import Figure  # no pyplot: leaves a notebook's backend alone

    mosaic = video_mosaic(rows, n_past)
    n_rows, n_cols = rows.shape[:2]
    cell_h, cell_w = mosaic.shape[0] / n_rows, mosaic.shape[1] / n_cols
    scale = 0.6 / cell_w  # inches per pixel: about 0.6 inch a frame
    fig = Figure(figsize=(mosaic.shape[1] * scale + 1.4, mosaic.shape[0] * scale + 0.6))
    ax = fig.subplots()
    ax.imshow(mosaic, interpolation="nearest")
    ax.set_yticks([(r + 0.5) * cell_h for r in range(n_rows)], labels, fontsize=7)
    ax.set_xticks([(c + 0.5) * cell_w for c in range(n_cols)], [str(c) for c in range(n_cols)], fontsize=6)
    ax.tick_params(length=0)
    ax.set_xlabel("frame (green: given)", fontsize=7)
    for spine in ax.spines.values():
        spine.set_visible(False)
    if title:
        ax.set_title(title, fontsize=8)
    with atomic_path(path) as tmp:  # a kill mid-write leaves the old image, not a broken one
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format=Path(path).suffix[1:])


def save_gif(path, rows: torch.Tensor, fps: int = 4) -> None:
    """Animated GIF of R videos (R, T, C, H, W) side by side."""
    frames = [video_mosaic(rows[:, t].unsqueeze(0)) for t in range(rows.shape[1])]
    with atomic_path(path) as tmp:
        imageio.mimsave(tmp, frames, duration=1000 / fps, loop=0, format="GIF")


def write_sample_grid(out: Path, step: int, config, test_videos: torch.Tensor, samples: torch.Tensor) -> torch.Tensor:
    """Grid and GIF of ground truth vs ``samples`` (S, B, T, C, H, W) of ``test_videos`` (B, T, C, H,
    W), as training draws them at its sample intervals; returns the shown videos (rows, T, C, H, W)."""
    n_frames = test_videos.shape[1]
    rows, labels = [], []
    for v in range(test_videos.shape[0]):
        rows.append(test_videos[v])
        labels.append(f"video {v}\ntruth")
        for s in range(samples.shape[0]):
            rows.append(samples[s, v])
            labels.append(f"sample {s}")
    rows = torch.stack(rows)
    title = f"{config.model} step {step}: {config.n_past} given (green) + {n_frames - config.n_past} generated"
    save_video_grid(out / f"samples_{step:06d}.png", rows, labels, config.n_past, title)
    save_gif(out / f"samples_{step:06d}.gif", rows)
    return rows
