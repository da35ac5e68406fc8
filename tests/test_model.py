"""The Pyro model's structure: skips, generation and the swappable prior."""
import pyro
import pytest
import torch
from pyro import poutine

from svg_pyro.config import preset
from svg_pyro.data.datasets import stack_videos, training_batch
from svg_pyro.inference.sampling import generate
from svg_pyro.models.build import build_model


def _record_skip_sources(svg, monkeypatch):
    """Which frame's skips each decoded step uses (matched by identity): ``skip_terms`` notes the
    frame of the terms it makes, ``decode`` looks up the terms it is given."""
    frame_of, seen = {}, []
    skip_terms, decode = svg.decoder.skip_terms, svg.decoder.decode

    def terms_spy(skips):
        terms = skip_terms(skips)
        frame_of[id(terms)] = skips[0]
        return terms

    def decode_spy(g, terms):
        seen.append(frame_of[id(terms)])
        return decode(g, terms)

    monkeypatch.setattr(svg.decoder, "skip_terms", terms_spy)
    monkeypatch.setattr(svg.decoder, "decode", decode_spy)
    return seen


@pytest.mark.parametrize("skip_frame,fixed_frame", [("last", 2), ("second-last", 1)])
def test_skips_come_from_the_previous_frame_then_a_fixed_conditioning_frame(tiny_data, monkeypatch,
                                                                           skip_frame, fixed_frame):
    config, train_set, _ = tiny_data
    svg = build_model(preset("tiny", skip_frame=skip_frame))
    batch = training_batch(train_set, 0, 0, config.batch_size)
    svg.eval()
    h, skips = svg.encoder(batch)
    seen = _record_skip_sources(svg, monkeypatch)
    n_past = 3  # 5 frames: steps 1, 2 take x_0, x_1; then x_2 (paper) or x_1 (reference code)
    with torch.no_grad():
        svg.encode = lambda videos: (h, skips)  # pin the encodings so we can match them
        poutine.trace(poutine.replay(svg.model, trace=poutine.trace(svg.guide).get_trace(batch, n_past))).get_trace(
            batch, n_past)
    expected = [0, 1] + [fixed_frame] * (batch.shape[1] - n_past)
    assert len(seen) == len(expected)
    for got, frame in zip(seen, expected):
        torch.testing.assert_close(got, skips[0][:, frame])


def test_generation_feeds_back_and_uses_the_prior_after_the_context(tiny):
    config, svg, batch = tiny
    svg.eval()
    n_past, n_frames = 2, 7  # more frames than the batch holds: the model must generate
    guide_trace = poutine.trace(svg.guide).get_trace(batch[:, :n_past], n_past)
    assert [n for n in guide_trace.stochastic_nodes if n.startswith("z_")] == ["z_1"]  # guide covers observed steps only
    model_trace = poutine.trace(poutine.replay(svg.model, trace=guide_trace)).get_trace(batch[:, :n_past], n_past, n_frames)
    assert model_trace.nodes["x_1"]["is_observed"]
    for t in range(2, n_frames):
        assert not model_trace.nodes[f"x_{t}"]["is_observed"]
        assert f"z_{t}" in model_trace.nodes  # sampled from the learned prior
    out = model_trace.nodes["_RETURN"]["value"]
    assert out.shape == (4, n_frames - 1, 1, 64, 64)

    samples = generate(svg, batch, n_past, n_frames, num_samples=3)
    assert samples.shape == (3, 4, n_frames, 1, 64, 64)
    assert torch.equal(samples[:, :, :n_past], batch[:, :n_past].expand(3, -1, -1, -1, -1, -1))
    assert not torch.equal(samples[0, :, n_past:], samples[1, :, n_past:])  # stochastic futures


def test_fixed_prior_is_standard_normal_and_det_has_no_latents(tiny_data):
    config, train, _ = tiny_data
    batch = stack_videos(train, 2)
    svg = build_model(preset("tiny", model="svg-fp"))
    trace = poutine.trace(svg.model).get_trace(batch, 2)
    fn = trace.nodes["z_2"]["fn"]
    assert torch.equal(fn.base_dist.loc, torch.zeros(2, 4)) and torch.equal(fn.base_dist.scale, torch.ones(2, 4))
    pyro.clear_param_store()
    svg = build_model(preset("tiny", model="det"))
    trace = poutine.trace(svg.model).get_trace(batch, 2)
    assert not [n for n in trace.stochastic_nodes if n.startswith("z_")]
    assert svg.predictor.embed.in_features == 16  # h only, no z


def test_shared_encodings_encode_once_per_step(tiny, monkeypatch):
    config, svg, batch = tiny
    calls = []
    original = svg.encoder.forward
    monkeypatch.setattr(svg.encoder, "forward", lambda x: calls.append(x.shape) or original(x))
    from svg_pyro.training.objective import make_elbo

    make_elbo("trace").loss(svg.model, svg.guide, batch, config.n_past)
    assert len(calls) == 2  # model and guide each encode the batch
    calls.clear()
    with svg.share_encodings():
        make_elbo("trace").loss(svg.model, svg.guide, batch, config.n_past)
    assert len(calls) == 1
