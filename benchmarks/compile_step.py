"""Does ``torch.compile`` of the networks make a CPU training step cheaper?

Two copies of one model from the same weights: one eager, one whose networks are compiled (the
encoder, the decoder's per-step ``decode`` and per-frame ``skip_terms``, the LSTMs of the frame
predictor, the prior and the posterior). The Pyro program around them stays eager: its sample
sites and effect handlers are Python that a graph cannot hold. First the two take one step on the
same batch with the same noise, and their losses and gradients are compared; then they take turns,
step by step, ``--rounds`` times (machine noise hits both alike), and the table gives the median
step time of each and their ratio, with the one-off compile time.

    python benchmarks/compile_step.py --preset smmnist-1digit-cpu --steps 30 --rounds 3
    python benchmarks/compile_step.py --preset smmnist-cpu --mode max-autotune-no-cudagraphs
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time

import pyro
import torch

from svg_pyro.config import preset
from svg_pyro.data.datasets import make_datasets, training_batch
from svg_pyro.models.build import build_model, compile_networks
from svg_pyro.training.distributed import World
from svg_pyro.training.objective import training_objective
from svg_pyro.training.train import training_step


def one_step(svg, config, batch, seed: int):
    """Loss and gradients of one training step from the current weights (the optimizer not stepped)."""
    objective = training_objective(svg, config.elbo)
    pyro.set_rng_seed(seed)
    svg.zero_grad()
    with svg.share_encodings():
        loss = objective(batch, config.n_past)
    loss.backward()
    grads = [p.grad.clone() for p in svg.parameters()]
    svg.zero_grad()
    return loss.detach(), grads


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="smmnist-1digit-cpu")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--steps", type=int, default=30, help="timed steps per model per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--mode", default="default", help="torch.compile mode")
    args = p.parse_args()

    config = preset(args.preset, **({"batch_size": args.batch_size} if args.batch_size else {}))
    pyro.set_rng_seed(0)
    eager = build_model(config)
    compiled = copy.deepcopy(eager)
    eager.train(), compiled.train()
    train_set, _ = make_datasets(config)
    batch = training_batch(train_set, config.seed, 0, config.batch_size)

    tick = time.perf_counter()
    compile_networks(compiled, mode=args.mode)
    loss_c, grads_c = one_step(compiled, config, batch, seed=1)  # compiles here
    compile_seconds = time.perf_counter() - tick
    loss_e, grads_e = one_step(eager, config, batch, seed=1)
    # relative to the whole gradient's norm: the biases of convolutions followed by BatchNorm have a
    # gradient of exactly zero in exact arithmetic, so their float values are rounding noise
    difference = torch.cat([(a - b).flatten() for a, b in zip(grads_c, grads_e)]).norm()
    difference = (difference / torch.cat([b.flatten() for b in grads_e]).norm()).item()
    print(f"loss eager {loss_e.item():.4f}, compiled {loss_c.item():.4f} (relative difference "
          f"{abs(loss_c.item() / loss_e.item() - 1):.2e}); gradients: |compiled - eager| / |eager| = {difference:.2e}")

    steppers = {}
    for name, svg in (("eager", eager), ("compiled", compiled)):
        objective = training_objective(svg, config.elbo)
        optimizer = torch.optim.Adam(objective.parameters(), lr=config.lr)
        steppers[name] = (objective, optimizer, svg)
    times = {name: [] for name in steppers}
    step = 1
    for _ in range(args.rounds):
        for _ in range(args.steps):
            videos = training_batch(train_set, config.seed, step, config.batch_size)
            step += 1
            for name, (objective, optimizer, svg) in steppers.items():
                t0 = time.perf_counter()
                training_step(objective, optimizer, svg, videos, config.n_past, World())[0].item()
                times[name].append(time.perf_counter() - t0)
    eager_ms, compiled_ms = (1000 * statistics.median(times[n]) for n in ("eager", "compiled"))
    print(f"\n{args.preset}, batch {config.batch_size}, {torch.get_num_threads()} threads, torch "
          f"{torch.__version__}, mode {args.mode}: {args.rounds} rounds x {args.steps} steps, taking turns\n")
    print("| networks | median ms / step | vs eager | one-off compile (s) |\n| --- | --- | --- | --- |")
    print(f"| eager | {eager_ms:.1f} | 1.00x | |")
    print(f"| torch.compile | {compiled_ms:.1f} | {compiled_ms / eager_ms:.2f}x | {compile_seconds:.0f} |")


if __name__ == "__main__":
    main()
