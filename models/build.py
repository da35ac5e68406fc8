"""Build the SVG module (its Pyro model and guide) of a configuration: the one place that turns a ``Config`` into
networks (and compiles them, for training with ``--compile``)."""
from __future__ import annotations

import torch

from svg_pyro.guides.posterior import RecurrentPosterior
from svg_pyro.models.networks import LSTM, Decoder, Encoder, init_weights
from svg_pyro.models.priors import FixedPrior, LearnedPrior
from svg_pyro.models.svg import SVG


def build_model(config):
    """The SVG module of ``config``: ``svg.model`` and ``svg.guide`` are its Pyro model and guide."""
    c = config.validate()
    encoder = Encoder(c.arch, c.channels, c.g_dim, c.width, c.image_size)
    decoder = Decoder(c.arch, c.channels, c.g_dim, c.width, c.image_size, skips=c.skip_frame != "none")
    if c.model == "det":
        prior, z_dim = None, 0
    elif c.model == "svg-fp":
        prior, z_dim = FixedPrior(c.z_dim), c.z_dim
    else:
        prior, z_dim = LearnedPrior(c.g_dim, c.z_dim, c.rnn_size, c.prior_layers), c.z_dim
    predictor = LSTM(c.g_dim + z_dim, c.g_dim, c.rnn_size, c.predictor_layers)
    svg = SVG(encoder, decoder, predictor, prior, None, (c.channels, c.image_size, c.image_size),
              c.likelihood_scale, c.kl_weight, c.skip_frame, c.likelihood, c.feed)
    svg.apply(init_weights)
    if prior is not None:  # built last, as in earlier versions: a seed gives the same initial weights
        svg.posterior = RecurrentPosterior(c.g_dim, z_dim, c.rnn_size, c.posterior_layers).apply(init_weights)
    return svg


def compile_networks(svg, mode: str = "default") -> None:
    """``torch.compile`` the networks of ``svg`` in place: the encoder, the decoder's
    per-step ``decode`` and per-frame ``skip_terms``, and the LSTMs of the frame predictor, the
    prior and the posterior. Parameters, their names and the state_dict stay as they were; the Pyro
    program around the networks (sample sites, effect handlers) runs eagerly."""
    options = dict(mode=mode, dynamic=False)  # training shapes are fixed; other shapes run eagerly
    for module in (svg.encoder, svg.predictor, svg.prior, getattr(svg.posterior, "net", None)):
        if module is not None and any(True for _ in module.parameters()):
            module.compile(**options)
    decoder = svg.decoder
    decoder.decode = torch.compile(decoder.decode, **options)  # methods other than forward
    decoder.skip_terms = torch.compile(decoder.skip_terms, **options)
