"""Weights-only checkpoints (what checkpoints/ ships): exported from a run, loaded by path or by short
name by every loader, fp16 storage within rounding, and refused where training would resume."""
import pytest
import torch

from svg_pyro import checkpoint
from svg_pyro.checkpoint import CheckpointError, export_weights, load_model
from svg_pyro.cli import run_subcommand
from svg_pyro.config import preset
from svg_pyro.data.datasets import make_datasets, stack_videos
from svg_pyro.inference.sampling import generate, sample_fingerprint
from svg_pyro.training.train import train


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    train(preset("tiny", num_digits=1, steps=3, checkpoint_every=3, sample_every=1000, probe_videos=0), out,
          progress=False)
    return out


def _frames(path):
    config, svg, _ = load_model(path)
    test = make_datasets(config)[1]
    videos = stack_videos(test, 2)
    torch.manual_seed(0)
    return generate(svg, videos, config.n_past, videos.shape[1], 2)


def test_exported_weights_generate_what_the_run_generates(run, tmp_path, monkeypatch, capsys):
    assert run_subcommand("export", [str(run / "checkpoint.pt"), str(tmp_path / "lp.pt")]) == 0
    assert "svg-lp at step 3" in capsys.readouterr().out
    state = torch.load(tmp_path / "lp.pt", weights_only=True)
    assert set(state) == {"format", "config", "step", "model", "fp16"}  # no optimizer, no RNG
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
    _, svg, _ = load_model(tmp_path / "half.pt")
    _, reference, _ = load_model(run / "checkpoint.pt")
    for a, b in zip(svg.parameters(), reference.parameters()):
        assert a.dtype == torch.float32
        torch.testing.assert_close(a, b.half().float())  # exactly the fp16 rounding of the weights


def test_export_never_writes_over_a_training_checkpoint_and_asks_before_replacing(run, tmp_path, capsys):
    """Exporting a run's checkpoint onto itself (or onto any training checkpoint) is refused, forced
    or not, and leaves the file byte for byte; an existing weights file is replaced only with --force."""
    ckpt = run / "checkpoint.pt"
    before = ckpt.read_bytes()
    for force in ([], ["--force"]):
        assert run_subcommand("export", [str(ckpt), str(ckpt), *force]) == 2
        assert "is a training checkpoint" in capsys.readouterr().err
        assert ckpt.read_bytes() == before
    weights = tmp_path / "lp.pt"
    assert run_subcommand("export", [str(ckpt), str(weights)]) == 0
    first = weights.read_bytes()
    assert run_subcommand("export", [str(ckpt), str(weights), "--half"]) == 2
    assert "already exists; pass --force" in capsys.readouterr().err
    assert weights.read_bytes() == first
    assert run_subcommand("export", [str(ckpt), str(weights), "--half", "--force"]) == 0
    assert torch.load(weights, weights_only=True)["fp16"] is True


def test_training_refuses_to_resume_from_weights_only(run, tmp_path):
    export_weights(run / "checkpoint.pt", tmp_path / "checkpoint.pt")
    with pytest.raises(CheckpointError, match="holds weights only"):
        train(preset("tiny", num_digits=1, steps=6, probe_videos=0), tmp_path, resume=True, progress=False)


def test_every_shipped_model_samples_what_was_recorded_and_says_how_it_was_made():
    """checkpoints/ holds the trained models (30 MB at most); manifest.json gives each one's command
    and commit and the sample fingerprint recorded when it shipped (experiments/ship.py export)."""
    import json
    import re

    manifest = json.loads((checkpoint.SHIPPED / "manifest.json").read_text())
    names = checkpoint.shipped_models()
    assert names and sorted(manifest) == names  # every file has its entry, every entry its file
    assert sum((checkpoint.SHIPPED / f"{n}.pt").stat().st_size for n in names) <= 30e6
    for name in names:
        entry = manifest[name]
        assert re.fullmatch(rf"OMP_NUM_THREADS=1 python svi_train.py .* --out runs/ship/{name}", entry["command"])
        assert re.fullmatch(r"[0-9a-f]{7,40}", entry["commit"])
        assert load_model(name)[2] == entry["steps"]
        assert sample_fingerprint(name) == pytest.approx(entry["fingerprint"], abs=1e-4), name


def test_power_law_fit_recovers_an_exact_law_and_brackets_a_noisy_one():
    """experiments/ship.py trend: the fit that says when a learning curve would reach a target."""
    import importlib.util
    from pathlib import Path

    import numpy as np

    path = Path(__file__).resolve().parents[1] / "experiments" / "ship.py"
    spec = importlib.util.spec_from_file_location("ship", path)
    ship = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ship)
    steps = np.arange(1000, 7001, 250)
    exact = ship.power_law_fit(steps, 50 * steps ** -0.5, target=0.5)  # 0.5 = 50 / sqrt(10,000)
    assert exact["slope"] == pytest.approx(-0.5, abs=1e-9)
    assert exact["reach"] == pytest.approx(10_000, rel=1e-6)
    noisy = ship.power_law_fit(steps, 50 * steps ** -0.5 * np.exp(np.random.default_rng(0).normal(0, 0.1, len(steps))),
                               target=0.5)
    low, high = noisy["slope_interval"]
    assert low < -0.5 < high and high - low < 0.5
    assert noisy["reach_range"][0] < 10_000 < noisy["reach_range"][1]
    flat = ship.power_law_fit(steps, np.linspace(2, 2.1, len(steps)), target=0.5)
    assert flat["reach"] == float("inf")  # an error that does not fall never gets there
