"""The notebooks run top to bottom on tiny checkpoints, and match their generator."""
import importlib.util
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from svg_pyro.config import preset
from svg_pyro.train import train

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
NAMES = ("01_posterior_predictive.ipynb", "02_swap_priors.ipynb")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("nb-ckpt")
    for model in ("svg-lp", "svg-fp", "det"):
        train(preset("tiny", model=model, steps=2, sample_every=10_000), root / model, progress=False)
    return {m: root / m / "checkpoint.pt" for m in ("svg-lp", "svg-fp", "det")}


@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_top_to_bottom(name, checkpoints, tmp_path, monkeypatch):
    for variable, value in {"SVG_CHECKPOINT": checkpoints["svg-lp"], "SVG_CHECKPOINT_FP": checkpoints["svg-fp"],
                            "SVG_CHECKPOINT_DET": checkpoints["det"], "SVG_NB_OUT": tmp_path / "out",
                            "SVG_NB_VIDEOS": 3, "SVG_NB_SAMPLES": 4, "SVG_NB_HORIZON": 3,
                            "OMP_NUM_THREADS": 1}.items():
        monkeypatch.setenv(variable, str(value))
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()  # raises on a failing cell
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 3
    assert list((tmp_path / "out").rglob("metrics.json"))


def test_notebooks_match_their_generator():
    spec = importlib.util.spec_from_file_location("make_notebooks", NOTEBOOKS / "make_notebooks.py")
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    for name, cells in zip(NAMES, (generator.NB1, generator.NB2)):
        committed = nbformat.read(NOTEBOOKS / name, as_version=4)
        assert [c.source for c in committed.cells] == [c.source for c in cells], (
            f"{name} differs from notebooks/make_notebooks.py: edit the generator and run it")
