"""The SVG networks: frame encoders/decoders with skips, the LSTM predictor and the Gaussian LSTM.

Every module accepts extra leading dimensions (particles, samples) and broadcasts its inputs
against each other, so the same code serves training, vectorized ELBO particles and Predictive.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from svg_pyro.errors import InvalidInput


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


def _cpu_layout(x: torch.Tensor) -> torch.Tensor:
    """Channels-last activations on the CPU, where oneDNN's convolutions (transposed ones above
    all) run faster in it; elsewhere unchanged (docs/performance.md). The weights keep the default
    layout: Pyro's param store (``sites.register_module``) would copy channels-last parameters."""
    return x.contiguous(memory_format=torch.channels_last) if x.device.type == "cpu" else x


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
        x = _cpu_layout(x)
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
    same resolution (U-Net style), which carries the static background of the conditioning frame;
    with ``skips=False`` it consumes the features alone.
    """

    def __init__(self, arch: str, channels: int, g_dim: int, width: int = 64, image_size: int = 64,
                 skips: bool = True):
        super().__init__()
        self.has_skips = skips
        k = 2 if skips else 1  # a stage's input: [features, skip] or the features alone
        stages = {64: 4, 128: 5}[image_size]
        widths = _stage_channels(width, stages)[::-1]  # coarsest first
        self.arch = arch
        self.head = _conv_block(g_dim, widths[0], 4, 1, 0, transposed=True)
        blocks = []
        for i, w in enumerate(widths):  # stage i sees [features, skip], both with w channels, or features
            last = i == len(widths) - 1
            if arch == "dcgan":
                if last:
                    blocks.append(nn.Sequential(nn.ConvTranspose2d(k * w, channels, 4, 2, 1), nn.Sigmoid()))
                else:
                    blocks.append(_conv_block(k * w, widths[i + 1], 4, 2, 1, transposed=True))
            elif last:
                blocks.append(nn.Sequential(_conv_block(k * w, w, 3, 1, 1),
                                            nn.ConvTranspose2d(w, channels, 3, 1, 1), nn.Sigmoid()))
            else:
                convs = 2 if len(widths) - 1 - i < 2 else 3  # mirror the encoder stage
                outs = [w] * (convs - 1) + [widths[i + 1]]
                ins = [k * w] + [w] * (convs - 1)
                blocks.append(nn.Sequential(*(_conv_block(a, b, 3, 1, 1) for a, b in zip(ins, outs))))
        self.stages = nn.ModuleList(blocks)
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest") if arch == "vgg" else None

    def forward(self, g: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        return self.decode(g, self.skip_terms(skips))

    # A stage's first convolution over [features, skip] is linear: the convolution of the features
    # plus that of the skip. The skip's part depends on the skip frame alone, so it is computed once
    # per frame (``skip_terms``) and shared by every step and sample decoding with that frame.

    def skip_terms(self, skips: list[torch.Tensor]) -> list[torch.Tensor]:
        """Each stage's first convolution applied to the skip half of its input (no bias)."""
        return [_half_conv(_layers(stage)[0], skip, skip_half=True)
                for stage, skip in zip(self.stages, reversed(skips))]

    def decode(self, g: torch.Tensor, skip_terms: list[torch.Tensor] | None) -> torch.Tensor:
        """The frame from g (..., g_dim) and the ``skip_terms`` of its skip frame (broadcast; None
        for a decoder without skips)."""
        if (skip_terms is None) == self.has_skips:
            raise InvalidInput("skip terms must be given to a decoder with skips, and only to one")
        lead = g.shape[:-1] if skip_terms is None else torch.broadcast_shapes(g.shape[:-1], skip_terms[0].shape[:-3])
        x = _cpu_layout(self.head(g.expand(*lead, -1).reshape(-1, g.shape[-1], 1, 1)))
        for i, stage in enumerate(self.stages):
            if self.upsample is not None:
                x = self.upsample(x)
            first, *rest = _layers(stage)
            x = _half_conv(first, x, skip_half=False, halves=2 if self.has_skips else 1)
            if skip_terms is not None:
                x = (x.reshape(*lead, *x.shape[1:]) + skip_terms[i]).reshape(-1, *x.shape[1:])
            for layer in rest:
                x = layer(x)
        return x.reshape(*lead, *x.shape[1:])


    def decode_concatenated(self, g: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        """The same frame computed as the reference code does, each stage convolving the
        concatenation [features, skip] at every call: for the reference-procedure transcriptions."""
        lead = torch.broadcast_shapes(g.shape[:-1], skips[0].shape[:-3])
        x = self.head(g.expand(*lead, -1).reshape(-1, g.shape[-1], 1, 1))
        for stage, skip in zip(self.stages, reversed(skips)):
            if self.upsample is not None:
                x = self.upsample(x)
            x = stage(torch.cat([x, skip.expand(*lead, *skip.shape[-3:]).reshape(-1, *skip.shape[-3:])], dim=1))
        return x.reshape(*lead, *x.shape[1:])


def _layers(stage: nn.Module) -> list[nn.Module]:
    """The leaf layers of a stage, in order (looked up per call: SyncBatchNorm may replace them)."""
    return [m for m in stage.modules() if next(m.children(), None) is None]


def _half_conv(conv: nn.Module, x: torch.Tensor, skip_half: bool, halves: int = 2) -> torch.Tensor:
    """``conv`` restricted to the first (features) or second (skip) half of its input channels;
    the bias goes with the features. ``halves=1``: a convolution with no skip half, applied whole."""
    half = conv.in_channels // halves
    part = slice(half, None) if skip_half else slice(0, half)
    bias = None if skip_half else conv.bias
    x, lead = _flatten(x, 3)
    if isinstance(conv, nn.ConvTranspose2d):  # weight (in, out, k, k)
        transpose = _subpixel_conv_transpose if _subpixel_pays(conv, x) else _conv_transpose
        y = transpose(x, conv.weight[part], bias, conv)
    else:  # weight (out, in, k, k)
        y = F.conv2d(x, conv.weight[:, part], bias, conv.stride, conv.padding)
    return y.reshape(*lead, *y.shape[1:])


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


def _conv_transpose(x, weight, bias, conv: nn.ConvTranspose2d) -> torch.Tensor:
    return F.conv_transpose2d(x, weight, bias, conv.stride, conv.padding, conv.output_padding)


def _subpixel_pays(conv: nn.ConvTranspose2d, x: torch.Tensor) -> bool:
    """PyTorch's CPU transposed convolution is slow with few output channels (the frame layer):
    there the sub-pixel form below runs 1.4-2.6x faster (docs/performance.md)."""
    return (x.device.type == "cpu" and conv.out_channels <= 4 and conv.kernel_size == (4, 4)
            and conv.stride == (2, 2) and conv.padding == (1, 1) and conv.output_padding == (0, 0))


# For a 4x4, stride-2, padding-1 transposed convolution, the output pixel 2m + p (per axis, phase
# p in {0, 1}) sums input pixels m - 1 + j (j = 0, 1, 2) times kernel tap _PHASE_TAPS[p][j].
_PHASE_TAPS = ({0: 3, 1: 1}, {1: 2, 2: 0})


def _subpixel_conv_transpose(x, weight, bias, conv=None) -> torch.Tensor:
    """The 4x4 stride-2 transposed convolution as a 3x3 convolution with 4x the output channels
    (one per output phase) followed by a pixel shuffle: the same sums, on a faster kernel."""
    cin, cout = weight.shape[:2]
    phases = weight.new_zeros(cout, 2, 2, cin, 3, 3)
    for py, taps_y in enumerate(_PHASE_TAPS):
        for px, taps_x in enumerate(_PHASE_TAPS):
            for jy, ky in taps_y.items():
                for jx, kx in taps_x.items():
                    phases[:, py, px, :, jy, jx] = weight[:, :, ky, kx].t()
    bias = None if bias is None else bias.repeat_interleave(4)
    return F.pixel_shuffle(F.conv2d(x, phases.reshape(4 * cout, cin, 3, 3), bias, padding=1), 2)
