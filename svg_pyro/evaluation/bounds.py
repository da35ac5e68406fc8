"""Held-out likelihood bounds: the probability model's own score of test videos.

SVG's model defines a density of a video's frames x_2..x_T given x_1 (every frame observed, as in
training); with z the latent path, log p(x) = log E_q[p(x, z) / q(z | x)] for the guide q. Two lower
bounds of it, per video, in nats:

- the ELBO as trained (analytic KL): sum_t E_q[log p(x_t | x_<t, z_<=t)] - KL(q(z_t | x_<=t) || p(z_t | x_<t)),
  one draw of the path; with its per-step terms (log-likelihood and KL of each step);
- the importance-weighted bound (IWAE) with K paths drawn from the guide,
  log (1/K) sum_k p(x, z_k) / q(z_k | x), which rises with K towards log p(x) (Burda et al. 2016).

The deterministic model has no latent: its log p(x) is exact, and both bounds equal it. Densities
are those of the model without any KL weight (``poutine.scale``), with BatchNorm's running statistics
(each video's score is then independent of the others in its batch).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from pyro import poutine
from torch.distributions import kl_divergence
from tqdm.auto import tqdm

from svg_pyro.data.datasets import stack_videos
from svg_pyro.errors import InvalidInput
from svg_pyro.evaluation.metrics import interval
from svg_pyro.models.priors import fixed_prior, swap_prior
from svg_pyro.models.sites import FRAME, site_step


DEFAULT_PARTICLES = (1, 10, 100)


def _traces(model, guide, videos, n_past):
    guide_trace = poutine.trace(guide).get_trace(videos, n_past)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(videos, n_past)
    return model_trace, guide_trace


def _sites(trace):
    return [(name, site) for name, site in trace.nodes.items() if site["type"] == "sample" and site_step(name)]


@torch.no_grad()
def path_terms(svg, videos: torch.Tensor, n_past: int, model=None) -> dict:
    """One draw of the latent path per video. Returns per video (tensors of shape (B,) or (B, T-1)):
    ``log_weight`` = log p(x, z) - log q(z | x) at the draw and its share of each step,
    ``log_weight_t``, ``loglik_t`` = log p(x_t | ...) and
    ``kl_t`` = the analytic KL of step t (zero for the deterministic model). ``model``: ``svg.model``
    under an effect handler (a swapped prior), if given."""
    with svg.share_encodings(), poutine.block():
        model_trace, guide_trace = _traces(model or svg.model, svg.guide, videos, n_past)
    loglik, kl, log_weight, step_weight = [], [], 0.0, {}
    for name, site in _sites(model_trace):
        kind, t = site_step(name)
        term = site["fn"].log_prob(site["value"])  # no KL weight: the model's own density
        if kind == FRAME:
            loglik.append(term)
        else:
            posterior = guide_trace.nodes[name]
            kl.append(kl_divergence(posterior["fn"], site["fn"]))
            term = term - posterior["fn"].log_prob(site["value"])
        log_weight = log_weight + term
        step_weight[t] = step_weight.get(t, 0.0) + term
    loglik = torch.stack(loglik, -1)
    kl = torch.stack(kl, -1) if kl else torch.zeros_like(loglik)
    log_weight_t = torch.stack([step_weight[t] for t in sorted(step_weight)], -1)
    return {"log_weight": log_weight, "log_weight_t": log_weight_t, "loglik_t": loglik, "kl_t": kl}


def heldout_kl(svg, videos: torch.Tensor, n_past: int, prior: str | None = None) -> np.ndarray:
    """The analytic KL(q(z_t | x_1:t) || p(z_t | x_1:t-1)) per step t = 1..T-1, in nats, averaged over
    ``videos`` (B, T, C, H, W), all frames observed as in training. ``prior="fixed"``: against
    N(0, I) instead of the model's own prior (``swap_prior`` from step 1)."""
    if prior not in (None, "fixed"):
        raise InvalidInput(f"prior must be None (the model's own) or 'fixed', not {prior!r}")
    videos = videos.to(next(svg.parameters()).device)
    model = None if prior is None else swap_prior(fixed_prior, from_step=1)(svg.model)
    return path_terms(svg, videos, n_past, model)["kl_t"].mean(0).cpu().numpy()


def video_bounds(svg, videos: torch.Tensor, n_past: int, particles=DEFAULT_PARTICLES,
                 max_batch: int = 256) -> dict:
    """Bounds of each of ``videos`` (B, T, C, H, W): ``elbo`` (B,), its per-step ``loglik_t`` and
    ``kl_t`` (B, T-1) from the first draw, and ``iwae`` {K: (B,)} from the first K of max(particles)
    draws of the path, drawn ``max_batch`` video-paths at a time; ``iwae_t`` {K: (B, T-1)} splits
    each into its steps: the rise of the IWAE bound of the frames so far, log p(x_1..x_t | x_0),
    over that of x_1..x_{t-1}, an estimate of log p(x_t | x_<t) (the guide's z_t sees frames up to t
    only, so each prefix's weights are importance weights of that prefix). numpy arrays."""
    # without a latent every path is the same one, and it is the exact log-likelihood whatever K is
    count = max(particles) if svg.z_dim else 1
    per_call = max(1, max_batch // videos.shape[0])
    step_weights, first = [], None
    for start in range(0, count, per_call):
        k = min(per_call, count - start)
        terms = path_terms(svg, videos.repeat(k, *[1] * (videos.dim() - 1)), n_past)
        step_weights.append(terms["log_weight_t"].view(k, videos.shape[0], -1))
        if first is None:
            first = {key: value[: videos.shape[0]] for key, value in terms.items()}
    prefix = torch.cat(step_weights).double().cumsum(-1)  # (count, B, T-1): log weights of x_1..x_t
    iwae_t = {}
    for k in particles:
        bound = torch.logsumexp(prefix[:k], 0) - math.log(min(k, count))  # (B, T-1): IWAE of each prefix
        iwae_t[k] = torch.diff(bound, dim=-1, prepend=torch.zeros_like(bound[:, :1])).cpu().numpy()
    iwae = {k: steps.sum(-1) for k, steps in iwae_t.items()}
    loglik, kl = first["loglik_t"].double().cpu().numpy(), first["kl_t"].double().cpu().numpy()
    return {"elbo": loglik.sum(1) - kl.sum(1), "loglik_t": loglik, "kl_t": kl, "iwae": iwae, "iwae_t": iwae_t}


def summarize_bounds(bounds: dict) -> dict:
    """metrics.json's ``bound`` entry: means over videos with 95% intervals (1.96 std / sqrt(n)),
    per video and per predicted frame (T-1 frames), and the per-step terms."""
    frames = bounds["loglik_t"].shape[1]

    def stat(per_video):
        mean, half = interval(np.asarray(per_video)[:, None])
        return {"per_video": float(mean[0]), "per_frame": float(mean[0]) / frames,
                "ci95": float(half[0]), "ci95_per_frame": float(half[0]) / frames}

    steps = bounds["loglik_t"] - bounds["kl_t"]
    return {"frames": frames, "videos": len(bounds["elbo"]), "elbo": stat(bounds["elbo"]),
            "iwae": {str(k): stat(v) for k, v in bounds["iwae"].items()},
            "per_step_elbo": steps.mean(0).tolist(), "per_step_loglik": bounds["loglik_t"].mean(0).tolist(),
            "per_step_kl": bounds["kl_t"].mean(0).tolist()}


def heldout_bounds(svg, test_set, videos: int, n_past: int, particles=DEFAULT_PARTICLES,
                   max_batch: int = 256, progress: bool = False, desc: str = "bounds") -> dict:
    """``summarize_bounds`` of the first ``videos`` test videos (all their frames observed), in blocks
    of at most ``max_batch`` videos, ``max_batch`` video-paths per forward pass (memory)."""
    svg.eval()
    device = next(svg.parameters()).device
    block = max(1, min(videos, max_batch))
    parts = []
    for start in tqdm(range(0, videos, block), desc=desc, disable=not progress):
        batch = stack_videos(test_set, range(start, min(videos, start + block))).to(device)
        parts.append(video_bounds(svg, batch, n_past, particles, max_batch))
    merged = {key: np.concatenate([p[key] for p in parts]) for key in ("elbo", "loglik_t", "kl_t")}
    merged["iwae"] = {k: np.concatenate([p["iwae"][k] for p in parts]) for k in particles}
    return summarize_bounds(merged)
