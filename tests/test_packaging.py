"""The installed distribution lives under the `svg_pyro` name only.

`models/` and `guides/` are top-level folders of the repository, but a package installed as
`models` would shadow (or be overwritten by) any other project's `models` package.
"""
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """A wheel built from a copy of the sources (setuptools writes build/ beside them)."""
    src = tmp_path_factory.mktemp("src")
    for name in ["pyproject.toml", "README.md"]:
        shutil.copy(ROOT / name, src / name)
    for name in ["svg_pyro", "models", "guides"]:
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(out), str(src)], check=True)
    (path,) = out.glob("*.whl")
    return path


def test_the_wheel_installs_everything_under_svg_pyro(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names}
    assert top == {"svg_pyro", next(t for t in top if t.endswith(".dist-info"))}
    sources = {f"svg_pyro/{p.relative_to(ROOT / 'svg_pyro').as_posix()}" for p in (ROOT / "svg_pyro").rglob("*.py")}
    sources |= {f"svg_pyro/{p.relative_to(ROOT).as_posix()}" for d in ("models", "guides") for p in (ROOT / d).glob("*.py")}
    assert "svg_pyro/models/svg.py" in sources and "svg_pyro/data/smmnist.py" in sources
    assert sorted(sources - set(names)) == []  # every module of every sub-package is in the wheel


def _foreign_models(tmp_path):
    """A folder holding a `models/` namespace package, as the reference SVG code has (no __init__.py)."""
    foreign = tmp_path / "foreign"
    (foreign / "models").mkdir(parents=True)
    (foreign / "models" / "lstm.py").write_text("WHO = 'foreign'\n")
    return foreign


PROBE = ("import svg_pyro.models, svg_pyro.guides, models.lstm\n"
         "assert models.lstm.WHO == 'foreign'\n"
         "from svg_pyro.models import SVG; from svg_pyro.guides import RecurrentPosterior\n"
         "print(svg_pyro.models.__file__)\n")


@pytest.fixture(scope="module")
def site(wheel, tmp_path_factory):
    """The wheel installed into a folder of its own (put on PYTHONPATH: it shadows the checkout)."""
    site = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site),
                    str(wheel)], check=True)
    return site


def test_the_installed_wheel_loads_shipped_models_by_short_name_from_the_documented_folder(site, tmp_path):
    """A wheel holds no checkpoints/: short names resolve in $SVG_PYRO_CHECKPOINTS, and without it
    the error says to set it."""
    code = "import svg_pyro; m = svg_pyro.load('smmnist-1digit-det'); print(svg_pyro.__file__); print(m.path)"
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         env={**env, "SVG_PYRO_CHECKPOINTS": str(ROOT / "checkpoints")})
    package, path = run.stdout.split()
    assert package.startswith(str(site)) and path == str(ROOT / "checkpoints" / "smmnist-1digit-det.pt")
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert run.returncode != 0 and "set SVG_PYRO_CHECKPOINTS" in run.stderr


def test_a_foreign_models_package_stays_importable_beside_the_installed_wheel(site, tmp_path):
    foreign = _foreign_models(tmp_path)
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=foreign, check=True, capture_output=True, text=True,
                         env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}).stdout
    assert out.startswith(str(site))  # ours came from the wheel, not from the checkout


def test_a_foreign_models_package_stays_importable_beside_the_editable_install(tmp_path):
    # the environment the tests run in has `pip install -e .` (README): its finder maps only svg_pyro.*
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=_foreign_models(tmp_path), check=True,
                         capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"}).stdout
    assert out.strip() == str(ROOT / "models" / "__init__.py")
