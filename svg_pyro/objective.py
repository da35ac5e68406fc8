"""The training objective: Pyro ELBOs, their reference-unit terms, and a plain-torch twin.

With a Gaussian likelihood of std sigma = sqrt(beta * D / 2) (D pixels per frame) and KL weight 1,

    -ELBO per video = sum_t [ MSE_t + beta * KL_t ] / beta + (T-1) * D/2 * log(2 pi sigma^2),

so the ELBO's optimum is the reference loss's (mean-pixel MSE + beta * KL) and ``reference_loss``
below reads it back in those units.
"""
from __future__ import annotations

import math

import pyro
import torch
from pyro import poutine
from pyro.distributions.util import scale_and_mask
from pyro.infer import RenyiELBO, Trace_ELBO, TraceMeanField_ELBO
from pyro.infer.util import get_dependent_plate_dims, is_identically_zero, torch_sum
from torch import nn
from torch.distributions import kl_divergence

from svg_pyro.errors import InvalidInput
from svg_pyro.sites import FRAME, LATENT, site_step


class _LossOnDevice:
    """Pyro's ELBO whose ``differentiable_loss`` (what training backpropagates) never reads the
    device: Pyro's own reads the loss back to the host (``torch_item``, once per particle or per
    site) and checks it for NaN forward and backward, and on a GPU each read waits for the device.
    ``training_step`` checks finiteness itself, once, before the update. The value and gradients
    are those of Pyro's class; SVG's guide is reparameterised at every site, where the surrogate
    loss is the loss itself (a site that is not raises)."""

    def differentiable_loss(self, model, guide, *args, **kwargs):
        loss = 0.0
        for model_trace, guide_trace in self._get_traces(model, guide, args, kwargs):
            loss = loss - self._elbo_particle(model_trace, guide_trace) / self.num_particles
        return loss


class TraceOnDevice_ELBO(_LossOnDevice, Trace_ELBO):
    """Trace_ELBO: log p(x, z) - log q(z) at the guide's draw (a Monte-Carlo KL)."""

    def _elbo_particle(self, model_trace, guide_trace):
        elbo = 0.0
        for site in model_trace.nodes.values():
            if site["type"] == "sample":
                elbo = elbo + site["log_prob_sum"]
        for name, site in guide_trace.nodes.items():
            if site["type"] == "sample":
                if not is_identically_zero(site["score_parts"].score_function):
                    raise NotImplementedError(f"guide site {name!r} is not reparameterised")
                elbo = elbo - site["score_parts"].entropy_term.sum()
        return elbo


class TraceMeanFieldOnDevice_ELBO(_LossOnDevice, TraceMeanField_ELBO):
    """TraceMeanField_ELBO: log p(x | z) at the guide's draw minus the analytic KL(q || p)."""

    def _elbo_particle(self, model_trace, guide_trace):
        elbo = 0.0
        for name, site in model_trace.nodes.items():
            if site["type"] != "sample":
                continue
            if site["is_observed"]:
                elbo = elbo + site["log_prob_sum"]
            else:
                posterior = guide_trace.nodes[name]
                kl = kl_divergence(posterior["fn"], site["fn"])
                elbo = elbo - scale_and_mask(kl, scale=posterior["scale"], mask=posterior["mask"]).sum()
        return elbo


class IWAE_ELBO(RenyiELBO):
    """The importance-weighted bound (Burda et al. 2016; Pyro's ``RenyiELBO`` with alpha = 0), per
    video: log (1/K) sum_k p(x, z_k) / q(z_k | x) over K = ``num_particles`` latent paths from the
    guide. Its ``differentiable_loss`` (which ``RenyiELBO`` lacks) is minus that bound summed over
    videos, kept on the device; with a reparameterised guide its gradient is the one of
    ``RenyiELBO.loss_and_grads``. With K = 1 it is Trace_ELBO's estimate."""

    def __init__(self, num_particles: int = 1, vectorize_particles: bool = False, max_plate_nesting: int = 1):
        super().__init__(alpha=0.0, num_particles=num_particles, vectorize_particles=vectorize_particles,
                         max_plate_nesting=max_plate_nesting)

    def differentiable_loss(self, model, guide, *args, **kwargs):
        log_weights = []  # per particle: log p(x, z_k) - log q(z_k | x), one value per video
        for model_trace, guide_trace in self._get_traces(model, guide, args, kwargs):
            sum_dims = get_dependent_plate_dims(model_trace.nodes.values())
            log_weight = 0.0
            for trace, sign in ((model_trace, 1), (guide_trace, -1)):
                for name, site in trace.nodes.items():
                    if site["type"] != "sample":
                        continue
                    if sign < 0 and not is_identically_zero(site["score_parts"].score_function):
                        raise NotImplementedError(f"guide site {name!r} is not reparameterised")
                    log_weight = log_weight + sign * torch_sum(site["log_prob"], sum_dims)
            log_weights.append(log_weight)
        vectorized = self.vectorize_particles and self.num_particles > 1
        log_weights = log_weights[0] if vectorized else torch.stack(log_weights)
        return -(torch.logsumexp(log_weights, 0) - math.log(self.num_particles)).sum()


def make_elbo(name: str, num_particles: int = 1, vectorize_particles: bool | None = None):
    """'trace': Monte-Carlo KL (Trace_ELBO); 'meanfield': analytic KL (TraceMeanField_ELBO); 'iwae':
    the importance-weighted bound (``IWAE_ELBO``). All keep the loss on the device. Several
    particles are vectorised (one pass of the networks) unless ``vectorize_particles`` is False."""
    cls = {"trace": TraceOnDevice_ELBO, "meanfield": TraceMeanFieldOnDevice_ELBO, "iwae": IWAE_ELBO}.get(name)
    if cls is None:
        raise InvalidInput(f"unknown ELBO {name!r}; choose 'trace', 'meanfield' or 'iwae'")
    if vectorize_particles is None:
        vectorize_particles = num_particles > 1
    return cls(num_particles=num_particles, vectorize_particles=vectorize_particles, max_plate_nesting=1)


def loss_terms(model_trace, guide_trace) -> dict:
    """Reference-unit terms of one model/guide execution, averaged over videos (and particles):
    ``mse`` = sum over steps of the mean-pixel squared error of the predicted mean (the likelihood's
    mean, whatever its family), ``kl`` = sum over
    steps of the analytic KL(q || p) in nats, and the per-step values ``mse_t``, ``kl_t``.
    Computed on the device and brought to the host at once (one synchronisation on a GPU)."""
    mse_t, kl_t = [], []
    for name, site in model_trace.nodes.items():
        step = site_step(name)
        if site["type"] != "sample" or step is None:
            continue
        kind = step[0]
        if site["is_observed"] and kind == FRAME:
            err = (site["value"] - site["fn"].mean).detach() ** 2
            mse_t.append(err.flatten(-3).mean(-1).mean())
        elif kind == LATENT and name in guide_trace.nodes:
            kl_t.append(kl_divergence(guide_trace.nodes[name]["fn"], site["fn"]).detach().mean())
    values = torch.stack(mse_t + kl_t).tolist() if mse_t or kl_t else []
    mse_t, kl_t = values[:len(mse_t)], values[len(mse_t):]
    return {"mse": sum(mse_t), "kl": sum(kl_t), "mse_t": mse_t, "kl_t": kl_t}


def kl_per_step(terms: dict) -> float:
    """KL(q || p) in nats per transition, averaged over steps and videos (the latent's use)."""
    return terms["kl"] / max(len(terms["kl_t"]), 1)


def reference_loss(terms: dict, beta: float) -> float:
    return terms["mse"] + beta * terms["kl"]


def gaussian_nll(x, x_hat, sigma: float) -> torch.Tensor:
    """-log N(x | x_hat, sigma^2 I), summed over (C, H, W)."""
    d = x.shape[-3:].numel()
    return (0.5 * ((x - x_hat) / sigma) ** 2).flatten(-3).sum(-1) + d * (math.log(sigma) + 0.5 * math.log(2 * math.pi))


def plain_negative_elbo(svg, posterior, videos: torch.Tensor, n_past: int) -> torch.Tensor:
    """The same single-sample -ELBO (analytic KL) as TraceMeanField_ELBO, in plain torch, of a
    teacher-forced model (``feed`` "true").

    Summed over the batch, like Pyro's. Used by the overhead benchmark and the tests."""
    h, skips = svg.encoder(videos)
    h, skips = h.unbind(1), [s.unbind(1) for s in skips]  # as SVG.model: split the time axis once
    total = videos.new_zeros(())
    prior_state = predictor_state = posterior_state = None
    skip_terms = {}
    for t in range(1, videos.shape[1]):
        h_prev = h[t - 1]
        if svg.prior is None:
            predictor_input = h_prev
        else:
            mu, sigma, posterior_state = posterior.net(h[t], posterior_state)
            z = mu + sigma * torch.randn_like(mu)
            prior, prior_state = svg.prior(h_prev, prior_state)
            p_mu, p_sigma = prior.base_dist.loc, prior.base_dist.scale
            kl = (torch.log(p_sigma / sigma) + (sigma**2 + (mu - p_mu) ** 2) / (2 * p_sigma**2) - 0.5).sum(-1)
            total = total + svg.kl_weight * kl.sum()
            predictor_input = torch.cat([h_prev, z], -1)
        g, predictor_state = svg.predictor(predictor_input, predictor_state)
        skip = svg.skip_index(t, n_past)  # teacher forced: "previous" is the true x_{t-1}
        if skip is not None and skip not in skip_terms:
            skip_terms[skip] = svg.decoder.skip_terms([s[skip] for s in skips])
        x_hat = svg.decoder.decode(g, None if skip is None else skip_terms[skip])
        total = total + gaussian_nll(videos[:, t], x_hat, svg.obs_scale).sum()
    return total


def reference_step_loss(svg, posterior, videos: torch.Tensor, n_past: int, beta: float):
    """The reference code's training loss, transcribed in plain torch on this project's networks.

    Unlike the ELBO above it encodes frame by frame (BatchNorm statistics of each step's B frames,
    and the target frame encoded a second time for the posterior), keeps the skips of x_{t-1} only
    while t < n_past (so x_{n_past-2} afterwards), and is in reference units: sum over steps of
    mean-pixel MSE + beta * KL, KL summed over z dims and averaged over the batch.
    Returns (loss, mse_t, kl_t) with per-step lists of floats."""
    mse_t, kl_t = [], []
    loss = videos.new_zeros(())
    prior_state = predictor_state = posterior_state = None
    skips = None
    for t in range(1, videos.shape[1]):
        h_prev, prev_skips = svg.encoder(videos[:, t - 1])
        h_target, _ = svg.encoder(videos[:, t])
        if t < n_past or skips is None:
            skips = prev_skips
        mu, sigma, posterior_state = posterior.net(h_target, posterior_state)
        z = mu + sigma * torch.randn_like(mu)
        p_mu, p_sigma, prior_state = svg.prior.net(h_prev, prior_state)
        kl = (torch.log(p_sigma / sigma) + (sigma**2 + (mu - p_mu) ** 2) / (2 * p_sigma**2) - 0.5).sum(-1).mean()
        g, predictor_state = svg.predictor(torch.cat([h_prev, z], -1), predictor_state)
        mse = torch.nn.functional.mse_loss(svg.decoder.decode_concatenated(g, skips), videos[:, t])
        loss = loss + mse + beta * kl
        mse_t.append(mse.item())
        kl_t.append(kl.item())
    return loss, mse_t, kl_t


class Traced(nn.Module):
    """A Pyro program as a module that keeps the trace of its last run (for the logged terms)."""

    def __init__(self, program):
        super().__init__()
        self.program = program  # registered as a submodule when it is one, so it is trained
        self.trace = None

    def forward(self, *args):
        tracer = poutine.trace(self.program)
        out = tracer(*args)
        self.trace = tracer.trace
        return out


def training_objective(svg, guide, elbo: str, num_particles: int = 1):
    """Pyro's ELBO as a module, ``ELBO(model, guide)``: its forward is the differentiable -ELBO of
    a batch (summed over videos) and its parameters are the model's and the guide's, so a torch
    optimizer and DistributedDataParallel apply to it as to any network. ``.model.trace`` and
    ``.guide.trace`` hold the last execution."""
    return make_elbo(elbo, num_particles)(Traced(svg), Traced(guide))
