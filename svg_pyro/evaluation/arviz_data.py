"""SVG samples as ArviZ data, and the per-step checks drawn from them. Every ArviZ call of the
project lives in this module.

``to_inference_data`` turns the output of ``svg_pyro.inference.sampling.predict`` (a ``Predictive`` call)
into an ``arviz.InferenceData`` with named dims (``sample_inference_data`` does the same for many
samples, drawn in chunks):

- ``posterior``: ``z`` (chain, draw, video, step, z_dim), step = 1..T-1; the non-index coordinate
  ``z_from`` says "guide" (conditioning steps) or "prior" (generated steps).
- ``posterior_predictive``: per-frame summary statistics of the sampled videos (chain, draw, video,
  time): mean ``intensity``, and the intensity-weighted centre of mass ``row``, ``col`` (pixels;
  for two digits, of both together).
- ``observed_data``: the same statistics of the true frames (video, time).

Samples are i.i.d. draws, not a Markov chain: they are stored as one chain whose draws are the
samples, which is how ArviZ represents independent draws.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch


with warnings.catch_warnings():  # ArviZ 0.2x announces its 1.0 refactor on import
    warnings.simplefilter("ignore", FutureWarning)
    import arviz as az

from svg_pyro.errors import InvalidInput
from svg_pyro.inference.sampling import sample_chunks


STATISTICS = ("intensity", "row", "col")


def frame_statistics(frames: torch.Tensor) -> dict[str, np.ndarray]:
    """Per-frame summaries of (..., C, H, W) frames in [0, 1] -> {name: (...)} numpy arrays."""
    x = frames.float().mean(-3)  # (..., H, W), channels averaged
    mass = x.sum((-2, -1)).clamp_min(1e-6)
    rows = torch.arange(x.shape[-2], device=x.device, dtype=x.dtype)
    cols = torch.arange(x.shape[-1], device=x.device, dtype=x.dtype)
    out = {"intensity": x.mean((-2, -1)),
           "row": (x.sum(-1) * rows).sum(-1) / mass,
           "col": (x.sum(-2) * cols).sum(-1) / mass}
    return {k: v.cpu().numpy() for k, v in out.items()}


def to_inference_data(prediction: dict, videos: torch.Tensor, n_past: int) -> az.InferenceData:
    """InferenceData of ``prediction`` = ``sampling.predict(...)`` ({"frames", "z"}) for the true
    ``videos`` (B, >=T, C, H, W); see the module doc for the groups and dims."""
    frames = prediction["frames"]
    if videos.shape[0] != frames.shape[1] or videos.shape[1] < frames.shape[2]:
        raise InvalidInput(f"videos {tuple(videos.shape)} do not match the prediction's {frames.shape[1]} "
                           f"videos of {frames.shape[2]} frames")
    z = prediction.get("z")
    return _inference_data(frame_statistics(frames), None if z is None else z.cpu().numpy(),
                           frame_statistics(videos[:, :frames.shape[2]]), n_past)


def sample_inference_data(svg, videos: torch.Tensor, n_past: int, n_frames: int, num_samples: int,
                          **sampling) -> az.InferenceData:
    """Like ``to_inference_data`` for ``num_samples`` futures of ``videos`` (B, >=n_frames, C, H, W),
    drawn in chunks (``sampling.sample_chunks``, whose keyword options ``sampling`` takes), so only
    the statistics and z are held, never all the frames."""
    num_videos = videos.shape[0]
    stats = {k: np.empty((num_samples, num_videos, n_frames), np.float32) for k in STATISTICS}
    z = np.empty((num_samples, num_videos, n_frames - 1, svg.z_dim), np.float32) if svg.z_dim else None
    for chunk in sample_chunks(svg, videos, n_past, n_frames, num_samples, **sampling):
        for k, v in frame_statistics(chunk.frames).items():
            stats[k][chunk.samples, chunk.videos] = v
        if z is not None:
            z[chunk.samples, chunk.videos] = chunk.z.cpu().numpy()
    return _inference_data(stats, z, frame_statistics(videos[:, :n_frames]), n_past)


def _inference_data(predicted: dict, z, observed: dict, n_past: int) -> az.InferenceData:
    """predicted: {stat: (samples, videos, time)}; z: (samples, videos, time - 1, z_dim) or None;
    observed: {stat: (videos, time)}."""
    num_videos, num_frames = next(iter(observed.values())).shape
    coords = {"video": np.arange(num_videos), "time": np.arange(num_frames), "step": np.arange(1, num_frames)}
    dims = {name: ["video", "time"] for name in STATISTICS}
    posterior = None
    if z is not None:
        posterior = {"z": z[None]}
        dims["z"] = ["video", "step", "z_dim"]
        coords["z_dim"] = np.arange(z.shape[-1])
    idata = az.from_dict(posterior=posterior, posterior_predictive={k: v[None] for k, v in predicted.items()},
                         observed_data=observed, coords=coords, dims=dims, attrs={"n_past": n_past})
    if posterior is not None:
        z_from = np.where(coords["step"] < n_past, "guide", "prior")
        idata.posterior = idata.posterior.assign_coords(z_from=("step", z_from))
    return idata


def ppc_coverage(idata: az.InferenceData, stat: str, hdi_prob: float = 0.9):
    """Per time step, the fraction of videos whose observed ``stat`` lies inside the central
    ``hdi_prob`` HDI of its samples: about ``hdi_prob`` for a calibrated predictive distribution,
    lower when the samples are too confident or biased. Returns an xarray DataArray over time."""
    bounds = az.hdi(idata.posterior_predictive[stat], hdi_prob=hdi_prob)[stat]  # (video, time, hdi)
    observed = idata.observed_data[stat]
    inside = (observed >= bounds.sel(hdi="lower")) & (observed <= bounds.sel(hdi="higher"))
    return inside.mean("video")


def plot_ppc_per_step(idata: az.InferenceData, stat: str = "row", videos=(0, 1, 2), hdi_prob: float = 0.9,
                      axes=None):
    """Per video: the observed ``stat`` per frame (black) against the samples' median and
    ``hdi_prob`` HDI band; a dotted line marks the first generated frame. Returns the axes."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, len(videos), figsize=(3.6 * len(videos), 3), squeeze=False)
        axes = axes[0]
    pp, obs = idata.posterior_predictive[stat], idata.observed_data[stat]
    time = pp["time"].values
    n_past = idata.observed_data.attrs.get("n_past")
    for ax, v in zip(axes, videos):
        draws = pp.sel(video=v)
        az.plot_hdi(time, draws, hdi_prob=hdi_prob, smooth=False, ax=ax,
                    fill_kwargs={"alpha": 0.3, "label": f"{hdi_prob:.0%} HDI of samples"})
        ax.plot(time, draws.median(("chain", "draw")), color="C1", lw=1, label="median sample")
        ax.plot(time, obs.sel(video=v), "k.-", lw=1, label="observed")
        if n_past is not None:
            ax.axvline(n_past - 0.5, color="grey", ls=":", lw=1)
        ax.set_title(f"video {v}: {stat}", fontsize=9)
        ax.set_xlabel("frame")
    axes[0].legend(fontsize=7)
    return axes


def plot_ppc_coverage(idata: az.InferenceData, stats=STATISTICS, hdi_prob: float = 0.9, ax=None, label=""):
    """``ppc_coverage`` per predicted frame for each statistic, with the nominal level."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3))
    n_past = idata.observed_data.attrs.get("n_past", 0)
    for stat in stats:
        cover = ppc_coverage(idata, stat, hdi_prob)
        time = cover["time"].values
        keep = time >= n_past
        ax.plot(time[keep], cover.values[keep], ".-", label=f"{label} {stat}".strip())
    ax.axhline(hdi_prob, color="k", ls=":", lw=1, label="nominal")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("frame (generated)")
    ax.set_ylabel(f"observed inside {hdi_prob:.0%} HDI")
    ax.legend(fontsize=7)
    return ax
