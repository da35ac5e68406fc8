"""Has the model learned the dynamics? Where the digits of generated SM-MNIST futures are.

The generator of Stochastic Moving MNIST knows where every digit is in every test frame, and its
rules say on which predicted steps the motion is certain (before the next wall hit, given the
conditioning frames). ``MotionProbe`` generates futures of a few fixed test videos, finds the digits
in them by least squares against the digits' own images, and scores:

- position error per predicted step (pixels, Euclidean): the mean over samples, and the best sample
  per video (the one with the lowest mean error over the predicted steps, as best-of-N evaluation
  picks samples);
- displacement error on the certain steps (pixels per frame): |generated - true displacement| over
  every sample, digit and certain step. As the truth there is a point mass, this is the Wasserstein-1
  distance of the trajectory study, pooled over the probe videos;
- displacement error per predicted step, free-running (every sample, digit and step, wall hits
  included) beside the teacher-forced one-step error: each prediction made from the TRUE previous
  frames (``svg.model`` with every frame observed, fed the true frames, z from the prior), scored
  as |predicted - true position| = |predicted - true displacement| from the true previous frame.
  A one-step error that grows with the step is the model's design (e.g. a fixed skip frame), not
  its own frames fed back; a flat one that the free-running error leaves behind is the feedback;
- copy-last-frame on the same videos, for scale: a model that does not move the digits scores it.

Positions are top-left corners (x, y) in pixels, as in ``svg_pyro.data.smmnist``.
"""
from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F
from pyro import poutine

from svg_pyro.data.smmnist import StochasticMovingMNIST, true_displacement_distributions, velocity_table
from svg_pyro.errors import InvalidInput
from svg_pyro.inference.sampling import batchnorm_mode, generate, model_device


PROBE_VIDEOS = 16
PROBE_SAMPLES = 5
PROBE_SEED = 4321  # futures are drawn under a fixed seed, outside the training RNG stream


# ---------------------------------------------------------------------------------------------
# finding digits in frames


def _check_frames(frames: torch.Tensor, templates: list[torch.Tensor]) -> None:
    if frames.dim() < 3 or frames.shape[-3] != 1:
        raise InvalidInput(f"frames must have shape (..., 1, H, W), got {tuple(frames.shape)}")
    for template in templates:
        if template.dim() != 2 or not (template > 0).any():
            raise InvalidInput(f"template must be a non-empty 2-D digit image, got shape {tuple(template.shape)}")
        if template.shape[0] > frames.shape[-2] or template.shape[1] > frames.shape[-1]:
            raise InvalidInput(f"template {tuple(template.shape)} is larger than the frames {tuple(frames.shape[-2:])}")


def _correlation(frames: torch.Tensor, template: torch.Tensor) -> torch.Tensor:
    """<f, T_p> for every placement p inside the frame: (N, H - h + 1, W - w + 1)."""
    height, width = frames.shape[-2:]
    flat = frames.reshape(-1, 1, height, width).float().cpu()
    return F.conv2d(flat, template.float().cpu()[None, None])[:, 0]


def extract_positions(frames: torch.Tensor, template: torch.Tensor) -> torch.Tensor:
    """Top-left (x, y) of ``template`` in each frame (..., 1, H, W) -> (..., 2) int64.

    The least-squares placement: over all placements p that keep the digit inside the frame,
    ||f - T_p||^2 = ||f||^2 - 2 <f, T_p> + ||T||^2 with ||T_p|| fixed, so the best p maximises the
    cross-correlation <f, T_p> (also with a free intensity scale, as frames are non-negative). On a
    ground-truth frame f = T_q, Cauchy-Schwarz makes q the unique maximum; on blurred or noisy
    frames the peak stays at the digit's place, where an intensity centre of mass would be pulled
    by smears, faded strokes and a background haze.
    """
    _check_frames(frames, [template])
    scores = _correlation(frames, template)
    side = scores.shape[-1]
    best = scores.flatten(1).argmax(dim=1)
    positions = torch.stack([best % side, best // side], dim=1)
    return positions.reshape(*frames.shape[:-3], 2)


@functools.lru_cache(maxsize=4)
def _pair_grid(rows: int, cols: int, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For every pair (p, q) of placements: the index of the offset q - p in the templates' full
    cross-correlation (2h - 1, 2w - 1), and whether the two digits can overlap at all."""
    ys, xs = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
    dy = ys.flatten()[None, :] - ys.flatten()[:, None]
    dx = xs.flatten()[None, :] - xs.flatten()[:, None]
    touching = (dy.abs() < h) & (dx.abs() < w)
    index = (dy + h - 1).clamp(0, 2 * h - 2) * (2 * w - 1) + (dx + w - 1).clamp(0, 2 * w - 2)
    return index, touching


def extract_pair_positions(frames: torch.Tensor, first: torch.Tensor, second: torch.Tensor,
                           candidates: int = 32) -> torch.Tensor:
    """Top-left (x, y) of two digits in each frame (..., 1, H, W) -> (..., 2, 2) int64, jointly.

    The least-squares pair of placements (p, q) of ``first`` and ``second``: with both digits'
    norms fixed, ||f - A_p - B_q||^2 = const - 2 <f, A_p> - 2 <f, B_q> + 2 <A_p, B_q>, so the best
    pair maximises corr_A(p) + corr_B(q) - <A_p, B_q>. The last term, the overlap of the two digits,
    depends only on q - p and is one cross-correlation of the templates. Searching pairs jointly
    keeps one digit from being found twice where the other is faint, which placing them one at a
    time cannot promise. Frames are clipped sums of the digits, so where strokes overlap the model
    is approximate; elsewhere it is exact.

    The search is exact but prunes: the overlap is never negative, so a pair scores at most
    corr_A(p) + corr_B(q); the best pair among the ``candidates`` best placements of each digit
    gives a score M, and only placements with corr_A(p) + max corr_B >= M (and likewise for q) can
    beat it. On a sharp frame that leaves a handful of the ~10^6 pairs.
    """
    _check_frames(frames, [first, second])
    if first.shape != second.shape:
        raise InvalidInput(f"the two templates must have one shape, got {tuple(first.shape)} and {tuple(second.shape)}")
    corr_a, corr_b = _correlation(frames, first), _correlation(frames, second)
    rows, cols = corr_a.shape[-2:]
    h, w = first.shape
    # overlap[dy + h - 1, dx + w - 1] = <A_p, B_(p + d)>: the full cross-correlation of the templates
    overlap = F.conv2d(F.pad(first.float().cpu()[None, None], (w - 1, w - 1, h - 1, h - 1)),
                       second.float().cpu()[None, None])[0, 0].flatten()
    index, touching = _pair_grid(rows, cols, h, w)

    full = None  # every pair's overlap, built once if a frame leaves most pairs in play (a blur)

    def scores(a, b, ps, qs):  # (len(ps), len(qs)) pair scores
        nonlocal full
        if len(ps) * len(qs) > index.numel() // 8:
            full = overlap[index] * touching if full is None else full
            return a[ps, None] + b[None, qs] - full[ps][:, qs]
        return a[ps, None] + b[None, qs] - overlap[index[ps][:, qs]] * touching[ps][:, qs]

    flat_a, flat_b = corr_a.flatten(1), corr_b.flatten(1)
    k = min(candidates, flat_a.shape[1])
    best = torch.empty(len(flat_a), 2, dtype=torch.long)
    for i, (a, b) in enumerate(zip(flat_a, flat_b)):
        bound = scores(a, b, a.topk(k).indices, b.topk(k).indices).max()
        slack = 1e-5 * (bound.abs() + a.abs().max() + b.abs().max())  # float rounding of the sums
        ps = (a >= bound - b.max() - slack).nonzero()[:, 0]
        qs = (b >= bound - a.max() - slack).nonzero()[:, 0]
        j = scores(a, b, ps, qs).argmax()
        best[i] = torch.stack([ps[j // len(qs)], qs[j % len(qs)]])
    p, q = best[:, 0], best[:, 1]
    positions = torch.stack([torch.stack([p % cols, p // cols], 1), torch.stack([q % cols, q // cols], 1)], 1)
    return positions.reshape(*frames.shape[:-3], 2, 2)


def digit_positions(frames: torch.Tensor, templates: torch.Tensor) -> torch.Tensor:
    """Positions (..., D, 2) of the D = 1 or 2 digits ``templates`` (D, h, w) in frames (..., 1, H, W)."""
    if len(templates) == 1:
        return extract_positions(frames, templates[0])[..., None, :]
    if len(templates) == 2:
        return extract_pair_positions(frames, templates[0], templates[1])
    raise InvalidInput(f"digit positions are found for 1 or 2 digits per video, not {len(templates)}")


def found_positions(frames: torch.Tensor, templates: list[torch.Tensor]) -> np.ndarray:
    """Digit positions (S, B, T, D, 2) found in frames (S, B, T, 1, H, W) of B videos, each with its
    ``templates`` (D, h, w)."""
    return np.stack([digit_positions(frames[:, b], templates[b]).numpy() for b in range(len(templates))], axis=1)


# ---------------------------------------------------------------------------------------------
# which steps are certain


def certain_steps(positions: np.ndarray, n_past: int, table: np.ndarray | None, image_size: int) -> np.ndarray:
    """(D, n_steps) bool: predicted steps of each digit (positions (D, T, 2)) whose displacement is
    certain given its first ``n_past`` positions; ``table`` None = a deterministic (reflecting)
    dataset, whose every step is certain."""
    n_steps = positions.shape[1] - n_past
    if table is None:
        return np.ones((positions.shape[0], n_steps), dtype=bool)
    out = []
    for path in positions:
        truth = true_displacement_distributions(path[:n_past], n_steps, table, image_size)
        out.append(truth.reshape(n_steps, -1).max(axis=1) > 1 - 1e-9)
    return np.array(out)


# ---------------------------------------------------------------------------------------------
# the probe


def score_motion(found: np.ndarray, truth: np.ndarray, certain: np.ndarray,
                 one_step: np.ndarray | None = None) -> dict:
    """Scores of generated positions ``found`` (S, K, D, n + 1, 2) against the true ones ``truth``
    (K, D, n + 1, 2), both from the last conditioning frame on (n predicted steps); ``certain``
    (K, D, n) marks the steps whose displacement is certain. ``one_step`` (S, K, D, n, 2): the
    positions in the teacher-forced one-step predictions of the n predicted frames, if scored."""
    found, truth = np.asarray(found, dtype=float), np.asarray(truth, dtype=float)
    error = np.linalg.norm(found[:, :, :, 1:] - truth[None, :, :, 1:], axis=-1).mean(axis=2)  # (S, K, n)
    best = error.mean(axis=2).argmin(axis=0)  # each video's best sample
    best_t = error[best, np.arange(error.shape[1])].mean(axis=0)
    mean_t = error.mean(axis=(0, 1))
    copy_t = np.linalg.norm(truth[:, :, 1:] - truth[:, :, :1], axis=-1).mean(axis=(0, 1))
    true_moved = np.diff(truth, axis=2)  # (K, D, n): displacement of frame t -> t + 1
    off = np.linalg.norm(np.diff(found, axis=3) - true_moved[None], axis=-1)  # (S, K, D, n)
    any_certain = bool(certain.any())
    certain_t = [float(off[:, certain[:, :, i], i].mean()) if certain[:, :, i].any() else None
                 for i in range(off.shape[-1])]
    scores = {
        "position_error_best": float(best_t.mean()), "position_error_mean": float(mean_t.mean()),
        "position_error_best_t": best_t.tolist(), "position_error_mean_t": mean_t.tolist(),
        "copy_last_position_error": float(copy_t.mean()),
        "certain_displacement_error": float(off[:, certain].mean()) if any_certain else None,
        "copy_last_certain_displacement_error": (float(np.linalg.norm(true_moved, axis=-1)[certain].mean())
                                                 if any_certain else None),
        "certain_steps": int(certain.sum()),
        "displacement_error_t": off.mean(axis=(0, 1, 2)).tolist(),
        "certain_displacement_error_t": certain_t,
    }
    if one_step is not None:  # from the true previous frame, |predicted - true| is the displacement error
        one = np.linalg.norm(np.asarray(one_step, dtype=float) - truth[None, :, :, 1:], axis=-1).mean(axis=(0, 1, 2))
        scores["one_step_displacement_error_t"] = one.tolist()
        scores["one_step_displacement_error"] = float(one.mean())
    return scores


class MotionProbe:
    """Fixed SM-MNIST test videos with their digits' paths; ``probe(svg)`` scores a model.

    Built once per run (the certain steps come from the generator's exact rules); each call draws
    ``samples`` futures of every video under a fixed seed (BatchNorm running statistics) and leaves
    the training RNG stream as it was.
    """

    def __init__(self, dataset: StochasticMovingMNIST, n_past: int, videos: int = PROBE_VIDEOS,
                 samples: int = PROBE_SAMPLES):
        if dataset.num_digits not in (1, 2):
            raise InvalidInput(f"the motion probe follows 1 or 2 digits per video, not {dataset.num_digits}")
        if not 1 <= videos <= len(dataset):
            raise InvalidInput(f"the motion probe needs 1 to {len(dataset)} test videos, not {videos}")
        if dataset.length <= n_past:
            raise InvalidInput(f"probe videos of {dataset.length} frames leave no step to predict after {n_past}")
        self.n_past, self.samples = n_past, samples
        table = None if dataset.deterministic else velocity_table(dataset)
        paths = [dataset.trajectory(i) for i in range(videos)]
        self.videos = torch.stack([dataset.render(p["digit_ids"], p["positions"]) for p in paths])
        self.templates = [dataset.digits[torch.as_tensor(p["digit_ids"])] for p in paths]
        self.truth = np.stack([p["positions"] for p in paths])  # (K, D, T, 2)
        self.certain = np.stack([certain_steps(p, n_past, table, dataset.image_size) for p in self.truth])

    def __call__(self, svg) -> dict:
        device = model_device(svg)
        cuda = [device.index or 0] if device.type == "cuda" else []
        videos = self.videos.to(device)
        with torch.random.fork_rng(devices=cuda), poutine.block():
            torch.manual_seed(PROBE_SEED)
            frames = generate(svg, videos, self.n_past, videos.shape[1], self.samples, bn="eval").cpu()
            # every frame observed and fed as it is (not the model's own), z from the prior
            with torch.no_grad(), batchnorm_mode([svg], "eval"), svg.feeding("true"):
                one_step = svg.model(videos.repeat(self.samples, 1, 1, 1, 1), self.n_past).cpu()
        frames = frames[:, :, self.n_past - 1:]  # the conditioning frames' positions are known
        one_step = one_step[:, self.n_past - 1:].unflatten(0, (self.samples, len(videos)))
        return score_motion(self._positions(frames), self.truth[:, :, self.n_past - 1:], self.certain,
                            self._positions(one_step))

    def _positions(self, frames: torch.Tensor) -> np.ndarray:
        """Digit positions (S, K, D, n, 2) in frames (S, K, n, 1, H, W) of the probe videos."""
        return found_positions(frames, self.templates).swapaxes(2, 3)
