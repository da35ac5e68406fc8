"""Build the Pyro model and guide of a configuration."""
from __future__ import annotations

import torch

from svg_pyro.errors import InvalidInput
from svg_pyro.guides.posterior import RecurrentPosterior, empty_guide
from svg_pyro.models.svg import SVG
from svg_pyro.networks import init_weights


def build_model(config):
    """(svg, guide): ``svg.model`` and ``guide`` are the Pyro model and guide of ``config``."""
    config.validate()
    svg = SVG.from_config(config)
    if config.model == "det":
        return svg, empty_guide
    guide = RecurrentPosterior(svg, config.rnn_size, config.posterior_layers)
    guide.apply(init_weights)
    return svg, guide


def resolve_device(name: str) -> torch.device:
    """'auto' (a GPU when there is one), 'cpu' or 'cuda[:N]' as a torch.device; anything else, or a
    GPU that is not there, is a ValueError naming the choices."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise InvalidInput(f"--device {name} is not a device this program runs on; use auto, cpu or cuda[:N]")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InvalidInput(f"--device {name} was asked for but PyTorch sees no CUDA GPU; "
                         "use --device cpu (or auto)")
    return device
