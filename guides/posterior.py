"""The amortized recurrent posterior q_phi(z_t | x_{1:t}) of SVG."""
from __future__ import annotations

import pyro
import pyro.distributions as dist
from pyro import poutine
from torch import nn

from svg_pyro.networks import GaussianLSTM
from svg_pyro.sites import latent_site, register_module


class RecurrentPosterior(nn.Module):
    """z_t ~ N(mu_t, sigma_t) from a Gaussian LSTM run over Enc(x_1), ..., Enc(x_t).

    The frame encoder is the model's own (``svg.encode``), not a submodule: its parameters are the
    model's, and this module holds only the posterior LSTM's. It samples z_t for every observed step
    t = 1..T_obs-1; later steps are left to the model's prior (generation).
    """

    def __init__(self, svg, rnn_size: int, layers: int):
        super().__init__()
        self.net = GaussianLSTM(svg.g_dim, svg.z_dim, rnn_size, layers)
        self.encode = svg.encode  # a bound method, not a submodule: no duplicated parameters

    @property
    def kl_weight(self) -> float:
        """The model's KL weight (its one source): the z sites of model and guide are scaled alike."""
        return self.encode.__self__.kl_weight

    def forward(self, videos, n_past: int, n_frames: int | None = None):
        register_module("posterior", self)  # its LSTM; the encoder is registered by the model
        h, _ = self.encode(videos)
        h_steps = h.unbind(1)  # once, not h[:, t] per step (see SVG.model)
        with pyro.plate("videos", videos.shape[0], dim=-1):
            state = None
            for t in pyro.markov(range(1, videos.shape[1])):
                mu, sigma, state = self.net(h_steps[t], state)
                with poutine.scale(scale=self.kl_weight):
                    pyro.sample(latent_site(t), dist.Normal(mu, sigma).to_event(1))


class EmptyGuide(nn.Module):
    """Guide of the deterministic baseline, which has no latent variables (and no parameters); a
    module like the posterior, so that moving, saving and loading treat both alike."""

    def forward(self, videos, n_past: int, n_frames: int | None = None):
        pass
