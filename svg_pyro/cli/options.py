"""Options shared by the subcommands, and the training options made from ``Config``."""
from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import os
import sys
import types
import typing
from pathlib import Path

from svg_pyro.checkpoint import load_checkpoint
from svg_pyro.config import CHOICES, DEFAULT_PRESET, Config, preset
from svg_pyro.data.video_store import MANIFEST


EXIT_USAGE = 2  # a problem the user can fix: bad option, missing file, diverged run, ...
EXIT_PARTIAL = 1  # prepare: some source files failed and were left out


def rank() -> int:
    return int(os.environ.get("RANK", "0"))  # set by torchrun


def say_error(message: str) -> None:
    print(f"{f'rank {rank()}: ' if rank() else ''}error: {message}", file=sys.stderr)


def say_warning(message, category, *_, **__) -> None:
    print(f"warning: {message}", file=sys.stderr)


# ---------------------------------------------------------------------------------------------
# options shared by several subcommands


def device_option(p: argparse.ArgumentParser, default: str = "auto") -> None:
    p.add_argument("--device", default=default, help="auto (a GPU when there is one), cpu or cuda[:N]")


def library_defaults(function) -> dict:
    """The keyword defaults of the library function a subcommand calls: its options take them from
    there, so the command line and the Python API cannot drift apart."""
    return {name: parameter.default for name, parameter in inspect.signature(function).parameters.items()
            if parameter.default is not inspect.Parameter.empty}


def progress_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")


def show_progress(args) -> bool:
    return not getattr(args, "no_progress", False)


# ---------------------------------------------------------------------------------------------
# train


def _field_type(hint):
    """int for ``int``, ``int | None``; ``None`` for a bool (a switch)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        (hint,) = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    return None if hint is bool else hint


def config_options(p: argparse.ArgumentParser) -> None:
    """One --flag per Config field (``--batch-size`` for ``batch_size``), typed as the field."""
    hints = typing.get_type_hints(Config)
    for f in dataclasses.fields(Config):
        flag, kind = f"--{f.name.replace('_', '-')}", _field_type(hints[f.name])
        if kind is None:
            p.add_argument(flag, action=argparse.BooleanOptionalAction, help=f.metadata["help"])
        else:
            p.add_argument(flag, type=kind, choices=CHOICES.get(f.name), help=f.metadata["help"])


def config_from_args(args: argparse.Namespace) -> tuple[Config, Path, bool]:
    """The run's config, output directory and resume flag: the preset (or, with --resume and no
    --preset, the checkpoint's own config) with the options the user gave on top."""
    given = vars(args).copy()
    out = Path(given.pop("out", None) or f"runs/{given.get('model', 'svg-lp')}")
    resume = given.pop("resume", False)
    given.pop("no_progress", None)
    given.pop("command", None)
    name = given.pop("preset", None)
    if resume and name is None:
        base = load_checkpoint(out / "checkpoint.pt")["config"]
    else:
        default = "folder-cpu" if given.get("dataset") == "folder" else DEFAULT_PRESET
        base = preset(name or default).to_dict()
    merged = {**base, **given}
    if merged["dataset"] == "folder" and merged.get("data_root"):
        merged.update(store_frame(merged["data_root"], given))
    return Config(**merged).validate(), out, resume


def store_frame(data_root, given: dict) -> dict:
    """A folder store's frame size and channels, for the settings the user did not give (those given
    are checked against the store when training starts)."""
    try:
        channels, size, _ = json.loads((Path(data_root) / MANIFEST).read_text())["frame_shape"]
    except (OSError, ValueError, KeyError):
        return {}  # no readable store: training names the problem
    return {k: v for k, v in (("channels", channels), ("image_size", size)) if k not in given}


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: X)" only where there is one to say and the help does not already say it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or action.nargs == 0 or "default" in (action.help or ""):
            return action.help or ""
        return super()._get_help_string(action)
