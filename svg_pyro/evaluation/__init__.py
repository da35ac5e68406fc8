"""Evaluation: the protocol, metrics, likelihood bounds, per-frame surprise, plots, ArviZ data, and the studies (motion probe, trajectory study, KL curves)."""
