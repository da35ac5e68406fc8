"""Pyro models of SVG: the generative model and its priors."""
from .priors import FixedPrior, LearnedPrior
from .svg import SVG

__all__ = ["SVG", "LearnedPrior", "FixedPrior"]
