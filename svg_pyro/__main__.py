"""``python -m svg_pyro`` is the ``svg-pyro`` command."""
import sys

from svg_pyro.cli import main

sys.exit(main())
