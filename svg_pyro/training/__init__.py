"""Training: the ELBO objective, the SVI loop, run directories and signals, data parallelism, TensorBoard."""
