"""The swappable frame likelihood and the tighter objectives (IWAE, vectorised particles), against
densities written out by hand and against Pyro's own RenyiELBO."""
import math

import pyro
import pytest
import torch
from pyro.infer import RenyiELBO

from svg_pyro.checkpoint import CheckpointError
from svg_pyro.config import Config, preset
from svg_pyro.data.datasets import training_batch
from svg_pyro.errors import InvalidInput
from svg_pyro.models.build import build_model
from svg_pyro.models.likelihoods import LIKELIHOODS
from svg_pyro.training.objective import make_elbo, training_objective
from svg_pyro.training.train import train
from tests.conftest import run_model_and_guide


def log_density_by_hand(likelihood, x, mean, scale):
    """log p(x | mean) of one frame per video, summed over pixels, from the textbook formulas."""
    x, mean = x.double(), mean.double()
    if likelihood == "gaussian":
        per_pixel = -0.5 * ((x - mean) / scale) ** 2 - math.log(scale) - 0.5 * math.log(2 * math.pi)
    elif likelihood == "laplace":
        per_pixel = -(x - mean).abs() / scale - math.log(2 * scale)
    else:  # Bernoulli with grey levels: -binary cross-entropy (torch clamps p away from 0 and 1)
        eps = torch.finfo(torch.float32).eps
        p = mean.clamp(eps, 1 - eps)
        per_pixel = x * torch.log(p) + (1 - x) * torch.log1p(-p)
    return per_pixel.flatten(-3).sum(-1)


@pytest.mark.parametrize("likelihood", LIKELIHOODS)
def test_frame_sites_score_the_frames_with_the_chosen_density(tiny_data, likelihood):
    config, train_set, _ = tiny_data
    config = preset("tiny", likelihood=likelihood)
    svg = build_model(config)
    svg.eval()
    batch = training_batch(train_set, 0, 0, config.batch_size)
    model_trace, _ = run_model_and_guide(svg, batch, config.n_past)
    pixels = batch[0, 0].numel()
    expected_scale = {"gaussian": math.sqrt(config.beta * pixels / 2), "laplace": config.beta * pixels,
                      "bernoulli": None}[likelihood]
    assert config.likelihood_scale == expected_scale
    for t in range(1, batch.shape[1]):
        site = model_trace.nodes[f"x_{t}"]
        mean = site["fn"].mean
        assert mean.shape == batch[:, t].shape and 0 <= mean.min() and mean.max() <= 1  # the decoder's output
        by_hand = log_density_by_hand(likelihood, batch[:, t], mean, expected_scale)
        torch.testing.assert_close(site["fn"].log_prob(batch[:, t]).double(), by_hand, rtol=1e-5, atol=1e-3)


def test_likelihood_choices_are_checked_and_fixed_by_the_checkpoint(tmp_path):
    with pytest.raises(InvalidInput, match="likelihood 'poisson' is unknown"):
        preset("tiny", likelihood="poisson")
    with pytest.raises(InvalidInput, match="bernoulli likelihood has none"):
        preset("tiny", likelihood="bernoulli", obs_scale=0.1)
    with pytest.raises(InvalidInput, match="num_particles must be at least 1"):
        preset("tiny", num_particles=0)
    assert Config.from_dict({}).likelihood == "gaussian"  # checkpoints written before the choice existed
    train(preset("tiny", likelihood="laplace", steps=2, sample_every=100), tmp_path, progress=False)
    with pytest.raises(CheckpointError, match="likelihood: checkpoint 'laplace', asked 'gaussian'"):
        train(preset("tiny", steps=4, sample_every=100), tmp_path, resume=True, progress=False)


@pytest.mark.parametrize("particles", [1, 4])
def test_iwae_loss_and_gradients_are_pyros_renyi_elbo_at_alpha_zero(tiny, particles):
    """Same seed, same draws: the value against RenyiELBO.loss and the gradients against
    RenyiELBO.loss_and_grads (its normalised-weight surrogate; it finds the parameters in Pyro's
    param store, where the model and guide register them)."""
    config, svg, batch = tiny
    svg.eval()
    renyi = RenyiELBO(alpha=0.0, num_particles=particles, vectorize_particles=particles > 1, max_plate_nesting=1)
    pyro.set_rng_seed(5)
    expected = renyi.loss_and_grads(svg.model, svg.guide, batch, config.n_past)
    params = [p for p in list(svg.parameters()) if p.grad is not None]
    expected_grads = [p.grad.clone() for p in params]
    for p in params:
        p.grad = None
    pyro.set_rng_seed(5)
    loss = make_elbo("iwae", particles).differentiable_loss(svg.model, svg.guide, batch, config.n_past)
    loss.backward()
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert len(params) > 10
    for p, g in zip(params, expected_grads):  # float32 sums in another order: 0.04% apart at most seen
        torch.testing.assert_close(p.grad, g, rtol=2e-3, atol=1e-3 * g.abs().max().item())


def test_iwae_with_one_particle_is_trace_elbo_and_more_particles_tighten_it(tiny):
    config, svg, batch = tiny
    svg.eval()
    with torch.no_grad():  # a posterior away from the prior, so that the weights differ
        svg.posterior.net.mu.bias.fill_(0.7)
    losses = {}
    for name, k in (("iwae", 1), ("trace", 1), ("iwae", 16), ("trace", 16)):
        pyro.set_rng_seed(2)
        losses[name, k] = make_elbo(name, k).differentiable_loss(svg.model, svg.guide, batch, config.n_past).item()
    assert losses["iwae", 1] == pytest.approx(losses["trace", 1], rel=1e-6)
    # the same 16 draws: log of the mean weight >= the mean of the log weights (Jensen), strictly here
    assert losses["iwae", 16] < losses["trace", 16] - 1e-3


@pytest.mark.parametrize("elbo", ["trace", "meanfield", "iwae"])
def test_vectorised_particles_of_the_deterministic_model_give_its_exact_loss(tiny_data, elbo):
    """Without a latent every particle is the same path: K particles average (or weight) K copies of
    one loss, so the value must not depend on K, through the training objective as used in training."""
    config, train_set, _ = tiny_data
    config = preset("tiny", model="det")
    svg = build_model(config)
    svg.eval()
    batch = training_batch(train_set, 0, 0, config.batch_size)
    one = training_objective(svg, elbo, 1)(batch, config.n_past).item()
    many = training_objective(svg, elbo, 5)(batch, config.n_past).item()
    assert many == pytest.approx(one, rel=1e-6)


@pytest.mark.parametrize("flags", [{"elbo": "iwae", "num_particles": 3}, {"likelihood": "bernoulli"}])
def test_training_with_another_objective_or_likelihood_lowers_its_loss(tmp_path, flags):
    rows = train(preset("tiny", steps=30, log_every=1, sample_every=100, **flags), tmp_path, progress=False)
    first, last = sum(r["loss"] for r in rows[:5]) / 5, sum(r["loss"] for r in rows[-5:]) / 5
    assert all(math.isfinite(r["loss"]) for r in rows) and last < first
