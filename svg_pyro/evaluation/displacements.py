"""Distributions of a digit's displacement (dx, dy) per step, and distances between them.

A distribution is an array ``p[dy + R, dx + R]`` on the grid -R..R of a frame's possible shifts
(``grid_radius``: 32 for a 32x32 digit on 64x64 frames); the generator of Stochastic Moving MNIST
only reaches the central 9x9 block (|dx|, |dy| <= 4, ``crop``), generated videos may land outside
it. The distances are total variation and the Wasserstein-1 (earth mover's) distance in pixels.
"""
from __future__ import annotations

import numpy as np

from svg_pyro.data.smmnist import DIGIT_SIZE, HALF
from svg_pyro.errors import InvalidInput


def displacements(positions) -> np.ndarray:
    """(..., T, 2) positions -> (..., T-1, 2) displacements between consecutive frames."""
    positions = np.asarray(positions)
    return positions[..., 1:, :] - positions[..., :-1, :]


# ---------------------------------------------------------------------------------------------
# distributions on the displacement grid


def grid_radius(image_size: int) -> int:
    """Largest displacement a digit can show: placements run over 0..image_size - DIGIT_SIZE."""
    return image_size - DIGIT_SIZE


def displacement_histogram(steps, radius: int) -> np.ndarray:
    """Empirical distribution ``p[dy + R, dx + R]`` of displacements (N, 2) as (dx, dy)."""
    steps = np.asarray(steps).reshape(-1, 2)
    if len(steps) == 0:
        raise InvalidInput("no displacements to count")
    if np.abs(steps).max() > radius:
        raise InvalidInput(f"displacements reach {np.abs(steps).max()}, beyond the grid radius {radius}")
    counts = np.zeros((2 * radius + 1, 2 * radius + 1))
    np.add.at(counts, (steps[:, 1] + radius, steps[:, 0] + radius), 1.0)
    return counts / counts.sum()


def embed(probs: np.ndarray, radius: int) -> np.ndarray:
    """A centred (2r+1)^2 distribution placed in the centre of the (2 radius + 1)^2 grid."""
    small = probs.shape[-1] // 2
    if radius < small:
        raise InvalidInput(f"cannot embed a grid of radius {small} in one of radius {radius}")
    out = np.zeros(probs.shape[:-2] + (2 * radius + 1, 2 * radius + 1))
    out[..., radius - small:radius + small + 1, radius - small:radius + small + 1] = probs
    return out


def crop(probs: np.ndarray, half: int = HALF) -> np.ndarray:
    """The central (2 half + 1)^2 block: the generator's 9x9 (dx, dy) grid by default."""
    r = probs.shape[-1] // 2
    return probs[..., r - half:r + half + 1, r - half:r + half + 1]


def total_variation(p: np.ndarray, q: np.ndarray) -> float:
    """TV = max over events |P(A) - Q(A)| = half the L1 distance; 0 (equal) to 1 (disjoint)."""
    _check_pair(p, q)
    return 0.5 * float(np.abs(p - q).sum())


def wasserstein(p: np.ndarray, q: np.ndarray) -> float:
    """Earth mover's distance in pixels per frame (Euclidean ground distance between (dx, dy)).

    TV is 1 for any two disjoint distributions; W1 says how far the mass must move, so it tells a
    model that bounces with a slightly wrong speed from one that flies on into the wall.
    """
    from scipy.stats import wasserstein_distance_nd

    _check_pair(p, q)
    r = p.shape[-1] // 2

    def points(d):
        where = np.argwhere(d > 0)
        return where - r, d[tuple(where.T)]

    (u, u_weights), (v, v_weights) = points(p), points(q)
    return float(wasserstein_distance_nd(u, v, u_weights, v_weights))


def _check_pair(p, q):
    if p.shape != q.shape or p.ndim != 2 or p.shape[0] != p.shape[1] or p.shape[0] % 2 != 1:
        raise InvalidInput(f"distributions must be centred square grids of one odd size, got {p.shape} and {q.shape}")
    for d in (p, q):
        if (d < 0).any() or not np.isclose(d.sum(), 1.0):
            raise InvalidInput("distributions must be non-negative and sum to 1")


# ---------------------------------------------------------------------------------------------
# the study's trajectory


def first_random_step(truth: np.ndarray) -> int | None:
    """Index of the first step whose true distribution is not a delta (None if all are)."""
    random = np.flatnonzero(truth.reshape(len(truth), -1).max(axis=1) < 1 - 1e-9)
    return int(random[0]) if len(random) else None
