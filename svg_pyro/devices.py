"""The device a command runs on, from its --device option."""
from __future__ import annotations

import torch

from svg_pyro.errors import InvalidInput


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
