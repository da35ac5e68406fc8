"""svg-pyro: Stochastic Video Generation with a Learned Prior (Denton & Fergus 2018) in Pyro."""
from svg_pyro.config import PRESETS, Config, preset

__all__ = ["Config", "PRESETS", "preset"]
__version__ = "0.1.0"
