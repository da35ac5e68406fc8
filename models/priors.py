"""Priors over the per-step latent z_t: the swappable component of SVG.

A prior is a module with ``forward(h_prev, state) -> (distribution, state)``: it sees the encoding
of the previous frame (never z), so KL(q || p) per step is analytic. The distribution has batch
shape ``h_prev.shape[:-1]`` and event shape ``(z_dim,)``.
"""
from __future__ import annotations

import pyro.distributions as dist
from torch import nn

from svg_pyro.networks import GaussianLSTM


class LearnedPrior(nn.Module):
    """SVG-LP: p_psi(z_t | x_{1:t-1}) = N(mu, sigma) from a Gaussian LSTM on Enc(x_{t-1})."""

    def __init__(self, g_dim: int, z_dim: int, rnn_size: int, layers: int):
        super().__init__()
        self.net = GaussianLSTM(g_dim, z_dim, rnn_size, layers)
        self.z_dim = z_dim

    def forward(self, h_prev, state=None):
        mu, sigma, state = self.net(h_prev, state)
        return dist.Normal(mu, sigma).to_event(1), state


class FixedPrior(nn.Module):
    """SVG-FP: p(z_t) = N(0, I), whatever the past."""

    def __init__(self, z_dim: int):
        super().__init__()
        self.z_dim = z_dim

    def forward(self, h_prev, state=None):
        loc = h_prev.new_zeros(*h_prev.shape[:-1], self.z_dim)
        return dist.Normal(loc, 1.0 + loc).to_event(1), state
