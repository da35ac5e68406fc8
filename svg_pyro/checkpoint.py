"""Checkpoints: written atomically, read with ``torch.load(weights_only=True)``.

A checkpoint holds the config, the step, the model, guide and optimizer states and the RNG state,
so ``--resume`` continues a run exactly as if it had not stopped.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from svg_pyro.config import ARCHITECTURE_FIELDS, Config

FORMAT = "svg-pyro-checkpoint/1"


class CheckpointError(RuntimeError):
    pass


def atomic_torch_save(obj, path: Path) -> None:
    """Save to a temporary file beside ``path`` and rename it: the old file survives a crash."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_checkpoint(path, config: Config, step: int, svg: nn.Module, guide, optimizer_state: dict) -> None:
    state = {
        "format": FORMAT,
        "config": config.to_dict(),
        "step": step,
        "model": svg.state_dict(),
        "guide": guide.state_dict() if isinstance(guide, nn.Module) else {},
        "optimizer": optimizer_state,
        "rng": {"torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
    }
    atomic_torch_save(state, path)


def load_checkpoint(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}; train first (python svi_train.py --out "
                              f"{path.parent}) or point to the right file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated zip, pickle error, ...
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(err).__name__}: {err}); "
                              "it may be truncated or from another program. It was not modified.") from err
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an svg-pyro checkpoint (format {FORMAT} expected)")
    return state


def check_compatible(saved: Config, wanted: Config, path) -> None:
    diffs = [f"{name}: checkpoint {getattr(saved, name)!r}, asked {getattr(wanted, name)!r}"
             for name in ARCHITECTURE_FIELDS if getattr(saved, name) != getattr(wanted, name)]
    if diffs:
        raise CheckpointError(f"the checkpoint {path} was trained with another configuration ("
                              + "; ".join(diffs) + "). Drop the conflicting options to resume it, "
                              "or train into a new --out.")


def load_model(path, device: str | torch.device = "cpu"):
    """(config, svg, guide, step) from a checkpoint, on ``device``, in eval mode."""
    from svg_pyro.build import build_model

    state = load_checkpoint(path)
    config = Config.from_dict(state["config"])
    svg, guide = build_model(config)
    svg.load_state_dict(state["model"])
    if isinstance(guide, nn.Module):
        guide.load_state_dict(state["guide"])
        guide.to(device).eval()
    svg.to(device).eval()
    return config, svg, guide, state["step"]
