"""Pyro guides for SVG."""
from guides.posterior import RecurrentPosterior

__all__ = ["RecurrentPosterior"]
