"""The amortized recurrent posterior q_phi(z_t | x_{1:t}) of SVG: the guide's network.

``SVG.guide`` runs it; it is a submodule of the SVG module (``svg.posterior``), so one object holds
the model, the guide and every parameter, as in Pyro's deep Markov model example.
"""
from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from torch import nn

from svg_pyro.models.networks import GaussianLSTM
from svg_pyro.models.sites import latent_site


class RecurrentPosterior(nn.Module):
    """z_t ~ N(mu_t, sigma_t) from a Gaussian LSTM run over Enc(x_1), ..., Enc(x_t).

    It holds only the LSTM: the frame encodings come from the model's encoder (passed in), whose
    parameters are the model's. It samples z_t for every observed step t = 1..T_obs-1; later steps
    are left to the model's prior (generation).
    """

    def __init__(self, g_dim: int, z_dim: int, rnn_size: int, layers: int):
        super().__init__()
        self.net = GaussianLSTM(g_dim, z_dim, rnn_size, layers)

    def forward(self, h: torch.Tensor, kl_weight: float) -> None:
        """h: (B, T_obs, g_dim) encodings of the observed frames; z sites scaled by ``kl_weight``
        as the model's are."""
        h_steps = h.unbind(1)  # once, not h[:, t] per step (see SVG.model)
        with pyro.plate("videos", h.shape[0], dim=-1):
            state = None
            for t in pyro.markov(range(1, h.shape[1])):
                mu, sigma, state = self.net(h_steps[t], state)
                with poutine.scale(scale=kl_weight):
                    pyro.sample(latent_site(t), dist.Normal(mu, sigma).to_event(1))
