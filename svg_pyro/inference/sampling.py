"""Conditional generation with ``pyro.infer.Predictive``, in bounded memory.

The reference procedure: z_t from the posterior (guide) on the conditioning steps t < n_past, from
a prior after them (the model's own, or a swapped one, see ``svg_pyro.models.priors.swap_prior``);
generated frames are fed back as the next input.

Vectorization and memory. ``predict`` is one ``Predictive(parallel=True)`` call: the samples are a
leading dim of every tensor (the networks flatten leading dims). ``sample_chunks`` covers N samples
of B videos in rectangular chunks of at most ``max_batch`` (sample, video) rows, on the device of the
model, so memory stays bounded whatever N x B x frames is. Chunks take as many samples of a video as
fit (``Predictive`` runs the model twice more, unvectorized, to learn its shapes: that overhead is
1/k of a chunk of k samples).

BatchNorm at sampling time (``bn``):
- ``"eval"`` (default): running statistics from training. A sample then does not depend on which
  other videos or samples share its chunk, so chunking changes nothing but the random stream.
- ``"train"``: statistics of the current batch, as the reference SVG-LP generator did (its SVG-FP
  generator used eval mode). Here the batch is the chunk: its videos x samples, not a batch of
  distinct videos with one sample each as in the reference. The running statistics are restored
  afterwards, so the model is left as it was.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from pyro import poutine
from pyro.infer import Predictive
from torch import nn
from tqdm.auto import tqdm

from svg_pyro.checkpoint import load_model
from svg_pyro.data.datasets import make_datasets, stack_videos
from svg_pyro.errors import InvalidInput
from svg_pyro.models.priors import fixed_prior, learned_prior_of, swap_prior
from svg_pyro.models.sites import latent_site


BN_MODES = ("eval", "train")
GRID_VIDEOS = 4  # test videos shown in training's sample grids
GRID_SAMPLES = 2  # futures of each
GRID_SEED = 1234  # drawn under a fixed seed, outside the training RNG stream
BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)
DEFAULT_MAX_BATCH = 256  # (sample, video) rows per Predictive call


def model_device(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


@contextlib.contextmanager
def batchnorm_mode(modules, mode: str):
    """Put the BatchNorm layers of ``modules`` in ``mode`` ("eval" or "train") for the block; restore
    their mode and running statistics afterwards."""
    if mode not in BN_MODES:
        raise InvalidInput(f"BatchNorm mode {mode!r} is unknown; choose 'eval' (running statistics) "
                           "or 'train' (batch statistics)")
    layers = [m for module in modules if isinstance(module, nn.Module)
              for m in module.modules() if isinstance(m, BATCHNORMS)]
    saved = [(m.training, {k: v.clone() for k, v in m.named_buffers()}) for m in layers]
    try:
        for m in layers:
            m.train(mode == "train")
        yield
    finally:
        for m, (training, buffers) in zip(layers, saved):
            m.train(training)
            for name, value in buffers.items():
                getattr(m, name).copy_(value)


def _prior_model(svg, prior, context: torch.Tensor, n_past: int):
    """``svg.model`` under the prior ``prior``: None or "learned" (the model's own), "fixed"
    (N(0, I)), or another SVG-LP model (its learned prior on its own encodings)."""
    if prior is None or prior == "learned":
        return svg.model
    if svg.prior is None:
        raise InvalidInput("the deterministic model has no latent z: sample it with prior=None")
    if prior == "fixed":
        return swap_prior(fixed_prior, from_step=n_past)(svg.model)
    if isinstance(prior, nn.Module):
        return learned_prior_of(prior, context, n_past)(svg.model)
    raise InvalidInput(f"prior {prior!r} is unknown; use None/'learned', 'fixed' or an SVG-LP model")


@torch.no_grad()
def predict(svg, context: torch.Tensor, n_past: int, n_frames: int, num_samples: int,
            prior=None) -> dict:
    """One vectorized ``Predictive`` call on the conditioning frames ``context`` (B, n_past, C, H, W).

    Returns ``frames`` (num_samples, B, n_frames, C, H, W), whose first ``n_past`` frames are the
    context itself, and ``z`` (num_samples, B, n_frames - 1, z_dim) for z_1..z_{n_frames-1}
    (guide draws before n_past, prior draws after), or None for the deterministic model.
    """
    if context.shape[1] != n_past:
        raise InvalidInput(f"context must hold exactly n_past={n_past} frames, got {context.shape[1]}")
    z_sites = [latent_site(t) for t in range(1, n_frames)] if svg.z_dim else []
    model = _prior_model(svg, prior, context, n_past)
    predictive = Predictive(model, guide=svg.guide, num_samples=num_samples, parallel=True,
                            return_sites=["_RETURN", *z_sites])
    out = predictive(context, n_past, n_frames)
    means = out["_RETURN"]  # (S, B, n_frames - 1, C, H, W): means of x_1 .. x_{n_frames-1}
    frames = torch.cat([context.expand(num_samples, *context.shape), means[:, :, n_past - 1:]], dim=2)
    z = torch.stack([out[name] for name in z_sites], dim=2) if z_sites else None
    return {"frames": frames, "z": z}


@dataclass
class Chunk:
    videos: slice  # positions in the ``videos`` given to ``sample_chunks``
    samples: slice  # sample indices
    frames: torch.Tensor  # (samples, videos, n_frames, C, H, W), on the model's device
    z: torch.Tensor | None  # (samples, videos, n_frames - 1, z_dim)


def chunk_plan(num_videos: int, num_samples: int, max_batch: int, bn: str = "eval") -> tuple[int, int]:
    """(videos, samples) per chunk: as many samples of a video as fit, then as many videos.
    With batch statistics every chunk needs at least 2 videos (BatchNorm of one 1x1 map fails)."""
    if max_batch < 1 or num_samples < 1 or num_videos < 1:
        raise InvalidInput("max_batch, num_samples and the number of videos must be positive")
    samples = min(num_samples, max_batch)
    videos = min(num_videos, max(1, max_batch // samples))
    if bn == "train" and videos < 2:
        if num_videos < 2:
            raise InvalidInput("bn='train' (batch statistics) needs at least 2 videos; use bn='eval'")
        videos, samples = 2, max(1, min(num_samples, max_batch // 2))
    return videos, samples


def video_groups(num_videos: int, per_chunk: int, bn: str = "eval") -> list[tuple[int, int]]:
    """[start, stop) of the groups of videos sampled together. With batch statistics the videos
    are split evenly so that no group is a single video (a group may then hold up to
    2 * per_chunk - 1 videos)."""
    if bn == "train":
        groups = max(1, num_videos // per_chunk)
        bounds = [round(i * num_videos / groups) for i in range(groups + 1)]
    else:
        bounds = [*range(0, num_videos, per_chunk), num_videos]
    return list(zip(bounds[:-1], bounds[1:]))


def sample_chunks(svg, videos: torch.Tensor, n_past: int, n_frames: int, num_samples: int, *,
                  prior=None, bn: str = "eval", max_batch: int = DEFAULT_MAX_BATCH,
                  progress: bool = False, desc: str = "sampling"):
    """Yield ``Chunk``s covering ``num_samples`` futures of every video of ``videos``
    (B, >=n_past, C, H, W); only the first n_past frames are used. A progress bar (optional)
    counts videos. Consume the generator fully: BatchNorm is restored when it finishes."""
    device = model_device(svg)
    per_chunk_videos, per_chunk_samples = chunk_plan(videos.shape[0], num_samples, max_batch, bn)
    bar = tqdm(total=videos.shape[0], unit="video", desc=desc, disable=not progress, dynamic_ncols=True)
    with batchnorm_mode([svg, prior], bn):
        for v0, v1 in video_groups(videos.shape[0], per_chunk_videos, bn):
            context = videos[v0:v1, :n_past].to(device)
            for s0 in range(0, num_samples, per_chunk_samples):
                s1 = min(s0 + per_chunk_samples, num_samples)
                out = predict(svg, context, n_past, n_frames, s1 - s0, prior)
                yield Chunk(slice(v0, v1), slice(s0, s1), out["frames"], out["z"])
                bar.update((v1 - v0) * (s1 - s0) / num_samples)
    bar.close()


@torch.no_grad()
def generate(svg, videos: torch.Tensor, n_past: int, n_frames: int, num_samples: int = 1, *,
             prior=None, bn: str = "eval", max_batch: int = DEFAULT_MAX_BATCH, progress: bool = False):
    """Futures of ``videos`` (B, >=n_past, C, H, W): (num_samples, B, n_frames, C, H, W) on the
    device of ``videos``. The first ``n_past`` frames of every sample are the conditioning frames
    themselves. The result holds every frame: for many samples, iterate ``sample_chunks``."""
    out = None
    for chunk in sample_chunks(svg, videos, n_past, n_frames, num_samples, prior=prior, bn=bn,
                               max_batch=max_batch, progress=progress):
        if out is None:
            out = videos.new_empty(num_samples, videos.shape[0], *chunk.frames.shape[2:])
        out[chunk.samples, chunk.videos] = chunk.frames.to(videos.device)
    return out


def grid_samples(svg, test_videos: torch.Tensor, n_past: int) -> torch.Tensor:
    """The futures training shows at its sample intervals: ``GRID_SAMPLES`` of each of
    ``test_videos``, under a fixed seed and BatchNorm's running statistics, outside the training RNG
    stream and any enclosing Pyro handler."""
    cuda = [test_videos.device.index or 0] if test_videos.is_cuda else []
    with torch.random.fork_rng(devices=cuda), poutine.block():
        torch.manual_seed(GRID_SEED)
        return generate(svg, test_videos, n_past, test_videos.shape[1], GRID_SAMPLES, bn="eval")


def sample_fingerprint(path) -> list[float]:
    """The mean of every predicted frame of 2 futures (5 steps) of the first 2 test videos, drawn on
    the CPU under seed 0 with BatchNorm's running statistics: checkpoints/manifest.json records it
    for each shipped model and tests/test_shipped.py compares, so that a change to the networks,
    the sampler or the file shows."""
    config, svg, _ = load_model(path)
    test = make_datasets(config)[1]
    videos = stack_videos(test, 2)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        frames = generate(svg, videos, config.n_past, config.n_past + 5, 2)
    return frames[:, :, config.n_past:].mean(dim=(-3, -2, -1)).flatten().tolist()
