"""Exact posterior of a Stochastic Moving MNIST digit's motion given its positions at any frames.

``smmnist.true_displacement_distributions`` filters forward from a prefix of given frames. The
conditioned-prediction study also asks for "futures given frames 0-4 and 14": a later observed
frame constrains the steps before it (the digit has to get there) as well as those after. This
module runs forward-backward over the generator's (position, velocity) Markov chain (the same
``smmnist._Transition``) and returns, for every step, the exact P(displacement | all observed
positions). With a prefix observed it equals ``true_displacement_distributions``.
"""
from __future__ import annotations

import numpy as np

from svg_pyro.data.smmnist import DIGIT_SIZE, _Transition, allowed_velocity_table
from svg_pyro.errors import InvalidInput


def posterior_displacement_distributions(positions, table: np.ndarray, image_size: int = 64) -> np.ndarray:
    """P(displacement of step t | the observed positions) for t = 1..T-1: (T-1, 9, 9), rows dy,
    columns dx, as ``true_displacement_distributions``.

    ``positions`` (T, 2) holds the top-left (x, y) of each frame, a row of NaN (or None, or a masked
    row) for a frame that is not observed; frame 0 must be observed. ``table`` is the initial
    velocity table (``smmnist.velocity_table``).
    """
    pos = _observations(positions, image_size)
    limit = image_size - DIGIT_SIZE
    transition = _Transition(table, image_size)
    seen = ~np.isnan(pos[:, 0])

    def evidence(t):  # P(observation at frame t | state): 1 at the observed position, else 0
        if not seen[t]:
            return np.ones((limit, limit, 1, 1))
        e = np.zeros((limit, limit, 1, 1))
        e[int(pos[t, 1]), int(pos[t, 0])] = 1.0
        return e

    # forward: alpha_t = P(state_t | observations at frames 0..t)
    alpha = np.zeros(transition.shape)
    alpha[int(pos[0, 1]), int(pos[0, 0])] = allowed_velocity_table(table, None)
    alphas, last_seen = [alpha], 0
    for t in range(1, len(pos)):
        _, alpha = transition(alpha)
        alpha = alpha * evidence(t)
        if alpha.sum() <= 0:  # P(observations 0..t) = 0: nothing later can make them possible
            a, b = pos[last_seen].astype(int).tolist(), pos[t].astype(int).tolist()
            raise InvalidInput(f"the observed positions are impossible under the generator's rules: no "
                               f"path takes the digit from {a} at frame {last_seen} to {b} at frame {t}")
        alpha /= alpha.sum()
        alphas.append(alpha)
        last_seen = t if seen[t] else last_seen

    # backward: beta_t = P(observations after t | state_t), up to a constant per t. The displacement
    # of step t is fixed by state_{t-1} (position + velocity, clamped at a wall), so the posterior of
    # the pair (state_{t-1}, state_t) marginalises to alpha_{t-1} * beta_{t-1} binned by that step.
    beta = np.ones(transition.shape)
    out = np.zeros((len(pos) - 1, 9, 9))
    for t in range(len(pos) - 1, 0, -1):
        lik = beta * evidence(t)
        # a free state keeps its velocity: one successor; a wall hit redraws from its wall's table
        redrawn = np.einsum("yxab,wab->yxw", lik, transition.redraw).ravel()
        beta = np.where(transition.free, lik.ravel()[transition.keep], redrawn[transition.cell])
        beta = beta.reshape(transition.shape) / beta.max()  # rescale only: avoids underflow on long videos
        gamma = alphas[t - 1] * beta
        steps = np.bincount(transition.step, weights=gamma.ravel(), minlength=81)
        out[t - 1] = (steps / steps.sum()).reshape(9, 9)
    return out


def _observations(positions, image_size: int) -> np.ndarray:
    """(T, 2) float positions, NaN rows unobserved; raises on anything the chain cannot start from."""
    if isinstance(positions, (list, tuple)):
        positions = [(np.nan, np.nan) if p is None else p for p in positions]
    if np.ma.isMaskedArray(positions):
        positions = np.ma.filled(np.ma.asarray(positions, dtype=float), np.nan)
    pos = np.asarray(positions, dtype=float)
    limit = image_size - DIGIT_SIZE
    if limit < 1:
        raise InvalidInput(f"image_size must exceed the digit size {DIGIT_SIZE}, got {image_size}")
    if pos.ndim != 2 or pos.shape[1] != 2 or len(pos) == 0:
        raise InvalidInput(f"positions must be a (T, 2) array of (x, y) with T >= 1, got shape {pos.shape}")
    missing = np.isnan(pos)
    if (missing[:, 0] != missing[:, 1]).any():
        raise InvalidInput("a frame's x and y must be both observed or both NaN (unobserved)")
    if missing[0, 0]:
        raise InvalidInput("frame 0 must be observed: the generator's chain starts at its position")
    given = pos[~missing[:, 0]]
    if (given != np.round(given)).any() or (given < 0).any() or (given >= limit).any():
        raise InvalidInput(f"observed positions must be integers in 0..{limit - 1} (where the generator "
                           f"draws digits), got {given.tolist()}")
    return pos
