"""Train SVG-LP with the reference code's training step (plain torch, ``reference_step_loss``) on
the same networks, initial weights and batches as ``svi_train.py``, logging metrics.jsonl rows in
the same format, so its KL curve can be laid over the Pyro run's:

    python experiments/reference_training.py --out runs/ablation/reference-step-s0 --steps 600
    python svi_train.py --out runs/ablation/meanfield-second-last-s0 --skip-frame second-last --steps 800
    svg-pyro kl-curves runs/ablation/reference-step-s0 runs/ablation/meanfield-second-last-s0 --until 600 --out kl.png

Same optimizer (Adam, betas 0.9/0.999, the preset's lr) on the reference loss, whose scale is
the ELBO's times beta / batch: Adam is invariant to that scale up to its eps.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pyro
import torch
from tqdm.auto import tqdm

from svg_pyro.config import preset
from svg_pyro.data.datasets import make_datasets, training_batch
from svg_pyro.devices import resolve_device
from svg_pyro.models.build import build_model


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for tests/reference.py
from tests.reference import reference_step_loss  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="smmnist-cpu")
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=1200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--device", default="auto")
    args = p.parse_args()
    # the reference step freezes the skips at x_{n_past-2} and uses the analytic KL: say so in config.json
    config = preset(args.preset, model="svg-lp", steps=args.steps, seed=args.seed, skip_frame="second-last",
                    elbo="meanfield")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    device = resolve_device(args.device)
    train_set, _ = make_datasets(config)
    pyro.clear_param_store()
    pyro.set_rng_seed(config.seed)  # the same initial weights as svi_train.py
    svg = build_model(config)
    svg.to(device).train()
    optimizer = torch.optim.Adam(svg.parameters(), lr=config.lr, betas=(0.9, 0.999))
    tick = time.perf_counter()
    with open(out / "metrics.jsonl", "w") as log:
        for step in tqdm(range(config.steps), desc="reference step"):
            batch = training_batch(train_set, config.seed, step, config.batch_size).to(device)
            optimizer.zero_grad()
            loss, mse_t, kl_t = reference_step_loss(svg, batch, config.n_past, config.beta)
            loss.backward()
            optimizer.step()
            if (step + 1) % args.log_every == 0:
                now = time.perf_counter()
                row = {"step": step + 1, "mse": sum(mse_t), "kl": sum(kl_t), "kl_per_step": sum(kl_t) / len(kl_t),
                       "kl_t": kl_t, "reference_loss": loss.item(), "seconds": now - tick}
                tick = now
                log.write(json.dumps(row) + "\n")
                log.flush()


if __name__ == "__main__":
    main()
