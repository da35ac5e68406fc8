"""The reference procedure in plain torch, on this project's networks: the yardsticks that the
tests, the benchmarks and ``experiments/reference_training.py`` hold the Pyro program against.

- ``plain_negative_elbo``: the -ELBO that ``TraceMeanField_ELBO`` computes from the Pyro program,
  written out by hand (the tests compare the two; the benchmarks time Pyro's overhead with it);
- ``reference_step_loss`` and ``reference_generate``: the published code's training step and
  generator, transcribed (what the project's step and sampler are measured against).
"""
from __future__ import annotations

import math

import torch


def gaussian_nll(x, x_hat, sigma: float) -> torch.Tensor:
    """-log N(x | x_hat, sigma^2 I), summed over (C, H, W)."""
    d = x.shape[-3:].numel()
    return (0.5 * ((x - x_hat) / sigma) ** 2).flatten(-3).sum(-1) + d * (math.log(sigma) + 0.5 * math.log(2 * math.pi))


def plain_negative_elbo(svg, videos: torch.Tensor, n_past: int) -> torch.Tensor:
    """The same single-sample -ELBO (analytic KL) as TraceMeanField_ELBO, in plain torch, of a
    teacher-forced model (``feed`` "true").

    Summed over the batch, like Pyro's. Used by the overhead benchmark and the tests."""
    h, skips = svg.encoder(videos)
    h, skips = h.unbind(1), [s.unbind(1) for s in skips]  # as SVG.model: split the time axis once
    total = videos.new_zeros(())
    prior_state = predictor_state = posterior_state = None
    skip_terms = {}
    for t in range(1, videos.shape[1]):
        h_prev = h[t - 1]
        if svg.prior is None:
            predictor_input = h_prev
        else:
            mu, sigma, posterior_state = svg.posterior.net(h[t], posterior_state)
            z = mu + sigma * torch.randn_like(mu)
            prior, prior_state = svg.prior(h_prev, prior_state)
            p_mu, p_sigma = prior.base_dist.loc, prior.base_dist.scale
            kl = (torch.log(p_sigma / sigma) + (sigma**2 + (mu - p_mu) ** 2) / (2 * p_sigma**2) - 0.5).sum(-1)
            total = total + svg.kl_weight * kl.sum()
            predictor_input = torch.cat([h_prev, z], -1)
        g, predictor_state = svg.predictor(predictor_input, predictor_state)
        skip = svg.skip_index(t, n_past)  # teacher forced: "previous" is the true x_{t-1}
        if skip is not None and skip not in skip_terms:
            skip_terms[skip] = svg.decoder.skip_terms([s[skip] for s in skips])
        x_hat = svg.decoder.decode(g, None if skip is None else skip_terms[skip])
        total = total + gaussian_nll(videos[:, t], x_hat, svg.obs_scale).sum()
    return total


def reference_step_loss(svg, videos: torch.Tensor, n_past: int, beta: float):
    """The reference code's training loss, transcribed in plain torch on this project's networks.

    Unlike the ELBO above it encodes frame by frame (BatchNorm statistics of each step's B frames,
    and the target frame encoded a second time for the posterior), keeps the skips of x_{t-1} only
    while t < n_past (so x_{n_past-2} afterwards), and is in reference units: sum over steps of
    mean-pixel MSE + beta * KL, KL summed over z dims and averaged over the batch.
    Returns (loss, mse_t, kl_t) with per-step lists of floats."""
    mse_t, kl_t = [], []
    loss = videos.new_zeros(())
    prior_state = predictor_state = posterior_state = None
    skips = None
    for t in range(1, videos.shape[1]):
        h_prev, prev_skips = svg.encoder(videos[:, t - 1])
        h_target, _ = svg.encoder(videos[:, t])
        if t < n_past or skips is None:
            skips = prev_skips
        mu, sigma, posterior_state = svg.posterior.net(h_target, posterior_state)
        z = mu + sigma * torch.randn_like(mu)
        p_mu, p_sigma, prior_state = svg.prior.net(h_prev, prior_state)
        kl = (torch.log(p_sigma / sigma) + (sigma**2 + (mu - p_mu) ** 2) / (2 * p_sigma**2) - 0.5).sum(-1).mean()
        g, predictor_state = svg.predictor(torch.cat([h_prev, z], -1), predictor_state)
        mse = torch.nn.functional.mse_loss(svg.decoder.decode_concatenated(g, skips), videos[:, t])
        loss = loss + mse + beta * kl
        mse_t.append(mse.item())
        kl_t.append(kl.item())
    return loss, mse_t, kl_t


@torch.no_grad()
def reference_generate(svg, videos, n_past: int, n_frames: int, num_samples: int):
    """The reference generator: (num_samples, B, n_frames, C, H, W), one sample after the other,
    each frame encoded per step (the conditioning frames twice) and decoded over concatenated skips."""
    samples = []
    for _ in range(num_samples):
        prior_state = predictor_state = posterior_state = skips = None
        x_in, frames = videos[:, 0], [videos[:, 0]]
        for t in range(1, n_frames):
            h, step_skips = svg.encoder(x_in)
            if t < n_past or skips is None:
                skips = step_skips
            if t < n_past:
                h_target, _ = svg.encoder(videos[:, t])
                mu, sigma, posterior_state = svg.posterior.net(h_target, posterior_state)
                _, _, prior_state = svg.prior.net(h, prior_state)
                x_next = videos[:, t]
            else:
                mu, sigma, prior_state = svg.prior.net(h, prior_state)
            z = mu + sigma * torch.randn_like(mu)
            g, predictor_state = svg.predictor(torch.cat([h, z], -1), predictor_state)
            x_in = x_next if t < n_past else svg.decoder.decode_concatenated(g, skips)
            frames.append(x_in)
        samples.append(torch.stack(frames, 1))
    return torch.stack(samples)
