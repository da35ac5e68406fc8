"""svg-pyro: Stochastic Video Generation with a Learned Prior (Denton & Fergus 2018) in Pyro.

    import svg_pyro
    model = svg_pyro.load("smmnist-2digit-svg-lp")   # a trained model (svg_pyro.trained.TrainedModel)
    futures = model.sample(model.test_videos(4), samples=10)

Training from Python: ``svg_pyro.training.train.train(svg_pyro.preset("smmnist-cpu"), "runs/svg-lp")``.
"""
from svg_pyro.config import PRESETS, Config, preset
from svg_pyro.trained import TrainedModel, load


__all__ = ["Config", "PRESETS", "preset", "load", "TrainedModel"]
__version__ = "0.1.0"
