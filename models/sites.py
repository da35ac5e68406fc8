"""Names of SVG's sample sites, in one place: the model, the guide, the objective and the effect
handlers all address the per-step latent z_t and frame x_t (t = 1..T-1) through these; and the
names its networks have in Pyro's param store."""
from __future__ import annotations

import pyro
from pyro.params.param_store import param_with_module_name
from torch import nn

LATENT = "z"  # z_t: the latent of step t, in the model (prior) and the guide (posterior)
FRAME = "x"  # x_t: the frame of step t, observed when given


def latent_site(t: int) -> str:
    return f"{LATENT}_{t}"


def frame_site(t: int) -> str:
    return f"{FRAME}_{t}"


def site_step(name: str) -> tuple[str, int] | None:
    """(LATENT, 7) for the site "z_7", (FRAME, 3) for "x_3"; None for any other site."""
    kind, _, step = name.partition("_")
    if kind in (LATENT, FRAME) and step.isdigit():
        return kind, int(step)
    return None


def register_module(name: str, module: nn.Module) -> None:
    """``pyro.module(name, module)``: puts the module's parameters in Pyro's param store, where
    ``pyro.infer.SVI`` finds what to train. An entry left under one of these names by another module
    (an earlier model in this process) is replaced by this module's own parameter: Pyro would
    otherwise keep the stale tensor and SVI would train it instead, silently."""
    store = pyro.get_param_store()
    for param_name, param in module.named_parameters():
        key = param_with_module_name(name, param_name)
        if key in store and store[key] is not param:
            del store[key]
    pyro.module(name, module)
