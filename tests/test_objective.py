"""The Pyro ELBO against the reference loss written out by hand, and Pyro's own validators."""
import math

import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer.inspect import get_dependencies
from pyro.util import check_model_guide_match, check_site_shape

from svg_pyro.config import preset
from svg_pyro.models.build import build_model
from svg_pyro.training.objective import loss_terms, make_elbo
from tests.conftest import run_model_and_guide
from tests.reference import plain_negative_elbo, reference_step_loss


def reference_loss_by_hand(svg, videos, n_past, zs, beta):
    """Denton & Fergus's loss, sum_t [mean-pixel MSE + beta * KL_t], batch mean, for given z's."""
    h, skips = svg.encoder(videos)
    mse = kl = 0.0
    post_state = prior_state = pred_state = None
    for t in range(1, videos.shape[1]):
        mu_q, sig_q, post_state = svg.posterior.net(h[:, t], post_state)
        mu_p, sig_p, prior_state = svg.prior.net(h[:, t - 1], prior_state)
        kl = kl + (torch.log(sig_p / sig_q) + (sig_q**2 + (mu_q - mu_p) ** 2) / (2 * sig_p**2) - 0.5).sum(-1).mean()
        g, pred_state = svg.predictor(torch.cat([h[:, t - 1], zs[t]], -1), pred_state)
        x_hat = svg.decoder(g, [s[:, svg.skip_index(t, n_past)] for s in skips])
        mse = mse + ((x_hat - videos[:, t]) ** 2).mean(dim=(1, 2, 3)).mean()
    return (mse + beta * kl).item()


def test_meanfield_elbo_is_reference_loss_over_beta_plus_constant(tiny):
    config, svg, batch = tiny
    svg.eval()  # fixed BatchNorm statistics: every network call is deterministic
    guide_trace = poutine.trace(svg.guide).get_trace(batch, config.n_past)
    zs = {int(n[2:]): s["value"] for n, s in guide_trace.nodes.items() if n.startswith("z_")}
    neg_elbo = make_elbo("meanfield").loss(svg.model, poutine.replay(svg.guide, trace=guide_trace), batch, config.n_past)

    B, T = batch.shape[:2]
    D = batch[0, 0].numel()
    sigma2 = config.beta * D / 2
    assert math.isclose(sigma2, 0.2048)  # 1e-4 * 64 * 64 / 2: beta and frame size of the SM-MNIST reference
    const = (T - 1) * D / 2 * math.log(2 * math.pi * sigma2)
    expected = reference_loss_by_hand(svg, batch, config.n_past, zs, config.beta) / config.beta + const
    assert neg_elbo / B == pytest.approx(expected, rel=1e-5)


def test_plain_torch_twin_matches_pyro(tiny):
    config, svg, batch = tiny
    svg.eval()
    torch.manual_seed(3)
    pyro_loss = make_elbo("meanfield").loss(svg.model, svg.guide, batch, config.n_past)
    torch.manual_seed(3)  # same z draws: both take one standard normal per step, in step order
    plain = plain_negative_elbo(svg, batch, config.n_past).item()
    assert plain == pytest.approx(pyro_loss, rel=1e-5)


def test_reference_step_transcription_equals_the_elbo_in_reference_units(tiny_data):
    """The reference code's step (frame-by-frame encoding, skips frozen at x_{n_past-2}) and Pyro's
    -ELBO with skip_frame="second-last" are the same objective: loss = (-ELBO / B - const) * beta."""
    config, train_set, _ = tiny_data
    config = preset("tiny", skip_frame="second-last", n_past=3)
    svg = build_model(config)
    svg.eval()  # BatchNorm running statistics: per-frame and batched encodings agree
    from svg_pyro.data.datasets import training_batch

    batch = training_batch(train_set, 0, 1, config.batch_size)
    torch.manual_seed(5)
    neg_elbo = make_elbo("meanfield").loss(svg.model, svg.guide, batch, config.n_past)
    torch.manual_seed(5)  # one standard normal per step, in step order, in both
    loss, mse_t, kl_t = reference_step_loss(svg, batch, config.n_past, config.beta)
    B, T = batch.shape[:2]
    D = batch[0, 0].numel()
    const = (T - 1) * D / 2 * math.log(2 * math.pi * config.beta * D / 2)
    assert len(mse_t) == len(kl_t) == T - 1
    assert loss.item() == pytest.approx((neg_elbo / B - const) * config.beta, rel=1e-5)
    assert loss.item() == pytest.approx(sum(mse_t) + config.beta * sum(kl_t), rel=1e-6)


@pytest.mark.parametrize("kl_weight", [1.0, 0.3])
def test_trace_elbo_agrees_with_analytic_kl_in_expectation(kl_weight):
    config = preset("tiny", kl_weight=kl_weight, batch_size=2, n_future=2)
    svg = build_model(config)
    svg.eval()
    with torch.no_grad():  # move the posterior away from the prior so the KL is worth estimating
        svg.posterior.net.mu.bias.fill_(0.7)
    from svg_pyro.data.datasets import make_datasets, training_batch

    batch = training_batch(make_datasets(config)[0], 0, 0, config.batch_size)
    diffs = []
    for seed in range(8):
        losses = []
        for name in ("trace", "meanfield"):
            pyro.set_rng_seed(seed)  # same z draws: the reconstruction terms cancel
            elbo = make_elbo(name, num_particles=64, vectorize_particles=True)
            losses.append(elbo.loss(svg.model, svg.guide, batch, config.n_past))
        diffs.append(losses[0] - losses[1])
    diffs = torch.tensor(diffs, dtype=torch.float64)
    # Analytic KL of the batch for scale: the estimate must be unbiased against it.
    model_trace, guide_trace = run_model_and_guide(svg, batch, config.n_past)
    kl_total = loss_terms(model_trace, guide_trace)["kl"] * config.batch_size * kl_weight
    assert kl_total > 1.0
    se = diffs.std() / math.sqrt(len(diffs))
    assert abs(diffs.mean()) < 4 * se + 1e-3 * kl_total


def test_pyro_validators_model_guide_match_and_site_shapes(tiny):
    config, svg, batch = tiny
    model_trace, guide_trace = run_model_and_guide(svg, batch, config.n_past)
    check_model_guide_match(model_trace, guide_trace, max_plate_nesting=1)
    for trace in (model_trace, guide_trace):
        trace.compute_log_prob()
        for site in trace.nodes.values():
            if site["type"] == "sample":
                check_site_shape(site, max_plate_nesting=1)
    T = batch.shape[1]
    assert [n for n in guide_trace.stochastic_nodes if n.startswith("z_")] == [f"z_{t}" for t in range(1, T)]
    assert model_trace.nodes["z_1"]["fn"].event_shape == (config.z_dim,)
    assert model_trace.nodes["x_1"]["fn"].batch_shape == (config.batch_size,)
    # Validation also runs inside SVI; no warning must come out of a step.
    with pyro.validation_enabled(True):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("error")
            make_elbo("trace").loss(svg.model, svg.guide, batch, config.n_past)


def test_prior_has_no_latent_parents(tiny):
    config, svg, batch = tiny
    deps = get_dependencies(svg.model, (batch, config.n_past))["prior_dependencies"]
    T = batch.shape[1]
    for t in range(1, T):
        assert deps[f"z_{t}"] == {f"z_{t}": set()}  # depends on observed frames only
        assert set(deps[f"x_{t}"]) == {f"x_{t}"} | {f"z_{s}" for s in range(1, t + 1)}


def test_kl_weight_must_scale_both_model_and_guide(tiny):
    """The scaled ELBO equals recon + w * KL only because the guide is scaled too."""
    config = preset("tiny", kl_weight=0.25)
    svg = build_model(config)
    svg.eval()
    with torch.no_grad():
        svg.posterior.net.mu.bias.fill_(0.7)
    from svg_pyro.data.datasets import make_datasets, training_batch

    batch = training_batch(make_datasets(config)[0], 0, 0, config.batch_size)
    guide_trace = poutine.trace(svg.guide).get_trace(batch, config.n_past)
    replayed = poutine.replay(svg.guide, trace=guide_trace)
    scaled = make_elbo("meanfield").loss(svg.model, replayed, batch, config.n_past)
    svg.kl_weight = 1.0  # one weight for the z sites of model and guide
    unscaled = make_elbo("meanfield").loss(svg.model, replayed, batch, config.n_past)
    model_trace = poutine.trace(poutine.replay(svg.model, trace=guide_trace)).get_trace(batch, config.n_past)
    kl = loss_terms(model_trace, guide_trace)["kl"] * config.batch_size
    assert kl > 5
    assert unscaled - scaled == pytest.approx(0.75 * kl, abs=0.02)  # float32 losses of ~1e4


@pytest.mark.parametrize("name", ["trace", "meanfield"])
def test_the_on_device_elbos_equal_pyros_own_without_reading_the_device(tiny, monkeypatch, name):
    """make_elbo's classes give the loss and gradients of Pyro's Trace_ELBO / TraceMeanField_ELBO on
    the same draws, and read no tensor back to the host while doing it."""
    from pyro.infer import Trace_ELBO, TraceMeanField_ELBO

    config, svg, batch = tiny
    svg.eval()
    params = list(svg.parameters())

    def loss_and_grads(elbo):
        torch.manual_seed(3)
        for p in params:
            p.grad = None
        loss = elbo.differentiable_loss(svg.model, svg.guide, batch, config.n_past)
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in params]

    pyros = {"trace": Trace_ELBO, "meanfield": TraceMeanField_ELBO}[name](max_plate_nesting=1)
    expected, expected_grads = loss_and_grads(pyros)
    reads = []
    for method in ("item", "tolist", "__float__", "__bool__"):
        original = getattr(torch.Tensor, method)
        monkeypatch.setattr(torch.Tensor, method,
                            lambda self, *a, _original=original, **k: reads.append(1) or _original(self, *a, **k))
    with pyro.validation_enabled(False):
        loss, grads = loss_and_grads(make_elbo(name))
    monkeypatch.undo()
    assert reads == []
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert all(torch.allclose(g, e, rtol=1e-5, atol=1e-7) for g, e in zip(grads, expected_grads))


def test_the_on_device_trace_elbo_refuses_a_guide_it_cannot_differentiate():
    import pyro.distributions as dist

    def model():
        pyro.sample("b", dist.Bernoulli(0.5))

    def guide():
        pyro.sample("b", dist.Bernoulli(pyro.param("p", torch.tensor(0.3))))

    with pytest.raises(NotImplementedError, match="'b' is not reparameterised"):
        make_elbo("trace").differentiable_loss(model, guide)
