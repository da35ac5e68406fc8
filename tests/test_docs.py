"""The README's set-up commands are the ones CI runs, and the CLI they call exists."""
import re
from pathlib import Path

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


def test_every_preset_is_documented():
    from svg_pyro.config import PRESETS

    readme = (ROOT / "README.md").read_text()
    for name in PRESETS:
        assert f"`{name}`" in readme, name
