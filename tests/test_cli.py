"""The `svg-pyro` command line: one flag per Config field, one rule from failures to exit codes."""
import argparse
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from svg_pyro import cli
from svg_pyro.checkpoint import CheckpointError
from svg_pyro.cli.options import config_from_args
from svg_pyro.config import Config, preset
from svg_pyro.errors import InvalidInput, MissingInput


def _train_args(argv):
    p = argparse.ArgumentParser()
    cli.COMMANDS["train"].add_options(p)
    return p.parse_args(argv)


def test_every_config_field_is_a_training_flag_of_its_type():
    argv, expected = ["--preset", "tiny"], {}
    for f in dataclasses.fields(Config):
        flag = f"--{f.name.replace('_', '-')}"
        value = {"dataset": "kth", "velocity": "nonuniform", "image_size": 128, "model": "svg-fp",
                 "arch": "vgg", "skip_frame": "second-last", "elbo": "trace", "precision": "bf16",
                 "mnist_root": "/m", "data_root": "/d", "device": "cpu", "obs_scale": 0.25,
                 "beta": 3e-5, "lr": 1e-3, "kl_weight": 0.5, "lr_schedule": "cosine",
                 "likelihood": "laplace", "feed": "own"}.get(f.name, 7)
        if isinstance(f.default, bool):  # a switch: --deterministic / --no-deterministic
            argv.append(flag)
            expected[f.name] = True
            continue
        argv += [flag, str(value)]
        expected[f.name] = value
    config, out, resume = config_from_args(_train_args(argv))
    assert dataclasses.asdict(config) == expected  # every field set, with the type of its default
    assert isinstance(config.obs_scale, float) and isinstance(config.workers, int)
    assert out == Path("runs/svg-fp") and resume is False
    assert all(f.metadata.get("help") for f in dataclasses.fields(Config))


def test_flags_not_given_keep_the_preset():
    config, _, _ = config_from_args(_train_args(["--preset", "tiny", "--steps", "9", "--no-deterministic"]))
    assert config == preset("tiny", steps=9, deterministic=False)


@pytest.mark.parametrize("error", [InvalidInput("bad value; use 3"), MissingInput("no such file"),
                                   CheckpointError("not a checkpoint")])
def test_expected_failures_are_one_line_and_exit_2(error, capsys):
    def fail(args):
        raise error

    assert cli.run(cli.Command(lambda p: None, fail, ""), argparse.Namespace()) == 2
    err = capsys.readouterr().err
    assert err == f"error: {error}\n"


def test_a_write_failure_names_the_path_and_the_fix(capsys):
    def fail(args):
        raise PermissionError(13, "Permission denied", "/runs/x/config.json")

    assert cli.run(cli.Command(lambda p: None, fail, ""), argparse.Namespace(out="/runs/x")) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot write /runs/x/config.json: Permission denied; choose another --out")
    assert err.count("\n") == 1


@pytest.mark.parametrize("error", [RuntimeError("a bug"), ValueError("a bug"), TypeError("a bug"),
                                   KeyError("a bug")])
def test_an_unexpected_error_keeps_its_traceback(error):
    # only SvgPyroError (and OSError) are expected; a ValueError from inside the library is a bug
    def fail(args):
        raise error

    with pytest.raises(type(error), match="a bug"):
        cli.run(cli.Command(lambda p: None, fail, ""), argparse.Namespace())


def test_the_installed_command_lists_the_subcommands():
    script = Path(sys.executable).parent / "svg-pyro"
    out = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=True).stdout
    for name in cli.COMMANDS:
        assert name in out
    assert set(cli.COMMANDS) == {"train", "evaluate", "trajectory", "prepare", "kl-curves", "score", "condition", "export"}


@pytest.mark.parametrize("command", [["train", "--preset", "tiny", "--steps", "1"], ["evaluate", "--checkpoint", "x"]])
@pytest.mark.parametrize("device", ["bogus", "gpu", "mps"])
def test_a_device_that_is_not_one_is_a_one_line_error(command, device, tmp_path, capsys):
    out = ["--out", str(tmp_path / "out")]
    assert cli.run_subcommand(command[0], command[1:] + out + ["--device", device, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--device {device} is not a device" in err and "auto, cpu or cuda[:N]" in err


def test_a_refused_start_leaves_no_lock_or_folder_behind(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.run_subcommand("train", ["--preset", "tiny", "--resume", "--out", str(out), "--no-progress"]) == 2
    assert "no checkpoint at" in capsys.readouterr().err and not out.exists()
    out.mkdir()  # a folder the user made stays, without a lock in it
    assert cli.run_subcommand("train", ["--preset", "tiny", "--resume", "--out", str(out), "--no-progress"]) == 2
    assert out.is_dir() and list(out.iterdir()) == []


@pytest.mark.parametrize("options, reason", [
    (["--mnist-root", "/nonexistent"], "/nonexistent"),
    (["--channels", "3"], "Stochastic Moving MNIST has 1 channel"),
    (["--dataset", "kth", "--arch", "vgg"], "--data-root"),
])
def test_bad_data_options_are_refused_before_the_run_directory_is_made(tmp_path, capsys, options, reason):
    out = tmp_path / "run"
    assert cli.run_subcommand("train", ["--preset", "tiny", *options, "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and reason in err
    assert not out.exists()  # no folder, no .lock


def test_resume_with_fewer_steps_than_done_is_refused_and_changes_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.run_subcommand("train", ["--preset", "tiny", "--steps", "4", "--out", str(out), "--no-progress"]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert cli.run_subcommand("train", ["--resume", "--steps", "2", "--out", str(out), "--no-progress"]) == 2
    assert "is at step 4, past --steps 2; give --steps above 4" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_one_conditioning_frame_is_refused_before_training(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.run_subcommand("train", ["--preset", "tiny", "--n-past", "1", "--out", str(out), "--no-progress"]) == 2
    assert capsys.readouterr().err == "error: invalid configuration: n_past must be at least 2 (the frames generation " \
                                      "is conditioned on), not 1\n"
    assert not out.exists()


@pytest.mark.parametrize("argv", [["train", "--steps", "abc"], ["train", "--preset", "nope"], ["bogus"],
                                  ["evaluate", "--no-such-option"]])
def test_argument_errors_are_one_line_too(argv, capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1 and "--help" in err


@pytest.mark.parametrize("name", sorted(cli.COMMANDS))
def test_each_option_states_its_default_at_most_once(name):
    p = cli._subcommand_parser(argparse.ArgumentParser(prog=name), cli.COMMANDS[name])
    actions = [a for a in p._actions if a.help and a.option_strings]
    for action in actions:
        text = p.formatter_class(name)._get_help_string(action)
        rendered = text % {**vars(action), "default": action.default}
        assert rendered.count("(default") <= 1 and "(default: None)" not in rendered, rendered


@pytest.mark.parametrize("name,function", [("evaluate", "svg_pyro.evaluation.options:EvaluationOptions"),
                                           ("trajectory", "svg_pyro.evaluation.trajectory:run_studies"),
                                           ("condition", "svg_pyro.evaluation.conditioning:run_condition"),
                                           ("score", "svg_pyro.evaluation.score:score")])
def test_options_default_to_what_the_library_function_does(name, function):
    import importlib
    import inspect

    module, attribute = function.split(":")
    signature = inspect.signature(getattr(importlib.import_module(module), attribute))
    p = cli._subcommand_parser(argparse.ArgumentParser(prog=name), cli.COMMANDS[name])
    renamed = {"batch": "max_batch"}
    checked = 0
    for action in p._actions:
        parameter = signature.parameters.get(renamed.get(action.dest, action.dest))
        if parameter is None or parameter.default is inspect.Parameter.empty or action.default is None:
            continue
        given = action.default if not isinstance(action.default, list) else tuple(action.default)
        assert given == (tuple(parameter.default) if isinstance(parameter.default, (list, tuple)) else parameter.default), action.dest
        checked += 1
    assert checked >= 4
