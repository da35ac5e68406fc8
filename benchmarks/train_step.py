"""Time one training step as ``svi_train.py`` takes it (Pyro's Trace_ELBO or TraceMeanField_ELBO
as a module, stepped by torch's Adam: ``svg_pyro.training.train.training_step``) vs the same -ELBO as a
plain-torch loss, and vs the reference procedure (the published training step transcribed in plain
torch: each frame encoded per step, twice, one decoder call per step over concatenated skips;
``tests.reference.reference_step_loss``), on copies of the same
networks, with the same optimizer and batch. Prints a
Markdown table: "x plain torch" is the Pyro overhead, "x reference" the time against the reference
procedure (below 1 is faster).

    python benchmarks/train_step.py --presets tiny smmnist-cpu --repeats 20
    python benchmarks/train_step.py --presets smmnist --device cuda   # reference size, on a GPU
    python benchmarks/train_step.py --presets smmnist smmnist:precision=bf16 --device cuda --tf32
    python benchmarks/train_step.py --presets smmnist-cpu smmnist-cpu:n_future=5,elbo=trace
    python benchmarks/train_step.py --presets smmnist-cpu --svi   # adds SVI.step + pyro.optim

A preset may carry overrides after a colon (``NAME:key=value,...``), to time two versions of a
configuration against each other in the same run.

The three variants run interleaved, round-robin, so machine noise hits them alike; the ratio
column (Pyro time / plain-torch time) is the Pyro overhead. With ``--rounds R`` the presets take
turns R times and each row is the median over all rounds.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import pyro
import torch
from pyro.infer import SVI

from svg_pyro.config import Config, preset
from svg_pyro.data.datasets import make_datasets, training_batch
from svg_pyro.devices import resolve_device
from svg_pyro.models.build import build_model
from svg_pyro.training.distributed import World
from svg_pyro.training.objective import make_elbo
from svg_pyro.training.objective import training_objective
from svg_pyro.training.train import training_step

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for tests/reference.py
from tests.reference import plain_negative_elbo, reference_step_loss  # noqa: E402


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def parse_preset(spec: str, batch_size: int | None) -> Config:
    """``NAME`` or ``NAME:key=value,...`` -> the preset's config with those overrides."""
    name, _, rest = spec.partition(":")
    overrides = {"batch_size": batch_size} if batch_size else {}
    defaults = Config()
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        if not hasattr(defaults, key):
            raise SystemExit(f"error: {spec!r}: {key!r} is not a configuration field")
        kind = type(getattr(defaults, key))
        overrides[key] = value if kind in (str, type(None)) else kind(value)
    return preset(name, **overrides)


def bench(name: str, device: torch.device, repeats: int, warmup: int, batch_size: int | None,
          with_svi: bool = False):
    config = parse_preset(name, batch_size)
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    svg = build_model(config)
    svg.to(device).train()
    train_set, _ = make_datasets(config)
    batch = training_batch(train_set, 0, 0, config.batch_size).to(device)

    objectives = {e: training_objective(svg, e) for e in ("trace", "meanfield")}
    params = list(svg.parameters())
    torch_opt = torch.optim.Adam(params, lr=config.lr)

    def pyro_step(elbo):
        training_step(objectives[elbo], torch_opt, svg, batch, config.n_past, World(), config.precision)[0].item()

    def autocast():  # what training_step does under --precision bf16, for the other procedures too
        return torch.autocast(device.type, torch.bfloat16, enabled=config.precision == "bf16")

    def torch_step():
        torch_opt.zero_grad()
        with autocast():
            loss = plain_negative_elbo(svg, batch, config.n_past)
        loss.backward()
        torch_opt.step()

    # the reference procedure on its own copy of the networks (the same initial weights)
    ref_svg = copy.deepcopy(svg)
    ref_opt = torch.optim.Adam(ref_svg.parameters(), lr=config.lr)

    def reference_step():
        ref_opt.zero_grad()
        with autocast():
            loss = reference_step_loss(ref_svg, batch, config.n_past, config.beta)[0]
        loss.backward()
        ref_opt.step()

    steps = {"plain torch": torch_step, "Trace_ELBO": lambda: pyro_step("trace"),
             "TraceMeanField_ELBO": lambda: pyro_step("meanfield")}
    if config.model == "svg-lp":
        steps["reference procedure"] = reference_step
    if with_svi:  # the loop before data-parallel training: SVI.step with one pyro.optim per parameter
        svi = SVI(svg.model, svg.guide, pyro.optim.Adam({"lr": config.lr}), make_elbo("meanfield"))

        def svi_step():
            with svg.share_encodings():
                svi.step(batch, config.n_past)
        steps["TraceMeanField_ELBO, SVI.step"] = svi_step
    times = {k: [] for k in steps}
    for i in range(warmup + repeats):
        for label, fn in steps.items():
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            if i >= warmup:
                times[label].append(time.perf_counter() - t0)
    params_m = sum(p.numel() for p in params) / 1e6
    return times, (params_m, config.batch_size, config.batch_size * config.frames_per_video)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", nargs="+", default=["tiny", "smmnist-cpu"])
    p.add_argument("--device", default="auto")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--batch-size", type=int, help="override the presets' batch size")
    p.add_argument("--rounds", type=int, default=1,
                   help="alternate the presets this many times (repeats each), so that slow spells of a "
                        "shared machine hit every preset alike")
    p.add_argument("--svi", action="store_true", help="also time TraceMeanField_ELBO through SVI.step")
    p.add_argument("--tf32", action="store_true", help="CUDA: TF32 matrix products and convolutions (off: "
                                                       "exact fp32, the default here)")
    p.add_argument("--cudnn-benchmark", action="store_true", help="CUDA: let cuDNN time its kernels and keep "
                                                                  "the fastest for each shape")
    args = p.parse_args()
    device = resolve_device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = args.tf32
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device: {device} ({name}), torch {torch.__version__}, pyro {pyro.__version__}, "
          f"threads {torch.get_num_threads()}, TF32 {args.tf32}, cudnn.benchmark {args.cudnn_benchmark}")
    print("| preset | params | batch | step | ms/step (median) | frames/s | x plain torch | x reference |")
    print("|---|---|---|---|---|---|---|---|")
    times, meta = {}, {}
    for _ in range(args.rounds):
        for name in args.presets:
            got, meta[name] = bench(name, device, args.repeats, args.warmup, args.batch_size, args.svi)
            for label, ts in got.items():
                times.setdefault(name, {}).setdefault(label, []).extend(ts)
    for name in args.presets:
        params_m, batch, frames = meta[name]
        base = statistics.median(times[name]["plain torch"])
        ref = statistics.median(times[name].get("reference procedure", [float("nan")]))
        for label, ts in times[name].items():
            med = statistics.median(ts)
            print(f"| {name} | {params_m:.2f} M | {batch} | {label} | {med * 1e3:.1f} | "
                  f"{frames / med:.0f} | {med / base:.3f} | {med / ref:.3f} |", flush=True)


if __name__ == "__main__":
    main()
