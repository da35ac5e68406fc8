"""The README's set-up commands are the ones CI runs, and the CLI they call exists."""
import re
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parents[1]


def _setup_commands():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", section, flags=re.S)


def test_readme_has_two_setup_commands_and_ci_runs_the_test_one():
    train_cmd, test_cmd = _setup_commands()
    assert train_cmd.endswith("python svi_train.py")
    assert "pytest" in test_cmd and "[test]" in test_cmd
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_cmd in ci  # verbatim, as its own line


def test_every_preset_is_documented_with_its_own_sizes():
    """docs/training.md's preset table names every preset, and its sizes, batch, frames and steps are
    the presets' own (rows naming one preset)."""
    from svg_pyro.config import PRESETS, preset

    readme = (ROOT / "docs" / "training.md").read_text()
    for name in PRESETS:
        assert f"`{name}`" in readme, name
    rows = re.findall(r"^\| `([\w-]+)`(?: \(default\))? \|[^|]*\|[^|]*\| (\d+) / (\d+) / (\d+) / (\d+) \| (\d+) "
                      r"\| (\d+) \+ (\d+) \| (\w+) \|$", readme, flags=re.M)
    assert {r[0] for r in rows} >= {"tiny", "smmnist-cpu", "smmnist-1digit-cpu", "smmnist"}
    for name, width, g, z, rnn, batch, past, future, steps in rows:
        c = preset(name)
        documented = (width, g, z, rnn, batch, past, future, steps.replace("k", "000"))
        assert documented == tuple(str(v) for v in (c.width, c.g_dim, c.z_dim, c.rnn_size, c.batch_size, c.n_past,
                                                    c.n_future, c.steps)), name


def test_the_readmes_python_runs_as_written(tmp_path, monkeypatch):
    """The README's Python blocks, run in order in one namespace on the shipped models: the front
    door's shapes are those its comments state, and the plain SVI step trains."""
    import numpy as np
    import torch

    blocks = re.findall(r"```python\n(.+?)\n```", (ROOT / "README.md").read_text(), flags=re.S)
    assert len(blocks) == 2
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    namespace = {}
    exec(blocks[0].replace("particles=(1, 100)", "particles=(1, 4)").replace("surprise(videos)", "surprise(videos, 4)"),
         namespace)  # fewer paths: seconds
    assert namespace["videos"].shape == (4, 15, 1, 64, 64) and namespace["futures"].shape == (1, 4, 15, 1, 64, 64)
    assert (tmp_path / "futures.png").is_file() and (tmp_path / "futures.gif").is_file()
    assert namespace["surprise"].shape == (4, 14)
    bounds = namespace["bounds"]
    assert bounds["elbo"].shape == bounds["iwae"][4].shape == (4,) and np.isfinite(bounds["elbo"]).all()
    namespace["videos"] = namespace["videos"][:2, :8]  # the SVI step on a small batch
    exec(blocks[1], namespace)
    assert np.isfinite(namespace["loss"]) and namespace["loss"] > 0


def test_the_architecture_page_names_only_modules_that_exist():
    page = (ROOT / "docs" / "architecture.md").read_text()
    named = set(re.findall(r"\b([\w/]+\.py)\b", page))
    assert len(named) > 20
    where = [ROOT, ROOT / "svg_pyro", ROOT / "tests"]
    missing = sorted(n for n in named if not any((root / n).is_file() for root in where))
    assert not missing, f"docs/architecture.md names modules that do not exist: {missing}"
    modules = [p.relative_to(ROOT / "svg_pyro") for p in (ROOT / "svg_pyro").rglob("*.py")]
    modules += [p.relative_to(ROOT) for folder in ("models", "guides") for p in (ROOT / folder).glob("*.py")]
    for path in modules:  # and every module of the package has its place
        if not path.name.startswith("_"):
            assert path.as_posix() in named, f"docs/architecture.md does not say where {path} fits"


def _documented_commands(text):
    """(line, argv) of every `svg-pyro ...` and `python svi_train.py ...` in the text's code blocks,
    continuation lines joined, chains (&&, ;, |) split, leading VAR=value assignments dropped."""
    import shlex

    for block in re.findall(r"```(?:bash|sh)?\n(.*?)```", text, flags=re.S):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            for part in re.split(r"&&|;|\|", line.split(" #")[0]):
                try:
                    words = shlex.split(part)
                except ValueError:  # prose in a block (an apostrophe): not a command
                    continue
                while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
                    words = words[1:]
                if words[:1] == ["svg-pyro"]:
                    yield part.strip(), words[1:]
                elif words[:2] == ["python", "svi_train.py"]:
                    yield part.strip(), ["train", *words[2:]]


def test_every_documented_command_line_parses(capsys):
    from svg_pyro.cli import parser

    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "checkpoints" / "README.md"]
    commands = [c for page in pages if page.exists() for c in _documented_commands(page.read_text())]
    assert len(commands) > 30
    for line, argv in commands:
        if "--help" in argv:
            continue
        try:
            parser().parse_args(argv)
        except SystemExit:
            pytest.fail(f"a documented command does not parse: {line}\n{capsys.readouterr().err}")
