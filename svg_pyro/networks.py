"""The SVG networks: frame encoders/decoders with skips, the LSTM predictor and the Gaussian LSTM.

Every module accepts extra leading dimensions (particles, samples) and broadcasts its inputs
against each other, so the same code serves training, vectorized ELBO particles and Predictive.
"""
from __future__ import annotations

import torch
from torch import nn


def init_weights(module: nn.Module) -> None:
    """Reference initialisation: conv/linear weights N(0, 0.02), BN weights N(1, 0.02), biases 0."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def _flatten(x: torch.Tensor, event_dims: int):
    lead = x.shape[: x.dim() - event_dims]
    return x.reshape(-1, *x.shape[x.dim() - event_dims:]), lead


def _conv_block(cin, cout, kernel, stride, padding, transposed=False):
    conv = (nn.ConvTranspose2d if transposed else nn.Conv2d)(cin, cout, kernel, stride, padding)
    return nn.Sequential(conv, nn.BatchNorm2d(cout), nn.LeakyReLU(0.2, inplace=True))


def _stage_channels(width: int, stages: int) -> list[int]:
    # 64-128-256-512 at width 64; deeper (128x128) variants repeat the last width.
    return [width * min(2**i, 8) for i in range(stages)]


class Encoder(nn.Module):
    """Frame (..., C, H, W) -> (h (..., g_dim), skips: one feature map per stage, finest first).

    ``arch="dcgan"``: each stage is Conv 4x4 stride 2, BN, LeakyReLU(0.2).
    ``arch="vgg"``: each stage is 2-3 Conv 3x3 + BN + LeakyReLU, then a 2x max-pool before the next.
    A last Conv 4x4 over the 4x4 map, BN and tanh give h.
    """

    def __init__(self, arch: str, channels: int, g_dim: int, width: int = 64, image_size: int = 64):
        super().__init__()
        stages = {64: 4, 128: 5}[image_size]
        widths = _stage_channels(width, stages)
        self.arch = arch
        blocks, cin = [], channels
        for i, cout in enumerate(widths):
            if arch == "dcgan":
                blocks.append(_conv_block(cin, cout, 4, 2, 1))
            else:
                convs = 2 if i < 2 else 3
                layers = [_conv_block(cin if j == 0 else cout, cout, 3, 1, 1) for j in range(convs)]
                blocks.append(nn.Sequential(*layers))
            cin = cout
        self.stages = nn.ModuleList(blocks)
        self.pool = nn.MaxPool2d(2) if arch == "vgg" else None
        self.head = nn.Sequential(nn.Conv2d(cin, g_dim, 4, 1, 0), nn.BatchNorm2d(g_dim), nn.Tanh())

    def forward(self, x: torch.Tensor):
        x, lead = _flatten(x, 3)
        skips = []
        for stage in self.stages:
            if self.pool is not None and skips:
                x = self.pool(x)
            x = stage(x)
            skips.append(x)
        if self.pool is not None:
            x = self.pool(x)
        h = self.head(x).flatten(1)
        return h.reshape(*lead, -1), [s.reshape(*lead, *s.shape[1:]) for s in skips]


class Decoder(nn.Module):
    """(g (..., g_dim), skips) -> frame (..., C, H, W) in [0, 1]; mirrors :class:`Encoder`.

    Each stage consumes the concatenation of the upsampled features and the encoder skip of the
    same resolution (U-Net style), which carries the static background of the conditioning frame.
    """

    def __init__(self, arch: str, channels: int, g_dim: int, width: int = 64, image_size: int = 64):
        super().__init__()
        stages = {64: 4, 128: 5}[image_size]
        widths = _stage_channels(width, stages)[::-1]  # coarsest first
        self.arch = arch
        self.head = _conv_block(g_dim, widths[0], 4, 1, 0, transposed=True)
        blocks = []
        for i, w in enumerate(widths):  # stage i sees [features, skip], both with w channels
            last = i == len(widths) - 1
            if arch == "dcgan":
                if last:
                    blocks.append(nn.Sequential(nn.ConvTranspose2d(2 * w, channels, 4, 2, 1), nn.Sigmoid()))
                else:
                    blocks.append(_conv_block(2 * w, widths[i + 1], 4, 2, 1, transposed=True))
            elif last:
                blocks.append(nn.Sequential(_conv_block(2 * w, w, 3, 1, 1),
                                            nn.ConvTranspose2d(w, channels, 3, 1, 1), nn.Sigmoid()))
            else:
                convs = 2 if len(widths) - 1 - i < 2 else 3  # mirror the encoder stage
                outs = [w] * (convs - 1) + [widths[i + 1]]
                ins = [2 * w] + [w] * (convs - 1)
                blocks.append(nn.Sequential(*(_conv_block(a, b, 3, 1, 1) for a, b in zip(ins, outs))))
        self.stages = nn.ModuleList(blocks)
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest") if arch == "vgg" else None

    def forward(self, g: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        lead = torch.broadcast_shapes(g.shape[:-1], skips[0].shape[:-3])
        x = self.head(g.expand(*lead, -1).reshape(-1, g.shape[-1], 1, 1))
        for stage, skip in zip(self.stages, reversed(skips)):
            if self.upsample is not None:
                x = self.upsample(x)
            skip = skip.expand(*lead, *skip.shape[-3:]).reshape(-1, *skip.shape[-3:])
            x = stage(torch.cat([x, skip], dim=1))
        return x.reshape(*lead, *x.shape[1:])


LSTMState = list  # [(h, c)] per layer, each (..., rnn_size)


class _StackedLSTM(nn.Module):
    """Linear embedding (no nonlinearity) followed by ``layers`` LSTM cells."""

    def __init__(self, input_size: int, rnn_size: int, layers: int):
        super().__init__()
        self.embed = nn.Linear(input_size, rnn_size)
        self.cells = nn.ModuleList(nn.LSTMCell(rnn_size, rnn_size) for _ in range(layers))
        self.rnn_size = rnn_size

    def _run(self, x: torch.Tensor, state: LSTMState | None):
        lead = x.shape[:-1]
        if state is not None:
            lead = torch.broadcast_shapes(lead, state[0][0].shape[:-1])
        flat = self.embed(x).expand(*lead, self.rnn_size).reshape(-1, self.rnn_size)
        if state is None:
            zeros = flat.new_zeros(flat.shape)
            state = [(zeros, zeros)] * len(self.cells)
        else:
            state = [tuple(s.expand(*lead, self.rnn_size).reshape(-1, self.rnn_size) for s in hc) for hc in state]
        new_state = []
        for cell, hc in zip(self.cells, state):
            h, c = cell(flat, hc)
            new_state.append((h, c))
            flat = h
        unflat = [(h.reshape(*lead, -1), c.reshape(*lead, -1)) for h, c in new_state]
        return flat.reshape(*lead, -1), unflat


class LSTM(_StackedLSTM):
    """Frame predictor: ``[h_{t-1}, z_t] -> g_t`` through Linear, LSTM cells, Linear and tanh."""

    def __init__(self, input_size: int, output_size: int, rnn_size: int, layers: int):
        super().__init__(input_size, rnn_size, layers)
        self.out = nn.Sequential(nn.Linear(rnn_size, output_size), nn.Tanh())

    def forward(self, x, state=None):
        h, state = self._run(x, state)
        return self.out(h), state


class GaussianLSTM(_StackedLSTM):
    """Posterior / learned prior network: input -> (mu, sigma) of a diagonal Gaussian."""

    def __init__(self, input_size: int, output_size: int, rnn_size: int, layers: int):
        super().__init__(input_size, rnn_size, layers)
        self.mu = nn.Linear(rnn_size, output_size)
        self.logvar = nn.Linear(rnn_size, output_size)

    def forward(self, x, state=None):
        h, state = self._run(x, state)
        # fp32 out, also under bf16 autocast: these parameterise the ELBO's densities
        return self.mu(h).float(), torch.exp(0.5 * self.logvar(h).float()), state
