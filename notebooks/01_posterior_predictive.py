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
# # 01 - Posterior predictive: condition, sample, look, measure, check
#
# SVG generates a video by conditioning on its first `n_past` frames: the latent z_t comes from the
# posterior (the guide) on those steps and from the prior after them, and each generated frame is
# fed back as the next input. In Pyro that is `pyro.infer.Predictive(svg.model, guide=svg.guide)`
# (`svg_pyro.inference.sampling.predict`; `sample_chunks` does it in bounded memory).
#
# **Inputs** (environment variables, defaults in brackets):
# - `SVG_CHECKPOINT` [`smmnist-2digit-svg-lp`]: an SVG-LP checkpoint (`RUN/checkpoint.pt` of
#   `python svi_train.py`) or a shipped model's short name; the default is the 2-digit SVG-LP
#   shipped in `checkpoints/` (its command: `checkpoints/README.md`);
# - `SVG_CHECKPOINT_DET` [`smmnist-2digit-det`]: the deterministic baseline, optional;
# - `SVG_NB_VIDEOS` [32], `SVG_NB_SAMPLES` [100], `SVG_NB_HORIZON` [the dataset's test horizon],
#   `SVG_NB_OUT` [`runs/notebooks`].

# %%
import os
import sys
import warnings
from pathlib import Path

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm without ipywidgets
ROOT = Path.cwd() if (Path.cwd() / "svg_pyro").is_dir() else Path.cwd().parent  # repo root
sys.path.insert(0, str(ROOT))

import matplotlib.pyplot as plt
import numpy as np
import pyro
import torch
from IPython.display import Image, Markdown, display

from svg_pyro.evaluation import arviz_data
from svg_pyro.evaluation.bounds import heldout_kl
from svg_pyro.checkpoint import load_model, resolve_checkpoint
from svg_pyro.data.datasets import make_datasets, stack_videos
from svg_pyro.evaluation.eval_plots import plot_kl_steps
from svg_pyro.evaluation.evaluate import DEFAULT_HORIZON, evaluate
from svg_pyro.evaluation.summary import markdown_table
from svg_pyro.evaluation.plots import video_mosaic
from svg_pyro.inference.sampling import predict


def path(variable, default):
    return Path(os.environ.get(variable, ROOT / default))


def checkpoint(variable, name):  # a checkpoint's path, or a shipped model's short name (checkpoints/)
    return resolve_checkpoint(os.environ.get(variable, name))


OUT = path("SVG_NB_OUT", "runs/notebooks")  # evaluation outputs of the notebooks
VIDEOS = int(os.environ.get("SVG_NB_VIDEOS", 32))  # test videos
SAMPLES = int(os.environ.get("SVG_NB_SAMPLES", 100))  # futures per video
device = "cuda" if torch.cuda.is_available() else "cpu"

CHECKPOINT = checkpoint("SVG_CHECKPOINT", "smmnist-2digit-svg-lp")
DET = checkpoint("SVG_CHECKPOINT_DET", "smmnist-2digit-det")
config, svg, step = load_model(CHECKPOINT, device)
n_past = config.n_past
horizon = int(os.environ.get("SVG_NB_HORIZON", DEFAULT_HORIZON[config.dataset]))
n_frames = n_past + horizon
_, test_set = make_datasets(config, split_lengths=(config.frames_per_video, n_frames))
videos = stack_videos(test_set, VIDEOS)
pyro.set_rng_seed(0)
print(f"{config.model} on {config.dataset}, trained {step} steps, on {device}: {VIDEOS} test videos, "
      f"{n_past} given -> {horizon} predicted, {SAMPLES} samples per video")

# %% [markdown]
# ## Condition and sample
#
# One `Predictive` call, vectorized over samples (`parallel=True`): frames have shape
# (samples, videos, time, C, H, W) and the first `n_past` frames are the given ones. Below, per
# video: the truth, then three samples (green frames: given).

# %%
shown = min(4, VIDEOS)
look = predict(svg, videos[:shown, :n_past].to(device), n_past, n_frames, num_samples=3)
rows = torch.cat([torch.stack([videos[v], *look["frames"][:, v].cpu()]) for v in range(shown)])
mosaic = video_mosaic(rows, n_past)
cell = mosaic.shape[0] / rows.shape[0]
plt.figure(figsize=(mosaic.shape[1] / cell * 0.5, mosaic.shape[0] / cell * 0.5))
plt.imshow(mosaic)
plt.yticks([(i + 0.5) * cell for i in range(rows.shape[0])],
           [f"video {v}: {k}" for v in range(shown) for k in ("truth", "sample 1", "sample 2", "sample 3")], fontsize=7)
plt.xticks([])
plt.title("truth and 3 samples per video (green: given)", fontsize=9)
plt.show()
print("z:", tuple(look["z"].shape), "(samples, videos, steps 1..T-1, z_dim)")

# %% [markdown]
# ## Measure: the evaluation protocol
#
# `evaluate` is what `svg-pyro evaluate` runs (docs/evaluation.md): per-step SSIM and
# PSNR of every sample; per metric the best sample of each video (by its average over the predicted
# frames) and the mean over samples; mean and 95% interval over videos; the deterministic model
# (when its checkpoint exists) and copying the last given frame as baselines.

# %%
metrics = evaluate(CHECKPOINT, OUT / "01", samples=SAMPLES, videos=VIDEOS, horizon=horizon,
                   det_checkpoint=DET if DET.exists() else None, device=device, progress=False)
display(Markdown(markdown_table(metrics)))
display(Image(OUT / "01" / "per_step.png"))
display(Image(OUT / "01" / "samples.png", width=700))

# %% [markdown]
# ## ArviZ: posterior predictive checks per step
#
# The samples become an `arviz.InferenceData` (`svg_pyro.evaluation.arviz_data`): z in `posterior`
# (chain, draw, video, step, z_dim), per-frame statistics of the samples in `posterior_predictive`
# (chain, draw, video, time) and of the truth in `observed_data`. The statistics: mean intensity,
# and the centre of mass (row, col) of the digits. A calibrated model's 90% band holds the truth
# for about 90% of the videos at every step.

# %%
idata = arviz_data.sample_inference_data(svg, videos, n_past, n_frames, SAMPLES)
print(idata)
print(idata.posterior["z"].coords["z_from"].values)

# %%
for stat in ("row", "col", "intensity"):
    arviz_data.plot_ppc_per_step(idata, stat, videos=range(min(3, VIDEOS)))
    plt.tight_layout()
    plt.show()

# %%
arviz_data.plot_ppc_coverage(idata)
plt.title("share of videos whose truth lies in the samples' 90% HDI", fontsize=9)
plt.show()
for stat in arviz_data.STATISTICS:
    cover = arviz_data.ppc_coverage(idata, stat).values[n_past:]
    print(f"{stat:9s} coverage over the predicted frames: mean {cover.mean():.2f}, "
          f"first {cover[0]:.2f}, last {cover[-1]:.2f}")

# %% [markdown]
# ## KL per step
#
# The analytic KL(q(z_t | x_{1:t}) || p(z_t | x_{1:t-1})) per step on the test videos, the guide
# running over every frame as in training: how much information z carries at each step. It is
# measured against the model's own prior and, with the prior swapped to N(0, I), against the fixed
# prior.

# %%
kl_videos = videos[: min(VIDEOS, 64)]
kls = {"vs its own prior": heldout_kl(svg, kl_videos, n_past)}
if svg.z_dim:
    kls["vs N(0, I)"] = heldout_kl(svg, kl_videos, n_past, prior="fixed")
plot_kl_steps(kls)
plt.title(f"{config.model}: KL per step, {len(kl_videos)} test videos", fontsize=9)
plt.show()
{k: np.round(v, 3).tolist() for k, v in kls.items()}
