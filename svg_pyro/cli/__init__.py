"""The ``svg-pyro`` command: train, evaluate, trajectory, prepare, kl-curves, score, condition, export.

Each subcommand declares its options in ``cli.commands`` and calls a library function (shared
options in ``cli.options``); ``run`` here holds the one rule that turns an expected failure into a
one-line error and an exit code. The training options are made
from the fields of ``Config``, so every setting has a flag and its help is the field's own.
``python svi_train.py`` runs its train subcommand; ``python -m svg_pyro`` is ``svg-pyro``.
"""
from __future__ import annotations

import argparse
import sys
import typing
import warnings

from svg_pyro.cli.commands import COMMANDS, Command
from svg_pyro.cli.options import EXIT_USAGE, HelpFormatter, rank, say_error, say_warning
from svg_pyro.errors import SvgPyroError
from svg_pyro.training.distributed import PeerError
from svg_pyro.training.signals import Stopped


def run(command: Command, args: argparse.Namespace) -> int:
    """Run a subcommand; expected failures become one line on stderr and exit code 2."""
    try:
        with warnings.catch_warnings():  # what the library warns about, as one line too
            warnings.showwarning = say_warning
            return command.run(args)
    except PeerError:
        return EXIT_USAGE  # rank 0 printed the reason
    except Stopped as stopped:  # the checkpoint is written; the message says how to resume
        if rank() == 0:
            print(stopped, file=sys.stderr)
        return 128 + stopped.signum
    except SvgPyroError as err:  # expected: the message names the problem and the fix
        say_error(str(err))
        return EXIT_USAGE
    except OSError as err:  # a file where a directory should be, a read-only or full disk, ...
        where = err.filename or getattr(args, "out", None) or "the output"
        say_error(f"cannot write {where}: {err.strerror or err}; choose another --out, or free space / "
                   "fix permissions there (what was saved before is intact)")
        return EXIT_USAGE


class _Parser(argparse.ArgumentParser):
    """argparse's own errors (an unknown option, ``--steps abc``) as one line too, exit 2."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(EXIT_USAGE, f"error: {message}; see {self.prog} --help\n")


def _subcommand_parser(p: argparse.ArgumentParser, command: Command) -> argparse.ArgumentParser:
    p.formatter_class = HelpFormatter
    p.description = command.description
    command.add_options(p)
    p.set_defaults(command=command)
    return p


def parser(prog: str = "svg-pyro") -> argparse.ArgumentParser:
    p = _Parser(prog=prog, description="Stochastic Video Generation (SVG-LP, SVG-FP and "
                                       "the deterministic baseline) in Pyro.")
    sub = p.add_subparsers(metavar="COMMAND", required=True)
    for name, command in COMMANDS.items():
        _subcommand_parser(sub.add_parser(name, help=command.description), command)
    return p


def main(argv: list[str] | None = None) -> int:
    """``svg-pyro COMMAND [options]``."""
    args = parser().parse_args(argv)
    return run(args.command, args)


def run_subcommand(name: str, argv: list[str] | None = None, prog: str | None = None) -> int:
    """One subcommand on its own: what ``python svi_train.py`` runs."""
    command = COMMANDS[name]
    p = _subcommand_parser(_Parser(prog=prog or f"svg-pyro {name}"), command)
    return run(command, p.parse_args(argv))
