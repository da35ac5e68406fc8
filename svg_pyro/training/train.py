"""SVI training of SVG (``svg-pyro train`` / ``python svi_train.py``); data-parallel when torchrun starts it.

Stochastic variational inference as a torch loop: Pyro's ELBO (Trace_ELBO, TraceMeanField_ELBO or
the IWAE bound) of ``svg.model`` and ``svg.guide`` as a module (``objective.training_objective``),
its parameters the SVG module's, stepped by torch's Adam, and wrapped in DistributedDataParallel when
there are several processes. ``pyro.infer.SVI(svg.model, svg.guide, ...)`` trains the same module
(both programs register it in Pyro's param store, where SVI looks), one process only: DDP cannot
wrap the store.

Writes to ``--out``: config.json, checkpoint.pt (atomic, at intervals and at the end),
metrics.jsonl (one row per logged step) and samples_XXXXXX.png / .gif at intervals.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import time
from pathlib import Path

import pyro
import torch
from tqdm.auto import tqdm

from svg_pyro.atomic import atomic_path
from svg_pyro.checkpoint import (CheckpointError, load_checkpoint, load_optimizer_state, rng_state,
                                 save_checkpoint, set_rng_state)
from svg_pyro.config import Config
from svg_pyro.data.datasets import check_video_values, make_datasets, stack_videos, training_batches
from svg_pyro.errors import SvgPyroError
from svg_pyro.evaluation.motion import MotionProbe
from svg_pyro.evaluation.plots import write_sample_grid
from svg_pyro.inference.sampling import GRID_VIDEOS, grid_samples
from svg_pyro.models.build import build_model, compile_networks
from svg_pyro.training.distributed import World, join_world, on_main, rank_seed
from svg_pyro.training.objective import kl_per_step, loss_terms, reference_loss, training_objective
from svg_pyro.training.run_dir import RunDirectory, truncate_metrics
from svg_pyro.training.signals import GracefulStop, Stopped
from svg_pyro.training.tensorboard_log import TensorBoardLog


class TrainingDiverged(SvgPyroError, RuntimeError):
    pass


def training_step(objective, optimizer, svg, videos, n_past: int, world: World,
                  precision: str = "fp32") -> tuple[torch.Tensor, bool]:
    """One gradient step on this rank's ``videos``. Returns the -ELBO summed over the global batch
    (a tensor on the device) and whether the step was applied: when the loss or a gradient is not
    finite the loss reads NaN and the parameters are left as they were (so that the last good state
    can still be saved). That check, before the update as torch's GradScaler makes it, is the step's
    one wait for the device."""
    optimizer.zero_grad()
    with svg.share_encodings(), torch.autocast(videos.device.type, torch.bfloat16, enabled=precision == "bf16"):
        loss = objective(videos, n_past)
    # DDP averages the gradients over ranks while the ELBO sums over videos: scaling by the world
    # size makes the update that of one process on the whole batch.
    (loss * world.size).backward()
    total = world.sum(loss.detach())
    grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    # the gradient norm is the same on every rank (all-reduced), and so is the verdict
    finite = torch.isfinite(total) & torch.isfinite(torch.nn.utils.get_total_norm(grads))
    total = torch.where(finite, total, torch.full_like(total, float("nan")))
    applied = bool(finite)
    if applied:
        optimizer.step()
    return total, applied


def _global_terms(world: World, terms: dict, local: int, total: int) -> dict:
    """The per-video means of ``loss_terms`` over the global batch (ranks hold ``local`` videos)."""
    if not world.distributed:
        return terms
    n = len(terms["mse_t"])
    flat = torch.tensor([terms["mse"], terms["kl"], *terms["mse_t"], *terms["kl_t"]],
                        dtype=torch.float64, device=world.device) * local
    flat = (world.sum(flat) / total).tolist()
    return {"mse": flat[0], "kl": flat[1], "mse_t": flat[2:2 + n], "kl_t": flat[2 + n:]}


def train(config: Config, out, resume: bool = False, progress: bool = True) -> list[dict]:
    """Train ``config`` into directory ``out``; returns the metric rows of this call.

    Under torchrun every process calls this: they train one model data-parallel and rank 0 writes
    the files (``svg_pyro.training.distributed``)."""
    config.validate()
    with join_world(config.device) as world:
        return _train(config, Path(out), resume, progress, world)


def _train(config: Config, out: Path, resume: bool, progress: bool, world: World) -> list[dict]:
    datasets = make_datasets(config)  # bad data options are refused before the run directory is touched
    run = RunDirectory(out, config, resume, world.size)
    try:
        state = on_main(world, run.start)  # rank 0 locks and reads the run directory, and shares it
        # Pyro's validation checks every site's parameters and values, each check a wait for the
        # device; the loop's own finiteness check before every update keeps the divergence guarantee.
        with GracefulStop() as stop, pyro.validation_enabled(False):
            return _train_loop(config, out, progress, world, state, run.checkpoint, stop, datasets)
    finally:
        run.close()


def _eager():
    """Compiled networks run eagerly in the block: the probe and the sample grid call them on other
    shapes and in eval mode, which would each cost a compile."""
    return torch.compiler.set_stance("force_eager")


def _restore(state: dict, svg, optimizer, config: Config, world: World, out: Path, ckpt_path: Path) -> int:
    """Load a checkpoint's weights, optimizer and RNG state into the run; returns its step."""
    svg.load_state_dict(state["model"])
    load_optimizer_state(optimizer, state["optimizer"], ckpt_path)
    for group in optimizer.param_groups:  # an --lr given with --resume takes effect
        group["lr"] = config.lr
    rngs = state.get("rng_by_rank") or [state["rng"]]
    if world.rank < len(rngs):
        set_rng_state(rngs[world.rank])
    else:  # resumed with more processes than wrote the checkpoint: a fresh stream
        torch.manual_seed(rank_seed(config.seed, world.rank, state["step"]))
    if world.is_main:
        truncate_metrics(out / "metrics.jsonl", state["step"])
    return state["step"]


def _follow_schedules(config: Config, optimizer, svg, step: int) -> None:
    """The learning rate and the scheduled-sampling chance of ``step``: functions of the step alone,
    so resumed runs follow them exactly."""
    if config.lr_schedule == "cosine":
        for group in optimizer.param_groups:
            group["lr"] = config.lr * (1 + math.cos(math.pi * step / config.steps)) / 2
    if config.feed_ramp:
        svg.own_feed_probability = min(1.0, step / config.feed_ramp)


def _diverged(done: int, out: Path, ckpt_path: Path):
    last = load_checkpoint(ckpt_path)["step"] if ckpt_path.exists() else None
    kept = f"the checkpoint of step {last} in {out} is kept" if last is not None else "no checkpoint was written"
    raise TrainingDiverged(f"the loss or its gradients became non-finite at step {done}; {kept}, and no update "
                           "was made from the bad step. Resume with a lower --lr, or check the data for corrupt frames.")


def _build(config: Config, world: World, state, out: Path, ckpt_path: Path):
    """(svg, objective, optimizer, first step): the SVG module on this rank's device, the ELBO as a
    module, Adam on its named parameters (Pyro's param store is not used), a checkpoint restored."""
    pyro.set_rng_seed(config.seed)
    svg = build_model(config)
    if world.rank > 0:
        torch.manual_seed(rank_seed(config.seed, world.rank))  # its own latent noise
    svg.to(world.device).train()
    if config.compile:
        compile_networks(svg)
    objective = training_objective(svg, config.elbo, config.num_particles)
    optimizer = torch.optim.Adam(objective.named_parameters(), lr=config.lr, betas=(0.9, 0.999))
    start = 0 if state is None else _restore(state, svg, optimizer, config, world, out, ckpt_path)
    return svg, objective, optimizer, start


def _row(config: Config, world: World, objective, part: slice, done: int, loss, lr: float) -> dict:
    """A metrics.jsonl row of the last step: its loss and reference-unit terms over all ranks."""
    terms = loss_terms(objective.model.trace, objective.guide.trace)
    terms = _global_terms(world, terms, part.stop - part.start, config.batch_size)
    return {"step": done, "loss": loss.item() / config.batch_size, "mse": terms["mse"], "kl": terms["kl"],
            "kl_per_step": kl_per_step(terms), "kl_t": terms["kl_t"],
            "reference_loss": reference_loss(terms, config.beta), "lr": lr}


def _checkpoint_or_stop(config: Config, world: World, stop: GracefulStop, done: int, svg, optimizer,
                        ckpt_path: Path) -> bool:
    """Write the checkpoint at its interval, at the end, and when a signal asks to stop; True when
    the run stops here (on every rank at the same step: the flag is summed over ranks)."""
    stopping = stop.signum is not None
    if world.distributed:
        stopping = world.sum(torch.tensor(float(stopping), device=world.device)).item() > 0
    if stopping or done % config.checkpoint_every == 0 or done == config.steps:
        rngs = world.gather(rng_state())
        if world.is_main:
            save_checkpoint(ckpt_path, config, done, svg, optimizer.state_dict(), rngs)
    return stopping


def _train_loop(config: Config, out: Path, progress: bool, world: World, state, ckpt_path: Path,
                stop: GracefulStop, datasets) -> list[dict]:
    """The steps of a run: batch, SVI step, logged row (with the motion probe at sample intervals),
    checkpoint or stop, sample grid. Longer than 60 lines on purpose: the parts are helpers and what
    is left is their order around state they share (the log, the progress bar, the clocks)."""
    device = world.device
    train_set, test_set = datasets
    if world.is_main:  # the directory exists: rank 0 created it when it took the lock
        with atomic_path(out / "config.json") as tmp:
            tmp.write_text(json.dumps(config.to_dict(), indent=2) + "\n")

    svg, objective, optimizer, start = _build(config, world, state, out, ckpt_path)
    parallel_objective = world.wrap(objective)
    test_videos = stack_videos(test_set, GRID_VIDEOS).to(device)
    # SM-MNIST knows where its digits are: at the sample intervals, score the motion of generated digits
    probe = (MotionProbe(test_set, config.n_past, config.probe_videos)
             if world.is_main and config.dataset == "smmnist" and config.probe_videos else None)

    rows = []
    part = world.shard(config.batch_size)
    workers = config.workers if config.workers is not None else (
        min(4, os.cpu_count() or 1) if device.type == "cuda" else 0)
    batches = training_batches(train_set, config.seed, config.batch_size, range(start, config.steps), part,
                               workers, pin_memory=device.type == "cuda")
    waited = 0.0  # seconds the loop spent waiting for batches since the last logged row
    frames_per_step = config.batch_size * config.frames_per_video
    bar = tqdm(range(start, config.steps), initial=start, total=config.steps,
               disable=not (progress and world.is_main), dynamic_ncols=True,
               desc=f"{config.model} {config.elbo}" + (f" x{world.size}" if world.distributed else ""))
    tick = time.perf_counter()
    # a fresh run starts a fresh log (rows of a run killed before its first checkpoint are dropped)
    log_mode = "a" if state is not None else "w"
    board = TensorBoardLog(out, start if state is not None else None) if config.tensorboard and world.is_main else None
    with open(out / "metrics.jsonl", log_mode) if world.is_main else contextlib.nullcontext() as log, \
            board or contextlib.nullcontext():
        for step in bar:
            tick_data = time.perf_counter()
            batch = next(batches)
            waited += time.perf_counter() - tick_data
            check_video_values(batch)  # on the host, before the batch goes to the device
            batch = batch.to(device, non_blocking=True)
            done = step + 1
            _follow_schedules(config, optimizer, svg, step)
            # Pyro's validation is off (above), so non-finite network outputs reach the loss rather
            # than raising in a distribution; training_step's finiteness check catches them
            loss, applied = training_step(parallel_objective, optimizer, svg, batch, config.n_past, world,
                                          config.precision)
            if not applied:  # the same on every rank: rank 0 reports it
                on_main(world, lambda: _diverged(done, out, ckpt_path), errors=(TrainingDiverged, CheckpointError))
            sampling = done % config.sample_every == 0 or done == config.steps
            if done % config.log_every == 0 or sampling:
                now = time.perf_counter()
                row = _row(config, world, objective, part, done, loss, optimizer.param_groups[0]["lr"])
                row.update(seconds=now - tick, data_seconds=waited)
                if probe is not None and sampling:
                    with _eager():
                        row.update(probe(svg))
                    row["probe_seconds"] = time.perf_counter() - now
                    now = time.perf_counter()  # the probe's time is not training time
                tick, waited = now, 0.0
                rows.append(row)
                if world.is_main:
                    log.write(json.dumps(row) + "\n")
                    log.flush()
                if board:
                    board.metrics(row)
                bar.set_postfix(loss=f"{row['loss']:.4g}", mse=f"{row['mse']:.4f}", kl_step=f"{row['kl_per_step']:.3g}",
                                fps=f"{frames_per_step * config.log_every / max(row['seconds'], 1e-9):.0f}")
            if _checkpoint_or_stop(config, world, stop, done, svg, optimizer, ckpt_path):
                bar.close()
                signum = stop.signum or signal.SIGTERM
                raise Stopped(signum, f"stopped by {signal.Signals(signum).name} at step {done}: checkpoint "
                                      f"saved in {out}; continue with: svg-pyro train --out {out} --resume")
            if world.is_main and sampling:
                with _eager():
                    samples = grid_samples(svg, test_videos, config.n_past)
                shown = write_sample_grid(out, done, config, test_videos, samples)
                if board:
                    board.samples(done, shown)
    bar.close()
    return rows
