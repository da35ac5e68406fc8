"""Held-out bounds (svg_pyro.evaluation.bounds) against exact values: a linear-Gaussian program with SVG's sites,
whose log p(x) and ELBO are closed-form, and a tiny SVG whose one-step likelihood is integrated by
quadrature."""
import contextlib
import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine

from svg_pyro.config import preset
from svg_pyro.data.datasets import make_datasets
from svg_pyro.evaluation.bounds import path_terms, video_bounds
from svg_pyro.models.build import build_model
from svg_pyro.models.sites import frame_site, latent_site


A, S = 2.0, 0.5  # x_t = A z_t + N(0, S^2), z_t ~ N(0, 1)
Q_SCALE, Q_GAIN = 0.8, 0.3  # the guide q(z_t | x_t) = N(Q_GAIN x_t, Q_SCALE^2): far from the true posterior


class LinearGaussian:
    """SVG's site names and plate on a model whose marginal is known: p(x_t) = N(0, A^2 + S^2)."""

    z_dim = 1  # one latent per step, as SVG's ``z_dim`` says

    def share_encodings(self):
        return contextlib.nullcontext()

    def model(self, videos, n_past):
        with pyro.plate("videos", videos.shape[0], dim=-1):
            for t in range(1, videos.shape[1]):
                z = pyro.sample(latent_site(t), dist.Normal(torch.zeros_like(videos[:, t]), 1.0).to_event(1))
                pyro.sample(frame_site(t), dist.Normal(A * z, S).to_event(1), obs=videos[:, t])

    @staticmethod
    def guide(videos, n_past):
        with pyro.plate("videos", videos.shape[0], dim=-1):
            for t in range(1, videos.shape[1]):
                pyro.sample(latent_site(t), dist.Normal(Q_GAIN * videos[:, t], Q_SCALE).to_event(1))


def test_the_bounds_of_a_linear_gaussian_program_against_its_closed_forms():
    x = torch.tensor([[[0.0], [1.5], [-0.7]]], dtype=torch.float64)  # one video: x_0 given, x_1, x_2 scored
    exact = dist.Normal(0.0, math.sqrt(A**2 + S**2)).log_prob(x[0, 1:, 0]).sum().item()
    m, v = Q_GAIN * x[0, 1:, 0], Q_SCALE**2  # E_q log N(x; A z, S^2) - KL(N(m, v) || N(0, 1)), per step
    elbo = (dist.Normal(0.0, S).log_prob(x[0, 1:, 0] - A * m) - A**2 * v / (2 * S**2)
            - 0.5 * (v + m**2 - 1 - math.log(v))).sum().item()
    assert elbo < exact - 0.5  # a guide this far off leaves a gap the bounds must close

    pyro.set_rng_seed(0)
    repeats = 200
    bounds = video_bounds(LinearGaussian(), x.expand(repeats, -1, -1), 1,
                          particles=(1, 10, 1000), max_batch=20_000)
    # the ELBO (analytic KL, one draw of log p(x | z)) is unbiased for the closed form
    assert bounds["elbo"].mean() == pytest.approx(elbo, abs=4 * bounds["elbo"].std() / math.sqrt(repeats))
    assert bounds["kl_t"][0] == pytest.approx((0.5 * (v + m**2 - 1 - math.log(v))).numpy())
    iwae = {k: b.mean() for k, b in bounds["iwae"].items()}
    assert iwae[1] == pytest.approx(elbo, abs=4 * bounds["iwae"][1].std() / math.sqrt(repeats))
    assert iwae[1] < iwae[10] < iwae[1000]
    # below log p(x) in expectation (up to this mean's noise), and within 0.02 nats of it at K = 1000
    assert iwae[1000] < exact + 4 * bounds["iwae"][1000].std() / math.sqrt(repeats)
    assert iwae[1000] == pytest.approx(exact, abs=0.02)


def test_a_tiny_svgs_bounds_meet_its_likelihood_integrated_over_the_latent(tiny_data):
    """One latent step (z_dim 1, 2 frames): log p(x_2 | x_1) = log of the integral of
    p(x_2 | x_1, z) p(z | x_1) over z, by the trapezoid rule (float64)."""
    torch.manual_seed(0)
    config = preset("tiny", z_dim=1, n_future=1)  # scored below on 2-frame videos with n_past 1
    svg = build_model(config)
    svg.double().eval()
    video = make_datasets(config)[1][0][None, :2].double()
    prior = poutine.trace(svg.model).get_trace(video, 1).nodes[latent_site(1)]["fn"].base_dist
    grid = torch.linspace(-10, 10, 1001, dtype=torch.float64) * prior.scale.item() + prior.loc.item()
    with torch.no_grad():
        trace = poutine.trace(poutine.condition(svg.model, data={latent_site(1): grid[:, None]})).get_trace(
            video.expand(len(grid), -1, -1, -1, -1), 1)
    log_joint = sum(s["fn"].log_prob(s["value"]) for s in trace.nodes.values() if s["type"] == "sample")
    log_weighted = log_joint + torch.log(grid[1] - grid[0])
    log_weighted[[0, -1]] += math.log(0.5)  # the trapezoid rule's end points
    exact = torch.logsumexp(log_weighted, 0).item()
    torch.manual_seed(1)
    bounds = video_bounds(svg, video.expand(10, -1, -1, -1, -1), 1, particles=(1, 100), max_batch=500)
    # an untrained decoder barely depends on z, so the bounds are tight: this checks that they score
    # the same frames with the same densities as the integral (a frame missed would cost ~1400 nats)
    assert bounds["elbo"].mean() <= exact + 1e-6
    assert bounds["iwae"][100].mean() == pytest.approx(exact, abs=2e-3)


def test_the_deterministic_models_bounds_are_its_exact_likelihood(tiny):
    config, _, batch = tiny
    svg = build_model(preset("tiny", model="det"))
    svg.eval()
    bounds = video_bounds(svg, batch, config.n_past, particles=(1, 5))
    with torch.no_grad():
        trace = poutine.trace(svg.model).get_trace(batch, config.n_past)
    exact = sum(s["fn"].log_prob(s["value"]) for s in trace.nodes.values() if s["type"] == "sample")
    assert bounds["elbo"] == pytest.approx(exact.numpy()) and bounds["kl_t"].sum() == 0
    assert bounds["iwae"][1] == pytest.approx(exact.numpy()) and bounds["iwae"][5] == pytest.approx(exact.numpy())


def test_per_step_terms_add_up_to_the_elbo_and_the_kl_is_the_closed_form(tiny):
    config, svg, batch = tiny
    svg.eval()
    torch.manual_seed(0)
    terms = path_terms(svg, batch, config.n_past)
    assert terms["loglik_t"].shape == terms["kl_t"].shape == (batch.shape[0], batch.shape[1] - 1)
    g = poutine.trace(svg.guide).get_trace(batch, config.n_past).nodes[latent_site(1)]["fn"].base_dist
    p = poutine.trace(svg.model).get_trace(batch, config.n_past).nodes[latent_site(1)]["fn"].base_dist
    by_hand = (torch.log(p.scale / g.scale) + (g.scale**2 + (g.loc - p.loc) ** 2) / (2 * p.scale**2) - 0.5).sum(-1)
    torch.testing.assert_close(terms["kl_t"][:, 0], by_hand.detach())  # q and p of step 1 do not depend on z
    bounds = video_bounds(svg, batch, config.n_past, particles=(1,))
    assert bounds["elbo"] == pytest.approx((bounds["loglik_t"] - bounds["kl_t"]).sum(1))
