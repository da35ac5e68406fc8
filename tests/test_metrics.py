"""PSNR and SSIM against scikit-image, on random and on real Stochastic Moving MNIST frames."""
import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from svg_pyro.data.datasets import stack_videos
from svg_pyro.evaluation.metrics import MSE_FLOOR, psnr, ssim


def skimage_ssim(x: torch.Tensor, y: torch.Tensor) -> float:
    """scikit-image's SSIM of one (C, H, W) pair with the protocol's settings. It filters the whole
    image and averages after cropping (win_size - 1) // 2 = 5 pixels per border: the valid map."""
    return structural_similarity(x.double().numpy(), y.double().numpy(), gaussian_weights=True, sigma=1.5,
                                 use_sample_covariance=False, data_range=1, channel_axis=0)


def skimage_psnr(x: torch.Tensor, y: torch.Tensor) -> float:
    return peak_signal_noise_ratio(y.double().numpy(), x.double().numpy(), data_range=1)


def compare(x, y):
    """Our batched values against scikit-image frame by frame."""
    ours_ssim, ours_psnr = ssim(x, y), psnr(x, y)
    assert ours_ssim.shape == ours_psnr.shape == x.shape[:-3]
    flat_x, flat_y = x.reshape(-1, *x.shape[-3:]), y.reshape(-1, *y.shape[-3:])
    ref_ssim = [skimage_ssim(a, b) for a, b in zip(flat_x, flat_y)]
    ref_psnr = [skimage_psnr(a, b) for a, b in zip(flat_x, flat_y)]
    np.testing.assert_allclose(ours_ssim.flatten().numpy(), ref_ssim, atol=2e-5)
    np.testing.assert_allclose(ours_psnr.flatten().numpy(), ref_psnr, rtol=1e-5)
    return ref_ssim


@pytest.mark.parametrize("channels", [1, 3])
def test_random_frames_match_scikit_image(channels):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, channels, 64, 64, generator=g)
    noise = torch.tensor([0.02, 0.1, 2.0]).view(1, 3, 1, 1, 1)
    y = (x + noise * torch.randn(x.shape, generator=g)).clamp(0, 1)
    ref = compare(x, y)
    assert max(ref) > 0.9 and min(ref) < 0.3  # the cases span the range of SSIM


def test_non_square_frames_match_scikit_image():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 1, 40, 56, generator=g)
    compare(x, (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(0, 1))


def test_real_frames_match_scikit_image(tiny_data):
    _, _, test = tiny_data
    video = stack_videos(test, 3)  # (3, 5, 1, 64, 64)
    # a frame against the next one (motion), against a blurred copy, and against itself
    blurred = torch.nn.functional.avg_pool2d(video.flatten(0, 1), 3, 1, 1).view_as(video)
    ref = compare(video[:, 1:], video[:, :-1])
    compare(video, blurred)
    assert 0.2 < np.mean(ref) < 0.95
    assert torch.allclose(ssim(video, video), torch.ones(3, 5))
    assert torch.allclose(psnr(video, video), torch.full((3, 5), -10 * np.log10(MSE_FLOOR)))


def test_psnr_is_ten_log10_of_inverse_mse():
    x = torch.zeros(1, 4, 4)
    y = torch.full((1, 4, 4), 0.1)  # MSE 0.01 -> 20 dB
    assert psnr(x, y).item() == pytest.approx(20.0, rel=1e-5)


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="same shape"):
        ssim(torch.rand(1, 64, 64), torch.rand(1, 64, 32))
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(torch.rand(1, 8, 8), torch.rand(1, 8, 8))
    with pytest.raises(ValueError, match=r"\(\.\.\., C, H, W\)"):
        psnr(torch.rand(64, 64), torch.rand(64, 64))
