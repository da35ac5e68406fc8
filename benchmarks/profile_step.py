"""How often the training step waits for the device, and how busy it keeps a GPU.

    python benchmarks/profile_step.py --preset smmnist --device cuda --batch-size 100
    python benchmarks/profile_step.py --preset tiny --device cpu    # the host-read count alone

Host reads: calls of ``Tensor.item``, ``tolist``, ``__float__`` and ``__bool__`` during
``svg_pyro.training.train.training_step`` (torch.optim's own, on its host-side step counters, left out), as the
training loop runs it (Pyro's validation off) on a batch already on the device; on a GPU each is a
wait for the device. On CUDA also: the synchronisations torch's sync debug mode reports, and the
share of the step's wall time the GPU spends in kernels (torch.profiler). Prints a Markdown table.
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings

import pyro
import torch

from svg_pyro.config import preset
from svg_pyro.data.datasets import make_datasets, training_batch
from svg_pyro.devices import resolve_device
from svg_pyro.models.build import build_model
from svg_pyro.training.distributed import World
from svg_pyro.training.objective import training_objective
from svg_pyro.training.train import training_step


def count_host_reads(step, steps: int) -> int:
    """Host reads made by ``steps`` calls of ``step``, torch.optim's left out."""
    reads = []
    originals = {name: getattr(torch.Tensor, name) for name in ("item", "tolist", "__float__", "__bool__")}

    def counting(original):
        def wrapper(self, *args, **kwargs):
            if "torch/optim" not in sys._getframe(1).f_code.co_filename.replace("\\", "/"):
                reads.append(1)
            return original(self, *args, **kwargs)
        return wrapper

    try:
        for name, original in originals.items():
            setattr(torch.Tensor, name, counting(original))
        for _ in range(steps):
            step()
    finally:
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)
    return len(reads)


def count_cuda_syncs(step, steps: int) -> int:
    """Synchronisations torch's CUDA sync debug mode warns about in ``steps`` calls of ``step``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            for _ in range(steps):
                step()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchronizing" in str(w.message) for w in caught)


def gpu_busy_share(step, steps: int) -> tuple[float, float]:
    """(kernel time / wall time, ms per step) over ``steps`` profiled calls of ``step``."""
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        start = time.perf_counter()
        for _ in range(steps):
            step()
        torch.cuda.synchronize()
        wall = time.perf_counter() - start
    kernel_us = sum(getattr(e, "self_device_time_total", 0) for e in prof.key_averages())
    return kernel_us / 1e6 / wall, wall / steps * 1e3


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="smmnist-cpu")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, help="override the preset's batch size")
    p.add_argument("--steps", type=int, default=10, help="steps measured (after 3 of warm-up)")
    args = p.parse_args()
    device = resolve_device(args.device)
    config = preset(args.preset, **({"batch_size": args.batch_size} if args.batch_size else {}))
    pyro.set_rng_seed(0)
    svg = build_model(config)
    svg.to(device).train()
    objective = training_objective(svg, config.elbo)
    optimizer = torch.optim.Adam(list(svg.parameters()), lr=config.lr)
    batch = training_batch(make_datasets(config)[0], 0, 0, config.batch_size).to(device)

    def step():
        training_step(objective, optimizer, svg, batch, config.n_past, World(), config.precision)

    print(f"device: {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}), "
          f"torch {torch.__version__}, pyro {pyro.__version__}")
    rows = {}
    with pyro.validation_enabled(False):
        for _ in range(3):
            step()
        rows["host reads per step (item, tolist, float, bool)"] = f"{count_host_reads(step, args.steps) / args.steps:.1f}"
        if device.type == "cuda":
            rows["CUDA synchronisations per step (sync debug mode)"] = \
                f"{count_cuda_syncs(step, args.steps) / args.steps:.1f}"
            busy, ms = gpu_busy_share(step, args.steps)
            rows["GPU busy (kernel time / wall time)"] = f"{100 * busy:.1f}%"
            rows["ms per step under the profiler"] = f"{ms:.1f}"
    print(f"| {args.preset}, batch {config.batch_size} | |")
    print("|---|---|")
    for label, value in rows.items():
        print(f"| {label} | {value} |")


if __name__ == "__main__":
    main()
