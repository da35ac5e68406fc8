"""Devices and processes: the device a name asks for, and data-parallel training with
``torch.distributed`` (the process group and what ranks share).

Started by ``torchrun`` (which sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT),
training joins a process group: NCCL with one GPU per process (the one of LOCAL_RANK) when the
device is CUDA, gloo on the CPU. Started plainly it runs in a world of one, whose collectives do
nothing, so a single training loop serves every world size.

What N processes share with one: the global batch (each rank takes its slice of the same
(seed, step) videos), the initial weights and every update (DistributedDataParallel averages the
gradients). What differs: each rank draws its own latent noise, and on the CPU BatchNorm normalises
with the statistics of the rank's own slice (rank 0's running statistics are kept); on CUDA it is
converted to SyncBatchNorm, whose statistics cover the global batch as one process would.
"""
from __future__ import annotations

import contextlib
import gc
import os
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from svg_pyro.devices import resolve_device
from svg_pyro.errors import InvalidInput


@dataclass
class World:
    """This process's place among the training processes."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 owns the run directory: config, metrics, checkpoints and sample grids."""
        return self.rank == 0

    def shard(self, n: int) -> slice:
        """This rank's rows of a global batch of ``n`` (contiguous; sizes as ``np.array_split``)."""
        base, extra = divmod(n, self.size)
        start = self.rank * base + min(self.rank, extra)
        return slice(start, start + base + (self.rank < extra))

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum of ``tensor`` over the ranks (a new tensor, on every rank)."""
        tensor = tensor.detach().clone()
        if self.distributed:
            dist.all_reduce(tensor)
        return tensor

    def broadcast(self, obj):
        """Rank 0's ``obj`` on every rank (any picklable object)."""
        if not self.distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj) -> list:
        """Every rank's ``obj``, in rank order, on every rank."""
        if not self.distributed:
            return [obj]
        out = [None] * self.size
        dist.all_gather_object(out, obj)
        return out

    def wrap(self, module: nn.Module) -> nn.Module:
        """``module`` made data-parallel: gradients averaged over ranks in backward, rank 0's
        parameters and buffers broadcast at the start (and its buffers before every forward)."""
        if not self.distributed:
            return module
        if self.device.type == "cuda":
            module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
            return DistributedDataParallel(module, device_ids=[self.device.index])
        return DistributedDataParallel(module)


class PeerError(RuntimeError):
    """Raised on the ranks other than 0 when rank 0 stopped the run; rank 0 reports why."""


def rank_seed(seed: int, rank: int, *more: int) -> int:
    """Seed of the latent-noise stream of a rank other than 0 (rank 0 keeps the run's seed, so a
    1-process run is unchanged): independent streams derived from (seed, rank, ...)."""
    return int(np.random.SeedSequence([seed, rank, *more]).generate_state(1)[0])


def on_main(world: World, fn, errors=(Exception,)):
    """``fn()`` run on rank 0, its result returned on every rank. If it raises one of ``errors``,
    rank 0 raises it and the other ranks raise ``PeerError``, so no rank waits for the others."""
    result = error = None
    if world.is_main:
        try:
            result = fn()
        except errors as err:
            error = err
    result, failed = world.broadcast((result, error is not None))
    if error is not None:
        raise error
    if failed:
        raise PeerError("rank 0 stopped the run")
    return result


@contextlib.contextmanager
def join_world(device: str = "auto"):
    """The ``World`` of this process, joining the process group if torchrun started it."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        yield World(device=resolve_device(device))
        return
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    chosen = resolve_device(device)
    if chosen.type == "cuda":
        if chosen.index is not None:
            raise InvalidInput(f"--device {device} under torchrun: each process takes the GPU of its "
                               "LOCAL_RANK; pass --device cuda (or auto)")
        chosen = torch.device("cuda", local_rank)
        torch.cuda.set_device(chosen)
    created = not dist.is_initialized()
    if created:
        dist.init_process_group("nccl" if chosen.type == "cuda" else "gloo",
                                device_id=chosen if chosen.type == "cuda" else None)
    yield World(rank, size, local_rank, chosen)
    # Only on success: after an error the process exits, and torchrun stops the other ranks.
    if created:
        # Free the DDP wrapper (held in reference cycles) while the interpreter is whole: gloo
        # work it still owns, freed during interpreter shutdown, can abort the process.
        gc.collect()
        dist.barrier()  # no rank tears its connections down while another still uses them
        dist.destroy_process_group()
