"""Write the two notebooks of this folder: ``python notebooks/make_notebooks.py [--execute]``.

Without ``--execute`` they are written without outputs; with it they are also run top to bottom
(nbclient, in this folder, with the environment's SVG_* variables) and saved with their outputs.
"""
import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

SETUP = '''\
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

from svg_pyro import arviz_data
from svg_pyro.checkpoint import load_model
from svg_pyro.datasets import make_datasets
from svg_pyro.evaluate import DEFAULT_HORIZON, evaluate, markdown_table
from svg_pyro.eval_plots import plot_per_step
from svg_pyro.plots import video_mosaic
from svg_pyro.sampling import predict


def path(variable, default):
    return Path(os.environ.get(variable, ROOT / default))


OUT = path("SVG_NB_OUT", "runs/notebooks")  # evaluation outputs of the notebooks
VIDEOS = int(os.environ.get("SVG_NB_VIDEOS", 32))  # test videos
SAMPLES = int(os.environ.get("SVG_NB_SAMPLES", {samples}))  # futures per video
device = "cuda" if torch.cuda.is_available() else "cpu"
'''

NB1 = [
    new_markdown_cell("""\
# 01 - Posterior predictive: condition, sample, look, measure, check

SVG generates a video by conditioning on its first `n_past` frames: the latent z_t comes from the
posterior (the guide) on those steps and from the prior after them, and each generated frame is
fed back as the next input. In Pyro that is `pyro.infer.Predictive(svg.model, guide=guide)`
(`svg_pyro.sampling.predict`; `sample_chunks` does it in bounded memory).

**Inputs** (environment variables, defaults in brackets):
- `SVG_CHECKPOINT` [`runs/svg-lp/checkpoint.pt`]: an SVG-LP checkpoint, from
  `python svi_train.py --preset smmnist-cpu --out runs/svg-lp`;
- `SVG_CHECKPOINT_DET` [`runs/det/checkpoint.pt`]: optional deterministic baseline, from
  `python svi_train.py --preset smmnist-cpu --model det --out runs/det`;
- `SVG_NB_VIDEOS` [32], `SVG_NB_SAMPLES` [100], `SVG_NB_HORIZON` [the dataset's test horizon],
  `SVG_NB_OUT` [`runs/notebooks`]."""),
    new_code_cell(SETUP.format(samples=100) + '''
CHECKPOINT = path("SVG_CHECKPOINT", "runs/svg-lp/checkpoint.pt")
DET = path("SVG_CHECKPOINT_DET", "runs/det/checkpoint.pt")
config, svg, guide, step = load_model(CHECKPOINT, device)
n_past = config.n_past
horizon = int(os.environ.get("SVG_NB_HORIZON", DEFAULT_HORIZON[config.dataset]))
n_frames = n_past + horizon
_, test_set = make_datasets(config, split_lengths=(config.frames_per_video, n_frames))
videos = torch.stack([test_set[i] for i in range(VIDEOS)])
pyro.set_rng_seed(0)
print(f"{config.model} on {config.dataset}, trained {step} steps, on {device}: {VIDEOS} test videos, "
      f"{n_past} given -> {horizon} predicted, {SAMPLES} samples per video")'''),
    new_markdown_cell("""\
## Condition and sample

One `Predictive` call, vectorized over samples (`parallel=True`): frames have shape
(samples, videos, time, C, H, W) and the first `n_past` frames are the given ones. Below, per
video: the truth, then three samples (green frames: given)."""),
    new_code_cell('''\
shown = min(4, VIDEOS)
look = predict(svg, guide, videos[:shown, :n_past].to(device), n_past, n_frames, num_samples=3)
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
print("z:", tuple(look["z"].shape), "(samples, videos, steps 1..T-1, z_dim)")'''),
    new_markdown_cell("""\
## Measure: the evaluation protocol

`evaluate` is what `python -m svg_pyro.evaluate` runs (docs/evaluation.md): per-step SSIM and
PSNR of every sample; per metric the best sample of each video (by its average over the predicted
frames) and the mean over samples; mean and 95% interval over videos; the deterministic model
(when its checkpoint exists) and copying the last given frame as baselines."""),
    new_code_cell('''\
metrics = evaluate(CHECKPOINT, OUT / "01", samples=SAMPLES, videos=VIDEOS, horizon=horizon,
                   det_checkpoint=DET if DET.exists() else None, device=device, progress=False)
display(Markdown(markdown_table(metrics)))
display(Image(OUT / "01" / "per_step.png"))
display(Image(OUT / "01" / "samples.png", width=700))'''),
    new_markdown_cell("""\
## ArviZ: posterior predictive checks per step

The samples become an `arviz.InferenceData` (`svg_pyro.arviz_data`): z in `posterior`
(chain, draw, video, step, z_dim), per-frame statistics of the samples in `posterior_predictive`
(chain, draw, video, time) and of the truth in `observed_data`. The statistics: mean intensity,
and the centre of mass (row, col) of the digits. A calibrated model's 90% band holds the truth
for about 90% of the videos at every step."""),
    new_code_cell('''\
idata = arviz_data.sample_inference_data(svg, guide, videos, n_past, n_frames, SAMPLES)
print(idata)
print(idata.posterior["z"].coords["z_from"].values)'''),
    new_code_cell('''\
for stat in ("row", "col", "intensity"):
    arviz_data.plot_ppc_per_step(idata, stat, videos=range(min(3, VIDEOS)))
    plt.tight_layout()
    plt.show()'''),
    new_code_cell('''\
arviz_data.plot_ppc_coverage(idata)
plt.title("share of videos whose truth lies in the samples' 90% HDI", fontsize=9)
plt.show()
for stat in arviz_data.STATISTICS:
    cover = arviz_data.ppc_coverage(idata, stat).values[n_past:]
    print(f"{stat:9s} coverage over the predicted frames: mean {cover.mean():.2f}, "
          f"first {cover[0]:.2f}, last {cover[-1]:.2f}")'''),
    new_markdown_cell("""\
## KL per step

The analytic KL(q(z_t | x_{1:t}) || p(z_t | x_{1:t-1})) per step on the test videos, the guide
running over every frame as in training: how much information z carries at each step. It is
measured against the model's own prior and, with the prior swapped to N(0, I), against the fixed
prior."""),
    new_code_cell('''\
kl_videos = videos[: min(VIDEOS, 64)]
kls = {"vs its own prior": arviz_data.kl_per_step(svg, guide, kl_videos, n_past)}
if svg.z_dim:
    kls["vs N(0, I)"] = arviz_data.kl_per_step(svg, guide, kl_videos, n_past, prior="fixed")
arviz_data.plot_kl_per_step(kls)
plt.title(f"{config.model}: KL per step, {len(kl_videos)} test videos", fontsize=9)
plt.show()
{k: np.round(v, 3).tolist() for k, v in kls.items()}'''),
]

NB2 = [
    new_markdown_cell("""\
# 02 - Swapping priors: at training time and at sampling time

SVG's prior over z_t is chosen **at training time** (`--model svg-lp`: a learned prior
p(z_t | x_{1:t-1}); `--model svg-fp`: N(0, I)). **At sampling time**, the effect handler
`models.priors.swap_prior` replaces the distribution at the z_t sites of a trained model for the
generated steps t >= n_past; `learned_prior_of` swaps in the learned prior of another
checkpoint (run on that checkpoint's own encodings of the frames). This notebook compares
the two trained models, then the swaps, and measures the effect.

**Inputs** (environment variables, defaults in brackets): `SVG_CHECKPOINT`
[`runs/svg-lp/checkpoint.pt`], `SVG_CHECKPOINT_FP` [`runs/svg-fp/checkpoint.pt`],
`SVG_CHECKPOINT_DET` [`runs/det/checkpoint.pt`], made by `python svi_train.py --preset
smmnist-cpu --model {svg-lp,svg-fp,det} --out runs/{svg-lp,svg-fp,det}`; `SVG_NB_VIDEOS` [32],
`SVG_NB_SAMPLES` [50], `SVG_NB_HORIZON` [the dataset's test horizon], `SVG_NB_OUT`
[`runs/notebooks`]."""),
    new_code_cell(SETUP.format(samples=50) + '''
from pyro import poutine
from pyro.infer import Predictive

from models.priors import fixed_prior, learned_prior_of, swap_prior

LP = path("SVG_CHECKPOINT", "runs/svg-lp/checkpoint.pt")
FP = path("SVG_CHECKPOINT_FP", "runs/svg-fp/checkpoint.pt")
DET = path("SVG_CHECKPOINT_DET", "runs/det/checkpoint.pt")
lp_config, lp, lp_guide, lp_step = load_model(LP, device)
fp_config, fp, fp_guide, fp_step = load_model(FP, device)
n_past = lp_config.n_past
horizon = int(os.environ.get("SVG_NB_HORIZON", DEFAULT_HORIZON[lp_config.dataset]))
n_frames = n_past + horizon
_, test_set = make_datasets(lp_config, split_lengths=(lp_config.frames_per_video, n_frames))
videos = torch.stack([test_set[i] for i in range(VIDEOS)])
pyro.set_rng_seed(0)
print(f"SVG-LP {lp_step} steps, SVG-FP {fp_step} steps; {VIDEOS} test videos, {n_past} given -> "
      f"{horizon} predicted, {SAMPLES} samples per video, on {device}")'''),
    new_markdown_cell("""\
## The idiom

`swap_prior(replacement, from_step=n_past)` wraps the model; `replacement(t, fn)` returns the new
distribution of site z_t with the shapes of the old one `fn`. On the conditioning steps z comes
from the guide (Predictive conditions the model on the guide's draws), so they are left alone.
The trace below shows the prior of each z_t site of SVG-LP under the swap."""),
    new_code_cell('''\
context = videos[:2, :n_past].to(device)
swapped = swap_prior(fixed_prior, from_step=n_past)(lp.model)
with torch.no_grad():
    guide_trace = poutine.trace(lp_guide).get_trace(context, n_past)
    trace = poutine.trace(poutine.replay(swapped, trace=guide_trace)).get_trace(context, n_past, n_past + 3)
for t in range(1, n_past + 3):
    fn = trace.nodes[f"z_{t}"]["fn"].base_dist
    source = "guide" if t < n_past else "prior"
    print(f"z_{t}: value from the {source}; prior loc mean {fn.loc.mean():+.3f}, scale mean {fn.scale.mean():.3f}")

# the same inside Predictive: samples of SVG-LP whose generated steps use N(0, I)
samples = Predictive(swapped, guide=lp_guide, num_samples=2, parallel=True,
                     return_sites=["_RETURN"])(context, n_past, n_frames)["_RETURN"]
print("generated means:", tuple(samples.shape), "(samples, videos, steps 1..T-1, C, H, W)")'''),
    new_markdown_cell("""\
## Measured: trained priors and swapped priors

Each configuration is evaluated with the protocol of `python -m svg_pyro.evaluate` (best of N
and mean of N, per-step SSIM and PSNR, 95% intervals over videos). Baselines (deterministic model,
copy of the last frame) come with the first run."""),
    new_code_cell('''\
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
display(Image(OUT / "02-per_step.png"))'''),
    new_markdown_cell("""\
## Diversity and calibration of the samples

Per configuration, from the ArviZ data of the samples: the spread of the digits' centre of mass
across samples (pixels, averaged over videos and predicted frames) and the share of videos whose
true centre lies in the samples' 90% HDI (calibration; 0.9 is ideal)."""),
    new_code_cell('''\
configurations = {
    "SVG-LP (learned prior)": (lp, lp_guide, None),
    "SVG-LP sampled under N(0, I)": (lp, lp_guide, "fixed"),
    "SVG-FP (fixed prior)": (fp, fp_guide, None),
    "SVG-FP sampled under SVG-LP's prior": (fp, fp_guide, lp),
}
fig, ax = plt.subplots(figsize=(6, 3.5))
print(f"{'configuration':38s} {'spread row':>10s} {'spread col':>10s} {'cover row':>9s} {'cover col':>9s}")
for name, (model, guide, prior) in configurations.items():
    idata = arviz_data.sample_inference_data(model, guide, videos, n_past, n_frames, SAMPLES, prior=prior)
    predicted = idata.posterior_predictive.sel(time=slice(n_past, None))
    spread = predicted.std(("chain", "draw")).mean()
    cover = {s: arviz_data.ppc_coverage(idata, s).values[n_past:].mean() for s in ("row", "col")}
    print(f"{name:38s} {float(spread['row']):10.2f} {float(spread['col']):10.2f} {cover['row']:9.2f} {cover['col']:9.2f}")
    arviz_data.plot_ppc_coverage(idata, stats=("row",), ax=ax, label=name)
ax.set_title("90% HDI coverage of the digits' row centre", fontsize=9)
plt.show()'''),
    new_markdown_cell("""\
## KL per step

How far each model's posterior is from its own prior and from N(0, I): SVG-FP was trained to keep
q close to N(0, I), SVG-LP to keep it close to its learned prior, which is why swapping SVG-LP's
prior for N(0, I) at sampling time draws z from a region its posterior rarely visits."""),
    new_code_cell('''\
kl_videos = videos[: min(VIDEOS, 64)]
kls = {
    "SVG-LP vs its learned prior": arviz_data.kl_per_step(lp, lp_guide, kl_videos, n_past),
    "SVG-LP vs N(0, I)": arviz_data.kl_per_step(lp, lp_guide, kl_videos, n_past, prior="fixed"),
    "SVG-FP vs N(0, I)": arviz_data.kl_per_step(fp, fp_guide, kl_videos, n_past),
}
arviz_data.plot_kl_per_step(kls)
plt.title(f"KL per step, {len(kl_videos)} test videos", fontsize=9)
plt.show()
{k: round(float(v.sum()), 3) for k, v in kls.items()}'''),
]


def write(cells, name, execute=False):
    nb = new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                            "language": "python"}})
    if execute:
        from nbclient import NotebookClient

        print(f"executing {name} ...", flush=True)
        NotebookClient(nb, timeout=None, kernel_name="python3", resources={"metadata": {"path": str(HERE)}}).execute()
    nbformat.write(nb, HERE / name)
    print(f"written: {HERE / name}")


if __name__ == "__main__":
    execute = "--execute" in sys.argv[1:]
    write(NB1, "01_posterior_predictive.ipynb", execute)
    write(NB2, "02_swap_priors.ipynb", execute)
