"""Does the model learn where a digit goes after it hits a wall? (supplement, Fig. 3 and Fig. 4)

``python -m svg_pyro.trajectory --checkpoint RUN/checkpoint.pt --out DIR`` conditions 1-digit
Stochastic Moving MNIST models on the first ``n_past`` frames of one seeded trajectory, rendered with
several digits, and compares the per-step distribution of the digit's displacement (dx, dy) in the
generated frames with the exact one implied by the generator's rules.

Conventions: positions are the digit's top-left corner (x, y) in pixels; the displacement of step t
is position(t + 1) - position(t), the motion between two frames, which is what a video shows. It is
the velocity in effect except on the step into a wall, where the clamp at the wall shortens it.
Distributions over displacements are arrays ``p[dy + R, dx + R]`` on the grid -R..R with R = the
largest shift a 32x32 digit can make (32 on 64x64 frames); the generator only reaches the central
9x9 block (|dx|, |dy| <= 4), generated videos may land outside it.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from svg_pyro.smmnist import DIGIT_SIZE, SPEEDS, StochasticMovingMNIST, allowed_velocity_table

WALLS = (None, "top", "bottom", "left", "right")
HALF = 4  # the generator's speeds are -4..4
DETERMINISTIC_STEPS = 2  # predicted steps before the first random one in the chosen trajectory


# ---------------------------------------------------------------------------------------------
# the generator's velocity distribution (Fig. 3)


def velocity_table(dataset: StochasticMovingMNIST) -> np.ndarray:
    """The dataset's initial P(dx, dy) (rows dy, columns dx); uniform for the reference variant.

    The reference variant draws dx and dy uniformly with the walls' signs forced, which is the
    uniform table masked and renormalised: one rule (``allowed_velocity_table``) serves both.
    """
    if dataset.deterministic:
        raise ValueError("the deterministic SM-MNIST variant reflects at walls and has no velocity "
                         "distribution to study; use a stochastic dataset (deterministic=False)")
    table = np.ones((9, 9)) if dataset.table is None else dataset.table
    return allowed_velocity_table(table, None)


def plot_velocity_tables(table: np.ndarray, path=None):
    """Heatmaps of the initial (dx, dy) distribution and of the draws after each wall hit."""
    import matplotlib.pyplot as plt

    titles = ["initial draw", "after top wall", "after bottom wall", "after left wall", "after right wall"]
    fig, axes = plt.subplots(1, 5, figsize=(13, 2.9), constrained_layout=True)
    for ax, wall, title in zip(axes, WALLS, titles):
        probs = allowed_velocity_table(table, wall)
        image = ax.imshow(probs, cmap="viridis", origin="lower", vmin=0, extent=(-4.5, 4.5, -4.5, 4.5))
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("dx", fontsize=8)
        ax.set_xticks(SPEEDS[::2])
        ax.set_yticks(SPEEDS[::2])
        ax.tick_params(labelsize=7)
        fig.colorbar(image, ax=ax, shrink=0.8).ax.tick_params(labelsize=6)
    axes[0].set_ylabel("dy (down is +)", fontsize=8)
    fig.suptitle("P(dx, dy) of the velocity draws (rows dy, columns dx)", fontsize=10)
    if path is not None:
        fig.savefig(path, dpi=120)
        plt.close(fig)
    return fig


# ---------------------------------------------------------------------------------------------
# trajectory extraction


def extract_positions(frames: torch.Tensor, template: torch.Tensor) -> torch.Tensor:
    """Top-left (x, y) of ``template`` in each frame (..., 1, H, W) -> (..., 2) int64.

    The least-squares placement: over all placements p that keep the digit inside the frame,
    ||f - T_p||^2 = ||f||^2 - 2 <f, T_p> + ||T||^2 with ||T_p|| fixed, so the best p maximises the
    cross-correlation <f, T_p> (also with a free intensity scale, as frames are non-negative). On a
    ground-truth frame f = T_q, Cauchy-Schwarz makes q the unique maximum; on blurred or noisy
    frames the peak stays at the digit's place, where an intensity centre of mass would be pulled
    by smears, faded strokes and a background haze.
    """
    if template.dim() != 2 or not (template > 0).any():
        raise ValueError(f"template must be a non-empty 2-D digit image, got shape {tuple(template.shape)}")
    if frames.dim() < 3 or frames.shape[-3] != 1:
        raise ValueError(f"frames must have shape (..., 1, H, W), got {tuple(frames.shape)}")
    height, width = frames.shape[-2:]
    if template.shape[0] > height or template.shape[1] > width:
        raise ValueError(f"template {tuple(template.shape)} is larger than the frames {(height, width)}")
    flat = frames.reshape(-1, 1, height, width).float().cpu()
    scores = F.conv2d(flat, template.float().cpu()[None, None]).flatten(1)  # cross-correlation
    best = scores.argmax(dim=1)
    side = width - template.shape[1] + 1
    positions = torch.stack([best % side, best // side], dim=1)
    return positions.reshape(*frames.shape[:-3], 2)


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
        raise ValueError("no displacements to count")
    if np.abs(steps).max() > radius:
        raise ValueError(f"displacements reach {np.abs(steps).max()}, beyond the grid radius {radius}")
    counts = np.zeros((2 * radius + 1, 2 * radius + 1))
    np.add.at(counts, (steps[:, 1] + radius, steps[:, 0] + radius), 1.0)
    return counts / counts.sum()


def embed(probs: np.ndarray, radius: int) -> np.ndarray:
    """A centred (2r+1)^2 distribution placed in the centre of the (2 radius + 1)^2 grid."""
    small = probs.shape[-1] // 2
    if radius < small:
        raise ValueError(f"cannot embed a grid of radius {small} in one of radius {radius}")
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
        raise ValueError(f"distributions must be centred square grids of one odd size, got {p.shape} and {q.shape}")
    for d in (p, q):
        if (d < 0).any() or not np.isclose(d.sum(), 1.0):
            raise ValueError("distributions must be non-negative and sum to 1")


# ---------------------------------------------------------------------------------------------
# the true distribution, by exact enumeration


class _Transition:
    """One frame of the generator applied to a distribution over states (y, x, dy, dx).

    States are the drawn position (0..L-1 on each axis, L = image_size - 32) and the velocity in
    effect; the rules are those of ``simulate_trajectory``: move, then a y wall clamps y and
    redraws, then an x wall clamps x and redraws (replacing any y-wall draw), each redraw from
    ``allowed_velocity_table(table, wall)``.
    """

    def __init__(self, table: np.ndarray, image_size: int):
        limit = image_size - DIGIT_SIZE
        self.shape = (limit, limit, 9, 9)
        y, x, iy, ix = np.indices(self.shape)
        raw_y, raw_x = y + SPEEDS[iy], x + SPEEDS[ix]
        new_y, new_x = np.clip(raw_y, 0, limit - 1), np.clip(raw_x, 0, limit - 1)
        wall = np.zeros(self.shape, dtype=np.int64)  # index into WALLS; 0 = no wall
        wall[raw_y < 0], wall[raw_y >= limit] = 1, 2
        wall[raw_x < 0], wall[raw_x >= limit] = 3, 4  # an x wall overrides: its draw is the last
        self.wall = wall.ravel()
        self.free = self.wall == 0
        # destination of each state's mass if it keeps its velocity, and its cell if it redraws
        self.keep = np.ravel_multi_index((new_y, new_x, iy, ix), self.shape).ravel()
        self.cell = (np.ravel_multi_index((new_y, new_x), (limit, limit)) * len(WALLS)).ravel() + self.wall
        self.step = np.ravel_multi_index((new_y - y + HALF, new_x - x + HALF), (9, 9)).ravel()
        self.redraw = np.stack([allowed_velocity_table(table, w) for w in WALLS])  # (5, 9, 9)

    def __call__(self, states: np.ndarray):
        """(P(displacement) 9x9, next state distribution)."""
        mass = states.ravel()
        steps = np.bincount(self.step, weights=mass, minlength=81).reshape(9, 9)
        moved = np.bincount(self.keep[self.free], weights=mass[self.free], minlength=mass.size)
        hits = np.bincount(self.cell, weights=mass * ~self.free, minlength=self.shape[0] * self.shape[1] * len(WALLS))
        hits = hits.reshape(self.shape[0], self.shape[1], len(WALLS))
        moved = moved.reshape(self.shape) + np.einsum("yxw,wab->yxab", hits, self.redraw)
        return steps, moved


def true_displacement_distributions(given_positions, n_steps: int, table: np.ndarray,
                                    image_size: int = 64) -> np.ndarray:
    """Exact P(displacement of step t | the digit was at ``given_positions`` (n_past, 2) as (x, y))
    for the ``n_steps`` steps after the last given frame: (n_steps, 9, 9), rows dy, columns dx.

    Forward filtering over (position, velocity): start at the first given position with the
    initial velocity table, keep only the states at the observed position after each given frame,
    then propagate without observations. The velocity in effect at the last given frame is
    uncertain only when that frame could have been a wall hit; the filter weighs those cases by
    their probability. Before the next wall hit every step is a delta; it broadens after.
    """
    given = np.asarray(given_positions, dtype=np.int64).reshape(-1, 2)
    limit = image_size - DIGIT_SIZE
    if len(given) == 0:
        raise ValueError("need at least one given position")
    if (given < 0).any() or (given >= limit).any():
        raise ValueError(f"given positions must lie in 0..{limit - 1} (where the generator draws digits), "
                         f"got {given.tolist()}")
    transition = _Transition(table, image_size)
    states = np.zeros(transition.shape)
    states[given[0, 1], given[0, 0]] = allowed_velocity_table(table, None)
    for t, (x, y) in enumerate(given[1:], start=1):
        _, states = transition(states)
        observed = np.zeros_like(states)
        observed[y, x] = states[y, x]
        if observed.sum() <= 0:
            raise ValueError(f"the given positions are impossible under the generator's rules: no "
                             f"velocity takes the digit from {given[t - 1].tolist()} to {[int(x), int(y)]}")
        states = observed / observed.sum()
    out = []
    for _ in range(n_steps):
        steps, states = transition(states)
        out.append(steps)
    return np.stack(out) if out else np.zeros((0, 9, 9))


def first_random_step(truth: np.ndarray) -> int | None:
    """Index of the first step whose true distribution is not a delta (None if all are)."""
    random = np.flatnonzero(truth.reshape(len(truth), -1).max(axis=1) < 1 - 1e-9)
    return int(random[0]) if len(random) else None


def find_trajectory(dataset: StochasticMovingMNIST, n_past: int, deterministic_steps: int = DETERMINISTIC_STEPS,
                    max_videos: int = 100_000):
    """The first video of ``dataset`` whose true future, given its first ``n_past`` frames, is
    exact for ``deterministic_steps`` predicted steps and random from the next one on (the wall hit).

    Returns (index, trajectory info, truth (n_steps, 9, 9)).
    """
    n_steps = dataset.length - n_past
    if n_steps <= deterministic_steps:
        raise ValueError(f"{dataset.length} frames leave {n_steps} predicted steps; need more than "
                         f"{deterministic_steps} to see the wall hit: raise --frames")
    if dataset.num_digits != 1:
        raise ValueError("the trajectory study follows one digit: use a 1-digit dataset")
    table = velocity_table(dataset)
    for index in range(min(max_videos, len(dataset))):
        info = dataset.trajectory(index)
        positions = info["positions"][0]
        # cheap screen on the simulated path: of frames n_past-1 .. hit, only frame hit meets a wall
        hit = n_past - 1 + deterministic_steps
        raw = positions[:-1] + info["velocities"][0, :-1]  # where frame t + 1 would be drawn
        walls = np.flatnonzero(((raw < 0) | (raw >= dataset.image_size - DIGIT_SIZE)).any(axis=1)) + 1
        if [f for f in walls if n_past - 1 <= f <= hit] != [hit]:
            continue
        truth = true_displacement_distributions(positions[:n_past], n_steps, table, dataset.image_size)
        if first_random_step(truth) == deterministic_steps:
            return index, info, truth
    raise ValueError(f"no video among the first {max_videos} has its first wall hit {deterministic_steps} "
                     "steps after the conditioning frames; try another --trajectory-seed")


# ---------------------------------------------------------------------------------------------
# model distributions


def sample_positions(svg, guide, videos: torch.Tensor, templates: torch.Tensor, n_past: int,
                     num_samples: int, bar=None) -> np.ndarray:
    """Digit positions (num_samples, K, T, 2) in generated futures of ``videos`` (K, T, 1, H, W).

    Futures come from ``sample_chunks`` (bounded memory) and are reduced to positions chunk by chunk.
    """
    from svg_pyro.sampling import sample_chunks

    k, n_frames = videos.shape[:2]
    out = torch.empty(num_samples, k, n_frames, 2, dtype=torch.long)
    for chunk in sample_chunks(svg, guide, videos, n_past, n_frames, num_samples):
        frames = chunk.frames.cpu()
        for j, d in enumerate(range(k)[chunk.videos]):
            out[chunk.samples, d] = extract_positions(frames[:, j], templates[d])
        if bar is not None:
            bar.update(frames.shape[0] * frames.shape[1])
    return out.numpy()


def load_study_model(path, role: str | None, device):
    """(config, svg, guide, step) of a 1-digit SM-MNIST checkpoint; ``role`` its expected model type
    (None = any)."""
    from svg_pyro.checkpoint import load_model

    config, svg, guide, step = load_model(path, device)
    if config.dataset != "smmnist" or config.num_digits != 1:
        raise ValueError(f"{path} holds a model of {config.num_digits}-digit {config.dataset}; the study "
                         "needs one trained on 1-digit SM-MNIST (svi_train.py --preset smmnist-1digit-cpu)")
    if role is not None and config.model != role:
        raise ValueError(f"{path} holds a {config.model} model, but was passed as the {role} reference; "
                         f"pass a checkpoint trained with --model {role}")
    return config, svg, guide, step


def run_study(checkpoint, out, fp_checkpoint=None, det_checkpoint=None, samples: int = 100,
              digits: int = 10, trajectory_seed: int = 0, frames: int | None = None, seed: int = 0,
              device: str = "cpu", progress: bool = True) -> dict:
    """The whole study: writes trajectory.json and the figures to ``out`` and returns the results."""
    import pyro

    if samples < 1 or digits < 1:
        raise ValueError("--samples and --digits must be at least 1")
    out = Path(out)
    roles = [(checkpoint, None), (fp_checkpoint, "svg-fp"), (det_checkpoint, "det")]
    models = {}
    for path, role in roles:
        if path is None:
            continue
        config, svg, guide, step = load_study_model(path, role, device)
        if config.model in models:
            raise ValueError(f"two checkpoints hold {config.model} models ({models[config.model]['path']} "
                             f"and {path}); pass one checkpoint per model type")
        models[config.model] = dict(path=str(path), config=config, svg=svg, guide=guide, step=step)
    base = next(iter(models.values()))["config"]
    for name, m in models.items():
        c = m["config"]
        for field in ("velocity", "deterministic", "image_size", "n_past"):
            if getattr(c, field) != getattr(base, field):
                raise ValueError(f"the {name} checkpoint has {field}={getattr(c, field)!r} but the first "
                                 f"has {getattr(base, field)!r}; compare models trained on the same data")
    n_past = base.n_past
    n_frames = frames or base.frames_per_video
    dataset = StochasticMovingMNIST("test", length=n_frames, num_digits=1, seed=trajectory_seed,
                                    image_size=base.image_size, deterministic=base.deterministic,
                                    velocity=base.velocity, mnist_root=base.mnist_root)
    table = velocity_table(dataset)
    index, info, truth = find_trajectory(dataset, n_past)
    collision = first_random_step(truth)
    if digits > len(dataset.digits):
        raise ValueError(f"--digits {digits} exceeds the {len(dataset.digits)} test digits")
    digit_ids = np.random.default_rng([trajectory_seed, 1]).choice(len(dataset.digits), digits, replace=False)
    positions = info["positions"][:1]  # (1, T, 2)
    videos = torch.stack([dataset.render([d], positions) for d in digit_ids])  # (K, T, 1, H, W)
    templates = dataset.digits[torch.as_tensor(digit_ids)]

    radius = grid_radius(base.image_size)
    truth_grid = embed(truth, radius)
    draws = {name: 1 if name == "det" else samples for name in models}  # det: every sample is the same
    total = sum(draws[name] * digits for name in models)
    results = {}
    with tqdm(total=total, desc="generating", unit="video", disable=not progress, dynamic_ncols=True) as bar:
        for name, m in models.items():
            bar.set_description(name)
            pyro.set_rng_seed(seed)
            found = sample_positions(m["svg"], m["guide"], videos, templates, n_past, draws[name], bar)
            steps = displacements(found)[:, :, n_past - 1:]  # (S, K, n_steps, 2)
            dists = [displacement_histogram(steps[:, :, t], radius) for t in range(steps.shape[2])]
            tv = [total_variation(p, q) for p, q in zip(truth_grid, dists)]
            w1 = [wasserstein(p, q) for p, q in zip(truth_grid, dists)]
            results[name] = {
                "checkpoint": m["path"], "training_step": m["step"], "samples_per_digit": draws[name],
                "distributions": [crop(d).tolist() for d in dists],
                "off_grid": [float(1 - crop(d).sum()) for d in dists],
                "total_variation": tv, "wasserstein": w1,
                "summary": {"tv_before_wall": float(np.mean(tv[:collision])),
                            "tv_after_wall": float(np.mean(tv[collision:])),
                            "w1_before_wall": float(np.mean(w1[:collision])),
                            "w1_after_wall": float(np.mean(w1[collision:]))},
                "conditioning_positions_recovered": bool((found[:, :, :n_past] == positions[0, :n_past]).all()),
            }
    example = _example_rows(next(iter(models.values())), videos, n_past, n_frames, seed)
    report = {
        "settings": {"samples": samples, "digits": digits, "digit_ids": digit_ids.tolist(),
                     "trajectory_seed": trajectory_seed, "video_index": index, "n_past": n_past,
                     "n_frames": n_frames, "seed": seed, "velocity": base.velocity,
                     "velocity_table": table.tolist(), "image_size": base.image_size,
                     "deterministic_steps": DETERMINISTIC_STEPS},
        "trajectory": {"positions": positions[0].tolist(), "velocities": info["velocities"][0].tolist(),
                       "wall_hit_frame": n_past - 1 + collision, "first_random_step": collision,
                       "step_frames": [[t, t + 1] for t in range(n_past - 1, n_frames - 1)]},
        "truth": truth.tolist(),
        "models": results,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "trajectory.json").write_text(json.dumps(report, indent=1) + "\n")
    plot_velocity_tables(table, out / "velocity_table.png")
    plot_distributions(report, out / "distributions.png")
    plot_distances(report, out / "distances.png")
    _save_examples(out / "samples.png", example, n_past)
    return report


def _example_rows(m, videos, n_past, n_frames, seed, count=3):
    """Ground truth and ``count`` samples of the first digit's video, for a picture."""
    import pyro

    from svg_pyro.sampling import generate

    device = next(m["svg"].parameters()).device
    pyro.set_rng_seed(seed)
    batch = videos[:1].repeat(count, 1, 1, 1, 1).to(device)
    samples = generate(m["svg"], m["guide"], batch, n_past, n_frames, 1)[0].cpu()
    return {"name": m["config"].model, "rows": torch.cat([videos[:1], samples])}


def _save_examples(path, example, n_past):
    from svg_pyro.plots import save_video_grid

    rows = example["rows"]
    labels = ["truth"] + [f"{example['name']} {i}" for i in range(1, len(rows))]
    save_video_grid(path, rows, labels, n_past, "the study's trajectory: truth and samples")


# ---------------------------------------------------------------------------------------------
# figures


def plot_distributions(report: dict, path=None):
    """Fig. 4: rows truth and models, columns predicted steps, 9x9 heatmaps of P(dx, dy)."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    truth = np.asarray(report["truth"])
    rows = [("truth", truth, None)] + [(name, np.asarray(r["distributions"]), r)
                                       for name, r in report["models"].items()]
    frames = report["trajectory"]["step_frames"]
    wall_step = report["trajectory"]["first_random_step"]
    n_cols = len(frames)
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(1.45 * n_cols + 0.8, 1.75 * len(rows) + 0.6),
                             squeeze=False, constrained_layout=True)
    norm = LogNorm(vmin=1e-3, vmax=1)  # a log scale shows a delta and a spread-out table alike
    cmap = plt.get_cmap("magma").with_extremes(bad="black", under="black")
    for r, (name, dists, res) in enumerate(rows):
        for c in range(n_cols):
            ax = axes[r, c]
            image = ax.imshow(np.ma.masked_equal(dists[c], 0), cmap=cmap, norm=norm, origin="lower",
                              extent=(-4.5, 4.5, -4.5, 4.5))
            ax.set_xticks([-4, 0, 4])
            ax.set_yticks([-4, 0, 4])
            ax.tick_params(labelsize=6, length=2)
            if res is not None:
                note = f"TV {res['total_variation'][c]:.2f}  W1 {res['wasserstein'][c]:.2f}"
                if res["off_grid"][c] > 0:
                    note += f"\noff grid {res['off_grid'][c]:.2f}"
                ax.set_xlabel(note, fontsize=6)
            if r == 0:
                title = f"frame {frames[c][0]}->{frames[c][1]}"
                if c == wall_step:
                    title = f"after wall hit\n{title}"
                ax.set_title(title, fontsize=7, color="red" if c == wall_step else "black")
            if c == 0:
                ax.set_ylabel(f"{name}\ndy", fontsize=8)
            if c == wall_step:
                for spine in ax.spines.values():
                    spine.set_edgecolor("red")
                    spine.set_linewidth(2)
    fig.colorbar(image, ax=axes, shrink=0.6, label="P(dx, dy) (black: 0)")
    s = report["settings"]
    fig.suptitle(f"displacement (dx, dy) per predicted step given {s['n_past']} frames; "
                 f"{s['digits']} digits x {s['samples']} samples; wall hit at frame "
                 f"{report['trajectory']['wall_hit_frame']}", fontsize=9)
    if path is not None:
        fig.savefig(path, dpi=120)
        plt.close(fig)
    return fig


def plot_distances(report: dict, path=None):
    """Per-step TV and W1 between each model and the truth; the wall hit marked."""
    import matplotlib.pyplot as plt

    frames = report["trajectory"]["step_frames"]
    x = [f[1] for f in frames]
    wall = report["trajectory"]["wall_hit_frame"]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), constrained_layout=True)
    for ax, key, label in ((axes[0], "total_variation", "total variation"),
                           (axes[1], "wasserstein", "Wasserstein-1 (pixels/frame)")):
        for name, res in report["models"].items():
            ax.plot(x, res[key], marker="o", label=name)
        ax.axvline(wall + 0.5, color="red", linestyle="--", linewidth=1, label="wall hit")
        ax.set_xlabel("predicted frame (displacement into it)")
        ax.set_xticks(x)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylim(0, 1.02)
    axes[0].legend(fontsize=8)
    fig.suptitle("distance between the model's and the true P(dx, dy) per step", fontsize=10)
    if path is not None:
        fig.savefig(path, dpi=120)
        plt.close(fig)
    return fig


# ---------------------------------------------------------------------------------------------
# command line


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m svg_pyro.trajectory", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Per-step distribution of the digit's (dx, dy) in generated 1-digit SM-MNIST "
                    "videos against the exact one (supplement Fig. 3 and 4).")
    p.add_argument("--checkpoint", required=True, help="checkpoint of the model to study (normally SVG-LP)")
    p.add_argument("--fp-checkpoint", help="an SVG-FP checkpoint to compare")
    p.add_argument("--det-checkpoint", help="a deterministic-model checkpoint to compare")
    p.add_argument("--out", required=True, help="directory for trajectory.json and the figures")
    p.add_argument("--samples", type=int, default=100, help="samples per digit (the det model needs one)")
    p.add_argument("--digits", type=int, default=10, help="test digits rendered on the trajectory")
    p.add_argument("--trajectory-seed", type=int, default=0,
                   help="seed of the test videos searched for the trajectory (and of the digit choice)")
    p.add_argument("--frames", type=int, help="video length (default: the checkpoint's n_past + n_future)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    from svg_pyro.checkpoint import CheckpointError

    args = _parser().parse_args(argv)
    try:
        report = run_study(args.checkpoint, args.out, args.fp_checkpoint, args.det_checkpoint,
                           args.samples, args.digits, args.trajectory_seed, args.frames, args.seed,
                           args.device, progress=not args.no_progress)
    except (CheckpointError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for name, res in report["models"].items():
        s = res["summary"]
        print(f"{name}: TV before/after the wall {s['tv_before_wall']:.3f} / {s['tv_after_wall']:.3f}; "
              f"W1 {s['w1_before_wall']:.3f} / {s['w1_after_wall']:.3f}")
    print(f"wrote {Path(args.out) / 'trajectory.json'} and figures")
    return 0


if __name__ == "__main__":
    sys.exit(main())
