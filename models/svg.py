"""SVG (Denton & Fergus 2018) as a Pyro model.

For frames x_0..x_{T-1} and each step t = 1..T-1, with h_{t-1} = Enc(x_{t-1}):

    z_t ~ prior(z_t | x_{1:t-1})            site "z_{t}" (absent in the deterministic baseline)
    g_t = LSTM_theta([h_{t-1}, z_t])
    x_t ~ p(x_t | Dec(g_t, skips))          site "x_{t}", observed when the frame is given

The frame likelihood is N(x_hat, sigma^2 I) as in the paper, or another family with mean x_hat
(``svg_pyro.models.likelihoods``).

One module holds the model and its guide, as Pyro's deep Markov model example does: ``SVG.model``
and ``SVG.guide`` are the two programs, and ``SVI(svg.model, svg.guide, optim, elbo)`` trains every
network (the guide q(z_t | x_{1:t}) is ``svg.posterior``, ``svg_pyro.guides.posterior``; the
deterministic baseline has no latent, no posterior and a guide that samples nothing).

The decoder's skips (``Config.skip_frame``) come from the previous frame x_{t-1} during
conditioning, then, as the paper does, from one fixed conditioning frame: x_{n_past-1} as its text
says ("last") or x_{n_past-2} as its code does ("second-last"). With "previous" they come from the
frame fed as input at every step, so the decoder always draws one step of motion from where its
skips put the digit; "none" has no skips. A fixed skip frame suits a static background; on
SM-MNIST, step k after it must draw the digit k steps of motion away from the frame's features.

Given fewer observed frames than ``n_frames``, the model generates the rest, feeding its mean
prediction back (as the reference generator does). What it feeds back on *observed* frames after
the conditioning ones is ``SVG.feed``: the true frame ("true", teacher forcing, the paper's
training) or its own mean prediction ("own": the program trained is the one sampled from, so
the ELBO is that of the generation model). ``SVG.own_feed_probability`` < 1 feeds its own
prediction to each video and step with that probability (scheduled sampling, ramped in by the
training loop).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import pyro
import torch
from pyro import poutine
from torch import nn

from svg_pyro.errors import InvalidInput, InvalidType
from svg_pyro.guides.posterior import RecurrentPosterior
from svg_pyro.models.likelihoods import frame_distribution
from svg_pyro.models.networks import LSTM, Decoder, Encoder
from svg_pyro.models.sites import frame_site, latent_site, register_module


def check_video_shape(videos: torch.Tensor, frame_shape) -> None:
    """Videos must be a float tensor (B, T, *frame_shape): the model's input contract."""
    if not torch.is_tensor(videos) or not videos.is_floating_point():
        raise InvalidType(f"videos must be a floating-point tensor (B, T, C, H, W), got "
                          f"{type(videos).__name__} {getattr(videos, 'dtype', '')}")
    if videos.dim() != 5 or tuple(videos.shape[2:]) != tuple(frame_shape):
        raise InvalidInput(f"videos must have shape (batch, time, {', '.join(map(str, frame_shape))}), "
                           f"got {tuple(videos.shape)}; check the dataset's channels and image_size")


@dataclass
class GivenFrames:
    """What the given frames supply to every step: their encodings ``h`` and ``skips`` (per frame),
    the indices of the observed ones, the number of conditioning frames, and the decoder's skip
    terms of the frames used so far (filled on demand)."""
    videos: torch.Tensor
    h: tuple
    skips: list
    observed: frozenset
    n_past: int
    skip_terms: dict = field(default_factory=dict)


@dataclass
class Carry:
    """The recurrence's state between steps: the encoding fed next, the LSTM states of the prior
    and the frame predictor, and the skip terms of a fed prediction (with skips from it)."""
    h_prev: torch.Tensor | None
    prior_state: list | None = None
    predictor_state: list | None = None
    fed_skip_terms: list | None = None


def broadcast_cat(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Concatenate on the last dim after broadcasting the leading (sample, batch) dims."""
    lead = torch.broadcast_shapes(a.shape[:-1], b.shape[:-1])
    return torch.cat([a.expand(*lead, -1), b.expand(*lead, -1)], dim=-1)


class SVG(nn.Module):
    def __init__(self, encoder: Encoder, decoder: Decoder, predictor: LSTM, prior: nn.Module | None,
                 posterior: RecurrentPosterior | None, frame_shape: tuple[int, int, int],
                 obs_scale: float | None, kl_weight: float = 1.0, skip_frame: str = "last",
                 likelihood: str = "gaussian", feed: str = "true"):
        super().__init__()
        self.encoder, self.decoder, self.predictor, self.prior = encoder, decoder, predictor, prior
        self.posterior = posterior
        self.frame_shape = tuple(frame_shape)
        self.likelihood = likelihood
        self.obs_scale = None if obs_scale is None else float(obs_scale)
        self.kl_weight = float(kl_weight)
        self.skip_frame = skip_frame
        self.feed = feed
        self.own_feed_probability = 1.0  # used when feed == "own"
        self._encodings = None  # cache, alive only inside share_encodings()

    @property
    def z_dim(self) -> int:
        return 0 if self.prior is None else self.prior.z_dim

    @property
    def g_dim(self) -> int:
        return self.encoder.head[0].out_channels

    def skip_index(self, t: int, n_past: int) -> int | None:
        """Index of the frame whose skips the decoder gets at step t: the previous frame during
        conditioning, then a fixed conditioning frame (the last, or the second-last), or always the
        previous one; None without skips. With "previous", a frame the model fed itself (its own
        prediction) gives its skips in place of the true frame t - 1."""
        if self.skip_frame == "none":
            return None
        if self.skip_frame == "previous":
            return t - 1
        lag = {"last": 0, "second-last": 1}[self.skip_frame]
        return max(0, min(t - 1, n_past - 1 - lag))

    @contextlib.contextmanager
    def feeding(self, feed: str):
        """Run the model with another ``feed`` for the block, e.g. "true" to score one-step
        predictions from the true previous frames of a model trained on its own."""
        saved = self.feed
        self.feed = feed
        try:
            yield
        finally:
            self.feed = saved

    def _feeds_own(self, t: int, given: GivenFrames, batch: int, device):
        """Whether step t + 1 is fed the model's prediction of frame t rather than the true frame:
        False, True, or a (batch,) mask of the videos that are (scheduled sampling)."""
        if t not in given.observed:
            return True
        if t < given.n_past or self.feed == "true":
            return False
        p = self.own_feed_probability
        if p >= 1:
            return True
        return torch.rand(batch, device=device) < p if p > 0 else False

    # -- encodings ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def share_encodings(self):
        """Encode each batch once for model and guide (they see the same frames) within a step."""
        self._encodings = {}
        try:
            yield
        finally:
            self._encodings = None

    def encode(self, videos: torch.Tensor):
        """Enc of every frame: h (..., T, g_dim) and the skips (..., T, c, h, w)."""
        if self._encodings is not None and id(videos) in self._encodings:
            return self._encodings[id(videos)][1]
        out = self.encoder(videos)
        if self._encodings is not None:  # the cache holds the tensor, so its id is not reused
            self._encodings[id(videos)] = (videos, out)
        return out

    # -- the Pyro programs -------------------------------------------------------------------------

    def guide(self, videos: torch.Tensor, n_past: int, n_frames: int | None = None) -> None:
        """q(z_t | x_{1:t}) for every observed step t = 1..T_obs-1 (nothing for the deterministic
        model); same arguments as ``model``."""
        register_module("svg", self)
        if self.prior is not None:
            self.posterior(self.encode(videos)[0], self.kl_weight)

    def model(self, videos: torch.Tensor, n_past: int, n_frames: int | None = None, observe=None):
        """videos: (B, T_obs, C, H, W) given frames; returns the predicted means (B, T-1, C, H, W)
        of x_1..x_{T-1}, with T = ``n_frames`` (default T_obs). ``observe``: the indices of the
        frames of ``videos`` that are observed (default: all of them); it must hold the
        conditioning frames 0..n_past-1, and frames not in it are generated (their entries in
        ``videos`` are never read)."""
        check_video_shape(videos, self.frame_shape)
        register_module("svg", self)  # so that pyro.infer.SVI(svg.model, svg.guide, ...) trains the networks
        total = videos.shape[1] if n_frames is None else n_frames
        if not 1 <= n_past <= videos.shape[1] <= total:
            raise InvalidInput(f"need 1 <= n_past ({n_past}) <= given frames ({videos.shape[1]}) "
                               f"<= n_frames ({total})")
        given = self.given_frames(videos, n_past, observe)
        predictions = []
        with pyro.plate("videos", videos.shape[0], dim=-1):
            carry = Carry(h_prev=given.h[0])
            for t in pyro.markov(range(1, total)):
                x_hat, carry = self.step(given, carry, t, feed_next=t + 1 < total)
                predictions.append(x_hat)
        return torch.stack(torch.broadcast_tensors(*predictions), dim=-4)

    def given_frames(self, videos: torch.Tensor, n_past: int, observe=None) -> GivenFrames:
        """What the given frames supply to every step: their encodings, once."""
        observed = frozenset(range(videos.shape[1]) if observe is None else (int(t) for t in observe))
        if not set(range(n_past)) <= observed or max(observed) >= videos.shape[1]:
            raise InvalidInput(f"the observed frames {sorted(observed)} must include the {n_past} conditioning "
                               f"frames 0..{n_past - 1} and lie within the {videos.shape[1]} given")
        h, skips = self.encode(videos)
        # Split the time axis once: indexing the stacks per step would make each step's backward
        # write a gradient of the whole stack (a cost growing as T^2).
        return GivenFrames(videos, h.unbind(1), [s.unbind(1) for s in skips], observed, n_past)

    def step(self, given: GivenFrames, carry: Carry, t: int, feed_next: bool = True):
        """Step t of the model: the sites z_t (SVG-LP / FP) and x_t (observed when ``given`` says
        so); returns the predicted mean x_hat_t and the recurrence's state for step t + 1 (its input
        only when ``feed_next``). ``model`` runs it for every step inside the videos plate; a
        sequential Monte Carlo sampler runs it one step at a time (``svg_pyro.inference.condition``)."""
        prior_state = carry.prior_state
        if self.prior is None:
            predictor_input = carry.h_prev
        else:
            prior, prior_state = self.prior(carry.h_prev, prior_state)
            with poutine.scale(scale=self.kl_weight):
                z = pyro.sample(latent_site(t), prior)
            predictor_input = broadcast_cat(carry.h_prev, z)
        g, predictor_state = self.predictor(predictor_input, carry.predictor_state)
        skip = self.skip_index(t, given.n_past)
        terms = (None if skip is None else carry.fed_skip_terms if carry.fed_skip_terms is not None
                 else self._true_skip_terms(given, skip))
        x_hat = self.decoder.decode(g, terms).float()  # fp32 density under autocast
        frame = given.videos[:, t] if t in given.observed else None
        pyro.sample(frame_site(t), frame_distribution(self.likelihood, x_hat, self.obs_scale), obs=frame)
        h_prev, fed_skip_terms = self._next_input(given, t, x_hat) if feed_next else (None, None)
        return x_hat, Carry(h_prev, prior_state, predictor_state, fed_skip_terms)

    def _true_skip_terms(self, given: GivenFrames, i: int) -> list:
        """The decoder's share of given frame i's skips, computed once per frame."""
        if i not in given.skip_terms:
            given.skip_terms[i] = self.decoder.skip_terms([s[i] for s in given.skips])
        return given.skip_terms[i]

    def _next_input(self, given: GivenFrames, t: int, x_hat: torch.Tensor):
        """The encoding of the frame fed at step t + 1 (the true x_t or the prediction x_hat_t), and,
        with skips from the previous frame, the decoder's skip terms of a fed prediction."""
        own = self._feeds_own(t, given, x_hat.shape[-4], x_hat.device)
        if own is False:
            return given.h[t], None
        h_own, skips_own = self.encoder(x_hat)
        terms_own = self.decoder.skip_terms(skips_own) if self.skip_frame == "previous" else None
        if own is True:
            return h_own, terms_own
        # scheduled sampling: some videos get their prediction, the others the true frame
        h = torch.where(own[:, None], h_own, given.h[t])
        if terms_own is not None:
            terms_own = [torch.where(own[:, None, None, None], a, b)
                         for a, b in zip(terms_own, self._true_skip_terms(given, t))]
        return h, terms_own

    forward = model  # calling the module runs the model, as the ELBO module in training does
