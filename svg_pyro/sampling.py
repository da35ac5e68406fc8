"""Conditional generation with ``pyro.infer.Predictive``.

The reference procedure: z_t from the posterior (guide) on the conditioning steps, from the
model's prior after them; generated frames are fed back as the next input.
"""
from __future__ import annotations

import torch
from pyro.infer import Predictive


@torch.no_grad()
def generate(svg, guide, videos: torch.Tensor, n_past: int, n_frames: int, num_samples: int = 1):
    """Futures of ``videos`` (B, >=n_past, C, H, W): (num_samples, B, n_frames, C, H, W).

    The first ``n_past`` frames of every sample are the conditioning frames themselves.
    """
    context = videos[:, :n_past]
    predictive = Predictive(svg.model, guide=guide, num_samples=num_samples, return_sites=["_RETURN"])
    means = predictive(context, n_past, n_frames)["_RETURN"]  # (S, B, n_frames-1, C, H, W)
    context = context.expand(num_samples, *context.shape)
    return torch.cat([context, means[:, :, n_past - 1:]], dim=2)
