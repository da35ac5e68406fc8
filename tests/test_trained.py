"""The Python front door: ``svg_pyro.load`` gives one object that holds a trained model and samples,
scores and draws it without the caller passing n_past, building datasets or stacking videos."""
import imageio.v3 as iio
import pytest
import torch

import svg_pyro
from svg_pyro.checkpoint import CheckpointError, export_weights
from svg_pyro.config import preset
from svg_pyro.data.smmnist import StochasticMovingMNIST
from svg_pyro.errors import InvalidInput
from svg_pyro.training.train import train


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for model in ("svg-lp", "det"):
        train(preset("tiny", model=model, steps=2, sample_every=10_000, probe_videos=0), root / model, progress=False)
    return {m: root / m / "checkpoint.pt" for m in ("svg-lp", "det")}


def test_test_videos_are_the_generators_and_samples_start_with_them(runs):
    model = svg_pyro.load(runs["svg-lp"])
    assert isinstance(model, svg_pyro.TrainedModel) and model.step == 2 and model.n_past == 2
    videos = model.test_videos(3, frames=7)
    truth = StochasticMovingMNIST("test", 7, num_digits=2, num_videos=256, seed=0)  # the tiny preset's test set
    assert torch.equal(videos, torch.stack([truth[i] for i in range(3)]))
    torch.manual_seed(0)
    futures = model.sample(videos, samples=4)
    assert futures.shape == (4, 3, 7, 1, 64, 64)
    assert torch.equal(futures[:, :, :2], videos[None, :, :2].expand(4, -1, -1, -1, -1, -1))
    assert not torch.equal(futures[0, :, 2:], futures[1, :, 2:])  # the latent makes the samples differ
    # one video (T, C, H, W) is a batch of one
    torch.manual_seed(1)
    alone = model.sample(videos[0], samples=4)
    torch.manual_seed(1)
    assert torch.equal(alone, model.sample(videos[:1], samples=4))
    assert model.sample(videos[:, :2], frames=5).shape == (1, 3, 5, 1, 64, 64)  # given frames only


def test_bounds_of_the_deterministic_model_are_its_exact_log_likelihood(runs):
    """Without a latent every bound is log p(x); here written out as the Gaussian density of each
    frame around the model's prediction from the true previous frames."""
    model = svg_pyro.load(runs["det"])
    videos = model.test_videos(2)
    bounds = model.bounds(videos, particles=(1, 5))
    with torch.no_grad():
        means = model.svg.model(videos, model.n_past)
    exact = torch.distributions.Normal(means, model.config.likelihood_scale).log_prob(videos[:, 1:]).sum((1, 2, 3, 4))
    for value in (bounds["elbo"], bounds["iwae"][1], bounds["iwae"][5]):
        torch.testing.assert_close(torch.as_tensor(value, dtype=torch.float64), exact.double(), rtol=1e-5, atol=0)


def test_save_samples_draws_truth_above_each_videos_samples(runs, tmp_path):
    model = svg_pyro.load(runs["svg-lp"])
    videos = model.test_videos(2)
    futures = model.sample(videos, samples=3)
    model.save_samples(tmp_path / "grid.png", videos, futures)
    gif = iio.imread(tmp_path / "grid.gif", index=None)
    assert gif.shape[0] == videos.shape[1]  # a GIF frame per video frame
    assert gif.shape[2] == 2 * (1 + 3) * gif.shape[1]  # side by side: truth + 3 samples per video, square cells
    assert (tmp_path / "grid.png").stat().st_size > 1000


def test_bad_input_is_one_clear_error(runs):
    model = svg_pyro.load(runs["svg-lp"])
    with pytest.raises(InvalidInput, match=r"shape \(batch, time, 1, 64, 64\)"):
        model.sample(torch.rand(2, 5, 3, 64, 64))
    with pytest.raises(InvalidInput, match=r"pixel values must lie in \[0, 1\]"):
        model.sample(2 * torch.ones(1, 5, 1, 64, 64))
    with pytest.raises(InvalidInput, match="conditioning frames"):
        model.sample(model.test_videos(1)[:, :1], frames=5)
    with pytest.raises(InvalidInput, match="count must lie in 1..256"):
        model.test_videos(0)


def test_short_names_resolve_in_the_folder_the_variable_names(runs, tmp_path, monkeypatch):
    """An installed wheel has no repository checkpoints/ folder: SVG_PYRO_CHECKPOINTS points at one."""
    export_weights(runs["svg-lp"], tmp_path / "mine.pt")
    monkeypatch.setenv("SVG_PYRO_CHECKPOINTS", str(tmp_path))
    assert svg_pyro.load("mine").path == tmp_path / "mine.pt"
    monkeypatch.setenv("SVG_PYRO_CHECKPOINTS", str(tmp_path / "empty"))
    with pytest.raises(CheckpointError, match="set SVG_PYRO_CHECKPOINTS to a clone's checkpoints/"):
        svg_pyro.load("mine")
