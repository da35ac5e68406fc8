"""Priors over the per-step latent z_t: the swappable component of SVG.

A prior is a module with ``forward(h_prev, state) -> (distribution, state)``: it sees the encoding
of the previous frame (never z), so KL(q || p) per step is analytic. The distribution has batch
shape ``h_prev.shape[:-1]`` and event shape ``(z_dim,)``.
"""
from __future__ import annotations

import pyro.distributions as dist
from pyro.poutine.messenger import Messenger
from torch import nn

from svg_pyro.errors import InvalidInput
from svg_pyro.models.networks import GaussianLSTM
from svg_pyro.models.sites import FRAME, LATENT, site_step


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


# ---------------------------------------------------------------------------------------------
# Swapping the prior at sampling time: an effect handler on the z_t sites


def fixed_prior(t: int, fn: dist.Distribution) -> dist.Distribution:
    """Replacement for ``swap_prior``: SVG-FP's N(0, I), with the shapes of the site's ``fn``."""
    return FixedPrior(fn.event_shape[-1])(fn.mean)[0]


def swap_prior(replacement, from_step: int, fn=None):
    """Effect handler: draw the latents z_t of ``SVG.model`` from another prior at the generation
    steps t >= ``from_step`` (pass ``n_past``); see ``SwapPriorMessenger``. Like Pyro's handlers,
    it wraps ``fn`` when given, and is a context manager / decorator otherwise."""
    messenger = SwapPriorMessenger(replacement, from_step)
    return messenger if fn is None else messenger(fn)


def learned_prior_of(other, videos, from_step: int, fn=None):
    """``swap_prior`` to the learned prior of another SVG-LP model ``other``; see
    ``LearnedPriorMessenger``."""
    messenger = LearnedPriorMessenger(other, videos, from_step)
    return messenger if fn is None else messenger(fn)


class SwapPriorMessenger(Messenger):
    """Draws the latents z_t of ``SVG.model`` from another prior at the generation steps
    t >= ``from_step``.

    At each site "z_t" with t >= from_step it replaces ``msg["fn"]`` by ``replacement(t, fn)``, a
    distribution with the same batch and event shapes (checked). Earlier steps are conditioning
    steps: at sampling time their z come from the guide (``Predictive`` conditions the model on
    the guide's draws), so they are left alone, and the guide, which has no sites at t >= n_past,
    is unaffected. Idioms::

        model = swap_prior(fixed_prior, from_step=n_past)(svg.model)      # SVG-LP under N(0, I)
        model = learned_prior_of(other_svg, context, n_past)(svg.model)   # under another's prior
        Predictive(model, guide=guide, num_samples=..., parallel=True)(context, n_past, n_frames)

    ``svg_pyro.inference.sampling`` (``prior="fixed"`` or ``prior=other_svg``) and the evaluation CLI
    (``--prior fixed``, ``--prior-checkpoint``) build these for you. Training-time choice of the
    prior (SVG-LP vs SVG-FP) is ``Config.model``; this handler changes the prior of a trained model.
    """

    def __init__(self, replacement, from_step: int):
        super().__init__()
        if from_step < 1:
            raise InvalidInput(f"from_step must be >= 1 (z_1 is the first latent), got {from_step}")
        self.replacement, self.from_step = replacement, from_step

    def _pyro_sample(self, msg):
        site = site_step(msg["name"])
        if site is None or site[0] != LATENT or site[1] < self.from_step:
            return
        fn = msg["fn"]
        new = self.replacement(site[1], fn)
        if new.event_shape != fn.event_shape:
            raise InvalidInput(f"the replacement prior of {msg['name']} has event shape {tuple(new.event_shape)} "
                               f"but the model's has {tuple(fn.event_shape)}: both models need the same z_dim")
        if new.batch_shape != fn.batch_shape:
            try:
                new = new.expand(fn.batch_shape)
            except (RuntimeError, ValueError) as err:
                raise InvalidInput(f"the replacement prior of {msg['name']} has batch shape "
                                   f"{tuple(new.batch_shape)}, which does not fit the site's "
                                   f"{tuple(fn.batch_shape)}") from err
        msg["fn"] = new


class LearnedPriorMessenger(SwapPriorMessenger):
    """Swaps in the learned prior of another SVG-LP model ``other`` (same z_dim).

    That prior was trained on ``other``'s own encodings, so it is run on ``other.encoder`` of the
    frames the sampled model conditions on (not on the sampled model's h_{t-1}, which lives in
    another feature space): the observed frames ``videos`` (the ``videos`` argument given to the
    model, e.g. the conditioning frames) and, after them, the generated frames, read from the
    model's "x_t" sites as their mean (the frame ``SVG.model`` feeds back). Its LSTM runs over
    every step from x_0, conditioning steps included, and restarts at each "z_1" site (each model
    execution), so the handler may wrap the model or a whole ``Predictive`` call.
    """

    def __init__(self, other, videos, from_step: int):
        if getattr(other, "prior", None) is None or isinstance(other.prior, FixedPrior):
            raise InvalidInput("learned_prior_of needs an SVG-LP model (a learned prior); for N(0, I) "
                               "use swap_prior(fixed_prior, from_step)")
        super().__init__(self._next_prior, from_step)
        self.other, self.videos = other, videos
        self._restart()

    def _restart(self):
        self._frames = list(self.videos.unbind(1))  # x_0 .. x_{T_obs - 1}
        self._state = self._prior = None
        self._fed = 0  # frames consumed by the prior LSTM

    def _pyro_sample(self, msg):
        site = site_step(msg["name"])
        if site == (LATENT, 1):
            self._restart()
        elif site is not None and site[0] == FRAME and site[1] == len(self._frames):
            self._frames.append(msg["fn"].mean)  # a generated frame, as the model feeds it back
        super()._pyro_sample(msg)

    def _next_prior(self, t: int, fn) -> dist.Distribution:
        """p_other(z_t | x_0..x_{t-1}): feed the frames not yet seen to the prior LSTM."""
        for s in range(self._fed, t):
            h, _ = self.other.encoder(self._frames[s])
            self._prior, self._state = self.other.prior(h, self._state)
        self._fed = max(self._fed, t)
        return self._prior
