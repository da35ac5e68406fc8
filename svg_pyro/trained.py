"""A trained model as one object: the front door for Python.

    import svg_pyro

    model = svg_pyro.load("smmnist-2digit-svg-lp")      # a shipped model's short name, or RUN/checkpoint.pt
    videos = model.test_videos(4, frames=15)            # (4, 15, 1, 64, 64): its own test set's first videos
    futures = model.sample(videos, samples=10)          # (10, 4, 15, 1, 64, 64): 5 given + 10 generated
    model.save_samples("futures.png", videos, futures)  # truth and samples, a row each (and a .gif beside it)
    bounds = model.bounds(videos, particles=(1, 100))   # per video: ELBO and IWAE bounds on log p(x), nats
    surprise = model.surprise(videos)                   # per frame: -log p(x_t | x_<t), nats
    goal = model.condition(videos, observe=[0, 1, 2, 3, 4, 14], samples=10)  # futures that reach frame 14

``model.svg.model`` and ``model.svg.guide`` are the Pyro model and guide themselves, for effect
handlers, ``Predictive`` or ``SVI``; ``model.config`` is the run's configuration.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from svg_pyro.checkpoint import load_model, resolve_checkpoint
from svg_pyro.config import Config
from svg_pyro.data.datasets import check_video_values, make_datasets, stack_videos
from svg_pyro.devices import resolve_device
from svg_pyro.errors import InvalidInput
from svg_pyro.evaluation.bounds import video_bounds
from svg_pyro.evaluation.plots import save_gif, save_video_grid
from svg_pyro.evaluation.score import score_videos
from svg_pyro.inference.condition import Conditioned, condition
from svg_pyro.inference.sampling import generate
from svg_pyro.models.svg import check_video_shape


@dataclass
class TrainedModel:
    config: Config
    svg: nn.Module  # models.svg.SVG: ``svg.model`` and ``svg.guide`` are the Pyro model and guide
    step: int  # training steps behind these weights
    path: Path  # the checkpoint it was loaded from

    @classmethod
    def load(cls, name_or_path, device: str = "cpu") -> TrainedModel:
        """A checkpoint (training or weights-only) by path, or a shipped model by short name
        (``svg_pyro.checkpoint.shipped_models()`` lists them), on ``device`` in eval mode."""
        config, svg, step = load_model(name_or_path, resolve_device(device))
        return cls(config, svg, step, resolve_checkpoint(name_or_path))

    @property
    def n_past(self) -> int:
        """Conditioning frames the model was trained with."""
        return self.config.n_past

    @property
    def device(self) -> torch.device:
        return next(self.svg.parameters()).device

    def test_videos(self, count: int = 8, frames: int | None = None) -> torch.Tensor:
        """The first ``count`` videos of the model's own test set, (count, frames, C, H, W) in
        [0, 1]; ``frames`` defaults to the training length (n_past + n_future)."""
        frames = self.config.frames_per_video if frames is None else frames
        if frames <= self.n_past:
            raise InvalidInput(f"frames ({frames}) must exceed the {self.n_past} conditioning frames")
        test = make_datasets(self.config, split_lengths=(self.config.frames_per_video, frames))[1]
        if not 1 <= count <= len(test):
            raise InvalidInput(f"count must lie in 1..{len(test)} (the test set's size), not {count}")
        return stack_videos(test, count)

    def _videos(self, videos) -> torch.Tensor:
        """Videos as the model takes them: one video (T, C, H, W) gains a batch dim; frame shape and
        values are checked."""
        if torch.is_tensor(videos) and videos.dim() == 4:
            videos = videos[None]
        check_video_shape(videos, self.svg.frame_shape)
        check_video_values(videos)
        return videos

    def sample(self, videos: torch.Tensor, frames: int | None = None, samples: int = 1, *, prior=None,
               bn: str = "eval", max_batch: int = 256, progress: bool = False) -> torch.Tensor:
        """``samples`` futures of each video (B, >=n_past, C, H, W) or of one video (T, C, H, W),
        conditioned on its first ``n_past`` frames: (samples, B, frames, C, H, W), the first n_past
        frames being the given ones. ``frames`` defaults to the videos' length. ``prior``: None (the
        model's own), "fixed" (N(0, I)) or another SVG-LP's ``svg`` (its learned prior)."""
        videos = self._videos(videos)
        frames = videos.shape[1] if frames is None else frames
        if videos.shape[1] < self.n_past or frames <= self.n_past:
            raise InvalidInput(f"need at least the {self.n_past} conditioning frames and frames > {self.n_past}; "
                               f"got {videos.shape[1]} frames and frames={frames}")
        return generate(self.svg, videos, self.n_past, frames, samples, prior=prior, bn=bn,
                        max_batch=max_batch, progress=progress)

    def condition(self, videos: torch.Tensor, observe, frames: int | None = None, samples: int = 10,
                  particles: int | None = None, temperature: float = 1.0, proposal: str = "prior",
                  progress: bool = False) -> Conditioned:
        """Futures consistent with the frames ``observe`` (indices such as ``[0, 1, 2, 3, 4, 14]``,
        the conditioning frames 0..n_past-1 among them) of each video (B, >= frames, C, H, W):
        ``.frames`` (samples, B, frames, C, H, W) and ``.ess``, the effective sample size at each
        observed step after n_past (``svg_pyro.inference.condition``: sequential Monte Carlo with
        ``particles`` paths per video, default ``samples``; ``temperature`` < 1 tempers the
        observed frames' likelihood; ``proposal="guide"`` proposes z_t from the guide on the observed
        steps)."""
        videos = self._videos(videos)
        frames = videos.shape[1] if frames is None else frames
        return condition(self.svg, videos, self.n_past, observe, frames, samples, particles, temperature, progress,
                         proposal)

    def bounds(self, videos: torch.Tensor, particles=(1, 10)) -> dict:
        """Lower bounds on log p(x_1..x_{T-1} | x_0) of each video (every frame observed), in nats
        per video: ``elbo`` (B,) and ``iwae`` {K: (B,)} with K latent paths from the guide, and the
        per-step ``loglik_t`` and ``kl_t`` (B, T-1) (numpy arrays; ``svg_pyro.evaluation.bounds``)."""
        videos = self._videos(videos).to(self.device)
        with torch.no_grad():
            return video_bounds(self.svg, videos, self.n_past, tuple(particles))

    def surprise(self, videos: torch.Tensor, particles: int = 100) -> np.ndarray:
        """-log p(x_t | x_<t) of each frame t = 1..T-1 of each video, in nats (B, T-1): what the
        model did not expect (``svg_pyro.evaluation.score``)."""
        return score_videos(self.svg, self._videos(videos), self.n_past, particles)["surprise"]

    def save_samples(self, path, videos: torch.Tensor, futures: torch.Tensor) -> None:
        """PNG at ``path`` (and a GIF beside it) of each video's truth above its futures, as
        ``sample`` returns them (samples, B, T, C, H, W); given frames framed green."""
        videos = self._videos(videos)
        rows, labels = [], []
        for v in range(videos.shape[0]):
            rows.append(videos[v, :futures.shape[2]].to(futures.device))
            labels.append(f"video {v}\ntruth")
            rows += list(futures[:, v])
            labels += [f"sample {s}" for s in range(futures.shape[0])]
        rows = torch.stack(rows)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_video_grid(path, rows, labels, self.n_past,
                        f"{self.config.model} (step {self.step}): {self.n_past} given (green), then generated")
        save_gif(path.with_suffix(".gif"), rows)


def load(name_or_path, device: str = "cpu") -> TrainedModel:
    """``TrainedModel.load``: a trained model by shipped short name or checkpoint path."""
    return TrainedModel.load(name_or_path, device)
