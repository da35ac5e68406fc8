"""Data: Stochastic Moving MNIST, prepared video stores (KTH, BAIR, your own videos), loaders."""
