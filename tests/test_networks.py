"""Network architecture against the published parameter counts, shapes and initialisation."""
import pytest
import torch

from svg_pyro.build import build_model
from svg_pyro.config import preset
from svg_pyro.networks import LSTM, Decoder, Encoder, GaussianLSTM


def _count(*modules):
    return sum(p.numel() for m in modules for p in m.parameters())


@pytest.mark.parametrize("name,millions", [("smmnist", 12.61), ("bair", 22.83)])
def test_reference_parameter_counts(name, millions):
    svg, guide = build_model(preset(name))
    assert _count(svg, guide) / 1e6 == pytest.approx(millions, abs=0.005)


@pytest.mark.parametrize("arch", ["dcgan", "vgg"])
@pytest.mark.parametrize("size", [64, 128])
def test_encoder_decoder_shapes_and_skips(arch, size):
    enc, dec = Encoder(arch, 3, 16, width=4, image_size=size), Decoder(arch, 3, 16, width=4, image_size=size)
    x = torch.rand(2, 3, 3, size, size)  # leading (batch, time) dims
    h, skips = enc(x)
    assert h.shape == (2, 3, 16) and h.abs().max() <= 1  # tanh
    stages = 4 if size == 64 else 5
    assert len(skips) == stages
    first = size // 2 if arch == "dcgan" else size  # vgg keeps full resolution in its first stage
    assert [s.shape[-1] for s in skips] == [first // 2**i for i in range(stages)]
    y = dec(h, skips)
    assert y.shape == x.shape and 0 <= y.min() and y.max() <= 1  # sigmoid


def test_reference_initialisation():
    svg, _ = build_model(preset("smmnist"))
    conv = svg.encoder.stages[2][0].weight
    bn = svg.encoder.stages[2][1].weight
    assert conv.std().item() == pytest.approx(0.02, rel=0.02) and abs(conv.mean().item()) < 1e-3
    assert bn.mean().item() == pytest.approx(1.0, abs=0.01) and bn.std().item() == pytest.approx(0.02, rel=0.3)
    assert svg.encoder.stages[2][0].bias.abs().max() == 0
    assert svg.predictor.embed.weight.std().item() == pytest.approx(0.02, rel=0.05)


def test_leading_dims_broadcast_like_separate_calls():
    """Vectorized particles: a (S, B, ...) input must equal S separate (B, ...) calls."""
    torch.manual_seed(0)
    enc, dec = Encoder("dcgan", 1, 8, width=4).eval(), Decoder("dcgan", 1, 8, width=4).eval()
    lstm, glstm = LSTM(8, 8, 16, 2), GaussianLSTM(8, 3, 16, 1)
    frames = torch.rand(5, 1, 64, 64)
    _, skips = enc(frames)  # skips for B=5, shared by every particle
    g = torch.rand(4, 5, 8)  # S=4 particles
    together = dec(g, skips)
    apart = torch.stack([dec(g[s], skips) for s in range(4)])
    torch.testing.assert_close(together, apart)
    state = None
    x1, state = lstm(torch.rand(5, 8), state)  # state for B=5, then particles appear
    inp = torch.rand(4, 5, 8)
    out, _ = lstm(inp, state)
    for s in range(4):
        torch.testing.assert_close(out[s], lstm(inp[s], state)[0])
    mu, sigma, _ = glstm(inp)
    assert mu.shape == sigma.shape == (4, 5, 3) and (sigma > 0).all()
