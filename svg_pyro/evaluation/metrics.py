"""Per-frame image quality: PSNR and SSIM, batched, in torch (any device).

Both take frames (..., C, H, W) with values in [0, 1] (data range 1) and return one value per
frame (...). Definitions follow the evaluation protocol that later papers use to compare with SVG:

- PSNR = 10 log10(1 / MSE), MSE over the frame's C*H*W pixels. A perfect frame would give +inf;
  the MSE is floored at ``MSE_FLOOR`` (PSNR at most 100 dB) so averages stay finite.
- SSIM with an 11x11 Gaussian window of standard deviation 1.5, *valid* convolution (no padding),
  constants C1 = 0.01^2 and C2 = 0.03^2, population (not sample) variances, averaged over the
  valid map and the channels. This equals scikit-image's ``structural_similarity(...,
  gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1)``, which filters
  with a truncated (radius 5) Gaussian and averages after cropping 5 pixels at every border.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from svg_pyro.errors import InvalidInput

MSE_FLOOR = 1e-10
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_C1 = 0.01**2
SSIM_C2 = 0.03**2
SSIM_SLICE = 64  # maps filtered at a time


def _check_pair(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.shape != y.shape:
        raise InvalidInput(f"frames to compare must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    if x.dim() < 3:
        raise InvalidInput(f"frames must have shape (..., C, H, W), got {tuple(x.shape)}")


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of each frame of ``x`` against ``y`` (..., C, H, W) -> (...)."""
    _check_pair(x, y)
    mse = (x.float() - y.float()).pow(2).flatten(-3).mean(-1)
    return 10 * torch.log10(1 / mse.clamp_min(MSE_FLOOR))


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """The normalised 1-D Gaussian of ``size`` taps; the 2-D window is its outer product."""
    offsets = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    weights = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return weights / weights.sum()


def _valid_filter_matrix(size: int, window: torch.Tensor) -> torch.Tensor:
    """(size - k + 1, size) matrix A with (A @ v)[i] = sum_j window[j] v[i + j]: valid filtering."""
    k = window.numel()
    rows = torch.arange(size - k + 1, device=window.device).unsqueeze(1)
    matrix = window.new_zeros(size - k + 1, size)
    matrix[rows, rows + torch.arange(k, device=window.device)] = window
    return matrix


def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """SSIM of each frame of ``x`` against ``y`` (..., C, H, W) -> (...); see the module doc."""
    _check_pair(x, y)
    lead, (c, h, w) = x.shape[:-3], x.shape[-3:]
    if min(h, w) < SSIM_WINDOW:
        raise InvalidInput(f"SSIM needs frames of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels, got {h}x{w}")
    x, y = x.reshape(-1, h, w), y.reshape(-1, h, w)
    window = gaussian_window().to(device=x.device, dtype=torch.float32)
    # Valid separable Gaussian filtering as two matrix products, A_h @ map @ A_w^T (much faster
    # than a one-channel conv2d on a CPU), over slices of maps that stay in cache.
    filters = _valid_filter_matrix(h, window), _valid_filter_matrix(w, window).T
    per_map = torch.cat([_ssim_maps(x[i:i + SSIM_SLICE].float(), y[i:i + SSIM_SLICE].float(), *filters)
                         for i in range(0, x.shape[0], SSIM_SLICE)])
    return per_map.reshape(*lead, c).mean(-1)


def _ssim_maps(x: torch.Tensor, y: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """Mean SSIM of each (H, W) map of x (N, H, W) against y, with the filter matrices."""
    maps = torch.cat([x, y, x * x, y * y, x * y])
    mu_x, mu_y, xx, yy, xy = (rows @ maps @ cols).chunk(5)
    var_x, var_y, cov = xx - mu_x**2, yy - mu_y**2, xy - mu_x * mu_y
    numerator = (2 * mu_x * mu_y + SSIM_C1) * (2 * cov + SSIM_C2)
    denominator = (mu_x**2 + mu_y**2 + SSIM_C1) * (var_x + var_y + SSIM_C2)
    return (numerator / denominator).flatten(1).mean(-1)


METRICS = {"ssim": ssim, "psnr": psnr}  # name -> function; higher is better for both


def describe() -> dict:
    """The metric definitions, recorded with every evaluation."""
    return {
        "psnr": f"10 log10(1 / MSE) per frame, MSE floored at {MSE_FLOOR:g} ({-10 * math.log10(MSE_FLOOR):g} dB max)",
        "ssim": (f"{SSIM_WINDOW}x{SSIM_WINDOW} Gaussian window, sigma {SSIM_SIGMA}, valid convolution, "
                 f"data range 1, C1=(0.01)^2, C2=(0.03)^2, population variances, mean over map and channels"),
    }


def interval(per_video: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean over videos (axis 0) and the 95% half-width 1.96 * std / sqrt(videos)."""
    n = per_video.shape[0]
    std = per_video.std(axis=0, ddof=1) if n > 1 else np.zeros(per_video.shape[1:])
    return per_video.mean(axis=0), 1.96 * std / np.sqrt(n)
