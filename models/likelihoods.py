"""The frame likelihood p(x_t | x_hat_t): the swappable observation site of SVG.

Each family is a Pyro distribution over a whole frame whose mean is the decoder's output x_hat
(in [0, 1], the decoder ends in a sigmoid), so sampling, feeding frames back and evaluation use
x_hat whatever the family:

- ``gaussian``: N(x_hat, sigma^2) per pixel, the paper's; sigma = sqrt(beta * D / 2) for D pixels
  makes -log p = MSE / beta + const per frame, the reference loss's units.
- ``laplace``: Laplace(x_hat, b) per pixel; b = beta * D makes -log p = mean absolute error / beta
  + const, the L1 twin of the same units.
- ``bernoulli``: Bernoulli(x_hat) per pixel with grey levels as targets (binary cross-entropy), the
  usual choice for MNIST-like frames. It is not a normalised density over grey frames, so its
  likelihood bound is not comparable with the other two (it has no scale: beta does not enter).
"""
from __future__ import annotations

import math

import pyro.distributions as dist
import torch

LIKELIHOODS = ("gaussian", "laplace", "bernoulli")


def likelihood_scale(likelihood: str, beta: float, pixels: int) -> float | None:
    """The family's per-pixel scale that puts -log p in the reference loss's units (None: no scale)."""
    return {"gaussian": math.sqrt(beta * pixels / 2), "laplace": beta * pixels, "bernoulli": None}[likelihood]


def frame_distribution(likelihood: str, x_hat: torch.Tensor, scale: float | None):
    """p(x_t | x_hat): a distribution with event shape (C, H, W) and mean ``x_hat``."""
    if likelihood == "gaussian":
        return dist.Normal(x_hat, scale).to_event(3)
    if likelihood == "laplace":
        return dist.Laplace(x_hat, scale).to_event(3)
    # grey-level frames are not in Bernoulli's support {0, 1}: its support check is turned off here
    return dist.Bernoulli(probs=x_hat, validate_args=False).to_event(3)
