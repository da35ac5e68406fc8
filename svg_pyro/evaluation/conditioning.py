"""The conditioning study (``svg-pyro condition``): futures of SM-MNIST test videos given frames at
any steps, against the same model's unconditioned futures and, for one digit, the exact posterior.

For each video: ``samples`` futures conditioned on the frames ``observe`` (sequential Monte Carlo,
``svg_pyro.inference.condition``) and as many unconditioned ones (``generate`` from the first
n_past frames). The digits are found in every frame as the motion probe finds them; per step the
mean distance to the true position is the ``position_error``. With one digit, the exact
distribution of each step's displacement given every observed frame comes from forward-backward
over the generator's (position, velocity) chain (``data.smmnist_posterior``); per step the W1 and
TV distances of the samples' displacements to it, for conditioned and unconditioned samples alike.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pyro
import torch

from svg_pyro.checkpoint import load_model
from svg_pyro.data.datasets import make_datasets, stack_videos
from svg_pyro.data.smmnist import StochasticMovingMNIST, true_displacement_distributions, velocity_table
from svg_pyro.data.smmnist_posterior import posterior_displacement_distributions
from svg_pyro.devices import resolve_device
from svg_pyro.errors import InvalidInput
from svg_pyro.evaluation.displacements import (displacement_histogram, displacements, embed, first_random_step,
                                               grid_radius, total_variation, wasserstein)
from svg_pyro.evaluation.motion import found_positions
from svg_pyro.evaluation.plots import save_video_grid
from svg_pyro.inference.condition import condition, parse_steps
from svg_pyro.inference.sampling import generate


def position_error(found: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Mean distance (px) per frame between found (S, B, T, D, 2) and true (B, T, D, 2) positions."""
    return np.linalg.norm(found - truth[None], axis=-1).mean(axis=(0, 1, 3))


def exact_distances(found: np.ndarray, truth: np.ndarray, observe: list[int], table, image_size: int,
                    n_past: int) -> dict:
    """Per step (1..T-1), mean over videos of W1 and TV between the samples' displacements (found
    (S, B, T, 1, 2)) and the exact posterior given the observed positions; ``after_wall``: the
    steps, after the first one the conditioning frames leave uncertain and not observed, that the
    summary averages over (a mask (B, T-1))."""
    radius = grid_radius(image_size)
    videos, frames = truth.shape[:2]
    w1, tv = np.full((videos, frames - 1), np.nan), np.full((videos, frames - 1), np.nan)
    after_wall = np.zeros((videos, frames - 1), bool)
    for b in range(videos):
        given = np.full((frames, 2), np.nan)
        given[observe] = truth[b, observe, 0]
        exact = posterior_displacement_distributions(given, table, image_size)  # (T-1, 9, 9)
        forward = true_displacement_distributions(truth[b, :n_past, 0], frames - n_past, table, image_size)
        wall = first_random_step(forward)
        steps = displacements(found[:, b, :, 0])  # (S, T-1, 2)
        for s in range(n_past - 1, frames - 1):  # step s + 1 moves frame s to s + 1
            sample = displacement_histogram(np.clip(steps[:, s], -radius, radius), radius)
            target = embed(exact[s], radius)
            w1[b, s], tv[b, s] = wasserstein(sample, target), total_variation(sample, target)
            after_wall[b, s] = wall is not None and s - (n_past - 1) >= wall and (s + 1) not in observe
    return {"w1": w1, "tv": tv, "after_wall": after_wall}


def _per_step(values: np.ndarray) -> list[float | None]:
    """Mean over videos (rows) of each step; None for the steps no video scores (the given ones)."""
    return [round(float(column[np.isfinite(column)].mean()), 4) if np.isfinite(column).any() else None
            for column in values.T]


EXACT = ("per step s = 1..T-1 (the move from frame s-1 to s): W1 (px) and TV between the samples' displacements "
         "and the exact posterior given the observed frames, mean over videos; *_after_wall: over the unobserved "
         "steps after the first one the conditioning frames leave uncertain")


def _against_exact(found: np.ndarray, truth: np.ndarray, observe: list[int], table, config) -> dict:
    """condition.json's per-step W1 and TV to the exact posterior, and their means after the wall."""
    distances = exact_distances(found, truth, observe, table, config.image_size, config.n_past)
    return {"w1": _per_step(distances["w1"]), "tv": _per_step(distances["tv"]),
            "w1_after_wall": _summary(distances["w1"], distances["after_wall"]),
            "tv_after_wall": _summary(distances["tv"], distances["after_wall"])}


def _summary(values: np.ndarray, mask: np.ndarray) -> float | None:
    return round(float(values[mask].mean()), 4) if mask.any() else None


def run_condition(checkpoint, out, observe: str = "0-4,14", frames: int = 15, videos: int = 16,
                  samples: int = 100, particles: int | None = None, temperature: float = 1.0,
                  device: str = "auto", seed: int = 0, progress: bool = True, proposal: str = "prior") -> dict:
    """Condition ``videos`` SM-MNIST test videos of the model of ``checkpoint`` on the frames
    ``observe`` ("0-4,14"), ``frames`` long; writes ``out``/condition.json and condition.png and
    returns condition.json's dict."""
    config, svg, step = load_model(checkpoint, resolve_device(device))
    if config.dataset != "smmnist":
        raise InvalidInput(f"the conditioning study reads digit positions: it needs an SM-MNIST model, "
                           f"not {config.dataset}; for other videos call svg_pyro.inference.condition.condition")
    steps = parse_steps(observe, frames)
    if videos < 1 or frames <= config.n_past:
        raise InvalidInput(f"--videos must be at least 1 and --frames above the {config.n_past} conditioning frames")
    if svg.prior is None:
        raise InvalidInput(f"{checkpoint} is the deterministic model: it has no latent, so its one future cannot be "
                           "conditioned; use an SVG-LP or SVG-FP model")
    if not set(range(config.n_past)) <= set(steps):
        raise InvalidInput(f"--observe {observe} must include the model's {config.n_past} conditioning frames "
                           f"0-{config.n_past - 1}")
    test = make_datasets(config, split_lengths=(config.frames_per_video, frames))[1]
    if not isinstance(test, StochasticMovingMNIST):
        raise InvalidInput("the conditioning study needs the generated SM-MNIST test set")
    Path(out).mkdir(parents=True, exist_ok=True)  # before the work: an unusable --out fails at once
    data = stack_videos(test, min(videos, len(test)))
    paths = [test.trajectory(i) for i in range(len(data))]
    truth = np.stack([p["positions"] for p in paths]).swapaxes(1, 2)  # (B, T, D, 2)
    templates = [test.digits[torch.as_tensor(p["digit_ids"])] for p in paths]

    pyro.set_rng_seed(seed)
    tick = time.perf_counter()
    conditioned = condition(svg, data, config.n_past, steps, frames, samples, particles, temperature, progress,
                            proposal)
    seconds = time.perf_counter() - tick
    unconditioned = generate(svg, data, config.n_past, frames, samples).cpu()
    found = {"conditioned": found_positions(conditioned.frames, templates),
             "unconditioned": found_positions(unconditioned, templates)}
    gap = [t for t in range(config.n_past, frames) if t not in steps]
    per_step = {}
    for name, positions in found.items():
        error = position_error(positions, truth)
        per_step[name] = {"position_error": error.round(3).tolist(),
                          "gap_position_error": round(float(error[gap].mean()), 3) if gap else None}
    result = {"observed": steps, "frames": frames, "n_past": config.n_past, "videos": len(data), "samples": samples,
              "particles": conditioned.particles, "temperature": temperature, "proposal": proposal,
              "ess": {str(t): round(float(conditioned.ess[:, i].mean()), 2) for i, t in enumerate(conditioned.later)},
              "ess_per_video": conditioned.ess.round(2).tolist(), "gap": gap, "per_step": per_step,
              "seconds_per_video": round(seconds / len(data), 2), "checkpoint": str(checkpoint), "step": step,
              "model": config.model, "seed": seed}
    if config.num_digits == 1 and not config.deterministic:
        for name, positions in found.items():
            per_step[name].update(_against_exact(positions, truth, steps, velocity_table(test), config))
        result["exact"] = EXACT
    (Path(out) / "condition.json").write_text(json.dumps(result) + "\n")
    plot_condition(Path(out) / "condition.png", data[:, :frames], conditioned.frames, unconditioned, steps,
                   config.n_past)
    return result


def plot_condition(path, truth: torch.Tensor, conditioned: torch.Tensor, unconditioned: torch.Tensor,
                   observed: list[int], n_past: int, videos: int = 3, shown: int = 3) -> None:
    """Per video: the truth (observed frames framed green), ``shown`` conditioned and ``shown``
    unconditioned samples."""
    rows, labels = [], []
    for b in range(min(videos, truth.shape[0])):
        rows.append(truth[b])
        labels.append(f"video {b}\ntruth")
        for name, frames in (("conditioned", conditioned), ("unconditioned", unconditioned)):
            for s in range(min(shown, frames.shape[0])):
                rows.append(frames[s, b])
                labels.append(f"{name} {s}")
    title = f"given frames {observed} (green); conditioned: sequential Monte Carlo, unconditioned: the first {n_past}"
    save_video_grid(path, torch.stack(rows), labels, observed, title)
