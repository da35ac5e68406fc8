"""The notebooks: each .py source agrees with its paired .ipynb, and each runs top to bottom on tiny
checkpoints."""
import json
from pathlib import Path

import jupytext
import nbformat
import pytest
import torch
from nbclient import NotebookClient

from svg_pyro.config import preset
from svg_pyro.training.train import train


NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
NAMES = ("01_posterior_predictive", "02_swap_priors", "03_trajectory_distribution", "04_conditioning_and_surprise")
MODELS = ("svg-lp", "svg-fp", "det")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Tiny SVG-LP, SVG-FP and deterministic checkpoints on 1-digit SM-MNIST with non-uniform velocities:
    the data of notebook 03's study, and SM-MNIST data as any other for notebooks 01 and 02."""
    root = tmp_path_factory.mktemp("nb-ckpt")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # networks this small train faster on one thread, as the notebooks run
    try:
        for model in MODELS:
            config = preset("tiny", model=model, num_digits=1, velocity="nonuniform", steps=2, sample_every=10_000)
            train(config, root / model, progress=False)
    finally:
        torch.set_num_threads(threads)
    return {m: root / m / "checkpoint.pt" for m in MODELS}


@pytest.mark.parametrize("name", NAMES)
def test_paired_sources_agree(name):
    script = jupytext.read(NOTEBOOKS / f"{name}.py")
    notebook = jupytext.read(NOTEBOOKS / f"{name}.ipynb")
    for nb in (script, notebook):
        assert nb.metadata.get("jupytext", {}).get("formats") == "ipynb,py:percent"
    assert [(c.cell_type, c.source) for c in script.cells] == [(c.cell_type, c.source) for c in notebook.cells], (
        f"notebooks/{name}.py and notebooks/{name}.ipynb differ: run `jupytext --sync notebooks/{name}.py` "
        "(the more recently modified of the two is kept; outputs stay in the .ipynb)")


def _environment(name, c, out):
    """The notebook's variables: the checkpoints ``c``, small sizes, outputs to ``out``."""
    if name.startswith("03"):
        return {"SVG_CHECKPOINT_1DIGIT": c["svg-lp"], "SVG_CHECKPOINT_1DIGIT_FP": c["svg-fp"],
                "SVG_CHECKPOINT_1DIGIT_DET": c["det"], "SVG_TRAJECTORY_SAMPLES": 2, "SVG_TRAJECTORY_DIGITS": 2,
                "SVG_TRAJECTORY_OUT": out}
    if name.startswith("04"):
        return {"SVG_CHECKPOINT": c["svg-lp"], "SVG_NB_OUT": out, "SVG_NB_VIDEOS": 2, "SVG_NB_PARTICLES": 4}
    return {"SVG_CHECKPOINT": c["svg-lp"], "SVG_CHECKPOINT_FP": c["svg-fp"], "SVG_CHECKPOINT_DET": c["det"],
            "SVG_NB_OUT": out, "SVG_NB_VIDEOS": 3, "SVG_NB_SAMPLES": 4, "SVG_NB_HORIZON": 3}


@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_top_to_bottom(name, checkpoints, tmp_path, monkeypatch):
    out = tmp_path / "out"
    for variable, value in {**_environment(name, checkpoints, out), "OMP_NUM_THREADS": 1}.items():
        monkeypatch.setenv(variable, str(value))
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()  # raises on a failing cell
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 3
    if name.startswith("03"):
        report = json.loads((out / "trajectory.json").read_text())
        assert set(report["models"]) == set(MODELS) and report["settings"]["samples"] == 2
        for figure in ("velocity_table.png", "samples.png", "distributions.png", "distances.png"):
            assert (out / figure).stat().st_size > 0
        text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
        assert "<- first step after the wall hit" in text and "TV before wall" in text
    elif name.startswith("04"):
        for query in ("goal", "between"):
            result = json.loads((out / "04" / query / "condition.json").read_text())
            assert result["videos"] == 2 and result["particles"] == 4 and "w1" in result["per_step"]["conditioned"]
    else:
        assert list(out.rglob("metrics.json"))
