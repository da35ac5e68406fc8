"""Surprise per frame (``svg-pyro score``): -log p(x_t | x_<t) from the model's own bound, checked
against the exact density of the deterministic model, on an injected jump, and on bad input."""
import json

import numpy as np
import pytest
import torch

from svg_pyro.checkpoint import load_model
from svg_pyro.cli import run_subcommand
from svg_pyro.data.datasets import make_datasets, stack_videos
from svg_pyro.evaluation.score import score_videos


JUMP_FRAME = 7


def _videos(config, count, frames=15):
    return stack_videos(make_datasets(config, split_lengths=(config.frames_per_video, frames))[1], count)


def test_the_deterministic_models_surprise_is_its_exact_density_per_frame():
    """Without a latent, -log p(x_t | x_<t) is the Gaussian density of x_t around the prediction
    from the true previous frames: written out by hand here."""
    config, svg, _ = load_model("smmnist-1digit-det")
    videos = _videos(config, 3, frames=12)
    scores = score_videos(svg, videos, config.n_past, particles=5)
    with torch.no_grad():
        means = svg.model(videos, config.n_past)
    exact = -torch.distributions.Normal(means, config.likelihood_scale).log_prob(videos[:, 1:]).sum((2, 3, 4))
    np.testing.assert_allclose(scores["surprise"], exact.double().numpy(), rtol=1e-5)
    np.testing.assert_allclose(scores["elbo_surprise"], exact.double().numpy(), rtol=1e-5)


def test_a_digit_that_jumps_20_pixels_is_the_surprise_and_earlier_frames_do_not_see_it():
    config, svg, _ = load_model("smmnist-1digit-svg-lp")
    videos = _videos(config, 8)
    jumped = videos.clone()
    jumped[:, JUMP_FRAME:] = torch.roll(videos[:, JUMP_FRAME:], shifts=20, dims=-1)  # 20 px to the right
    torch.manual_seed(0)
    plain = score_videos(svg, videos, config.n_past, particles=10)["surprise"]
    torch.manual_seed(0)
    jump = score_videos(svg, jumped, config.n_past, particles=10)["surprise"]
    at = JUMP_FRAME - 1  # column of frame 7 (frames 1..T-1)
    assert (jump[:, at] > plain[:, at] + 100).all(), (jump[:, at], plain[:, at])
    assert (jump[:, at] == jump.max(1)).mean() >= 0.75  # for most videos the jump is its most surprising frame
    # a frame's surprise depends on the frames up to it only: the same draws give the same scores before
    np.testing.assert_allclose(jump[:, :at], plain[:, :at], rtol=1e-6)


def test_cli_writes_the_documented_scores_and_refuses_bad_input(tmp_path, capsys):
    config, *_ = load_model("smmnist-1digit-svg-lp")
    videos = (_videos(config, 3, frames=8)[:, :, 0].numpy() * 255).round().astype(np.uint8)  # (N, T, H, W) uint8
    np.save(tmp_path / "videos.npy", videos)
    out = tmp_path / "out"
    assert run_subcommand("score", ["--checkpoint", "smmnist-1digit-svg-lp", "--input", str(tmp_path / "videos.npy"),
                                    "--out", str(out), "--particles", "4", "--no-progress"]) == 0
    result = json.loads((out / "scores.json").read_text())
    assert result["bound"] == "iwae" and result["particles"] == 4 and result["frames"] == list(range(1, 8))
    assert np.array(result["per_frame"]).shape == (3, 7) and (out / "scores.png").stat().st_size > 1000
    assert "surprise median" in capsys.readouterr().out
    bad = {"flat.npy": np.zeros((3, 64, 64), np.uint8), "size.npy": np.zeros((2, 6, 32, 32), np.uint8),
           "int16.npy": np.zeros((2, 6, 64, 64), np.int16), "range.npy": np.full((2, 6, 64, 64), 2.0, np.float32)}
    for name, array in bad.items():
        np.save(tmp_path / name, array)
    (tmp_path / "text.npy").write_text("not an array")
    for name, reason in (("flat.npy", "shape (3, 64, 64)"), ("size.npy", "(N, T, 64, 64)"), ("int16.npy", "int16"),
                         ("range.npy", "must lie in [0, 1]"), ("text.npy", "not a readable .npy"),
                         ("missing.npy", "does not exist")):
        assert run_subcommand("score", ["--checkpoint", "smmnist-1digit-svg-lp", "--input", str(tmp_path / name),
                                        "--out", str(tmp_path / "bad"), "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and reason in err, (name, err)
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("videos", [0, -1])
def test_a_count_below_one_is_refused(videos, tmp_path, capsys):
    assert run_subcommand("score", ["--checkpoint", "smmnist-1digit-svg-lp", "--videos", str(videos),
                                    "--out", str(tmp_path), "--no-progress"]) == 2
    assert "--videos must be at least 1" in capsys.readouterr().err
