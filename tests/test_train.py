"""Training end to end: the loss falls, resuming is exact, bad input fails clearly and safely."""
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from svg_pyro.checkpoint import CheckpointError, load_checkpoint
from svg_pyro.cli import run_subcommand
from svg_pyro.config import preset
from svg_pyro.data.datasets import check_video_values
from svg_pyro.models.svg import check_video_shape
from svg_pyro.training.train import TrainingDiverged, train


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _rows(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


FAST = dict(sample_every=10_000)  # sample grids are tested once, below


def test_tiny_training_lowers_the_loss_and_writes_its_outputs(tmp_path):
    config = preset("tiny", steps=30, checkpoint_every=15, sample_every=30)
    rows = train(config, tmp_path, progress=False)
    assert [r["step"] for r in rows] == list(range(1, 31))
    first = sum(r["loss"] for r in rows[:5]) / 5
    last = sum(r["loss"] for r in rows[-5:]) / 5
    assert last < 0.8 * first
    assert rows[-1]["mse"] < rows[0]["mse"]
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)  # plain tensors and containers
    assert state["step"] == 30 and state["config"]["model"] == "svg-lp"
    assert json.loads((tmp_path / "config.json").read_text()) == config.to_dict()
    assert (tmp_path / "samples_000030.png").stat().st_size > 1000
    assert (tmp_path / "samples_000030.gif").stat().st_size > 1000


@pytest.mark.parametrize("model,elbo", [("svg-lp", "trace"), ("svg-fp", "meanfield"), ("det", "trace")])
def test_resumed_run_reproduces_the_uninterrupted_run(tmp_path, model, elbo):
    config = preset("tiny", model=model, elbo=elbo, steps=6, checkpoint_every=3, **FAST)
    whole = train(config, tmp_path / "whole", progress=False)
    part = tmp_path / "part"
    train(preset("tiny", model=model, elbo=elbo, steps=3, checkpoint_every=3, **FAST), part, progress=False)
    train(config, part, resume=True, progress=False)
    keys = ("step", "loss", "mse", "kl")
    assert [[r[k] for k in keys] for r in _rows(part)] == [[r[k] for k in keys] for r in whole]


def test_resume_drops_metrics_logged_after_the_checkpoint(tmp_path):
    train(preset("tiny", steps=4, checkpoint_every=2, **FAST), tmp_path, progress=False)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["step"] == 4
    # pretend the run died at step 4 before its last checkpoint: restore the step-2 one
    train(preset("tiny", steps=2, **FAST), tmp_path / "b", progress=False)
    (tmp_path / "checkpoint.pt").write_bytes((tmp_path / "b" / "checkpoint.pt").read_bytes())
    train(preset("tiny", steps=5, **FAST), tmp_path, resume=True, progress=False)
    assert [r["step"] for r in _rows(tmp_path)] == [1, 2, 3, 4, 5]


def test_existing_checkpoint_is_never_overwritten_without_resume(tmp_path):
    train(preset("tiny", steps=2, **FAST), tmp_path, progress=False)
    before = _digest(tmp_path / "checkpoint.pt")
    with pytest.raises(CheckpointError, match="--resume"):
        train(preset("tiny", steps=2, **FAST), tmp_path, progress=False)
    assert _digest(tmp_path / "checkpoint.pt") == before


def test_checkpoint_of_another_config_is_refused(tmp_path):
    train(preset("tiny", steps=2, **FAST), tmp_path, progress=False)
    before = _digest(tmp_path / "checkpoint.pt")
    with pytest.raises(CheckpointError, match=r"width: checkpoint 8, asked 16"):
        train(preset("tiny", steps=4, width=16, **FAST), tmp_path, resume=True, progress=False)
    assert run_subcommand("train", ["--preset", "tiny", "--out", str(tmp_path), "--resume", "--model", "det", "--no-progress"]) == 2
    assert _digest(tmp_path / "checkpoint.pt") == before


def test_truncated_checkpoint_is_reported_and_left_alone(tmp_path):
    train(preset("tiny", steps=2, **FAST), tmp_path, progress=False)
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(path.read_bytes()[:5000])
    before = _digest(path)
    with pytest.raises(CheckpointError, match="truncated"):
        train(preset("tiny", steps=4, **FAST), tmp_path, resume=True, progress=False)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")
    assert _digest(path) == before


def test_loss_turning_nan_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    train(preset("tiny", steps=2, **FAST), tmp_path, progress=False)
    before = _digest(tmp_path / "checkpoint.pt")
    # a vanishing likelihood scale overflows the loss on the next step
    with pytest.raises(TrainingDiverged, match="step 3.*checkpoint of step 2"):
        train(preset("tiny", steps=4, obs_scale=1e-30, **FAST), tmp_path, resume=True, progress=False)
    assert _digest(tmp_path / "checkpoint.pt") == before


def test_bad_frames_name_the_problem(tiny):
    config, svg, batch = tiny
    with pytest.raises(ValueError, match=r"shape \(batch, time, 1, 64, 64\)"):
        svg.model(batch[:, :, :, :32], config.n_past)
    with pytest.raises(TypeError, match="floating-point"):
        svg.model((batch * 255).to(torch.uint8), config.n_past)
    with pytest.raises(ValueError, match="divide uint8 frames by 255"):
        check_video_values(batch * 255)
    bad = batch.clone()
    bad[2, 1, 0, 5, 5] = float("nan")
    with pytest.raises(ValueError, match=r"videos \[2\].*NaN"):
        check_video_values(bad)
    with pytest.raises(ValueError, match="n_past"):
        svg.model(batch, n_past=10)
    check_video_shape(batch, (1, 64, 64))


def test_cli_errors_are_clear(tmp_path, capsys):
    assert run_subcommand("train", ["--preset", "tiny", "--out", str(tmp_path / "a"), "--mnist-root", str(tmp_path / "nope"),
                 "--no-progress"]) == 2
    assert "--mnist-root" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run_subcommand("train", ["--preset", "huge"])
    assert "invalid choice: 'huge'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run_subcommand("train", ["--model", "svg-xx"])
    assert "invalid choice: 'svg-xx'" in capsys.readouterr().err
    assert run_subcommand("train", ["--preset", "tiny", "--out", str(tmp_path / "b"), "--steps", "0", "--no-progress"]) == 2
    assert "steps must be a positive integer" in capsys.readouterr().err


def test_cli_trains_and_resumes_with_the_checkpoint_config(tmp_path):
    out = str(tmp_path)
    assert run_subcommand("train", ["--preset", "tiny", "--out", out, "--steps", "2", "--width", "4", "--no-progress"]) == 0
    assert run_subcommand("train", ["--out", out, "--resume", "--steps", "3", "--no-progress"]) == 0
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["step"] == 3 and state["config"]["width"] == 4 and state["config"]["steps"] == 3


@pytest.mark.parametrize("model,elbo", [("svg-lp", "trace"), ("svg-fp", "meanfield")])
def test_logged_per_step_kl_equals_a_hand_computation(tmp_path, tiny_data, model, elbo):
    """The first logged row's KL_t against the closed-form Gaussian KL, computed here from the
    networks at their initial weights on the same batch (the row is logged before the update)."""
    import pyro

    from svg_pyro.data.datasets import training_batch
    from svg_pyro.models.build import build_model

    config = preset("tiny", model=model, elbo=elbo, steps=1, **FAST)
    row = train(config, tmp_path, progress=False)[0]

    pyro.clear_param_store()
    pyro.set_rng_seed(config.seed)
    svg = build_model(config)
    batch = training_batch(tiny_data[1], config.seed, 0, config.batch_size)
    with torch.no_grad():
        h, _ = svg.encoder(batch)
        q_state = p_state = None
        expected = []
        for t in range(1, batch.shape[1]):
            q_mu, q_sigma, q_state = svg.posterior.net(h[:, t], q_state)
            if model == "svg-lp":
                p_mu, p_sigma, p_state = svg.prior.net(h[:, t - 1], p_state)
            else:
                p_mu, p_sigma = torch.zeros_like(q_mu), torch.ones_like(q_sigma)
            q_mu, q_sigma, p_mu, p_sigma = (v.double() for v in (q_mu, q_sigma, p_mu, p_sigma))
            kl = (torch.log(p_sigma / q_sigma) + (q_sigma**2 + (q_mu - p_mu) ** 2) / (2 * p_sigma**2) - 0.5)
            expected.append(kl.sum(-1).mean().item())
    # float32 cancellation in KL of ~1e-4 nats at initialisation: compare to 1e-7 nats absolute
    assert len(row["kl_t"]) == batch.shape[1] - 1
    torch.testing.assert_close(torch.tensor(row["kl_t"]), torch.tensor(expected), rtol=0, atol=1e-7)
    assert row["kl_per_step"] == pytest.approx(sum(expected) / len(expected), abs=1e-7)


def test_a_format_1_checkpoint_written_by_pyro_optim_resumes_exactly(tmp_path, tiny_data):
    """The first checkpoints (format 1) held the optimizer state per parameter under Pyro's
    param-store names, as ``pyro.optim`` keeps it: a run trained so through SVI continues, once
    upgraded on loading, as if the whole run had been made by today's loop."""
    import pyro
    from pyro.infer import SVI

    from svg_pyro.checkpoint import FORMAT, FORMAT_1, rng_state
    from svg_pyro.data.datasets import training_batch
    from svg_pyro.models.build import build_model
    from svg_pyro.training.objective import make_elbo

    config = preset("tiny", steps=4, **FAST)
    whole = train(config, tmp_path / "whole", progress=False)
    assert load_checkpoint(tmp_path / "whole" / "checkpoint.pt")["format"] == FORMAT

    pyro.set_rng_seed(config.seed)
    svg = build_model(config)
    optim = pyro.optim.Adam({"lr": config.lr, "betas": (0.9, 0.999)})
    svi = SVI(svg.model, svg.guide, optim, make_elbo(config.elbo))
    for step in range(2):
        with svg.share_encodings():
            svi.step(training_batch(tiny_data[1], config.seed, step, config.batch_size), config.n_past)
    assert set(optim.get_state()) == {f"svg$$${n}" for n, _ in svg.named_parameters()}
    # format 1's layout: the posterior LSTM a module of its own, in the state and the optimizer
    optimizer = {name.replace("svg$$$posterior.", "posterior$$$"): v for name, v in optim.get_state().items()}
    model = {k: v for k, v in svg.state_dict().items() if not k.startswith("posterior.")}
    guide = {k.removeprefix("posterior."): v for k, v in svg.state_dict().items() if k.startswith("posterior.")}
    old = tmp_path / "old"
    old.mkdir()
    torch.save({"format": FORMAT_1, "config": config.to_dict(), "step": 2, "model": model, "guide": guide,
                "optimizer": optimizer, "rng": rng_state()}, old / "checkpoint.pt")

    resumed = train(config, old, resume=True, progress=False)
    keys = ("step", "loss", "mse", "kl_t")
    assert [[r[k] for k in keys] for r in resumed] == [[r[k] for k in keys] for r in whole[2:]]
    assert load_checkpoint(old / "checkpoint.pt")["format"] == FORMAT  # rewritten in today's format


def test_a_format_2_run_written_before_model_and_guide_were_one_module_resumes_as_it_did(tmp_path):
    """tests/data/format2-run: a real run directory written by the version whose guide was a module
    of its own (checkpoint format 2, ``state["guide"]``, optimizer names "guide.program.net..."), and
    the losses that version's ``--resume`` gave (resumed.json says the commands). Today it loads by
    conversion, the guide's tensors become ``svg.posterior``'s, and it resumes to the same losses."""
    import shutil

    from svg_pyro.checkpoint import FORMAT, load_model
    from svg_pyro.config import Config

    data = Path(__file__).parent / "data" / "format2-run"
    run = tmp_path / "run"
    shutil.copytree(data, run)
    old = torch.load(run / "checkpoint.pt", weights_only=True)
    assert old["format"] == "svg-pyro-checkpoint/2" and old["guide"]
    _, svg, step = load_model(run / "checkpoint.pt")
    state = svg.state_dict()
    assert step == 2 and all(torch.equal(state[f"posterior.{k}"], v) for k, v in old["guide"].items())
    assert all(torch.equal(state[k], v) for k, v in old["model"].items())

    expected = json.loads((data / "resumed.json").read_text())["losses_after_resume"]
    config = Config.from_dict({**json.loads((run / "config.json").read_text()), "steps": 4})
    rows = train(config, run, resume=True, progress=False)
    assert {str(r["step"]): r["loss"] for r in rows} == pytest.approx(expected, rel=1e-5)
    assert load_checkpoint(run / "checkpoint.pt")["format"] == FORMAT


def test_the_optimizer_state_is_saved_by_parameter_name(tmp_path):
    """Checkpoints hold torch's optimizer state_dict with the objective's parameter names; one whose
    names do not match the model is refused with a one-line reason, and the run is left as it was."""
    from svg_pyro.models.build import build_model
    from svg_pyro.training.objective import training_objective

    config = preset("tiny", steps=2, **FAST)
    train(config, tmp_path, progress=False)
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    svg = build_model(config)
    names = [n for n, _ in training_objective(svg, config.elbo).named_parameters()]
    group = state["optimizer"]["param_groups"][0]
    assert group["param_names"] == names and names[0].startswith("model.program.encoder")
    assert sorted(state["optimizer"]["state"]) == list(range(len(names)))  # Adam's moments for every one
    group["param_names"] = [n.replace("encoder", "other") for n in names]
    torch.save(state, tmp_path / "checkpoint.pt")
    before = (tmp_path / "checkpoint.pt").read_bytes()
    with pytest.raises(CheckpointError, match="no optimizer state for .'model.program.encoder"):
        train(preset("tiny", steps=4, **FAST), tmp_path, resume=True, progress=False)
    assert (tmp_path / "checkpoint.pt").read_bytes() == before


def test_plain_pyro_svi_trains_every_parameter_of_each_new_model(tiny_data):
    """The Pyro habit, ``SVI(svg.model, svg.guide, pyro.optim.Adam, TraceMeanField_ELBO())``, with no
    wrapper and no param-store clearing: three steps change every parameter of model and guide, and
    a second model built afterwards in the same process trains its own parameters, not the first's."""
    import pyro
    from pyro.infer import SVI, TraceMeanField_ELBO

    from svg_pyro.data.datasets import training_batch
    from svg_pyro.models.build import build_model

    config = preset("tiny")
    for seed in (0, 1):
        pyro.set_rng_seed(seed)
        svg = build_model(config)
        params = dict(svg.named_parameters())
        assert any(n.startswith("posterior.") for n in params)  # the guide's LSTM among them
        before = {n: p.detach().clone() for n, p in params.items()}
        svi = SVI(svg.model, svg.guide, pyro.optim.Adam({"lr": 1e-2}), TraceMeanField_ELBO())
        for step in range(3):
            svi.step(training_batch(tiny_data[1], seed, step, config.batch_size), config.n_past)
        unchanged = [n for n, p in params.items() if torch.equal(p.detach(), before[n])]
        assert unchanged == [] and len(params) > 20


def test_svi_trains_the_same_modules_as_the_loop(tiny_data):
    """One pyro.infer.SVI step (pyro.optim.Adam) and one step of the training loop (torch's Adam on
    the objective's parameters) from the same weights, batch and noise give the same weights."""
    import copy

    import pyro
    from pyro.infer import SVI

    from svg_pyro.data.datasets import training_batch
    from svg_pyro.models.build import build_model
    from svg_pyro.training.distributed import World
    from svg_pyro.training.objective import make_elbo, training_objective
    from svg_pyro.training.train import training_step

    config = preset("tiny")
    svg = build_model(config)
    batch = training_batch(tiny_data[1], config.seed, 0, config.batch_size)
    svg2 = copy.deepcopy(svg)
    before = {n: p.detach().clone() for n, p in svg.named_parameters()}

    pyro.set_rng_seed(1)
    with svg.share_encodings():
        SVI(svg.model, svg.guide, pyro.optim.Adam({"lr": config.lr}), make_elbo(config.elbo)).step(
            batch, config.n_past)
    pyro.set_rng_seed(1)
    objective = training_objective(svg2, config.elbo)
    optimizer = torch.optim.Adam(objective.named_parameters(), lr=config.lr)
    training_step(objective, optimizer, svg2, batch, config.n_past, World())
    for (name, p), (_, q) in zip(svg.named_parameters(), svg2.named_parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=name)
    assert any(not torch.equal(p, before[n]) for n, p in svg.named_parameters())  # a step was taken


def test_bf16_autocast_runs_the_networks_in_bf16_and_keeps_the_densities_fp32(tiny):
    from svg_pyro.training.objective import training_objective

    config, svg, batch = tiny
    objective = training_objective(svg, "meanfield")
    seen = []
    svg.encoder.register_forward_hook(lambda module, args, out: seen.append(out[0].dtype))
    losses = {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(1)
        with svg.share_encodings(), torch.autocast("cpu", torch.bfloat16, enabled=precision == "bf16"):
            losses[precision] = objective(batch, config.n_past)
        trace = objective.model.trace
        trace.compute_log_prob()
        sites = [site for name, site in trace.nodes.items() if site["type"] == "sample" and name != "videos"]
        assert {site["log_prob"].dtype for site in sites} == {torch.float32}
        assert {site["fn"].mean.dtype for site in sites} == {torch.float32}
    assert seen == [torch.float32, torch.bfloat16]  # autocast reached the networks
    assert losses["bf16"].dtype == torch.float32
    torch.testing.assert_close(losses["bf16"], losses["fp32"], rtol=2e-3, atol=0)


def test_compiled_networks_train_as_the_eager_ones(tmp_path):
    """--compile: the same losses to float tolerance, a checkpoint with the eager model's names (it
    loads and resumes without compiling), and the sample grid drawn (eagerly) on the way."""
    common = dict(steps=3, log_every=1, checkpoint_every=3, sample_every=3, probe_videos=0)
    eager = train(preset("tiny", **common), tmp_path / "eager", progress=False)
    compiled = train(preset("tiny", compile=True, **common), tmp_path / "compiled", progress=False)
    np.testing.assert_allclose([r["loss"] for r in compiled], [r["loss"] for r in eager], rtol=1e-4)
    states = [load_checkpoint(tmp_path / run / "checkpoint.pt") for run in ("eager", "compiled")]
    assert list(states[0]["model"]) == list(states[1]["model"])
    assert (tmp_path / "compiled" / "samples_000003.png").is_file()
    resumed = train(preset("tiny", **{**common, "steps": 4}), tmp_path / "compiled", resume=True, progress=False)
    assert [r["step"] for r in resumed] == [4]


def test_batches_and_losses_do_not_depend_on_the_number_of_workers(tmp_path, tiny_data):
    from svg_pyro.data.datasets import training_batch, training_batches

    steps = range(3, 8)
    inline = list(training_batches(tiny_data[1], 0, 4, steps, workers=0))
    ahead = list(training_batches(tiny_data[1], 0, 4, steps, workers=2))
    assert len(inline) == len(ahead) == 5
    assert all(torch.equal(a, b) for a, b in zip(inline, ahead))
    assert torch.equal(inline[0], training_batch(tiny_data[1], 0, 3, 4))
    runs = [train(preset("tiny", steps=3, workers=w, **FAST), tmp_path / f"w{w}", progress=False) for w in (0, 2)]
    assert [r["loss"] for r in runs[0]] == [r["loss"] for r in runs[1]]


def test_unlogged_steps_read_the_device_a_few_times(tmp_path, monkeypatch):
    """Host reads (item, tolist, float, bool of a tensor) are waits for a GPU. torch.optim's own are
    left out: they read its step counters, which live on the host."""
    import sys

    counts = []

    def counting(original):
        def wrapper(self, *args, **kwargs):
            if "torch/optim" not in sys._getframe(1).f_code.co_filename.replace("\\", "/"):
                counts.append(1)
            return original(self, *args, **kwargs)
        return wrapper

    for name in ("item", "tolist", "__float__", "__bool__"):
        monkeypatch.setattr(torch.Tensor, name, counting(getattr(torch.Tensor, name)))
    config = preset("tiny", steps=40, log_every=40, checkpoint_every=40, sample_every=40, probe_videos=0)
    train(config, tmp_path, progress=False)
    # per step: the data check on the host batch (before it goes to the device) and the finiteness
    # check before the update; Pyro's validation (~70 per step) is off and make_elbo's ELBOs read
    # nothing; the 10 are the one logged step's terms and the run's start and end
    assert len(counts) <= 2 * 40 + 10


def test_cosine_schedule_sets_each_steps_rate_also_after_a_resume(tmp_path):
    import math

    def expected(step, steps):  # the rate used by update number ``step`` (1-based)
        return 2e-3 * (1 + math.cos(math.pi * (step - 1) / steps)) / 2

    rows = train(preset("tiny", lr_schedule="cosine", steps=4, probe_videos=0, **FAST), tmp_path / "a", progress=False)
    assert [r["lr"] for r in rows] == pytest.approx([expected(s, 4) for s in (1, 2, 3, 4)])
    assert [r["lr"] for r in train(preset("tiny", steps=2, probe_videos=0, **FAST), tmp_path / "b",
                                   progress=False)] == [2e-3, 2e-3]
    # resumed with more steps, the schedule is that of the new length from the next step on
    train(preset("tiny", lr_schedule="cosine", steps=2, checkpoint_every=2, probe_videos=0, **FAST), tmp_path / "c",
          progress=False)
    resumed = train(preset("tiny", lr_schedule="cosine", steps=4, probe_videos=0, **FAST), tmp_path / "c",
                    resume=True, progress=False)
    assert [r["lr"] for r in resumed] == pytest.approx([expected(3, 4), expected(4, 4)])
