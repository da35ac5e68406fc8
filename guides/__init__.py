"""Pyro guides for SVG."""
from .posterior import RecurrentPosterior

__all__ = ["RecurrentPosterior"]
