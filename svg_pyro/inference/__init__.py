"""Inference queries on a trained model: sampling futures, conditioning on any frames."""
