"""Futures consistent with frames observed at any steps: sequential Monte Carlo over SVG's latents.

SVG's guide q(z_t | x_{1:t}) knows only the past, so a frame observed after a gap (a goal frame, the
far end of an interval to fill in) needs inference. ``condition`` runs ``pyro.infer.SMCFilter`` on
each video with S particles (latent paths):

- the conditioning frames 0..n_past-1 are handled as generation handles them: z_t from the guide,
  not weighed. Without later observations the particles are therefore draws of ``generate``;
- each later step t runs the model's own step (``SVG.step``) on every particle, z_t proposed from
  the prior (a bootstrap filter: proposal and prior cancel in the weights), or, with
  ``proposal="guide"``, from the guide q(z_t | x_1:t) on the observed steps (its LSTM run over the
  frames as observed or generated; the weights then carry p(z_t) / q(z_t) too);
- a frame observed at step t is scored by its likelihood, p(x_t | particle)^temperature multiplies
  the particle's weight, and the frame is fed to the recurrence (and the skips, as the model's skip
  setting says), as in training. The filter resamples the particles (systematically) whenever the
  effective sample size (ESS) falls under half their number.

With ``temperature`` 1 the particles target the model's own posterior given every observed frame.
A likelihood over thousands of pixels is sharp (a digit a few pixels off loses tens of nats), so
the weights may fall on one particle (ESS near 1): the draws then repeat that particle. A
temperature below 1 is tempering: the weights follow p(x_obs | path)^temperature, as if each observed
frame were a 1/temperature times noisier measurement, so more paths keep weight (a higher ESS)
at the price of a broader posterior than the model's. ``ess`` reports the effective sample size
at each observed step after the conditioning frames, before resampling.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.infer import SMCFilter
from pyro.poutine.messenger import Messenger
from tqdm.auto import tqdm

from svg_pyro.errors import InvalidInput
from svg_pyro.models.sites import latent_site
from svg_pyro.models.svg import Carry, check_video_shape


PROPOSALS = ("prior", "guide")
MAX_MEMORY = 16 * 2**30  # bytes a video's particles may take
FRAME_COPIES = 4  # the particles' frames, their resampled copy and the networks' activations, roughly


@dataclass
class Conditioned:
    frames: torch.Tensor  # (samples, B, n_frames, C, H, W): the given frames 0..n_past-1, then predicted means
    ess: np.ndarray  # (B, len(later)): effective sample size at each observed step after n_past
    later: list[int]  # the observed steps after the conditioning frames
    particles: int
    temperature: float


def parse_steps(spec: str, n_frames: int) -> list[int]:
    """"0-4,14" -> [0, 1, 2, 3, 4, 14]: frame indices, each below ``n_frames``."""
    steps = set()
    try:
        for part in spec.split(","):
            first, _, last = part.strip().partition("-")
            steps.update(range(int(first), int(last or first) + 1))
    except ValueError:
        raise InvalidInput(f"--observe {spec!r} is not a list of frames and ranges such as 0-4,14") from None
    if not steps or min(steps) < 0 or max(steps) >= n_frames:
        raise InvalidInput(f"--observe {spec!r} must name frames within 0..{n_frames - 1} (--frames {n_frames})")
    return sorted(steps)


class _Temper(Messenger):
    """Scales the log-likelihood of observed sites by ``temperature`` (tempering)."""

    def __init__(self, temperature: float):
        super().__init__()
        self.temperature = temperature

    def _pyro_sample(self, msg):
        if msg["is_observed"]:
            msg["scale"] = msg["scale"] * self.temperature


_CARRY = tuple(f.name for f in dataclasses.fields(Carry))


def _put(state, key: tuple, value) -> None:
    """A tensor, or nested lists / tuples of them (LSTM states), under ``key`` + their indices."""
    if torch.is_tensor(value):
        state[key] = value
    elif value is not None:
        for i, part in enumerate(value):
            _put(state, key + (i,), part)


def _get(state, key: tuple):
    if key in state:
        return state[key]
    parts = [k[len(key)] for k in state if k[:len(key)] == key and len(k) > len(key)]
    return [_get(state, key + (i,)) for i in range(max(parts) + 1)] if parts else None


def _store(state, carry: Carry) -> None:
    """The recurrence's tensors in the filter's state (resampled with the particles)."""
    for key in [k for k in state if k[0] in _CARRY]:
        del state[key]
    for name in _CARRY:
        _put(state, (name,), getattr(carry, name))


def _load(state) -> Carry:
    return Carry(*(_get(state, (name,)) for name in _CARRY))


POSTERIOR = ("posterior_state",)  # the guide's LSTM state over the frames so far (for its proposals)


class _Model:
    """SMCFilter's model: SVG's steps after the conditioning frames, for one video. Its state also
    keeps each step's z (``("z", t)``) and predicted frame (``("frame", t)``), and, for the guide's
    proposals, the guide's LSTM state over the frames as observed or generated."""

    def __init__(self, svg, given, n_frames: int, temperature: float, track_posterior: bool):
        self.svg, self.given, self.n_frames, self.temperature = svg, given, n_frames, temperature
        self.track_posterior = track_posterior

    def init(self, state, carry: Carry, posterior_state):
        _store(state, carry)
        if self.track_posterior:
            _put(state, POSTERIOR, posterior_state)

    def step(self, state, t: int):
        with _Temper(self.temperature):
            trace = poutine.trace(self.svg.step).get_trace(self.given, _load(state), t,
                                                           feed_next=t + 1 < self.n_frames)
        x_hat, carry = trace.nodes["_RETURN"]["value"]
        _store(state, carry)
        state[("frame", t)] = x_hat
        state[("z", t)] = trace.nodes[latent_site(t)]["value"]
        if self.track_posterior:  # q(z_t | x_1:t) reads frame t: the true one when observed
            h = self.given.h[t] if t in self.given.observed else carry.h_prev
            if h is not None:
                _put(state, POSTERIOR, self.svg.posterior.net(h, _get(state, POSTERIOR))[2])


class _Proposal:
    """SMCFilter's guide: z_t from the model's own prior (the bootstrap filter: the weights keep the
    likelihood only), or, with ``use_guide``, from the guide q(z_t | x_1:t) on the observed steps
    (the weights then also carry p(z_t) / q(z_t))."""

    def __init__(self, svg, given, use_guide: bool):
        self.svg, self.given, self.use_guide = svg, given, use_guide

    def init(self, state, carry: Carry, posterior_state):
        pass

    def step(self, state, t: int):
        if self.use_guide and t in self.given.observed:
            mu, sigma, _ = self.svg.posterior.net(self.given.h[t], _get(state, POSTERIOR))
            proposal = dist.Normal(mu, sigma).to_event(1)
        else:
            carry = _load(state)
            proposal, _ = self.svg.prior(carry.h_prev, carry.prior_state)
        with poutine.scale(scale=self.svg.kl_weight):  # as the model's site
            pyro.sample(latent_site(t), proposal)


class _RecordingFilter(SMCFilter):
    """SMCFilter that keeps the ESS seen at each resampling decision. Reads the filter's weights
    (``state._log_weights``), a private attribute of the pinned Pyro version."""

    def __init__(self, *args, device, **kwargs):
        super().__init__(*args, **kwargs)
        self.state._log_weights = self.state._log_weights.to(device)  # Pyro makes them on the CPU
        self.ess = []

    def _maybe_importance_resample(self):
        probs = torch.softmax(self.state._log_weights, -1)
        self.ess.append(float(1 / probs.dot(probs)))
        super()._maybe_importance_resample()


def _prefix(svg, given, particles: int, track_posterior: bool):
    """The recurrence after the conditioning frames, for each particle: z_t from the guide's
    posterior (its network on the frames' encodings), the model replayed on it (as generation);
    and, when ``track_posterior``, the guide's LSTM state after those frames (else None)."""
    n_past = given.n_past
    h = torch.stack(given.h[:n_past], 1)
    guide = poutine.trace(svg.posterior).get_trace(h, svg.kl_weight)
    carry, posterior_state = Carry(given.h[0]), None
    with poutine.block(), poutine.replay(trace=guide), pyro.plate("videos", particles, dim=-1):
        for t in range(1, n_past):
            _, carry = svg.step(given, carry, t)
            if track_posterior:
                posterior_state = svg.posterior.net(given.h[t], posterior_state)[2]
    return carry, posterior_state


@torch.no_grad()
def run_filter(svg, video: torch.Tensor, n_past: int, observe, n_frames: int, particles: int,
               temperature: float = 1.0, proposal: str = "prior",
               resample_below: float = 0.5) -> tuple[SMCFilter, list[float]]:
    """The filter after the last step of one video (n_frames or more frames, C, H, W) given its
    frames ``observe``: its state holds each particle's predicted frames (``state["frame", t]``)
    and latents (``state["z", t]``) for t >= n_past, and its weights; also the ESS at each observed
    step after ``n_past``. ``proposal``: "prior" or "guide" (on the observed steps);
    ``resample_below``: the particles are resampled when the ESS falls under this share of them."""
    if proposal not in PROPOSALS:
        raise InvalidInput(f"proposal must be one of {PROPOSALS}, not {proposal!r}")
    device = next(svg.parameters()).device
    one = svg.given_frames(video[None, :n_frames].to(device), n_past, observe)
    # every particle reads the same given frames: their encodings are shared (expanded, not copied)
    given = dataclasses.replace(one, videos=one.videos.expand(particles, *one.videos.shape[1:]),
                                h=tuple(h.expand(particles, -1) for h in one.h))
    use_guide = proposal == "guide"
    smc = _RecordingFilter(_Model(svg, given, n_frames, temperature, use_guide), _Proposal(svg, given, use_guide),
                           particles, max_plate_nesting=0, ess_threshold=resample_below, device=device)
    smc.init(*_prefix(svg, given, particles, use_guide))
    smc.ess.clear()  # the conditioning steps are not weighed
    ess = []
    for t in range(n_past, n_frames):
        smc.step(t)
        if t in one.observed:
            ess.append(smc.ess[-1])
    return smc, ess


def condition_video(svg, video: torch.Tensor, n_past: int, observe, n_frames: int, samples: int,
                    particles: int, temperature: float = 1.0, proposal: str = "prior") -> tuple[torch.Tensor, list[float]]:
    """``samples`` futures (samples, n_frames, C, H, W) of one video, drawn from the filter's
    weighted particles, and the ESS at each observed step after ``n_past``."""
    smc, ess = run_filter(svg, video, n_past, observe, n_frames, particles, temperature, proposal)
    pick = torch.multinomial(torch.softmax(smc.state._log_weights, -1), samples, replacement=True)
    predicted = torch.stack([smc.state[("frame", t)][pick] for t in range(n_past, n_frames)], 1)
    context = video[:n_past].to(predicted.device).expand(samples, -1, -1, -1, -1)
    return torch.cat([context, predicted], 1), ess


def condition(svg, videos: torch.Tensor, n_past: int, observe, n_frames: int, samples: int,
              particles: int | None = None, temperature: float = 1.0, progress: bool = False,
              proposal: str = "prior") -> Conditioned:
    """Futures of ``videos`` (B, >= n_frames, C, H, W) given their frames at the indices ``observe``
    (which must hold the conditioning frames 0..n_past-1), by sequential Monte Carlo with
    ``particles`` particles per video (default: ``samples``); one video at a time, so memory grows
    with the particles, not the videos. See the module's docstring for what it targets."""
    check_video_shape(videos, svg.frame_shape)
    observe = sorted({int(t) for t in observe})
    particles = samples if particles is None else particles
    if svg.prior is None:
        raise InvalidInput("the deterministic model has no latent: its one future cannot be conditioned; "
                           "use an SVG-LP or SVG-FP model")
    if videos.shape[1] < n_frames or max(observe) >= n_frames:
        raise InvalidInput(f"the videos hold {videos.shape[1]} frames; observing {observe} over {n_frames} "
                           "frames needs that many")
    if samples < 1 or particles < 1 or not 0 < temperature <= 1:
        raise InvalidInput("samples and particles must be at least 1 and the temperature in (0, 1]")
    need = 4 * particles * n_frames * int(np.prod(svg.frame_shape)) * FRAME_COPIES
    if need > MAX_MEMORY:
        raise InvalidInput(f"{particles} particles of {n_frames} frames need about {need / 2**30:,.0f} GiB; "
                           f"lower --particles (all of a video's particles are held at once)")
    later = [t for t in observe if t >= n_past]
    frames, ess = [], []
    svg.eval()
    for video in tqdm(videos, desc="conditioning", unit="video", disable=not progress):
        f, e = condition_video(svg, video, n_past, observe, n_frames, samples, particles, temperature, proposal)
        frames.append(f.cpu())
        ess.append(e)
    return Conditioned(torch.stack(frames, 1), np.array(ess).reshape(len(videos), len(later)), later,
                       particles, temperature)
