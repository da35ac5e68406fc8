"""The GPU path, against the CPU: run with ``python -m pytest -m cuda`` on a machine with a CUDA GPU;
skipped (with the reason) where none is visible.

"Equal" on a GPU: fp32 with TF32 off, the same batch and the same noise (``FixedNoiseMessenger``)
give the CPU's loss, gradients and updated weights up to float reordering (cuDNN and cuBLAS sum in
other orders): relative 1e-5 for the loss, and 1e-4 (relative, with an absolute floor) for
gradients and weights. A resumed CUDA run replays the interrupted one's data and noise exactly, so
its losses equal the uninterrupted run's to the same float tolerance (not bit for bit: cuDNN picks
non-deterministic kernels).
"""
import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pyro
import pytest
import torch
from conftest import FixedNoiseMessenger

from svg_pyro.checkpoint import load_model
from svg_pyro.config import preset
from svg_pyro.data.datasets import make_datasets, stack_videos, training_batch, training_batches
from svg_pyro.inference.sampling import generate
from svg_pyro.models.build import build_model
from svg_pyro.training.distributed import World
from svg_pyro.training.objective import training_objective
from svg_pyro.training.train import train, training_step


pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible")]
ROOT = Path(__file__).resolve().parents[1]
CUDA = torch.device("cuda")


@pytest.fixture(autouse=True)
def _no_tf32():
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _close(a, b, rtol=1e-4, atol=1e-6):
    return torch.allclose(a.detach().cpu(), b.detach().cpu(), rtol=rtol, atol=atol)


def _step(svg, batch, eps, config):
    objective = training_objective(svg, config.elbo)
    params = list(svg.parameters())
    optimizer = torch.optim.Adam(params, lr=config.lr)
    with FixedNoiseMessenger(eps, slice(None)):
        loss, applied = training_step(objective, optimizer, svg, batch, config.n_past, World())
    assert applied
    return loss, [p.grad for p in params], [p.detach() for p in params]


@pytest.mark.parametrize("elbo", ["meanfield", "trace"])
def test_a_training_step_on_cuda_equals_the_cpu_step(elbo):
    config = preset("tiny", elbo=elbo)
    pyro.set_rng_seed(0)
    svg = build_model(config)
    svg.train()
    gpu_svg = copy.deepcopy(svg).to(CUDA)
    batch = training_batch(make_datasets(config)[0], 0, 0, config.batch_size)
    eps = torch.randn(config.frames_per_video, config.batch_size, config.z_dim, generator=torch.Generator().manual_seed(1))
    cpu = _step(svg, batch, eps, config)
    pyro.clear_param_store()
    gpu = _step(gpu_svg, batch.to(CUDA), eps, config)
    assert _close(cpu[0], gpu[0], rtol=1e-5)
    assert all(_close(a, b) for a, b in zip(cpu[1], gpu[1]))
    assert all(_close(a, b) for a, b in zip(cpu[2], gpu[2]))


def _rows(out):
    return [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]


def test_a_cuda_run_resumes_and_its_checkpoint_loads_on_the_cpu(tmp_path):
    whole = train(preset("tiny", steps=6, checkpoint_every=3, sample_every=6, device="cuda"), tmp_path / "whole",
                  progress=False)
    train(preset("tiny", steps=3, checkpoint_every=3, sample_every=6, device="cuda"), tmp_path / "part", progress=False)
    train(preset("tiny", steps=6, checkpoint_every=3, sample_every=6, device="cuda"), tmp_path / "part", resume=True,
          progress=False)
    resumed = _rows(tmp_path / "part")
    assert [r["step"] for r in resumed] == [r["step"] for r in whole]
    for a, b in zip(resumed, whole):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)
    config, svg, step = load_model(tmp_path / "whole" / "checkpoint.pt", "cpu")
    assert step == 6 and all(p.device.type == "cpu" for p in svg.parameters())
    test = make_datasets(config)[1]
    videos = stack_videos(test, 2)
    frames = generate(svg, videos, config.n_past, videos.shape[1], 2)
    assert frames.device.type == "cpu" and torch.isfinite(frames).all()


def test_sampling_on_cuda_equals_the_cpu_with_the_same_noise():
    config = preset("tiny")
    pyro.set_rng_seed(0)
    svg = build_model(config)
    svg.eval()
    gpu_svg = copy.deepcopy(svg).to(CUDA)
    test = make_datasets(config)[1]
    videos = stack_videos(test, 3)
    eps = torch.randn(videos.shape[1], 3, config.z_dim, generator=torch.Generator().manual_seed(2))
    with FixedNoiseMessenger(eps, slice(None)):
        cpu = generate(svg, videos, config.n_past, videos.shape[1], 1)
    with FixedNoiseMessenger(eps, slice(None)):
        gpu = generate(gpu_svg, videos.to(CUDA), config.n_past, videos.shape[1], 1)
    assert gpu.device.type == "cuda" and _close(cpu, gpu, rtol=1e-4, atol=1e-5)


def test_bf16_autocast_keeps_the_densities_fp32():
    config = preset("tiny")
    svg = build_model(config)
    svg.to(CUDA).train()
    batch = training_batch(make_datasets(config)[0], 0, 0, config.batch_size).to(CUDA)
    with torch.autocast("cuda", torch.bfloat16):
        tracer = pyro.poutine.trace(svg.model)
        tracer(batch, config.n_past)
    sites = [s for s in tracer.trace.nodes.values() if s["type"] == "sample"]
    assert sites and all(s["fn"].base_dist.loc.dtype == torch.float32 for s in sites)
    assert all(s["fn"].log_prob(s["value"]).dtype == torch.float32 for s in sites)


def test_pinned_workers_feed_the_gpu_the_same_batches():
    config = preset("tiny")
    train_set = make_datasets(config)[0]
    plain = list(training_batches(train_set, 0, config.batch_size, range(4)))
    pinned = list(training_batches(train_set, 0, config.batch_size, range(4), workers=2, pin_memory=True))
    assert all(b.is_pinned() for b in pinned)
    assert all(torch.equal(a, b.to(CUDA, non_blocking=True).cpu()) for a, b in zip(plain, pinned))


def test_torchrun_with_nccl_trains_and_rank_0_writes(tmp_path):
    """One process: NCCL's set-up and the rank-0 files. (SyncBatchNorm conversion needs two GPUs.)"""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=1", "svi_train.py", "--preset", "tiny",
           "--device", "cuda", "--no-progress", "--out", str(tmp_path / "run")]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    files = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"config.json", "metrics.jsonl", "checkpoint.pt"} <= files
    assert len(_rows(tmp_path / "run")) == 20
