"""Checkpoints: written atomically, read with ``torch.load(weights_only=True)``.

Two kinds: a training checkpoint (everything needed to resume, below) and a weights-only file
(``export_weights``: config, step and the networks, optionally in fp16), which is what ships in
the repository's ``checkpoints/`` folder. Every loader takes a path or the short name of a shipped
model (``checkpoints/NAME.pt``, e.g. ``smmnist-1digit-svg-lp``).

A checkpoint holds the config, the step, the SVG module's state (model and guide networks), the
optimizer state and the RNG state (of every rank, after a data-parallel run), so ``--resume``
continues a run exactly as if it had not stopped. The optimizer state is torch's ``state_dict``
with the parameter names of the training objective (``svg_pyro.training.objective.training_objective``).
Files of earlier formats load by conversion (``upgrade``): format 1 kept the optimizer state per
parameter under Pyro's param-store names; formats 1-2 (and weights-only files of format 1) kept the
guide's posterior LSTM as a separate module, ``state["guide"]``.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from svg_pyro.atomic import atomic_path
from svg_pyro.config import ARCHITECTURE_FIELDS, Config
from svg_pyro.errors import SvgPyroError
from svg_pyro.models.build import build_model


FORMAT = "svg-pyro-checkpoint/3"
WEIGHTS_FORMAT = "svg-pyro-weights/2"
# earlier formats, read and upgraded on loading (``upgrade``)
FORMAT_1, FORMAT_2, WEIGHTS_FORMAT_1 = "svg-pyro-checkpoint/1", "svg-pyro-checkpoint/2", "svg-pyro-weights/1"
TRAINING_FORMATS = (FORMAT, FORMAT_2, FORMAT_1)
SHIPPED = Path(__file__).resolve().parents[1] / "checkpoints"  # trained models in the repository
SHIPPED_VARIABLE = "SVG_PYRO_CHECKPOINTS"  # another folder of them (a wheel install has no repository)


class CheckpointError(SvgPyroError, RuntimeError):
    pass


def atomic_torch_save(obj, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_optimizer_state(optimizer: torch.optim.Optimizer, saved: dict, path) -> None:
    """Load a saved ``optimizer.state_dict()`` into ``optimizer`` (one group, built from named
    parameters), matching parameters by name, so that it does not depend on their order."""
    names = optimizer.param_groups[0]["param_names"]
    saved_group = saved["param_groups"][0]
    index = {name: i for i, name in zip(saved_group["params"], saved_group["param_names"])}
    missing = [name for name in names if name not in index]
    if missing or len(index) != len(names):
        raise CheckpointError(f"the checkpoint {path} has no optimizer state for {missing[:3]}; "
                              "it does not belong to this model")
    optimizer.load_state_dict({
        "state": {i: saved["state"][index[name]] for i, name in enumerate(names) if index[name] in saved["state"]},
        "param_groups": [{**saved_group, "params": list(range(len(names))), "param_names": names}]})


def upgrade(state: dict) -> dict:
    """A checkpoint of an earlier format in today's. Format 1 kept the optimizer state per parameter
    under Pyro's param-store names, ``pyro.optim``'s layout ("svg$$$encoder...",
    "posterior$$$net..."); format 2 had it as ``optimizer.state_dict()`` with the names of an
    objective over two modules ("model.program.encoder...", "guide.program.net...") and kept the
    guide's networks apart (``state["guide"]``); today the posterior LSTM is the SVG module's
    submodule ``posterior`` ("model.program.posterior.net...")."""
    if state["format"] == FORMAT_1:
        state = _upgrade_optimizer_1(state)
    if "guide" not in state:
        return state
    model = {**state["model"], **{f"posterior.{k}": v for k, v in state["guide"].items()}}
    state = {k: v for k, v in state.items() if k != "guide"}
    if state["format"] == WEIGHTS_FORMAT_1:
        return {**state, "format": WEIGHTS_FORMAT, "model": model}
    group = state["optimizer"]["param_groups"][0]
    names = [name.replace("guide.program.", "model.program.posterior.", 1) for name in group["param_names"]]
    optimizer = {**state["optimizer"], "param_groups": [{**group, "param_names": names}]}
    return {**state, "format": FORMAT, "model": model, "optimizer": optimizer}


def _upgrade_optimizer_1(state: dict) -> dict:
    """Format 1's optimizer state (per parameter, Pyro's names) as format 2's."""
    prefixes = {"svg": "model.program.", "posterior": "guide.program."}
    old = state["optimizer"]
    names = list(old)
    new_names = [prefixes[module] + rest for module, _, rest in (name.partition("$$$") for name in names)]
    group = {k: v for k, v in old[names[0]]["param_groups"][0].items() if k != "params"}
    optimizer = {"state": {i: old[name]["state"][0] for i, name in enumerate(names) if old[name]["state"]},
                 "param_groups": [{**group, "params": list(range(len(names))), "param_names": new_names}]}
    return {**state, "format": FORMAT_2, "optimizer": optimizer}


def rng_state() -> dict:
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path, config: Config, step: int, svg: nn.Module, optimizer_state: dict,
                    rng_by_rank: list[dict] | None = None) -> None:
    """``optimizer_state``: ``optimizer.state_dict()`` of an optimizer built from named parameters;
    ``rng_by_rank``: the RNG state of every rank of a data-parallel run (default: this process's)."""
    rng_by_rank = rng_by_rank or [rng_state()]
    state = {
        "format": FORMAT,
        "config": config.to_dict(),
        "step": step,
        "model": svg.state_dict(),
        "optimizer": optimizer_state,
        "rng": rng_by_rank[0],
        "rng_by_rank": rng_by_rank,
    }
    atomic_torch_save(state, path)


def shipped_dir() -> Path:
    """Where short names resolve: the folder $SVG_PYRO_CHECKPOINTS names, else the repository's
    checkpoints/ (an installed wheel has none: point the variable at a clone's)."""
    return Path(os.environ.get(SHIPPED_VARIABLE) or SHIPPED)


def shipped_models() -> list[str]:
    """Short names of the trained models in ``shipped_dir()``."""
    return sorted(p.stem for p in shipped_dir().glob("*.pt"))


def resolve_checkpoint(path_or_name) -> Path:
    """An existing file as given, else the shipped model of that short name, else the path as given."""
    path = Path(path_or_name)
    shipped = shipped_dir() / f"{path.name}.pt"
    if not path.is_file() and path.name == str(path_or_name) and shipped.is_file():
        return shipped
    return path


def load_checkpoint(path) -> dict:
    """A training checkpoint or a weights-only file (``state["format"]`` says which)."""
    path = resolve_checkpoint(path)
    if not path.is_file():
        names = shipped_models()
        shipped = (f", or name a shipped model ({', '.join(names)})" if names else
                   f"; short names need the folder of shipped models: set {SHIPPED_VARIABLE} to a clone's checkpoints/")
        raise CheckpointError(f"no checkpoint at {path}; train first (python svi_train.py --out "
                              f"{path.parent}), point to the right file{shipped}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated zip, pickle error, ...
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(err).__name__}: {err}); "
                              "it may be truncated or from another program. It was not modified.") from err
    if not isinstance(state, dict) or state.get("format") not in (*TRAINING_FORMATS, WEIGHTS_FORMAT, WEIGHTS_FORMAT_1):
        raise CheckpointError(f"{path} is not an svg-pyro checkpoint (format {FORMAT} expected)")
    return upgrade(state)


def export_weights(source, out, half: bool = False, overwrite: bool = False) -> dict:
    """Write the networks of checkpoint ``source`` to ``out`` without the optimizer and RNG states
    (``half``: floating-point tensors stored in fp16, loaded back as fp32). Returns what was written.
    An existing ``out`` is replaced only with ``overwrite``, and never when it is a training
    checkpoint: weights only cannot be resumed from."""
    state = load_checkpoint(source)
    out = Path(out)
    if out.exists():
        if out.is_dir():
            raise CheckpointError(f"{out} is a directory; give the file to write, e.g. {out / 'model.pt'}")
        try:
            existing = torch.load(out, map_location="cpu", weights_only=True)
        except Exception:  # not a checkpoint: the user decides
            existing = None
        if isinstance(existing, dict) and existing.get("format") in TRAINING_FORMATS:
            raise CheckpointError(f"{out} is a training checkpoint (it can be resumed); writing weights only over "
                                  "it would end that. Export to another file; it was not modified.")
        if not overwrite:
            raise CheckpointError(f"{out} already exists; pass --force to replace it, or choose another file")

    def slim(tensors: dict) -> dict:
        return {k: v.half() if half and v.is_floating_point() else v for k, v in tensors.items()}

    weights = {"format": WEIGHTS_FORMAT, "config": state["config"], "step": state["step"],
               "model": slim(state["model"]), "fp16": half}
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_torch_save(weights, out)
    return weights


def check_compatible(saved: Config, wanted: Config, path) -> None:
    diffs = [f"{name}: checkpoint {getattr(saved, name)!r}, asked {getattr(wanted, name)!r}"
             for name in ARCHITECTURE_FIELDS if getattr(saved, name) != getattr(wanted, name)]
    if diffs:
        raise CheckpointError(f"the checkpoint {path} was trained with another configuration ("
                              + "; ".join(diffs) + "). Drop the conflicting options to resume it, "
                              "or train into a new --out.")


def load_model(path, device: str | torch.device = "cpu"):
    """(config, svg, step) from a checkpoint, on ``device``, in eval mode."""
    state = load_checkpoint(path)
    config = Config.from_dict(state["config"])
    svg = build_model(config)
    svg.load_state_dict(state["model"])
    svg.to(device).eval()
    return config, svg, state["step"]
