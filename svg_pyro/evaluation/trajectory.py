"""Does the model learn where a digit goes after it hits a wall? (supplement, Fig. 3 and Fig. 4)

``svg-pyro trajectory --checkpoint RUN/checkpoint.pt --out DIR`` conditions 1-digit
Stochastic Moving MNIST models on the first ``n_past`` frames of seeded trajectories, each rendered
with several digits, and compares the per-step distribution of the digit's displacement (dx, dy) in
the generated frames with the exact one implied by the generator's rules
(``svg_pyro.data.smmnist.true_displacement_distributions``). As in the supplement's Fig. 4 it studies four
trajectories whose next wall hit comes at different steps (``WALL_STEPS``: after 1, 2, 3 and 4
certain predicted steps), one figure each, and averages the distances over them (``run_studies``);
``run_study`` is one trajectory. The figures are in ``svg_pyro.evaluation.trajectory_plots``.

Conventions: positions are the digit's top-left corner (x, y) in pixels; the displacement of step t
is position(t + 1) - position(t), the motion between two frames, which is what a video shows. It is
the velocity in effect except on the step into a wall, where the clamp at the wall shortens it.
Distributions over displacements and the distances between them are ``svg_pyro.evaluation.displacements``.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pyro
import torch
from tqdm.auto import tqdm

from svg_pyro.checkpoint import load_model
from svg_pyro.config import check_same_data
from svg_pyro.data.smmnist import (DIGIT_SIZE, StochasticMovingMNIST, true_displacement_distributions,
                                   velocity_table)
from svg_pyro.devices import resolve_device
from svg_pyro.errors import InvalidInput
from svg_pyro.evaluation.displacements import (crop, displacement_histogram, displacements, embed,
                                               first_random_step, grid_radius, total_variation, wasserstein)
from svg_pyro.evaluation.motion import extract_positions
from svg_pyro.evaluation.trajectory_plots import (plot_distances, plot_distributions, plot_velocity_tables,
                                                  save_examples)
from svg_pyro.inference.sampling import generate, sample_chunks


DETERMINISTIC_STEPS = 2  # predicted steps before the first random one in the chosen trajectory
WALL_STEPS = (1, 2, 3, 4)  # the same for each of the four trajectories of the full study
STUDY_STEPS = 10  # predicted steps of the full study: at least 6 after every trajectory's wall hit


# ---------------------------------------------------------------------------------------------
# trajectory extraction


def find_trajectory(dataset: StochasticMovingMNIST, n_past: int, deterministic_steps: int = DETERMINISTIC_STEPS,
                    max_videos: int = 100_000):
    """The first video of ``dataset`` whose true future, given its first ``n_past`` frames, is
    exact for ``deterministic_steps`` predicted steps and random from the next one on (the wall hit).

    Returns (index, trajectory info, truth (n_steps, 9, 9)).
    """
    n_steps = dataset.length - n_past
    if n_steps <= deterministic_steps:
        raise InvalidInput(f"{dataset.length} frames leave {n_steps} predicted steps; need more than "
                           f"{deterministic_steps} to see the wall hit: raise --frames")
    if dataset.num_digits != 1:
        raise InvalidInput("the trajectory study follows one digit: use a 1-digit dataset")
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
    raise InvalidInput(f"no video among the first {max_videos} has its first wall hit {deterministic_steps} "
                       "steps after the conditioning frames; try another --trajectory-seed")


# ---------------------------------------------------------------------------------------------
# model distributions


def sample_positions(svg, videos: torch.Tensor, templates: torch.Tensor, n_past: int,
                     num_samples: int, bar=None) -> np.ndarray:
    """Digit positions (num_samples, K, T, 2) in generated futures of ``videos`` (K, T, 1, H, W).

    Futures come from ``sample_chunks`` (bounded memory) and are reduced to positions chunk by chunk.
    """
    k, n_frames = videos.shape[:2]
    out = torch.empty(num_samples, k, n_frames, 2, dtype=torch.long)
    for chunk in sample_chunks(svg, videos, n_past, n_frames, num_samples):
        frames = chunk.frames.cpu()
        for j, d in enumerate(range(k)[chunk.videos]):
            out[chunk.samples, d] = extract_positions(frames[:, j], templates[d])
        if bar is not None:
            bar.update(frames.shape[0] * frames.shape[1])
    return out.numpy()


def load_study_model(path, role: str | None, device):
    """(config, svg, step) of a 1-digit SM-MNIST checkpoint; ``role`` its expected model type
    (None = any)."""
    config, svg, step = load_model(path, device)
    if config.dataset != "smmnist" or config.num_digits != 1:
        raise InvalidInput(f"{path} holds a model of {config.num_digits}-digit {config.dataset}; the study "
                           "needs one trained on 1-digit SM-MNIST (svi_train.py --preset smmnist-1digit-cpu)")
    if role is not None and config.model != role:
        raise InvalidInput(f"{path} holds a {config.model} model, but was passed as the {role} reference; "
                           f"pass a checkpoint trained with --model {role}")
    return config, svg, step


# ---------------------------------------------------------------------------------------------
# the study, step by step: load, sample and score, report, write


@dataclasses.dataclass
class StudyData:
    """The chosen trajectory, its exact future and its renderings with the study's digits."""
    config: object  # the first checkpoint's Config: the data every model was trained on
    trajectory_seed: int
    n_past: int
    n_frames: int
    table: np.ndarray  # the dataset's initial P(dx, dy)
    video_index: int
    positions: np.ndarray  # (1, T, 2) top-left (x, y) per frame
    velocities: np.ndarray  # (T, 2) the (dx, dy) in effect after each frame
    truth: np.ndarray  # (n_steps, 9, 9) exact P(displacement) of each predicted step
    digit_ids: np.ndarray  # (K,) test digits rendered on the trajectory
    videos: torch.Tensor  # (K, T, 1, H, W)
    templates: torch.Tensor  # (K, 32, 32)


def load_models(checkpoint, fp_checkpoint=None, det_checkpoint=None, device: str = "auto") -> dict:
    """{model type: dict(path, config, svg, step)}: the studied checkpoint and the optional
    SVG-FP and deterministic references, refused unless all were trained on the same data."""
    device = resolve_device(device) if isinstance(device, str) else device
    models = {}
    for path, role in ((checkpoint, None), (fp_checkpoint, "svg-fp"), (det_checkpoint, "det")):
        if path is None:
            continue
        config, svg, step = load_study_model(path, role, device)
        if config.model in models:
            raise InvalidInput(f"two checkpoints hold {config.model} models ({models[config.model]['path']} "
                               f"and {path}); pass one checkpoint per model type")
        models[config.model] = dict(path=str(path), config=config, svg=svg, step=step)
    base = next(iter(models.values()))["config"]
    for name, m in models.items():
        c = m["config"]
        check_same_data(base, c, m["path"], f"the {name} checkpoint")
        if c.n_past != base.n_past:
            raise InvalidInput(f"the {name} checkpoint has n_past={c.n_past} but the first has {base.n_past}; "
                               "compare models conditioned on the same frames")
    return models


def study_data(config, digits: int, trajectory_seed: int = 0, frames: int | None = None,
               deterministic_steps: int = DETERMINISTIC_STEPS) -> StudyData:
    """The trajectory ``find_trajectory`` picks from the test videos of ``trajectory_seed`` (its
    motion certain for ``deterministic_steps`` predicted steps), rendered with ``digits`` test digits
    drawn by the same seed; ``frames`` defaults to the config's length."""
    n_past = config.n_past
    n_frames = frames or config.frames_per_video
    dataset = StochasticMovingMNIST("test", length=n_frames, num_digits=1, seed=trajectory_seed,
                                    image_size=config.image_size, deterministic=config.deterministic,
                                    velocity=config.velocity, mnist_root=config.mnist_root)
    table = velocity_table(dataset)
    index, info, truth = find_trajectory(dataset, n_past, deterministic_steps)
    if digits > len(dataset.digits):
        raise InvalidInput(f"--digits {digits} exceeds the {len(dataset.digits)} test digits")
    digit_ids = np.random.default_rng([trajectory_seed, 1]).choice(len(dataset.digits), digits, replace=False)
    positions = info["positions"][:1]  # (1, T, 2)
    videos = torch.stack([dataset.render([d], positions) for d in digit_ids])  # (K, T, 1, H, W)
    templates = dataset.digits[torch.as_tensor(digit_ids)]
    return StudyData(config=config, trajectory_seed=trajectory_seed, n_past=n_past, n_frames=n_frames,
                     table=table, video_index=index, positions=positions, velocities=info["velocities"][0],
                     truth=truth, digit_ids=digit_ids, videos=videos, templates=templates)


def sample_study(models: dict, data: StudyData, samples: int, seed: int = 0, progress: bool = True) -> dict:
    """{model type: positions (draws, K, T, 2) found in its futures}. Every model starts from
    ``seed``; the deterministic one gets a single draw, as all of its futures are the same."""
    draws = {name: 1 if name == "det" else samples for name in models}
    total = sum(draws[name] * len(data.digit_ids) for name in models)
    found = {}
    with tqdm(total=total, desc="generating", unit="video", disable=not progress, dynamic_ncols=True) as bar:
        for name, m in models.items():
            bar.set_description(name)
            pyro.set_rng_seed(seed)
            found[name] = sample_positions(m["svg"], data.videos, data.templates, data.n_past,
                                           draws[name], bar)
    return found


def example_rows(m, videos, n_past, n_frames, seed, count=3):
    """Ground truth and ``count`` samples of the first digit's video, for a picture."""
    device = next(m["svg"].parameters()).device
    pyro.set_rng_seed(seed)
    batch = videos[:1].repeat(count, 1, 1, 1, 1).to(device)
    samples = generate(m["svg"], batch, n_past, n_frames, 1)[0].cpu()
    return {"name": m["config"].model, "rows": torch.cat([videos[:1], samples])}


def score_positions(found: np.ndarray, truth: np.ndarray, given: np.ndarray, radius: int) -> dict:
    """One model's per-step distributions and distances to ``truth`` (n_steps, 9, 9).

    ``found`` (S, K, T, 2) are the positions in its videos, ``given`` (n_past, 2) the conditioning
    ones; displacements are pooled over samples and digits, and the distances are averaged before
    and from the first random step of the truth (the step out of the wall hit).
    """
    n_past = len(given)
    collision = first_random_step(truth)
    truth_grid = embed(truth, radius)
    steps = displacements(found)[:, :, n_past - 1:]  # (S, K, n_steps, 2)
    dists = [displacement_histogram(steps[:, :, t], radius) for t in range(steps.shape[2])]
    tv = [total_variation(p, q) for p, q in zip(truth_grid, dists)]
    w1 = [wasserstein(p, q) for p, q in zip(truth_grid, dists)]
    return {
        "distributions": [crop(d).tolist() for d in dists],
        "off_grid": [float(1 - crop(d).sum()) for d in dists],
        "total_variation": tv, "wasserstein": w1,
        "summary": {"tv_before_wall": float(np.mean(tv[:collision])),
                    "tv_after_wall": float(np.mean(tv[collision:])),
                    "w1_before_wall": float(np.mean(w1[:collision])),
                    "w1_after_wall": float(np.mean(w1[collision:]))},
        "conditioning_positions_recovered": bool((found[:, :, :n_past] == given).all()),
    }


def build_report(models: dict, found: dict, data: StudyData, samples: int, seed: int) -> dict:
    """trajectory.json's content: settings, the trajectory, the truth and each model's scores."""
    radius = grid_radius(data.config.image_size)
    given = data.positions[0, :data.n_past]
    results = {name: {"checkpoint": m["path"], "training_step": m["step"],
                      "samples_per_digit": found[name].shape[0],
                      **score_positions(found[name], data.truth, given, radius)}
               for name, m in models.items()}
    n_past, n_frames, collision = data.n_past, data.n_frames, first_random_step(data.truth)
    return {
        "settings": {"samples": samples, "digits": len(data.digit_ids), "digit_ids": data.digit_ids.tolist(),
                     "trajectory_seed": data.trajectory_seed, "video_index": data.video_index,
                     "n_past": n_past, "n_frames": n_frames, "seed": seed, "velocity": data.config.velocity,
                     "velocity_table": data.table.tolist(), "image_size": data.config.image_size,
                     "deterministic_steps": collision},
        "trajectory": {"positions": data.positions[0].tolist(), "velocities": data.velocities.tolist(),
                       "wall_hit_frame": n_past - 1 + collision, "first_random_step": collision,
                       "step_frames": [[t, t + 1] for t in range(n_past - 1, n_frames - 1)]},
        "truth": data.truth.tolist(),
        "models": results,
    }


def write_study(out, report: dict, example: dict) -> None:
    """trajectory.json, the figures of ``report`` and the grid of ``example`` (``example_rows``)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "trajectory.json").write_text(json.dumps(report, indent=1) + "\n")
    plot_velocity_tables(np.asarray(report["settings"]["velocity_table"]), out / "velocity_table.png")
    plot_distributions(report, out / "distributions.png")
    plot_distances(report, out / "distances.png")
    save_examples(out / "samples.png", example, report["settings"]["n_past"])


def run_study(checkpoint, out, fp_checkpoint=None, det_checkpoint=None, samples: int = 100,
              digits: int = 10, trajectory_seed: int = 0, frames: int | None = None, seed: int = 0,
              device: str = "auto", progress: bool = True,
              deterministic_steps: int = DETERMINISTIC_STEPS) -> dict:
    """One trajectory: writes trajectory.json and the figures to ``out`` and returns the report."""
    _check_sizes(samples, digits)
    models = load_models(checkpoint, fp_checkpoint, det_checkpoint, device)
    return _study_one(models, out, samples, digits, trajectory_seed, frames, seed, progress, deterministic_steps)


def _check_sizes(samples: int, digits: int) -> None:
    if samples < 1 or digits < 1:
        raise InvalidInput("--samples and --digits must be at least 1")


def _study_one(models, out, samples, digits, trajectory_seed, frames, seed, progress, deterministic_steps) -> dict:
    first = next(iter(models.values()))
    data = study_data(first["config"], digits, trajectory_seed, frames, deterministic_steps)
    found = sample_study(models, data, samples, seed, progress)
    example = example_rows(first, data.videos, data.n_past, data.n_frames, seed)
    report = build_report(models, found, data, samples, seed)
    write_study(out, report, example)
    return report


def average_summaries(reports: list[dict]) -> dict:
    """{model: each summary distance averaged over the trajectories' reports}."""
    models = reports[0]["models"]
    return {name: {key: float(np.mean([r["models"][name]["summary"][key] for r in reports]))
                   for key in models[name]["summary"]} for name in models}


def distances_table(study: dict) -> str:
    """Markdown: each model's distances per trajectory and their average."""
    lines = ["| model | trajectory | TV before wall | TV after wall | W1 before wall (px) | W1 after wall (px) |",
             "| --- | --- | --- | --- | --- | --- |"]
    keys = ("tv_before_wall", "tv_after_wall", "w1_before_wall", "w1_after_wall")
    for name, mean in study["average"].items():
        for r in study["trajectories"]:
            s, t = r["models"][name]["summary"], r["trajectory"]
            where = f"wall hit after {t['first_random_step']} certain steps (video {r['settings']['video_index']})"
            lines.append(f"| {name} | {where} | " + " | ".join(f"{s[k]:.3f}" for k in keys) + " |")
        lines.append(f"| **{name}** | **mean of {len(study['trajectories'])}** | "
                     + " | ".join(f"**{mean[k]:.3f}**" for k in keys) + " |")
    return "\n".join(lines) + "\n"


def run_studies(checkpoint, out, fp_checkpoint=None, det_checkpoint=None, samples: int = 100,
                digits: int = 10, trajectory_seed: int = 0, frames: int | None = None, seed: int = 0,
                device: str = "auto", progress: bool = True, wall_steps=WALL_STEPS) -> dict:
    """The supplement's Fig. 4 study: one trajectory per entry of ``wall_steps`` (its motion certain
    for that many predicted steps), each written to ``out/wall-step-K/`` as ``run_study`` writes one;
    ``out/study.json`` and ``out/distances.md`` hold every trajectory's distances and their average
    per model. ``frames`` defaults to ``n_past + STUDY_STEPS``."""
    _check_sizes(samples, digits)
    if not wall_steps or min(wall_steps) < 1:
        raise InvalidInput(f"wall steps must be at least 1, got {list(wall_steps)}")
    models = load_models(checkpoint, fp_checkpoint, det_checkpoint, device)
    config = next(iter(models.values()))["config"]
    frames = frames or config.n_past + STUDY_STEPS
    out = Path(out)
    reports = [_study_one(models, out / f"wall-step-{k}", samples, digits, trajectory_seed, frames, seed,
                          progress, k) for k in wall_steps]
    study = {"trajectories": reports, "average": average_summaries(reports)}
    (out / "study.json").write_text(json.dumps(study, indent=1) + "\n")
    (out / "distances.md").write_text(distances_table(study))
    return study

