"""Weights-only checkpoints (what checkpoints/ ships): exported from a run, loaded by path or by short
name by every loader, fp16 storage within rounding, and refused where training would resume."""
import pytest
import torch

from svg_pyro import checkpoint
from svg_pyro.checkpoint import CheckpointError, export_weights, load_model
from svg_pyro.cli import run_subcommand
from svg_pyro.config import preset
from svg_pyro.datasets import make_datasets
from svg_pyro.sampling import generate
from svg_pyro.train import train


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    train(preset("tiny", num_digits=1, steps=3, checkpoint_every=3, sample_every=1000, probe_videos=0), out,
          progress=False)
    return out


def _frames(path):
    config, svg, guide, _ = load_model(path)
    test = make_datasets(config)[1]
    videos = torch.stack([test[i] for i in range(2)])
    torch.manual_seed(0)
    return generate(svg, guide, videos, config.n_past, videos.shape[1], 2)


def test_exported_weights_generate_what_the_run_generates(run, tmp_path, monkeypatch, capsys):
    assert run_subcommand("export", [str(run / "checkpoint.pt"), str(tmp_path / "lp.pt")]) == 0
    assert "svg-lp at step 3" in capsys.readouterr().out
    state = torch.load(tmp_path / "lp.pt", weights_only=True)
    assert set(state) == {"format", "config", "step", "model", "guide", "fp16"}  # no optimizer, no RNG
    assert torch.equal(_frames(tmp_path / "lp.pt"), _frames(run / "checkpoint.pt"))
    # a short name resolves in the shipped folder, for the library and the commands alike
    monkeypatch.setattr(checkpoint, "SHIPPED", tmp_path)
    assert torch.equal(_frames("lp"), _frames(run / "checkpoint.pt"))
    assert run_subcommand("trajectory", ["--checkpoint", "lp", "--out", str(tmp_path / "study"), "--samples", "1",
                                         "--digits", "1", "--wall-steps", "2", "--no-progress"]) == 0
    assert run_subcommand("evaluate", ["--checkpoint", "nope"]) == 2
    assert "name a shipped model (lp)" in capsys.readouterr().err


def test_half_weights_are_half_the_size_and_load_as_fp32(run, tmp_path):
    export_weights(run / "checkpoint.pt", tmp_path / "full.pt")
    export_weights(run / "checkpoint.pt", tmp_path / "half.pt", half=True)
    full, half = (tmp_path / "full.pt").stat().st_size, (tmp_path / "half.pt").stat().st_size
    assert half < 0.6 * full
    _, svg, _, _ = load_model(tmp_path / "half.pt")
    _, reference, _, _ = load_model(run / "checkpoint.pt")
    for a, b in zip(svg.parameters(), reference.parameters()):
        assert a.dtype == torch.float32
        torch.testing.assert_close(a, b.half().float())  # exactly the fp16 rounding of the weights


def test_training_refuses_to_resume_from_weights_only(run, tmp_path):
    export_weights(run / "checkpoint.pt", tmp_path / "checkpoint.pt")
    with pytest.raises(CheckpointError, match="holds weights only"):
        train(preset("tiny", num_digits=1, steps=6, probe_videos=0), tmp_path, resume=True, progress=False)
