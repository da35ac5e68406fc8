"""How surprising is each frame? -log p(x_t | x_<t) per frame, from the probability model itself.

    svg-pyro score --checkpoint NAME_OR_PATH [--input FILE.npy] [--videos N] [--particles K] --out DIR

Every frame of a video is observed, as in training; the guide draws K latent paths, and the
importance-weighted bound of the frames so far, log p(x_1..x_t | x_0), rises at each frame by an
estimate of log p(x_t | x_<t) (``svg_pyro.evaluation.bounds.video_bounds``, ``iwae_t``). A frame's surprise is
minus that rise, in nats; a video's surprises sum to minus its IWAE bound, which tightens towards
-log p(x_1..x_T | x_0) as K grows. The ELBO's per-frame terms (one path, the analytic KL) are
written beside them. A frame the model did not expect (a digit that jumps, a cut, a glitch) stands
out above the frames around it and above the same frame of ordinary videos.

Input: a ``.npy`` array of videos (N, T, H, W) or (N, T, C, H, W), uint8 (0-255) or float in [0, 1],
frames of the model's size; without ``--input``, the model's own test videos.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyro
import torch
from tqdm.auto import tqdm

from svg_pyro.checkpoint import load_model
from svg_pyro.data.datasets import check_video_values, make_datasets, stack_videos
from svg_pyro.devices import resolve_device
from svg_pyro.errors import InvalidInput, MissingInput
from svg_pyro.evaluation.bounds import video_bounds


DEFAULT_PARTICLES = 100


def load_videos(path, frame_shape: tuple[int, int, int]) -> torch.Tensor:
    """Videos of a ``.npy`` file as a float tensor (N, T, C, H, W) in [0, 1]; anything else is one
    clear error."""
    path = Path(path)
    if not path.is_file():
        raise MissingInput(f"--input {path} does not exist; give a .npy file of videos (N, T, H, W) or (N, T, C, H, W)")
    try:
        array = np.load(path, allow_pickle=False)
    except Exception as err:  # not an .npy file, a truncated one, an object array
        raise InvalidInput(f"--input {path} is not a readable .npy array ({type(err).__name__}: {err}); save "
                           "videos with numpy.save") from err
    if array.ndim == 4:
        array = array[:, :, None]
    channels, height, width = frame_shape
    if array.ndim != 5 or array.shape[2:] != (channels, height, width):
        raise InvalidInput(f"--input {path} holds an array of shape {array.shape}; the model takes videos "
                           f"(N, T, {height}, {width})" + ("" if channels != 1 else " or")
                           + f" (N, T, {channels}, {height}, {width})")
    if array.dtype == np.uint8:
        videos = torch.from_numpy(array).float() / 255
    elif np.issubdtype(array.dtype, np.floating):
        videos = torch.from_numpy(array.astype(np.float32))
    else:
        raise InvalidInput(f"--input {path} holds {array.dtype} values; give uint8 (0-255) or floats in [0, 1]")
    check_video_values(videos)
    return videos


def score_videos(svg, videos: torch.Tensor, n_past: int, particles: int = DEFAULT_PARTICLES,
                 max_batch: int = 256, progress: bool = False) -> dict:
    """Per video and frame t = 1..T-1 (nats): ``surprise`` -log p(x_t | x_<t) estimated with
    ``particles`` paths (IWAE increments), and ``elbo_surprise``, the ELBO's -[log p(x_t | ..) - KL_t]
    of one path; numpy arrays (N, T-1). ``videos`` go through the model in blocks of at most
    ``max_batch`` video-paths."""
    if videos.shape[1] < max(2, n_past):
        raise InvalidInput(f"videos need at least {max(2, n_past)} frames (the model conditions on {n_past}); "
                           f"got {videos.shape[1]}")
    if particles < 1:
        raise InvalidInput(f"--particles must be at least 1, not {particles}")
    device = next(svg.parameters()).device
    svg.eval()
    block = max(1, min(len(videos), max_batch // min(particles, max_batch)))
    surprise, elbo = [], []
    for start in tqdm(range(0, len(videos), block), desc="scoring", unit="block", disable=not progress):
        batch = videos[start:start + block].to(device)
        bounds = video_bounds(svg, batch, n_past, (particles,), max_batch)
        surprise.append(-bounds["iwae_t"][particles])
        elbo.append(-(bounds["loglik_t"] - bounds["kl_t"]))
    return {"surprise": np.concatenate(surprise), "elbo_surprise": np.concatenate(elbo)}


def score(checkpoint, out, input_path=None, videos: int | None = None, particles: int = DEFAULT_PARTICLES,
          device: str = "auto", max_batch: int = 256, seed: int = 0, progress: bool = True) -> dict:
    """Score videos of ``input_path`` (default: the model's test set) with the model of
    ``checkpoint``; writes ``out``/scores.json and scores.png and returns scores.json's dict."""
    if videos is not None and videos < 1:
        raise InvalidInput(f"--videos must be at least 1, not {videos}")
    config, svg, step = load_model(checkpoint, resolve_device(device))
    frame_shape = (config.channels, config.image_size, config.image_size)
    if input_path is not None:
        data = load_videos(input_path, frame_shape)
        data = data[:videos] if videos is not None else data
    else:
        test = make_datasets(config)[1]
        count = min(len(test), videos or 64)
        data = stack_videos(test, count)
    Path(out).mkdir(parents=True, exist_ok=True)  # before the work: an unusable --out fails at once
    pyro.set_rng_seed(seed)
    scores = score_videos(svg, data, config.n_past, particles, max_batch, progress)
    result = {"per_frame": scores["surprise"].round(3).tolist(), "bound": "iwae", "particles": particles,
              "elbo_per_frame": scores["elbo_surprise"].round(3).tolist(), "units": "nats",
              "frames": list(range(1, data.shape[1])), "videos": len(data),
              "input": str(input_path) if input_path is not None else "test set",
              "checkpoint": str(checkpoint), "step": step, "model": config.model, "seed": seed}
    (Path(out) / "scores.json").write_text(json.dumps(result) + "\n")
    plot_scores(result, Path(out) / "scores.png")
    return result


def plot_scores(result: dict, path) -> None:
    """Surprise per frame: every video as a thin line, their median thick, the most surprising frame
    of each video marked."""
    from matplotlib.figure import Figure

    per_frame = np.array(result["per_frame"])
    frames = result["frames"]
    fig = Figure(figsize=(7, 3.5))
    ax = fig.subplots()
    for row in per_frame[:64]:
        ax.plot(frames, row, color="tab:blue", alpha=0.25, lw=0.8)
    ax.plot(frames, np.median(per_frame, axis=0), color="black", lw=2, label="median over videos")
    top = per_frame.argmax(1)
    ax.scatter(np.array(frames)[top], per_frame[np.arange(len(per_frame)), top], s=8, color="tab:red",
               zorder=3, label="each video's most surprising frame")
    ax.set_xlabel("frame t")
    ax.set_ylabel(f"-log p(x_t | x_<t), nats (IWAE, K={result['particles']})")
    ax.set_title(f"{result['model']} (step {result['step']}): surprise per frame, {result['videos']} videos",
                 fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
