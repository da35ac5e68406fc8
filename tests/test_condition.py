"""Conditioning on any frames: the model with a gap, the sequential Monte Carlo weights, and the
`svg-pyro condition` study."""
import json

import numpy as np
import pyro
import pytest
import torch
from pyro import poutine

from svg_pyro.cli import run_subcommand
from svg_pyro.config import preset
from svg_pyro.data.smmnist import StochasticMovingMNIST
from svg_pyro.errors import InvalidInput
from svg_pyro.evaluation.conditioning import position_error
from svg_pyro.evaluation.motion import found_positions
from svg_pyro.inference.condition import condition, parse_steps, run_filter
from svg_pyro.models.build import build_model
from svg_pyro.models.sites import frame_site, latent_site
from svg_pyro.trained import TrainedModel


def _tiny(**overrides):
    pyro.set_rng_seed(0)
    return build_model(preset("tiny", **overrides)).eval()


def test_a_frame_left_out_is_generated_and_fed_back_and_a_later_one_is_scored_and_fed(tiny):
    """observe [0, 1, 3] of 4 given frames, 5 in all: x_2 is generated (not observed) and its mean
    fed to step 3; x_3 is observed, scored and fed to step 4. The same run with frame 2 replaced by
    that mean and every given frame observed must give the same predictions under the same z's."""
    config, _, batch = tiny
    svg = _tiny()
    videos = batch[:, :4]
    with torch.no_grad():
        gap = poutine.trace(svg.model).get_trace(videos, 2, 5, observe=[0, 1, 3])
        assert not gap.nodes[frame_site(2)]["is_observed"] and gap.nodes[frame_site(3)]["is_observed"]
        assert not gap.nodes[frame_site(4)]["is_observed"]
        filled = videos.clone()
        filled[:, 2] = gap.nodes[frame_site(2)]["fn"].mean
        full = poutine.trace(poutine.replay(svg.model, trace=gap)).get_trace(filled, 2, 5)
    for t in (3, 4):
        torch.testing.assert_close(full.nodes[frame_site(t)]["fn"].mean, gap.nodes[frame_site(t)]["fn"].mean,
                                   rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(full.nodes[latent_site(4)]["value"], gap.nodes[latent_site(4)]["value"])
    with pytest.raises(InvalidInput, match="conditioning"):
        svg.model(videos, 2, 5, observe=[0, 3])  # frame 1 is a conditioning frame


def test_the_filter_weighs_each_particle_by_the_tempered_likelihood_of_the_observed_frame():
    """With the last frame observed, a particle's weight is p(x_T | its predicted mean)^temperature:
    computed here from the particles' frames with a hand-written Gaussian log density."""
    svg = TrainedModel.load("smmnist-1digit-svg-lp").svg
    video = StochasticMovingMNIST("test", 8, num_digits=1, num_videos=1, velocity="nonuniform")[0]
    temperature, particles = 3e-2, 64  # weights flat enough that the filter does not resample
    pyro.set_rng_seed(0)
    smc, ess = run_filter(svg, video, 5, [0, 1, 2, 3, 4, 7], 8, particles, temperature)
    predicted = smc.state[("frame", 7)].double()  # (P, C, H, W)
    sigma = svg.obs_scale
    log_lik = (-0.5 * ((video[7].double() - predicted) / sigma) ** 2 - np.log(sigma) - 0.5 * np.log(2 * np.pi))
    expected = torch.softmax(temperature * log_lik.sum((1, 2, 3)), 0)
    got = torch.softmax(smc.state._log_weights.double(), 0)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-7)
    assert expected.max() > 2 * expected.min()  # the weights are not uniform: the check has teeth
    assert ess == [pytest.approx(float(1 / (expected**2).sum()), rel=1e-4)]
    assert ess[0] > particles / 2


def test_the_guides_proposal_is_weighed_by_prior_over_guide():
    """With ``proposal="guide"`` z_T of the observed step comes from q(z_T | x_1:T). With the
    likelihood tempered away, the weights are then p(z_T) / q(z_T) alone: not uniform, unlike the
    prior's proposal, and equal to the ratio computed here from the stored z_T with the model's own
    prior network and the guide's network, run by hand over the particles' fed frames."""
    svg = TrainedModel.load("smmnist-1digit-svg-lp").svg
    video = StochasticMovingMNIST("test", 7, num_digits=1, num_videos=1, velocity="nonuniform")[0]
    observe = [0, 1, 2, 3, 4, 5]  # the first step after the conditioning frames is observed
    pyro.set_rng_seed(0)
    smc, ess = run_filter(svg, video, 5, observe, 7, 32, temperature=1e-12, proposal="guide", resample_below=1e-6)
    z = smc.state[("z", 5)]
    with torch.no_grad():
        h = svg.encoder(video[None].to(z.device))[0][0]  # (T, g): every frame 0..5 is a given one here
        prior_state = posterior_state = None
        for t in range(1, 5):  # after the conditioning frames, as the prefix runs them
            _, prior_state = svg.prior(h[t - 1][None], prior_state)
            posterior_state = svg.posterior.net(h[t][None], posterior_state)[2]
        prior, _ = svg.prior(h[4][None], prior_state)
        mu, sigma, _ = svg.posterior.net(h[5][None], posterior_state)
        log_ratio = prior.log_prob(z) - pyro.distributions.Normal(mu, sigma).to_event(1).log_prob(z)
    expected = torch.softmax(log_ratio.double(), 0)
    got = torch.softmax(smc.state._log_weights.double(), 0)
    torch.testing.assert_close(got, expected, rtol=1e-3, atol=1e-6)  # never resampled (resample_below)
    assert ess[0] == pytest.approx(float(1 / (expected**2).sum()), rel=1e-3)
    assert ess[0] < 31.9  # p / q is not constant: the guide's proposal is weighed as one


def test_the_kl_weight_scales_model_and_proposal_alike():
    """No frame observed after the conditioning ones: the prior proposal cancels the prior in every
    weight, also with a KL weight that scales the z sites (the draws are the model's own futures),
    so the ESS stays at the number of particles."""
    svg = _tiny(kl_weight=0.25)
    video = StochasticMovingMNIST("test", 5, num_digits=1, num_videos=1)[0]
    smc, ess = run_filter(svg, video, 2, [0, 1], 5, 16)
    weights = smc.state._log_weights  # normalised by the filter: log(1/16) each when all are equal
    assert ess == [] and torch.equal(weights, torch.full((16,), weights[0].item()))
    frames = torch.stack([smc.state[("frame", t)] for t in range(2, 5)], 1)
    assert frames.std(0).mean() > 0  # the particles differ: z is drawn for each


def test_steps_are_parsed_and_bad_requests_are_refused():
    assert parse_steps("0-4,14", 15) == [0, 1, 2, 3, 4, 14]
    assert parse_steps("0, 2-3", 4) == [0, 2, 3]
    for bad in ("0-4,15", "a-b", "", "-1"):
        with pytest.raises(InvalidInput, match="--observe"):
            parse_steps(bad, 15)
    with pytest.raises(InvalidInput, match="lower --particles"):
        condition(_tiny(), torch.zeros(1, 5, 1, 64, 64), 2, [0, 1, 4], 5, 2, particles=10**6)
    det = _tiny(model="det")
    with pytest.raises(InvalidInput, match="deterministic"):
        condition(det, torch.zeros(1, 5, 1, 64, 64), 2, [0, 1, 4], 5, 2)


def test_a_goal_frame_pulls_the_shipped_models_futures_toward_the_true_path():
    """The 1-digit SVG-LP, frames 0-4 and 9 given: the conditioned futures end nearer the true
    position at frame 9 than the unconditioned ones, and frames 0-4 are the given ones."""
    model = TrainedModel.load("smmnist-1digit-svg-lp")
    test = StochasticMovingMNIST("test", 10, num_digits=1, num_videos=4, velocity="nonuniform")
    videos = torch.stack([test[i] for i in range(4)])
    pyro.set_rng_seed(0)
    goal = model.condition(videos, [0, 1, 2, 3, 4, 9], samples=32, particles=128)
    free = model.sample(videos, samples=32)
    templates = [test.digits[torch.as_tensor(test.trajectory(i)["digit_ids"])] for i in range(4)]
    truth = np.stack([test.trajectory(i)["positions"] for i in range(4)]).swapaxes(1, 2)
    errors = {name: position_error(found_positions(f, templates), truth) for name, f in
              (("goal", goal.frames), ("free", free))}
    assert errors["goal"][:5].max() == 0  # the given frames, found where the generator put them
    assert errors["goal"][9] < 0.7 * errors["free"][9]
    assert goal.ess.shape == (4, 1) and (goal.ess >= 1).all()


def test_the_condition_command_writes_what_it_promises(tmp_path, capsys):
    out = tmp_path / "cond"
    assert run_subcommand("condition", ["--checkpoint", "smmnist-1digit-svg-lp", "--observe", "0-4,9", "--frames",
                                        "10", "--videos", "2", "--samples", "8", "--out", str(out),
                                        "--no-progress"]) == 0
    result = json.loads((out / "condition.json").read_text())
    assert result["observed"] == [0, 1, 2, 3, 4, 9] and result["gap"] == [5, 6, 7, 8]
    assert set(result["ess"]) == {"9"} and 1 <= result["ess"]["9"] <= 8
    for name in ("conditioned", "unconditioned"):
        steps = result["per_step"][name]
        assert len(steps["position_error"]) == 10 and steps["position_error"][:5] == [0.0] * 5
        assert len(steps["w1"]) == 9 and steps["w1"][:4] == [None] * 4  # steps 1-4 are given
        assert all(v is not None and v >= 0 for v in steps["w1"][4:])
    assert (out / "condition.png").stat().st_size > 10_000
    assert "position error" in capsys.readouterr().out
    # a deterministic model, or a conditioning frame left out: one line, nothing written
    assert run_subcommand("condition", ["--checkpoint", "smmnist-1digit-det", "--out", str(tmp_path / "det")]) == 2
    assert run_subcommand("condition", ["--checkpoint", "smmnist-1digit-svg-lp", "--observe", "0-2,9", "--frames",
                                        "10", "--out", str(tmp_path / "gap")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 2 and "deterministic" in err and "conditioning" in err
    assert not (tmp_path / "det").exists() and not (tmp_path / "gap").exists()
