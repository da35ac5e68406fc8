"""Signal-to-noise ratio of the posterior's gradient under Trace_ELBO and TraceMeanField_ELBO.

    python experiments/gradient_noise.py [--checkpoint runs/svg-lp/checkpoint.pt] [--draws 32]

On one fixed training batch, the gradient of the -ELBO with respect to the posterior's mean head
(the Linear layer that outputs mu of q(z_t | x_{1:t})) is computed for ``--draws`` independent z
draws under each ELBO. Printed per ELBO: the norm of the mean gradient (the signal), the root mean
square deviation of single draws from it (the noise) and their ratio. Trace_ELBO estimates the KL
by log q(z) - log p(z) at the sampled z, whose gradient in mu_q carries a term (z - mu_p) / sigma_p^2
of zero mean and unit scale per dimension and video; the analytic KL has no such term.
Without --checkpoint the networks are at their initial weights (seed 0), where every run starts.
"""
from __future__ import annotations

import argparse

import pyro
import torch

from svg_pyro.checkpoint import load_model
from svg_pyro.config import preset
from svg_pyro.data.datasets import make_datasets, training_batch
from svg_pyro.models.build import build_model
from svg_pyro.training.objective import make_elbo


def gradient_draws(svg, batch, n_past, elbo_name, draws):
    elbo = make_elbo(elbo_name)
    head = svg.posterior.net.mu.weight
    grads = []
    for _ in range(draws):
        with svg.share_encodings():
            loss = elbo.differentiable_loss(svg.model, svg.guide, batch, n_past)
        (g,) = torch.autograd.grad(loss, head)
        grads.append(g.flatten())
    return torch.stack(grads)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", help="a SVG-LP checkpoint (default: fresh weights of --preset)")
    p.add_argument("--preset", default="smmnist-cpu")
    p.add_argument("--draws", type=int, default=32)
    p.add_argument("--step", type=int, default=0, help="which training batch (seed 0)")
    args = p.parse_args()
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    if args.checkpoint:
        config, svg, step = load_model(args.checkpoint)
        where = f"{args.checkpoint} (step {step})"
    else:
        config = preset(args.preset)
        svg = build_model(config)
        where = f"initial weights of {args.preset}"
    svg.train()
    batch = training_batch(make_datasets(config)[0], 0, args.step, config.batch_size)
    print(f"{where}; batch {args.step}; gradient of -ELBO in the posterior's mu head; {args.draws} z draws")
    print("| ELBO | mean gradient norm (signal) | rms deviation of one draw (noise) | signal / noise |")
    print("|---|---|---|---|")
    for name, label in (("trace", "Trace_ELBO (sampled KL)"), ("meanfield", "TraceMeanField_ELBO (analytic KL)")):
        g = gradient_draws(svg, batch, config.n_past, name, args.draws)
        signal = g.mean(0).norm().item()
        noise = (g - g.mean(0)).pow(2).sum(1).mean().sqrt().item()
        print(f"| {label} | {signal:.4g} | {noise:.4g} | {signal / noise:.3g} |", flush=True)


if __name__ == "__main__":
    main()
