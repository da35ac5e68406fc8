"""The KL-per-step plotting command."""
import json

import numpy as np

from svg_pyro.cli import run_subcommand
from svg_pyro.evaluation.kl_curves import smoothed


def test_smoothing_is_a_trailing_mean():
    values = [1.0, 2.0, 3.0, 4.0, 10.0]
    expected = [np.mean(values[max(0, i - 1):i + 1]) for i in range(len(values))]
    np.testing.assert_allclose(smoothed(values, 2), expected)
    np.testing.assert_allclose(smoothed(values, 1), values)


def _write_run(path, kl_rows):
    path.mkdir()
    rows = [{"step": 10 * (i + 1), "kl_per_step": float(np.mean(k)), "kl_t": k} for i, k in enumerate(kl_rows)]
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_cli_plots_runs_and_reports_the_last_kl(tmp_path, capsys):
    _write_run(tmp_path / "a", [[0.1, 0.3], [0.5, 0.7]])
    _write_run(tmp_path / "b", [[0.01, 0.02], [0.03, 0.05]])
    assert run_subcommand("kl-curves", [str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "kl.png"), "--smooth", "2"]) == 0
    assert (tmp_path / "kl.png").stat().st_size > 5000
    out = capsys.readouterr().out
    assert "a: KL per transition 0.600 at step 20" in out and "b: KL per transition 0.040 at step 20" in out
    assert run_subcommand("kl-curves", [str(tmp_path / "a"), "--out", str(tmp_path / "kl.png"), "--until", "10"]) == 0
    assert "a: KL per transition 0.200 at step 10" in capsys.readouterr().out


def test_cli_errors_name_the_problem(tmp_path, capsys):
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "metrics.jsonl").write_text(json.dumps({"step": 1, "kl": 0.1}) + "\n")
    assert run_subcommand("kl-curves", [str(tmp_path / "missing"), "--out", str(tmp_path / "x.png")]) == 2
    assert "metrics.jsonl does not exist" in capsys.readouterr().err
    assert run_subcommand("kl-curves", [str(tmp_path / "old"), "--out", str(tmp_path / "x.png")]) == 2
    assert "no per-step KL" in capsys.readouterr().err
    assert run_subcommand("kl-curves", [str(tmp_path / "old"), "--out", str(tmp_path / "x.png"), "--labels", "a", "b"]) == 2
    assert "2 labels for 1 runs" in capsys.readouterr().err
    _write_run(tmp_path / "a", [[0.1, 0.3]])
    assert run_subcommand("kl-curves", [str(tmp_path / "a"), "--out", str(tmp_path / "x.png"), "--until", "5"]) == 2
    assert "no logged row up to step 5" in capsys.readouterr().err
    for out, reason in ((tmp_path / "x.txt", "not an image file name"), (tmp_path, "is a directory"),
                        (f"{tmp_path}/new/", "is a directory")):
        assert run_subcommand("kl-curves", [str(tmp_path / "a"), "--out", str(out)]) == 2
        assert reason in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "old"]  # nothing written: no .png, no x.txt


def test_probed_runs_get_motion_panels_and_a_line_of_their_last_scores(tmp_path, capsys):
    from svg_pyro.evaluation.kl_curves import x_values

    _write_run(tmp_path / "a", [[0.1, 0.3], [0.5, 0.7], [0.6, 0.8]])
    plain = tmp_path / "plain.png"
    assert run_subcommand("kl-curves", [str(tmp_path / "a"), "--out", str(plain)]) == 0
    rows = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    probe = dict(certain_displacement_error=1.25, copy_last_certain_displacement_error=3.5,
                 position_error_best=2.0, position_error_mean=4.0, copy_last_position_error=9.0)
    for r, seconds in zip(rows, (30, 60, 90)):
        r["seconds"] = seconds
    rows[1].update(probe)
    (tmp_path / "a" / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    capsys.readouterr()
    probed = tmp_path / "probed.png"
    assert run_subcommand("kl-curves", [str(tmp_path / "a"), "--out", str(probed), "--x", "minutes"]) == 0
    out = capsys.readouterr().out
    assert ("at step 20: displacement error on certain steps 1.25 px/frame (copy-last 3.50), "
            "position error best 2.00 / mean 4.00 px (copy-last 9.00)") in out
    from PIL import Image
    assert Image.open(probed).height > 1.8 * Image.open(plain).height  # a second row of panels
    # a probe that also scored one-step predictions: a third row, and both per-step lists printed
    rows[2].update(probe, displacement_error_t=[1.0, 2.5], one_step_displacement_error_t=[1.0, 1.25],
                   one_step_displacement_error=1.125)
    (tmp_path / "a" / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    one_step = tmp_path / "one_step.png"
    assert run_subcommand("kl-curves", [str(tmp_path / "a"), "--out", str(one_step)]) == 0
    assert ("displacement error per predicted step, free-running 1.00, 2.50, one-step from true frames "
            "1.00, 1.25") in capsys.readouterr().out
    assert Image.open(one_step).height > 1.4 * Image.open(probed).height
    np.testing.assert_allclose(x_values(rows, "minutes"), [0.5, 1.5, 3.0])
