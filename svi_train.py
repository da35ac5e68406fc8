#!/usr/bin/env python
"""Train SVG with Pyro SVI: ``svg-pyro train``. ``python svi_train.py --help`` lists the options."""
import sys

from svg_pyro.cli import run_subcommand

if __name__ == "__main__":
    sys.exit(run_subcommand("train", prog="svi_train.py"))
