import pyro
import pytest
import torch
from pyro.poutine.messenger import Messenger

from svg_pyro.config import preset
from svg_pyro.data.datasets import make_datasets, training_batch
from svg_pyro.models.build import build_model
from svg_pyro.models.sites import site_step


@pytest.fixture(autouse=True)
def _fresh_pyro():
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    yield
    pyro.clear_param_store()


@pytest.fixture(scope="session")
def tiny_data():
    config = preset("tiny")
    train, test = make_datasets(config)
    return config, train, test


@pytest.fixture
def tiny(tiny_data):
    """(config, svg, batch) for the tiny preset: 4 videos of 5 frames."""
    config, train, _ = tiny_data
    svg = build_model(config)
    batch = training_batch(train, 0, 0, config.batch_size)
    return config, svg, batch


def run_model_and_guide(svg, batch, n_past):
    """Traces of one guide run and the model replayed on it."""
    guide_trace = pyro.poutine.trace(svg.guide).get_trace(batch, n_past)
    model_trace = pyro.poutine.trace(pyro.poutine.replay(svg.model, trace=guide_trace)).get_trace(batch, n_past)
    return model_trace, guide_trace


class FixedNoiseMessenger(Messenger):
    """Draws z_t as mu + sigma * eps[t][rows]: the same noise for a video whichever rank or device
    holds it, so a data-parallel or a GPU step can be compared exactly with the 1-process CPU one."""

    def __init__(self, eps, rows: slice):
        super().__init__()
        self.eps, self.rows = eps, rows

    def _pyro_sample(self, msg):
        step = site_step(msg["name"])
        if step and step[0] == "z" and msg["value"] is None:  # the model's z_t are replayed
            base = msg["fn"].base_dist
            msg["value"] = base.loc + base.scale * self.eps[step[1]][self.rows].to(base.loc.device)


__all__ = ["FixedNoiseMessenger", "run_model_and_guide", "torch"]
