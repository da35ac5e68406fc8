"""Optional TensorBoard logging of a training run (``--tensorboard``): ``tensorboard --logdir OUT``.

The scalars of every metrics.jsonl row (loss, MSE, KL, KL per transition and the KL of each
transition t), the motion probe's errors where it ran (``svg_pyro.evaluation.motion``) and the sample grids as images, written to ``OUT/tensorboard``. metrics.jsonl stays
the record; this is for watching a long run.
"""
from __future__ import annotations

from pathlib import Path

import torch

from svg_pyro.errors import InvalidInput


SCALARS = ("loss", "mse", "kl", "kl_per_step", "reference_loss")
MOTION = ("position_error_best", "position_error_mean", "certain_displacement_error")  # rows of the probe


class TensorBoardLog:
    def __init__(self, out: Path, resumed_at: int | None):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise InvalidInput("--tensorboard needs the tensorboard package: pip install 'svg-pyro[tensorboard]' "
                               "(or train without --tensorboard)") from None
        # On resume, TensorBoard drops the events logged after the checkpoint: they are recomputed.
        purge = None if resumed_at is None else resumed_at + 1
        self.writer = SummaryWriter(log_dir=str(Path(out) / "tensorboard"), purge_step=purge)

    def metrics(self, row: dict) -> None:
        step = row["step"]
        for name in SCALARS:
            self.writer.add_scalar(f"train/{name}", row[name], step)
        for t, kl in enumerate(row["kl_t"], start=1):
            self.writer.add_scalar(f"kl_per_transition/t{t:02d}", kl, step)
        for name in MOTION:
            if row.get(name) is not None:
                self.writer.add_scalar(f"motion/{name}", row[name], step)
        self.writer.flush()

    def samples(self, step: int, videos: torch.Tensor) -> None:
        """videos: (rows, T, C, H, W) in [0, 1], shown as one image: a row per video, a column per frame."""
        rows, frames, channels, height, width = videos.shape
        mosaic = videos.detach().cpu().float().permute(2, 0, 3, 1, 4).reshape(channels, rows * height, frames * width)
        self.writer.add_image("samples", mosaic.clamp(0, 1), step)
        self.writer.flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.writer.close()
