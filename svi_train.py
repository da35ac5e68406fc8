#!/usr/bin/env python
"""Train SVG with Pyro SVI. ``python svi_train.py --help`` lists the options."""
import sys

from svg_pyro.train import main

if __name__ == "__main__":
    sys.exit(main())
