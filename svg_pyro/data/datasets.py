"""Dataset construction and frame checks shared by every dataset.

Every dataset yields float32 videos (T, C, H, W) in [0, 1] and ``dataset[i]`` is a pure function
of ``i``, so a training batch is a pure function of (seed, step) and resumed runs replay exactly.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from svg_pyro.data import video_store
from svg_pyro.data.smmnist import StochasticMovingMNIST
from svg_pyro.errors import InvalidInput


# Size of the fixed, seeded evaluation sets.
SMMNIST_TEST_VIDEOS = 256


def check_video_values(videos: torch.Tensor) -> None:
    """Frames must be finite and in [0, 1] (the decoder ends in a sigmoid). One host read when
    they are (NaN fails both comparisons); the details only when they are not."""
    if ((videos >= 0) & (videos <= 1)).all():
        return
    if not torch.isfinite(videos).all():
        bad = (~torch.isfinite(videos)).flatten(1).any(1).nonzero().flatten().tolist()
        raise InvalidInput(f"videos {bad} of the batch hold NaN or infinite pixels; "
                           "check the data source or the preparation step")
    lo, hi = videos.min().item(), videos.max().item()
    if lo < 0 or hi > 1:
        raise InvalidInput(f"pixel values must lie in [0, 1], got [{lo:.3g}, {hi:.3g}]; "
                           "divide uint8 frames by 255")


def make_datasets(config, split_lengths: tuple[int, int] | None = None):
    """(train, test) datasets for ``config``; test videos are ``n_past + n_future`` frames long
    unless ``split_lengths`` = (train_length, test_length) says otherwise."""
    train_len, test_len = split_lengths or (config.frames_per_video, config.frames_per_video)
    if config.dataset == "smmnist":

        common = dict(num_digits=config.num_digits, image_size=config.image_size,
                      deterministic=config.deterministic, velocity=config.velocity,
                      mnist_root=config.mnist_root)
        if config.channels != 1:
            raise InvalidInput("Stochastic Moving MNIST has 1 channel; set channels=1")
        train = StochasticMovingMNIST("train", train_len, seed=config.seed, **common)
        test = StochasticMovingMNIST("test", test_len, num_videos=SMMNIST_TEST_VIDEOS, seed=0, **common)
        return train, test

    return video_store.store_datasets(config, train_len, test_len)


def stack_videos(dataset, indices) -> torch.Tensor:
    """Videos of ``dataset`` as one (B, T, C, H, W) tensor: the first ``indices`` when it is an int,
    else those indices."""
    indices = range(indices) if isinstance(indices, int) else indices
    return torch.stack([dataset[int(i)] for i in indices])


def training_batch(dataset, seed: int, step: int, batch_size: int, part: slice = slice(None)) -> torch.Tensor:
    """The batch of ``step``: videos drawn with replacement by a generator seeded by (seed, step).
    ``part`` selects rows of it (a data-parallel rank's share), built without building the rest."""
    rng = np.random.default_rng([seed, step])
    return stack_videos(dataset, rng.integers(0, len(dataset), size=batch_size)[part])


class StepBatches(Dataset):
    """The training batches of a run indexed by step (``training_batch``): what a DataLoader's
    workers build ahead of the training loop."""

    def __init__(self, dataset, seed: int, batch_size: int, part: slice = slice(None)):
        self.dataset, self.seed, self.batch_size, self.part = dataset, seed, batch_size, part

    def __getitem__(self, step: int) -> torch.Tensor:
        return training_batch(self.dataset, self.seed, step, self.batch_size, self.part)


def training_batches(dataset, seed: int, batch_size: int, steps: range, part: slice = slice(None),
                     workers: int = 0, pin_memory: bool = False):
    """Iterator over the batches of ``steps``, built by ``workers`` processes two batches ahead of
    the loop (0: in the loop itself). The batches do not depend on ``workers``."""
    # Its own generator: the loader draws a seed for its workers, which must not shift the
    # training RNG stream (resumed runs replay exactly).
    loader = DataLoader(StepBatches(dataset, seed, batch_size, part), batch_size=None, sampler=steps,
                        num_workers=workers, pin_memory=pin_memory, prefetch_factor=2 if workers else None,
                        generator=torch.Generator())
    return iter(loader)
