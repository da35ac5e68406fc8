"""The evaluation protocol's settings, declared once: ``evaluate`` takes them (as an
``EvaluationOptions`` or as keywords), ``svg-pyro evaluate`` makes one flag per field from them
(``cli.commands``), and docs/evaluation.md lists the same names."""
from __future__ import annotations

import dataclasses

from svg_pyro.errors import InvalidInput
from svg_pyro.inference.sampling import BN_MODES, DEFAULT_MAX_BATCH


def _option(default, help: str, **argparse):
    """A field with its command-line help and any other ``add_argument`` settings (``flag`` when the
    flag's name is not the field's)."""
    return dataclasses.field(default=default, metadata={"help": help, **argparse})


@dataclasses.dataclass(frozen=True)
class EvaluationOptions:
    samples: int = _option(100, "futures drawn per test video", type=int)
    videos: int = _option(256, "test videos (the first ones of the test set)", type=int)
    n_past: int | None = _option(None, "conditioning frames (default: the checkpoint's n_past)", type=int)
    horizon: int | None = _option(None, "predicted frames (default: 25 SM-MNIST, 30 KTH, 28 BAIR)", type=int)
    prior: str = _option("learned", "learned: the checkpoint's own prior; fixed: swap in N(0, I) at sampling time",
                         choices=("learned", "fixed"))
    prior_checkpoint: str | None = _option(None, "sample under the learned prior of this SVG-LP checkpoint")
    det_checkpoint: str | None = _option(None, "checkpoint of the deterministic baseline")
    device: str = _option("auto", "auto (a GPU when there is one), cpu or cuda[:N]")
    bn: str = _option("eval", "BatchNorm at sampling time: eval = running statistics, train = batch statistics",
                      choices=BN_MODES)
    max_batch: int = _option(DEFAULT_MAX_BATCH, "(sample, video) rows per forward pass", type=int, flag="--batch", metavar="ROWS")
    seed: int = _option(0, "random seed of the samples", type=int)
    window: tuple[int, int] | None = _option(
        None, "also report best-of-N averaged over these frame indices (e.g. 10 20)", type=int, nargs=2,
        metavar=("FIRST", "LAST"))
    data_root: str | None = _option(None, "prepared KTH/BAIR store, if it moved since training")
    mnist_root: str | None = _option(None, "MNIST IDX files, if they moved since training")
    bound_particles: tuple[int, ...] = _option(
        (), "also the held-out ELBO and importance-weighted bounds on log p(x) with K latent paths each "
            "(e.g. 1 10 100; nats per frame; svg_pyro.evaluation.bounds)", type=int, nargs="+", metavar="K")
    motion_videos: int = _option(
        64, "SM-MNIST: also find the digits in 5 futures of the first N test videos, free-running and "
            "teacher-forced one-step (svg_pyro.evaluation.motion; 0 = off)", type=int, metavar="N")

    def __post_init__(self):  # lists from the command line or a caller, kept as tuples
        for name in ("window", "bound_particles"):
            if isinstance(getattr(self, name), list):
                object.__setattr__(self, name, tuple(getattr(self, name)))

    def check(self) -> EvaluationOptions:
        """Refuse the settings that cannot go together, before any model is loaded."""
        if self.prior not in ("learned", "fixed"):
            raise InvalidInput(f"--prior must be 'learned' or 'fixed', not {self.prior!r}")
        if self.prior == "fixed" and self.prior_checkpoint is not None:
            raise InvalidInput("give either --prior fixed or --prior-checkpoint, not both")
        if self.bn not in BN_MODES:
            raise InvalidInput(f"--bn must be one of {BN_MODES}, not {self.bn!r}")
        if self.samples < 1 or self.videos < 1:
            raise InvalidInput("--samples and --videos must be at least 1")
        if self.bound_particles and (self.prior != "learned" or self.prior_checkpoint is not None):
            raise InvalidInput("--bound-particles scores a model under its own prior; drop --prior fixed / "
                               "--prior-checkpoint, or --bound-particles")
        if self.motion_videos < 0:
            raise InvalidInput(f"--motion-videos must be >= 0, not {self.motion_videos}")
        if any(k < 1 for k in self.bound_particles):
            raise InvalidInput(f"--bound-particles must be at least 1, not {min(self.bound_particles)}")
        return self


def evaluation_options(options: EvaluationOptions | None = None, **settings) -> EvaluationOptions:
    """``options`` (default: the defaults) with ``settings`` on top; an unknown name is refused."""
    names = {f.name for f in dataclasses.fields(EvaluationOptions)}
    unknown = sorted(set(settings) - names)
    if unknown:
        raise InvalidInput(f"unknown evaluation settings {unknown}; the settings are {sorted(names)}")
    return dataclasses.replace(options or EvaluationOptions(), **settings).check()
