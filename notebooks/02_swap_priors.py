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
# # 02 - Swapping priors: at training time and at sampling time
#
# SVG's prior over z_t is chosen **at training time** (`--model svg-lp`: a learned prior
# p(z_t | x_{1:t-1}); `--model svg-fp`: N(0, I)). **At sampling time**, the effect handler
# `svg_pyro.models.priors.swap_prior` replaces the distribution at the z_t sites of a trained model for the
# generated steps t >= n_past; `learned_prior_of` swaps in the learned prior of another
# checkpoint (run on that checkpoint's own encodings of the frames). This notebook compares
# the two trained models, then the swaps, and measures the effect.
#
# **Inputs** (environment variables, defaults in brackets): `SVG_CHECKPOINT`
# [`smmnist-1digit-svg-lp`], `SVG_CHECKPOINT_FP` [`smmnist-1digit-svg-fp`], `SVG_CHECKPOINT_DET`
# [`smmnist-1digit-det`]: checkpoints (`RUN/checkpoint.pt` of `python svi_train.py --model
# {svg-lp,svg-fp,det}`) or shipped models' short names; the defaults are the 1-digit models shipped
# in `checkpoints/` (non-uniform velocities; their commands: `checkpoints/README.md`); `SVG_NB_VIDEOS` [32],
# `SVG_NB_SAMPLES` [50], `SVG_NB_HORIZON` [the dataset's test horizon], `SVG_NB_OUT`
# [`runs/notebooks`].

# %%
import os
import sys
import warnings
from pathlib import Path

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm without ipywidgets
ROOT = Path.cwd() if (Path.cwd() / "svg_pyro").is_dir() else Path.cwd().parent  # repo root
sys.path.insert(0, str(ROOT))

import matplotlib.pyplot as plt
import pyro
import torch
from IPython.display import Image, Markdown, display
from pyro import poutine
from pyro.infer import Predictive

from svg_pyro.evaluation import arviz_data
from svg_pyro.evaluation.bounds import heldout_kl
from svg_pyro.checkpoint import load_model, resolve_checkpoint
from svg_pyro.data.datasets import make_datasets, stack_videos
from svg_pyro.evaluation.eval_plots import plot_kl_steps, plot_per_step
from svg_pyro.evaluation.evaluate import DEFAULT_HORIZON, evaluate
from svg_pyro.evaluation.summary import markdown_table
from svg_pyro.models.priors import fixed_prior, swap_prior


def path(variable, default):
    return Path(os.environ.get(variable, ROOT / default))


def checkpoint(variable, name):  # a checkpoint's path, or a shipped model's short name (checkpoints/)
    return resolve_checkpoint(os.environ.get(variable, name))


OUT = path("SVG_NB_OUT", "runs/notebooks")  # evaluation outputs of the notebooks
VIDEOS = int(os.environ.get("SVG_NB_VIDEOS", 32))  # test videos
SAMPLES = int(os.environ.get("SVG_NB_SAMPLES", 50))  # futures per video
device = "cuda" if torch.cuda.is_available() else "cpu"

LP = checkpoint("SVG_CHECKPOINT", "smmnist-1digit-svg-lp")
FP = checkpoint("SVG_CHECKPOINT_FP", "smmnist-1digit-svg-fp")
DET = checkpoint("SVG_CHECKPOINT_DET", "smmnist-1digit-det")
lp_config, lp, lp_step = load_model(LP, device)
fp_config, fp, fp_step = load_model(FP, device)
n_past = lp_config.n_past
horizon = int(os.environ.get("SVG_NB_HORIZON", DEFAULT_HORIZON[lp_config.dataset]))
n_frames = n_past + horizon
_, test_set = make_datasets(lp_config, split_lengths=(lp_config.frames_per_video, n_frames))
videos = stack_videos(test_set, VIDEOS)
pyro.set_rng_seed(0)
print(f"SVG-LP {lp_step} steps, SVG-FP {fp_step} steps; {VIDEOS} test videos, {n_past} given -> "
      f"{horizon} predicted, {SAMPLES} samples per video, on {device}")

# %% [markdown]
# ## The idiom
#
# `swap_prior(replacement, from_step=n_past)` wraps the model; `replacement(t, fn)` returns the new
# distribution of site z_t with the shapes of the old one `fn`. On the conditioning steps z comes
# from the guide (Predictive conditions the model on the guide's draws), so they are left alone.
# The trace below shows the prior of each z_t site of SVG-LP under the swap.

# %%
context = videos[:2, :n_past].to(device)
swapped = swap_prior(fixed_prior, from_step=n_past)(lp.model)
with torch.no_grad():
    guide_trace = poutine.trace(lp.guide).get_trace(context, n_past)
    trace = poutine.trace(poutine.replay(swapped, trace=guide_trace)).get_trace(context, n_past, n_past + 3)
for t in range(1, n_past + 3):
    fn = trace.nodes[f"z_{t}"]["fn"].base_dist
    source = "guide" if t < n_past else "prior"
    print(f"z_{t}: value from the {source}; prior loc mean {fn.loc.mean():+.3f}, scale mean {fn.scale.mean():.3f}")

# the same inside Predictive: samples of SVG-LP whose generated steps use N(0, I)
samples = Predictive(swapped, guide=lp.guide, num_samples=2, parallel=True,
                     return_sites=["_RETURN"])(context, n_past, n_frames)["_RETURN"]
print("generated means:", tuple(samples.shape), "(samples, videos, steps 1..T-1, C, H, W)")

# %% [markdown]
# ## Measured: trained priors and swapped priors
#
# Each configuration is evaluated with the protocol of `svg-pyro evaluate` (best of N
# and mean of N, per-step SSIM and PSNR, 95% intervals over videos). Baselines (deterministic model,
# copy of the last frame) come with the first run.

# %%
runs = {
    "SVG-LP (learned prior)": dict(checkpoint=LP, det_checkpoint=DET if DET.exists() else None),
    "SVG-LP sampled under N(0, I)": dict(checkpoint=LP, prior="fixed"),
    "SVG-FP (fixed prior)": dict(checkpoint=FP),
    "SVG-FP sampled under SVG-LP's prior": dict(checkpoint=FP, prior_checkpoint=LP),
}
evaluations = {}
for i, (name, options) in enumerate(runs.items()):
    evaluations[name] = evaluate(out=OUT / f"02-{i}", samples=SAMPLES, videos=VIDEOS, horizon=horizon,
                                 device=device, progress=False, **options)
first = next(iter(evaluations.values()))
combined = {"protocol": first["protocol"], "time_steps": first["time_steps"],
            "results": {name: {**m["results"]["svg"], "label": name} for name, m in evaluations.items()}}
combined["results"].update({k: v for k, v in first["results"].items() if k != "svg"})
display(Markdown(markdown_table(combined)))
plot_per_step(combined, OUT / "02-per_step.png", title="trained vs swapped priors")
display(Image(OUT / "02-per_step.png"))

# %% [markdown]
# ## Diversity and calibration of the samples
#
# Per configuration, from the ArviZ data of the samples: the spread of the digits' centre of mass
# across samples (pixels, averaged over videos and predicted frames) and the share of videos whose
# true centre lies in the samples' 90% HDI (calibration; 0.9 is ideal).

# %%
configurations = {
    "SVG-LP (learned prior)": (lp, None),
    "SVG-LP sampled under N(0, I)": (lp, "fixed"),
    "SVG-FP (fixed prior)": (fp, None),
    "SVG-FP sampled under SVG-LP's prior": (fp, lp),
}
fig, ax = plt.subplots(figsize=(6, 3.5))
print(f"{'configuration':38s} {'spread row':>10s} {'spread col':>10s} {'cover row':>9s} {'cover col':>9s}")
for name, (model, prior) in configurations.items():
    idata = arviz_data.sample_inference_data(model, videos, n_past, n_frames, SAMPLES, prior=prior)
    predicted = idata.posterior_predictive.sel(time=slice(n_past, None))
    spread = predicted.std(("chain", "draw")).mean()
    cover = {s: arviz_data.ppc_coverage(idata, s).values[n_past:].mean() for s in ("row", "col")}
    print(f"{name:38s} {float(spread['row']):10.2f} {float(spread['col']):10.2f} {cover['row']:9.2f} {cover['col']:9.2f}")
    arviz_data.plot_ppc_coverage(idata, stats=("row",), ax=ax, label=name)
ax.set_title("90% HDI coverage of the digits' row centre", fontsize=9)
plt.show()

# %% [markdown]
# ## KL per step
#
# How far each model's posterior is from its own prior and from N(0, I): SVG-FP was trained to keep
# q close to N(0, I), SVG-LP to keep it close to its learned prior, which is why swapping SVG-LP's
# prior for N(0, I) at sampling time draws z from a region its posterior rarely visits.

# %%
kl_videos = videos[: min(VIDEOS, 64)]
kls = {
    "SVG-LP vs its learned prior": heldout_kl(lp, kl_videos, n_past),
    "SVG-LP vs N(0, I)": heldout_kl(lp, kl_videos, n_past, prior="fixed"),
    "SVG-FP vs N(0, I)": heldout_kl(fp, kl_videos, n_past),
}
plot_kl_steps(kls)
plt.title(f"KL per step, {len(kl_videos)} test videos", fontsize=9)
plt.show()
{k: round(float(v.sum()), 3) for k, v in kls.items()}
