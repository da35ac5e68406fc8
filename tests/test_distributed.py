"""Data-parallel training (torchrun, gloo on the CPU): one step equals one process on the whole
batch, only rank 0 writes, checkpoints move between world sizes, a failing rank ends the job."""
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyro
import pytest
import torch
import torch.multiprocessing as mp
from conftest import FixedNoiseMessenger
from torch import nn

from svg_pyro.checkpoint import load_checkpoint
from svg_pyro.cli import run_subcommand
from svg_pyro.config import preset
from svg_pyro.data.datasets import make_datasets, training_batch
from svg_pyro.models.build import build_model
from svg_pyro.training.distributed import World, join_world
from svg_pyro.training.objective import training_objective
from svg_pyro.training.train import training_step


ROOT = Path(__file__).resolve().parents[1]
TINY = ["--preset", "tiny", "--device", "cpu", "--no-progress", "--sample-every", "1000"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(*args, nproc=2, script="svi_train.py", timeout=120):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
           "--master_port", str(_free_port()), script, *map(str, args)]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def _rows(out):
    return [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]


def _values(rows):
    return [(r["step"], r["loss"], r["mse"], r["kl_t"]) for r in rows]  # all but the timing


# ---------------------------------------------------------------------------------------------
# one step, exactly


def _one_step(world: World, elbo: str):
    """Gradients and updated parameters after one step on this rank's part of a tiny batch.
    BatchNorm uses running statistics, so that no layer mixes the videos of a batch."""
    config = preset("tiny", elbo=elbo)
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    svg = build_model(config)
    for m in svg.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eval()
    rows = world.shard(config.batch_size)
    batch = training_batch(make_datasets(config)[0], 0, 0, config.batch_size, rows)
    eps = torch.randn(config.frames_per_video, config.batch_size, config.z_dim,
                      generator=torch.Generator().manual_seed(1))
    objective = world.wrap(training_objective(svg, elbo))
    params = list(svg.parameters())
    optimizer = torch.optim.Adam(params, lr=config.lr)
    with FixedNoiseMessenger(eps, rows):
        loss, _ = training_step(objective, optimizer, svg, batch, config.n_past, world)
    return {"loss": loss, "grads": [p.grad.clone() for p in params], "params": [p.detach().clone() for p in params]}


def _one_step_worker(rank, port, out, elbo):
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2",
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    with join_world("cpu") as world:
        torch.save(_one_step(world, elbo), Path(out) / f"rank{rank}.pt")


@pytest.mark.parametrize("elbo", ["meanfield", "trace"])
def test_a_two_process_step_equals_one_process_on_the_whole_batch(tmp_path, elbo):
    mp.spawn(_one_step_worker, args=(_free_port(), str(tmp_path), elbo), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    whole = _one_step(World(), elbo)
    for a, b in zip(ranks[0]["params"], ranks[1]["params"]):
        assert torch.equal(a, b)  # one model on every rank
    torch.testing.assert_close(ranks[0]["loss"], whole["loss"], rtol=1e-6, atol=0)
    for g, g_whole in zip(ranks[0]["grads"], whole["grads"]):
        torch.testing.assert_close(g, g_whole, rtol=1e-4, atol=1e-5)
    # Adam's first step moves a weight by about lr * g / (|g| + eps): where |g| is near eps, float-level
    # differences of g (summation order) show at a small fraction of lr (seen: 1.03e-6 on one CPU type)
    for p, p_whole in zip(ranks[0]["params"], whole["params"]):
        torch.testing.assert_close(p, p_whole, rtol=1e-5, atol=5e-6)
    # the check has teeth: without the world-size scaling the gradients would be halved
    assert any((g - g_whole / 2).abs().max() > 1e-3 for g, g_whole in zip(ranks[0]["grads"], whole["grads"]))


# ---------------------------------------------------------------------------------------------
# the command line under torchrun


def test_torchrun_writes_from_rank_0_only_and_resumes_across_world_sizes(tmp_path):
    whole, part = tmp_path / "whole", tmp_path / "part"
    run = _torchrun(*TINY, "--steps", 6, "--checkpoint-every", 3, "--out", whole)
    assert run.returncode == 0, run.stderr
    assert run.stdout.count("done:") == 1
    assert sorted(p.name for p in whole.iterdir()) == [
        ".lock", "checkpoint.pt", "config.json", "metrics.jsonl", "samples_000006.gif", "samples_000006.png"]
    assert [r["step"] for r in _rows(whole)] == [1, 2, 3, 4, 5, 6]  # one writer, one row per step
    assert len(load_checkpoint(whole / "checkpoint.pt")["rng_by_rank"]) == 2

    assert _torchrun(*TINY, "--steps", 3, "--out", part).returncode == 0
    shutil.copytree(part, tmp_path / "to-one")
    # killed at step 3 and resumed with 2 processes: the same run, bit for bit
    assert _torchrun("--out", part, "--resume", "--steps", 6, "--no-progress").returncode == 0
    assert _values(_rows(part)) == _values(_rows(whole))
    # resumed with 1 process: same weights and batches, rank 0's noise stream, whole-batch
    # BatchNorm statistics; the losses continue where the 2-process run was
    assert run_subcommand("train", ["--out", str(tmp_path / "to-one"), "--resume", "--steps", "6", "--no-progress"]) == 0
    one = _rows(tmp_path / "to-one")
    assert [r["step"] for r in one] == [1, 2, 3, 4, 5, 6]
    assert _values(one[:3]) == _values(_rows(whole)[:3])
    for a, b in zip(one[3:], _rows(whole)[3:]):
        assert a["loss"] == pytest.approx(b["loss"], rel=0.05)

    # and the other way: a 1-process checkpoint resumed by 2 processes
    from_one = tmp_path / "from-one"
    assert run_subcommand("train", [*TINY, "--steps", "3", "--out", str(from_one)]) == 0
    assert _torchrun("--out", from_one, "--resume", "--steps", 6, "--no-progress").returncode == 0
    rows = _rows(from_one)
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert rows[3]["loss"] == pytest.approx(rows[2]["loss"], rel=0.1)


def test_a_diverging_run_stops_every_rank_with_one_message(tmp_path):
    out = tmp_path / "run"
    assert run_subcommand("train", [*TINY, "--steps", "2", "--out", str(out)]) == 0
    before = (out / "checkpoint.pt").read_bytes()
    # a vanishing likelihood scale overflows the loss on the next step
    run = _torchrun("--out", out, "--resume", "--steps", 4, "--obs-scale", 1e-30, "--no-progress")
    assert run.returncode != 0
    assert run.stderr.count("error: the loss or its gradients became non-finite") == 1
    assert "checkpoint of step 2" in run.stderr
    assert (out / "checkpoint.pt").read_bytes() == before


FAILING_RANK = """
import os, sys
import svg_pyro.data.datasets as datasets
from svg_pyro.cli import run_subcommand

def failing_batch(*args, **kwargs):
    if os.environ["RANK"] == "1" and args[2] == 2:
        raise RuntimeError("rank 1 fails at step 2")
    return training_batch(*args, **kwargs)

training_batch, datasets.training_batch = datasets.training_batch, failing_batch
sys.exit(run_subcommand("train"))
"""


def test_a_failing_rank_ends_the_job_within_seconds(tmp_path):
    script = tmp_path / "failing_rank.py"
    script.write_text(FAILING_RANK)
    tick = time.monotonic()
    run = _torchrun(*TINY, "--steps", 1000, "--out", tmp_path / "run", script=script, timeout=60)
    assert run.returncode != 0
    assert "rank 1 fails at step 2" in run.stderr
    assert time.monotonic() - tick < 45  # start-up included; rank 0 does not wait for a timeout
    assert len(_rows(tmp_path / "run")) < 10


@pytest.mark.parametrize("n,size", [(4, 2), (5, 2), (7, 3), (3, 3)])
def test_ranks_split_the_global_batch_like_array_split(tiny_data, n, size):
    import numpy as np

    parts = [World(rank=r, size=size).shard(n) for r in range(size)]
    assert [list(range(n))[p] for p in parts] == [a.tolist() for a in np.array_split(np.arange(n), size)]
    whole = training_batch(tiny_data[1], 3, 7, n)
    torch.testing.assert_close(torch.cat([training_batch(tiny_data[1], 3, 7, n, p) for p in parts]), whole, rtol=0, atol=0)
