"""The decoder's skip frame (last, second-last, previous, none) and what training feeds the
recurrence (true frames or the model's own predictions), each against a hand-written loop."""
import contextlib

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer.inspect import get_dependencies

from svg_pyro.config import preset
from svg_pyro.data.smmnist import StochasticMovingMNIST
from svg_pyro.errors import InvalidInput
from svg_pyro.evaluation.bounds import path_terms
from svg_pyro.evaluation.motion import MotionProbe
from svg_pyro.models.build import build_model
from svg_pyro.models.sites import latent_site
from svg_pyro.training.train import train


def _lively(*modules):
    """PyTorch's default initialisation in place of the reference's N(0, 0.02): an untrained tiny
    model then draws frames that differ with its inputs, not a flat grey."""
    torch.manual_seed(0)
    for module in modules:
        for m in module.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear, torch.nn.LSTMCell)):
                m.reset_parameters()
        module.eval()


def _det(skip_frame, feed="true"):
    svg = build_model(preset("tiny", model="det", skip_frame=skip_frame, feed=feed))
    _lively(svg)
    return svg


def _decode_by_hand(decoder, g, skips):
    """The decoder as plain layers: each stage on [features, skip] concatenated, or on the features."""
    x = decoder.head(g[:, :, None, None])
    for stage, skip in zip(decoder.stages, reversed(skips) if skips is not None else [None] * len(decoder.stages)):
        x = stage(x if skip is None else torch.cat([x, skip], 1))
    return x


def _det_by_hand(svg, videos, n_past, skip_frame, feed):
    """The deterministic model's predicted means of x_1..x_{T-1}, written out step by step: the input
    and the skips of step t come from the frame fed at t (true, or the previous prediction)."""
    fed = videos[:, 0]
    state, out = None, []
    for t in range(1, videos.shape[1]):
        h, skips = svg.encoder(fed)
        if skip_frame == "last":  # a fixed conditioning frame once the conditioning frames are used up
            skips = svg.encoder(videos[:, min(t - 1, n_past - 1)])[1]
        g, state = svg.predictor(h, state)
        x_hat = _decode_by_hand(svg.decoder, g, None if skip_frame == "none" else skips)
        out.append(x_hat)
        fed = x_hat if (feed == "own" and t >= n_past) else videos[:, t]
    return torch.stack(out, 1)


@pytest.mark.parametrize("skip_frame", ["last", "previous", "none"])
@pytest.mark.parametrize("feed", ["true", "own"])
def test_the_model_is_the_hand_written_loop(tiny, skip_frame, feed):
    _, _, batch = tiny
    svg = _det(skip_frame, feed)
    with torch.no_grad():
        got = svg.model(batch, 2)
        expected = _det_by_hand(svg, batch, 2, skip_frame, feed)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    assert got.std() > 1e-3  # frames that depend on the inputs, not a flat grey


def test_a_decoder_without_skips_has_no_skip_weights_and_refuses_skip_terms():
    with_skips = _det("previous").decoder
    without = _det("none").decoder
    assert sum(p.numel() for p in without.parameters()) < sum(p.numel() for p in with_skips.parameters())
    for a, b in zip(with_skips.stages, without.stages):
        conv_a = next(m for m in a.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)))
        conv_b = next(m for m in b.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)))
        assert conv_b.in_channels * 2 == conv_a.in_channels
    g = torch.zeros(2, 16)
    with pytest.raises(InvalidInput, match="skip terms"):
        without.decode(g, with_skips.skip_terms(_det("previous").encoder(torch.zeros(2, 1, 64, 64))[1]))
    with pytest.raises(InvalidInput, match="skip terms"):
        with_skips.decode(g, None)


@pytest.mark.parametrize("skip_frame", ["last", "previous"])
def test_feeding_its_own_prediction_trains_the_program_that_generates(tiny, skip_frame):
    """With feed "own", the model scoring all frames predicts exactly what generation from the
    conditioning frames predicts, for the same latent path; with "true" it does not."""
    _, _, batch = tiny
    config = preset("tiny", skip_frame=skip_frame, feed="own")
    svg = build_model(config)
    _lively(svg)
    n_past, frames = 2, batch.shape[1]
    path = {latent_site(t): torch.randn(batch.shape[0], config.z_dim) for t in range(1, frames)}
    with torch.no_grad():
        conditioned = poutine.condition(svg.model, data=path)
        scored = conditioned(batch, n_past)
        generated = conditioned(batch[:, :n_past], n_past, frames)
        torch.testing.assert_close(scored, generated)
        with svg.feeding("true"):
            forced = conditioned(batch, n_past)
    assert torch.equal(forced[:, :n_past], scored[:, :n_past])  # the steps fed conditioning frames
    assert not torch.equal(forced[:, n_past:], scored[:, n_past:])  # fed the true frames instead


def test_scheduled_sampling_feeds_each_video_its_prediction_or_the_truth(tiny):
    _, _, batch = tiny
    svg = _det("previous", "own")
    batch = torch.cat([batch] * 8)  # 32 videos: a mix of both at probability 1/2
    with torch.no_grad():
        own = svg.model(batch, 2)
        with svg.feeding("true"):
            forced = svg.model(batch, 2)
        svg.own_feed_probability = 0.0
        torch.testing.assert_close(svg.model(batch, 2), forced)
        svg.own_feed_probability = 0.5
        torch.manual_seed(0)
        mixed = svg.model(batch, 2)
    # step n_past + 1 is the first fed a frame after the conditioning ones: each video has either one
    step = 2
    is_own = (mixed[:, step] - own[:, step]).flatten(1).abs().amax(1) < 1e-6
    is_forced = (mixed[:, step] - forced[:, step]).flatten(1).abs().amax(1) < 1e-6
    assert (is_own ^ is_forced).all()
    assert 4 <= is_own.sum() <= 28


def test_the_analytic_kl_elbo_stays_exact_when_the_prior_follows_the_models_own_frames():
    """With feed "own" the prior of z_t depends on z_<t through the fed predictions; the guide is
    still mean-field in z, so the analytic-KL ELBO must equal the sampled one, E_q[log p(x, z) - log q(z)]."""
    torch.manual_seed(0)
    config = preset("tiny", skip_frame="previous", feed="own", z_dim=2)
    svg = build_model(config)
    with torch.no_grad():
        svg.predictor.embed.weight[:, config.g_dim:] *= 30  # make the frames depend on z strongly
    svg.eval()
    video = StochasticMovingMNIST("test", 5, num_digits=1, num_videos=1)[0][None]
    terms = path_terms(svg, video.expand(4000, -1, -1, -1, -1), 2)
    analytic = (terms["loglik_t"].sum(1) - terms["kl_t"].sum(1)).double()
    sampled = terms["log_weight"].double()
    error = (sampled.std() / len(sampled) ** 0.5).item()
    assert analytic.mean().item() == pytest.approx(sampled.mean().item(), abs=4 * error)
    assert analytic.std() < sampled.std()  # the analytic KL removes the KL's sampling noise


def test_fed_its_own_predictions_the_prior_depends_on_the_earlier_latents(tiny):
    """Pyro's dependency analysis sees what feeding changes: z_t's prior depends on z_<t exactly
    from the first step fed a prediction (t = n_past + 1) on; before it, on observed frames only."""
    config, _, batch = tiny
    svg = build_model(preset("tiny", feed="own"))
    deps = get_dependencies(svg.model, (batch, config.n_past))["prior_dependencies"]
    for t in range(1, batch.shape[1]):
        parents = {f"z_{s}" for s in range(1, t)} if t > config.n_past else set()
        assert set(deps[f"z_{t}"]) == {f"z_{t}"} | parents


def test_training_on_its_own_predictions_with_a_ramp_resumes_exactly(tmp_path):
    common = dict(model="svg-lp", skip_frame="previous", feed="own", feed_ramp=4, checkpoint_every=3,
                  sample_every=10_000)
    whole = train(preset("tiny", steps=6, **common), tmp_path / "whole", progress=False)
    train(preset("tiny", steps=3, **common), tmp_path / "part", progress=False)
    resumed = train(preset("tiny", steps=6, **common), tmp_path / "part", resume=True, progress=False)
    assert [r["loss"] for r in whole[3:]] == [r["loss"] for r in resumed]


def test_a_ramp_without_feeding_own_predictions_is_refused():
    with pytest.raises(InvalidInput, match="feed_ramp"):
        preset("tiny", feed_ramp=100)
    with pytest.raises(InvalidInput, match="feed"):
        preset("tiny", feed="mine")


class CopyLast(torch.nn.Module):
    """A model that predicts the frame it is fed: no motion at all. Teacher-forced, its prediction of
    x_t is the true x_{t-1}; generating, it repeats the last conditioning frame."""

    prior, z_dim = None, 0

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))  # a device to sample on

    def feeding(self, feed):
        return contextlib.nullcontext()

    def model(self, videos, n_past, n_frames=None):
        total = videos.shape[1] if n_frames is None else n_frames
        fed = torch.stack([videos[:, min(t - 1, videos.shape[1] - 1)] for t in range(1, total)], 1)
        with pyro.plate("videos", videos.shape[0], dim=-1):  # a site, so that Predictive adds its sample dim
            unused = pyro.sample("unused", dist.Normal(0.0, 1.0))
        return fed + 0 * unused[..., None, None, None, None]

    def guide(self, videos, n_past, n_frames=None):  # no latent: nothing to infer
        pass


def test_the_probe_scores_a_model_that_never_moves_as_the_true_displacement():
    dataset = StochasticMovingMNIST("test", 9, num_digits=1, num_videos=6, velocity="nonuniform")
    probe = MotionProbe(dataset, 4, videos=6, samples=2)
    scores = probe(CopyLast())
    moved = np.linalg.norm(np.diff(probe.truth[:, :, 3:], axis=2), axis=-1)  # (K, D, 5): true displacements
    # teacher-forced, x_hat_t = x_{t-1}: off by the true displacement; free-running it never moves either
    assert scores["one_step_displacement_error_t"] == pytest.approx(moved.mean(axis=(0, 1)).tolist())
    assert scores["displacement_error_t"] == pytest.approx(moved.mean(axis=(0, 1)).tolist())
    certain = probe.certain
    for i, value in enumerate(scores["certain_displacement_error_t"]):
        if certain[:, :, i].any():
            assert value == pytest.approx(moved[:, :, i][certain[:, :, i]].mean())
        else:
            assert value is None
