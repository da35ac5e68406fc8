"""The training objective: Pyro ELBOs and their reference-unit terms.

With a Gaussian likelihood of std sigma = sqrt(beta * D / 2) (D pixels per frame) and KL weight 1,

    -ELBO per video = sum_t [ MSE_t + beta * KL_t ] / beta + (T-1) * D/2 * log(2 pi sigma^2),

so the ELBO's optimum is the reference loss's (mean-pixel MSE + beta * KL) and ``reference_loss``
below reads it back in those units.
"""
from __future__ import annotations

import math

import torch
from pyro import poutine
from pyro.distributions.util import scale_and_mask
from pyro.infer import RenyiELBO, Trace_ELBO, TraceMeanField_ELBO
from pyro.infer.util import get_dependent_plate_dims, is_identically_zero, torch_sum
from torch import nn
from torch.distributions import kl_divergence

from svg_pyro.errors import InvalidInput
from svg_pyro.models.sites import FRAME, LATENT, site_step


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


class Traced(nn.Module):
    """One Pyro program of a module (its ``model`` or ``guide`` method) as a module that keeps the
    trace of its last run (for the logged terms); the module is a submodule, so it is trained."""

    def __init__(self, module: nn.Module, program: str):
        super().__init__()
        self.program = module
        self.method = program
        self.trace = None

    def forward(self, *args):
        tracer = poutine.trace(getattr(self.program, self.method))
        out = tracer(*args)
        self.trace = tracer.trace
        return out


def training_objective(svg, elbo: str, num_particles: int = 1):
    """Pyro's ELBO as a module, ``ELBO(model, guide)`` of ``svg.model`` and ``svg.guide``: its
    forward is the differentiable -ELBO of a batch (summed over videos) and its parameters are
    the SVG module's (named "model.program.*": the guide's copy of the module is the same one), so a
    torch optimizer and DistributedDataParallel apply to it as to any network. ``.model.trace``
    and ``.guide.trace`` hold the last execution."""
    return make_elbo(elbo, num_particles)(Traced(svg, "model"), Traced(svg, "guide"))
