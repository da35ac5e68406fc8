# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 04 - Queries only a probabilistic program answers: any frames given, surprise per frame
#
# SVG generates a video forward from its first frames. Written as a Pyro program it can answer more:
#
# - **Goal-conditioned futures and interpolation.** Given frames 0-4 *and* frame 14 (or frame 9), which
#   paths lead there? The guide only sees the past, so `svg_pyro.inference.condition` runs sequential
#   Monte Carlo (`pyro.infer.SMCFilter`) over the latent path: particles are proposed from the
#   learned prior, weighed by the likelihood of every later observed frame, and resampled. On
#   1-digit SM-MNIST the exact answer is known: forward-backward over the generator's (position,
#   velocity) chain gives, per step, the distribution of the digit's displacement given all observed
#   frames (`svg_pyro.data.smmnist_posterior`).
# - **Surprise per frame.** -log p(x_t | x_<t), from the importance-weighted bound: a digit that jumps
#   stands out.
#
# Inputs (environment variables, defaults in brackets): `SVG_CHECKPOINT` [`smmnist-1digit-svg-lp`], a
# 1-digit SM-MNIST SVG-LP model (path or shipped short name); `SVG_NB_VIDEOS` [8] test videos;
# `SVG_NB_PARTICLES` [256] particles (and samples) per video; `SVG_NB_OUT` [`runs/notebooks`].
# The same study from the command line: `svg-pyro condition --help`, and `svg-pyro score --help`.

# %%
import json
import os
import warnings
from pathlib import Path

warnings.filterwarnings("ignore", message="IProgress not found")  # text progress bars are fine

import matplotlib.pyplot as plt
import numpy as np
import pyro
import torch
from IPython.display import Image, display

import svg_pyro
from svg_pyro.data.smmnist import StochasticMovingMNIST, velocity_table
from svg_pyro.data.smmnist_posterior import posterior_displacement_distributions
from svg_pyro.evaluation.conditioning import run_condition
from svg_pyro.evaluation.motion import found_positions
from svg_pyro.evaluation.displacements import crop, displacement_histogram, displacements, grid_radius

CHECKPOINT = os.environ.get("SVG_CHECKPOINT", "smmnist-1digit-svg-lp")
VIDEOS = int(os.environ.get("SVG_NB_VIDEOS", 8))
PARTICLES = int(os.environ.get("SVG_NB_PARTICLES", 256))
OUT = Path(os.environ.get("SVG_NB_OUT", "runs/notebooks")) / "04"
model = svg_pyro.load(CHECKPOINT)
n_past = model.n_past
print(f"{model.config.model}, {model.config.num_digits} digit, {model.config.velocity} velocities, "
      f"{n_past} given frames, trained {model.step} steps")

# %% [markdown]
# ## Goal-conditioned futures: frames 0-4 and 14 given
#
# Conditioned samples (sequential Monte Carlo) against the same model's unconditioned ones (given
# frames 0-4 only). Green frames are given.

# %%
goal_frames = f"0-{n_past - 1},14"
goal = run_condition(CHECKPOINT, OUT / "goal", observe=goal_frames, frames=15, videos=VIDEOS, samples=PARTICLES,
                     progress=False)
display(Image(OUT / "goal" / "condition.png"))
steps = goal["per_step"]
print(f"ESS at frame 14: {goal['ess']['14']:.1f} of {goal['particles']} particles")
print("frame  position error (px): conditioned  unconditioned")
for t in range(n_past, 15):
    print(f"{t:5d}  {steps['conditioned']['position_error'][t]:32.2f}  {steps['unconditioned']['position_error'][t]:13.2f}")

# %% [markdown]
# ## Interpolation: frames 0-4 and 9 given, 12 frames
#
# Frames 5-8 fill the gap; frames 10 and 11 continue from the given frame 9.

# %%
between = run_condition(CHECKPOINT, OUT / "between", observe=f"0-{n_past - 1},9", frames=12, videos=VIDEOS,
                        samples=PARTICLES, progress=False)
display(Image(OUT / "between" / "condition.png"))

fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
for ax, (name, result) in zip(axes, (("frames 0-4 and 14 given", goal), ("frames 0-4 and 9 given", between))):
    frames = np.arange(len(result["per_step"]["conditioned"]["position_error"]))
    for kind, style in (("conditioned", "-o"), ("unconditioned", "--s")):
        ax.plot(frames, result["per_step"][kind]["position_error"], style, ms=3, label=kind)
    for t in result["observed"]:
        ax.axvline(t, color="green", alpha=0.15, lw=4)
    ax.set(title=name, xlabel="frame", ylabel="mean position error (px)")
    ax.legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Against the exact posterior
#
# Per step, the Wasserstein-1 distance (pixels) between the samples' displacements and the exact
# distribution given every observed frame, mean over videos (lower is better). Then, for one video,
# the distributions themselves at a step inside the gap: exact, conditioned samples, unconditioned
# samples (rows dy, columns dx, the generator's 9x9 grid).

# %%
fig, ax = plt.subplots(figsize=(6, 3.2))
for kind, style in (("conditioned", "-o"), ("unconditioned", "--s")):
    w1 = [np.nan if v is None else v for v in goal["per_step"][kind]["w1"]]
    ax.plot(np.arange(1, len(w1) + 1), w1, style, ms=3, label=kind)
ax.set(xlabel="step (frame t-1 -> t)", ylabel="W1 to the exact posterior (px)", title=f"given {goal_frames}")
ax.legend(fontsize=8)
plt.show()
print("after the wall:", {k: goal["per_step"][k]["w1_after_wall"] for k in ("conditioned", "unconditioned")})

# %%
test = StochasticMovingMNIST("test", 15, num_digits=1, velocity=model.config.velocity,
                             mnist_root=model.config.mnist_root)
path = test.trajectory(0)
truth = path["positions"][0]  # (T, 2): the first video's digit
video = test[0][None]
observed = [*range(n_past), 14]
given = np.full((15, 2), np.nan)
given[observed] = truth[observed]
exact = posterior_displacement_distributions(given, velocity_table(test))
pyro.set_rng_seed(0)
samples = {"conditioned": model.condition(video, observed, samples=PARTICLES).frames,
           "unconditioned": model.sample(video, samples=PARTICLES)}
templates = [test.digits[torch.as_tensor(path["digit_ids"])]]
step = 9  # the move from frame 8 to 9, inside the gap
radius = grid_radius(64)
panels = {"exact": exact[step - 1]}
for name, frames in samples.items():
    moves = displacements(found_positions(frames, templates)[:, 0, :, 0])[:, step - 1]
    panels[name] = crop(displacement_histogram(np.clip(moves, -radius, radius), radius))
fig, axes = plt.subplots(1, 3, figsize=(9, 3))
for ax, (name, probs) in zip(axes, panels.items()):
    ax.imshow(probs, cmap="viridis", extent=(-4.5, 4.5, 4.5, -4.5))
    ax.set(title=name, xlabel="dx")
axes[0].set_ylabel("dy")
plt.suptitle(f"video 0, step {step}: displacement given frames {observed}", fontsize=9)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## The effective sample size and tempering
#
# A frame likelihood over 4,096 pixels is sharp: with temperature 1 (the model's own posterior)
# nearly all weight falls on one or two particles. Tempering, p(x_obs | path)^temperature, keeps more
# particles alive, at the price of a posterior broader than the model's.

# %%
videos = model.test_videos(min(VIDEOS, 4), frames=15)
print("temperature   mean ESS at frame 14   (of", PARTICLES, "particles)")
for temperature in (1.0, 0.3, 0.1, 0.03):
    pyro.set_rng_seed(0)
    result = model.condition(videos, observed, samples=PARTICLES, temperature=temperature)
    print(f"{temperature:11.2f}   {result.ess.mean():20.1f}")

# %% [markdown]
# ## Surprise per frame
#
# The same test video as it is and with every frame from 10 on shifted 20 pixels right (the digit
# jumps once, then moves on): -log p(x_t | x_<t) per frame.

# %%
clip = model.test_videos(1, frames=15)
jumped = clip.clone()
jumped[:, 10:] = torch.roll(clip[:, 10:], shifts=20, dims=-1)
pyro.set_rng_seed(0)
plain, jump = model.surprise(clip)[0], model.surprise(jumped)[0]
fig, ax = plt.subplots(figsize=(6, 3))
ax.plot(range(1, 15), plain, "-o", ms=3, label="as recorded")
ax.plot(range(1, 15), jump, "-s", ms=3, label="digit jumps 20 px at frame 10")
ax.set(xlabel="frame", ylabel="surprise (nats)")
ax.legend(fontsize=8)
plt.show()
print(json.dumps({"surprise at frame 10": {"as recorded": round(float(plain[9]), 1),
                                           "jumped": round(float(jump[9]), 1)}}))
