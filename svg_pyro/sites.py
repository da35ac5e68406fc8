"""Names of SVG's sample sites, in one place: the model, the guide, the objective and the effect
handlers all address the per-step latent z_t and frame x_t (t = 1..T-1) through these."""
from __future__ import annotations

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
