"""No lost work: signals, a second run into the same directory, a full disk, stale logs, bad options."""
import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from svg_pyro.atomic import atomic_path
from svg_pyro.checkpoint import load_checkpoint
from svg_pyro.cli import run_subcommand
from svg_pyro.config import preset
from svg_pyro.training.train import train


ROOT = Path(__file__).resolve().parents[1]
QUIET = dict(sample_every=10_000)


def _rows(out):
    return [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]


def _values(rows):
    return [(r["step"], r["loss"], r["mse"], r["kl_t"]) for r in rows]


def _start(out, *args):
    """A long tiny training in a child process, once it has logged 3 steps."""
    cmd = [sys.executable, "svi_train.py", "--preset", "tiny", "--steps", "100000", "--checkpoint-every", "100000",
           "--sample-every", "100000", "--out", str(out), "--no-progress", *args]
    # the same thread count as this process: the resumed losses are compared bit for bit
    child = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())})
    deadline = time.monotonic() + 60
    while not ((out / "metrics.jsonl").exists() and len(_rows(out)) >= 3):
        assert child.poll() is None and time.monotonic() < deadline, child.communicate()
        time.sleep(0.05)
    return child


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_checkpoints_the_step_reached_and_the_run_resumes_exactly(tmp_path, sig, code, capsys):
    out = tmp_path / "run"
    child = _start(out)
    if sig == signal.SIGTERM:  # a second run into the same directory is refused meanwhile
        assert run_subcommand("train", ["--preset", "tiny", "--seed", "7", "--out", str(out), "--no-progress"]) == 2
        assert f"in use by a running training (pid {child.pid})" in capsys.readouterr().err
    child.send_signal(sig)
    _, err = child.communicate(timeout=60)
    assert child.returncode == code
    rows = _rows(out)
    reached = load_checkpoint(out / "checkpoint.pt")["step"]
    assert [r["step"] for r in rows] == list(range(1, reached + 1))  # the step reached, not the last interval
    assert f"stopped by {signal.Signals(sig).name} at step {reached}" in err and "--resume" in err
    assert "Traceback" not in err and err.count("\n") == 1
    assert json.loads((out / "config.json").read_text())["seed"] == 0  # the refused run wrote nothing
    assert not list(out.glob("*.tmp"))

    assert run_subcommand("train", ["--out", str(out), "--resume", "--steps", str(reached + 2), "--no-progress"]) == 0
    whole = train(preset("tiny", steps=reached + 2, **QUIET), tmp_path / "whole", progress=False)
    assert _values(_rows(out)) == _values(whole)


def test_a_full_disk_keeps_the_last_checkpoint_and_leaves_no_temporary_file(tmp_path, monkeypatch, capsys):
    import svg_pyro.checkpoint as checkpoint

    out = tmp_path / "run"
    train(preset("tiny", steps=2, checkpoint_every=2, **QUIET), out, progress=False)
    before = (out / "checkpoint.pt").read_bytes()
    real_save = torch.save

    def disk_full(obj, f, *args, **kwargs):
        Path(f).write_bytes(b"partial")  # part of the file got written before the disk filled up
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(f))

    monkeypatch.setattr(checkpoint.torch, "save", disk_full)
    assert run_subcommand("train", ["--out", str(out), "--resume", "--steps", "4", "--checkpoint-every", "2", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and "checkpoint.pt.tmp" in err and "Traceback" not in err
    assert (out / "checkpoint.pt").read_bytes() == before
    assert not list(out.glob("*.tmp"))

    monkeypatch.setattr(checkpoint.torch, "save", real_save)  # space is back
    train(preset("tiny", steps=4, checkpoint_every=2, **QUIET), out, resume=True, progress=False)
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 4
    whole = train(preset("tiny", steps=4, **QUIET), tmp_path / "whole", progress=False)
    assert _values(_rows(out)) == _values(whole)


@pytest.fixture
def small_disk(tmp_path):
    """A real filesystem of a given size (tmpfs), mounted where the tests run as root; skipped elsewhere."""
    mount = tmp_path / "small-disk"
    mount.mkdir()

    def make(size_bytes: int) -> Path:
        options = f"size={size_bytes // 1024}k"
        if mounted:
            options = "remount," + options
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount)], capture_output=True)
        if done.returncode:
            pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()}): needs root")
        mounted.append(size_bytes)
        return mount

    mounted = []
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root")
    yield make
    if mounted:
        subprocess.run(["umount", str(mount)], check=True)


def test_a_real_full_disk_ends_in_one_line_and_keeps_the_last_checkpoint(tmp_path, small_disk, capsys):
    args = ["--preset", "tiny", "--checkpoint-every", "5", "--sample-every", "10000", "--no-progress"]
    assert run_subcommand("train", [*args, "--steps", "5", "--out", str(tmp_path / "sizing")]) == 0
    size = (tmp_path / "sizing" / "checkpoint.pt").stat().st_size
    # room for the first checkpoint and half of the next: torch.save of the second one fills the disk
    disk = small_disk(int(1.5 * size) + (256 << 10))
    out = disk / "run"
    assert run_subcommand("train", [*args, "--steps", "40", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot write {out / 'checkpoint.pt.tmp'}: No space left on device")
    assert "Traceback" not in err and err.count("\n") == 1
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 5 and not list(out.glob("*.tmp"))

    small_disk(4 * size + (1 << 20))  # space is back: the run resumes from its last checkpoint
    assert run_subcommand("train", [*args, "--steps", "10", "--out", str(out), "--resume"]) == 0
    whole = train(preset("tiny", steps=10, **QUIET), tmp_path / "whole", progress=False)
    assert _values(_rows(out)) == _values(whole)


def test_a_fresh_run_starts_a_fresh_log_and_clears_stray_temporary_files(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    # a run killed before its first checkpoint left rows, and a crash left a temporary file
    (out / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": 1.0}) + "\n" for s in range(1, 25)))
    (out / "checkpoint.pt.tmp").write_bytes(b"partial")
    train(preset("tiny", steps=3, **QUIET), out, progress=False)
    assert [r["step"] for r in _rows(out)] == [1, 2, 3]
    assert not (out / "checkpoint.pt.tmp").exists()


def test_an_lr_given_with_resume_takes_effect_and_is_recorded(tmp_path):
    out = tmp_path / "run"
    train(preset("tiny", steps=2, **QUIET), out, progress=False)
    assert run_subcommand("train", ["--out", str(out), "--resume", "--steps", "3", "--lr", "1e-4", "--no-progress"]) == 0
    state = load_checkpoint(out / "checkpoint.pt")
    assert [g["lr"] for g in state["optimizer"]["param_groups"]] == [1e-4]
    assert json.loads((out / "config.json").read_text())["lr"] == 1e-4


def test_atomic_writes_leave_the_old_file_when_they_fail(tmp_path):
    path = tmp_path / "image.png"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed mid-write")
    assert path.read_bytes() == b"old" and not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("option,value,message", [
    ("--log-every", "0", "log_every must be a positive integer"),
    ("--checkpoint-every", "0", "checkpoint_every must be a positive integer"),
    ("--sample-every", "0", "sample_every must be a positive integer"),
    ("--num-digits", "0", "num_digits must be a positive integer"),
    ("--lr", "inf", "lr must be a finite number > 0"),
    ("--lr", "nan", "lr must be a finite number > 0"),
    ("--beta", "-1", "beta must be a finite number > 0"),
    ("--obs-scale", "0", "obs_scale must be a finite number > 0"),
])
def test_bad_options_are_refused_in_one_line(tmp_path, capsys, option, value, message):
    assert run_subcommand("train", ["--preset", "tiny", "--out", str(tmp_path / "run"), option, value, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_an_out_that_is_a_file_is_refused_in_one_line(tmp_path, capsys):
    target = tmp_path / "taken"
    target.write_text("not a directory")
    assert run_subcommand("train", ["--preset", "tiny", "--out", str(target), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot write") and str(target) in err and err.count("\n") == 1
    assert target.read_text() == "not a directory"


def test_divergence_stops_with_one_line_and_a_resume_with_a_lower_lr_proceeds(tmp_path, capsys):
    out = tmp_path / "run"
    train(preset("tiny", steps=2, **QUIET), out, progress=False)
    before = (out / "checkpoint.pt").read_bytes()
    # a huge learning rate sends the networks' outputs to inf within a few steps
    assert run_subcommand("train", ["--out", str(out), "--resume", "--steps", "40", "--lr", "1e6", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "became non-finite at step" in err and "checkpoint of step 2" in err and err.count("\n") == 1
    assert (out / "checkpoint.pt").read_bytes() == before
    assert run_subcommand("train", ["--out", str(out), "--resume", "--steps", "4", "--lr", "1e-4", "--no-progress"]) == 0
    assert [r["step"] for r in _rows(out)] == [1, 2, 3, 4]


def test_kill_9_at_random_moments_then_resume_gives_the_uninterrupted_run(tmp_path):
    """SIGKILL (no chance to save) at three random moments; every resume replays exactly."""
    import random

    out, steps = tmp_path / "run", 30
    rng = random.Random(0)
    cmd = [sys.executable, "svi_train.py", "--preset", "tiny", "--steps", str(steps), "--checkpoint-every", "5",
           "--sample-every", "1000", "--out", str(out), "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    for low, high in ((6, 12), (14, 20), (22, 28)):
        kill_at = rng.randint(low, high)  # logged rows when the kill comes
        resume = ["--resume"] if (out / "checkpoint.pt").exists() else []
        child = subprocess.Popen(cmd + resume, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while not ((out / "metrics.jsonl").exists() and len(_rows(out)) >= kill_at):
            assert child.poll() is None and time.monotonic() < deadline, child.communicate()
            time.sleep(0.01)
        child.kill()
        child.wait()
    assert run_subcommand("train", ["--out", str(out), "--resume", "--no-progress"]) == 0
    whole = train(preset("tiny", steps=steps, checkpoint_every=5, sample_every=1000), tmp_path / "whole", progress=False)
    assert _values(_rows(out)) == _values(whole)  # no row duplicated or missing, every loss identical


def test_a_read_only_filesystem_is_reported_in_one_line(tmp_path, monkeypatch, capsys):
    """(This machine runs tests as root, which writes through chmod: the filesystem's refusal is
    simulated where the run directory is created.)"""
    def read_only(self, *args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))

    monkeypatch.setattr(Path, "mkdir", read_only)
    assert run_subcommand("train", ["--preset", "tiny", "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot write {tmp_path / 'run'}: Read-only file system") and err.count("\n") == 1


def test_a_non_finite_gradient_with_a_finite_loss_is_not_applied(tiny):
    from svg_pyro.training.distributed import World
    from svg_pyro.training.objective import training_objective
    from svg_pyro.training.train import training_step

    config, svg, batch = tiny
    objective = training_objective(svg, config.elbo)
    params = list(svg.parameters())
    optimizer = torch.optim.Adam(params, lr=config.lr)
    before = [p.detach().clone() for p in params]
    svg.decoder.head[0].weight.register_hook(lambda grad: grad * float("nan"))
    loss, applied = training_step(objective, optimizer, svg, batch, config.n_past, World())
    assert torch.isnan(loss) and not applied
    assert all(torch.equal(a, p) for a, p in zip(before, params))  # no update from the bad step
