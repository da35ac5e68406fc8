"""Network architecture against the published parameter counts, shapes and initialisation."""
import pytest
import torch

from svg_pyro.config import preset
from svg_pyro.models.build import build_model
from svg_pyro.models.networks import LSTM, Decoder, Encoder, GaussianLSTM


def _count(*modules):
    return sum(p.numel() for m in modules for p in m.parameters())


@pytest.mark.parametrize("name,millions", [("smmnist", 12.61), ("bair", 22.83)])
def test_reference_parameter_counts(name, millions):
    svg = build_model(preset(name))
    assert _count(svg) / 1e6 == pytest.approx(millions, abs=0.005)


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
    svg = build_model(preset("smmnist"))
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


@pytest.mark.parametrize("arch", ["dcgan", "vgg"])
def test_decoding_with_skip_terms_equals_convolving_the_concatenated_skips(arch):
    """The decoder splits each stage's first convolution into features + skip parts (the skip part
    computed once per skip frame); this must equal the convolution over [features, skip]."""
    from svg_pyro.models.networks import Decoder, Encoder, init_weights

    torch.manual_seed(0)
    enc, dec = Encoder(arch, 1, 16, 8, 64), Decoder(arch, 1, 16, 8, 64)
    dec.apply(init_weights)
    _, skips = enc(torch.rand(3, 1, 64, 64))
    skips = [s.detach() for s in skips]
    g = torch.randn(2, 3, 16)  # 2 samples of 3 videos, sharing the videos' skips

    grads = []
    concatenated = lambda: dec.decode_concatenated(g, skips)  # noqa: E731
    for run in (concatenated, lambda: dec(g, skips)):
        dec.zero_grad()
        out = run()
        (out * torch.linspace(0, 1, out.numel()).reshape(out.shape)).sum().backward()
        grads.append([p.grad.clone() for p in dec.parameters()])
        if run is concatenated:
            expected = out.detach()
    torch.testing.assert_close(out.detach(), expected, rtol=1e-5, atol=1e-6)
    # float noise at the scale of the largest gradient (biases before BatchNorm get ~0 gradients)
    scale = max(g.abs().max().item() for g in grads[0])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * scale)


def test_subpixel_form_equals_the_transposed_convolution():
    """The frame layer's sub-pixel form against torch's transposed convolution, values and grads."""
    import torch.nn.functional as F

    from svg_pyro.models.networks import _subpixel_conv_transpose

    torch.manual_seed(0)
    x = torch.randn(5, 6, 9, 7, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(5, 3, 18, 14, dtype=torch.float64)
    grads = []
    for f in (lambda: F.conv_transpose2d(x, w, b, stride=2, padding=1), lambda: _subpixel_conv_transpose(x, w, b)):
        out = f()
        grads.append((out, *torch.autograd.grad((out * weights).sum(), (x, w, b))))
    for a, c in zip(*grads):
        torch.testing.assert_close(a, c, rtol=1e-10, atol=1e-10)
