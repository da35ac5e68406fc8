"""Pyro models of SVG: the generative model and its priors."""
from models.priors import FixedPrior, LearnedPrior
from models.svg import SVG

__all__ = ["SVG", "LearnedPrior", "FixedPrior"]
