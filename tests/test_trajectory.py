"""The trajectory-distribution study: extractor, exact truth, distances, CLI and notebook."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from svg_pyro.cli import run_subcommand
from svg_pyro.config import preset
from svg_pyro.data.smmnist import (DIGIT_SIZE, StochasticMovingMNIST, allowed_velocity_table,
                                   default_velocity_table, load_digits, simulate_trajectory,
                                   true_displacement_distributions, velocity_table)
from svg_pyro.evaluation.displacements import (crop, displacement_histogram, displacements, embed,
                                               first_random_step, total_variation, wasserstein)
from svg_pyro.evaluation.trajectory import (StudyData, build_report, extract_positions, find_trajectory,
                                            score_positions)


ROOT = Path(__file__).resolve().parents[1]
LIMIT = 64 - DIGIT_SIZE  # drawn positions are 0..31
TABLE = allowed_velocity_table(default_velocity_table(), None)
UNIFORM = np.full((9, 9), 1 / 81)


@pytest.fixture(scope="module")
def test_digits():
    return load_digits("test")


def _dataset(digits, length=20, seed=5):
    return StochasticMovingMNIST("test", length=length, num_digits=1, seed=seed, velocity="nonuniform",
                                 digits=digits)


def _blur(videos, sigma):
    if sigma == 0:
        return videos
    r = int(3 * sigma)
    k = torch.exp(-torch.arange(-r, r + 1.0) ** 2 / (2 * sigma**2))
    k = k / k.sum()
    videos = F.conv2d(videos, k.view(1, 1, 1, -1), padding=(0, r))
    return F.conv2d(videos, k.view(1, 1, -1, 1), padding=(r, 0))


def _wall_frames(positions, velocities):
    """Frames t+1 at which the generator clamped the digit at a wall (its raw position was outside)."""
    raw = positions[:-1] + velocities[:-1]
    return ((raw < 0) | (raw >= LIMIT)).any(axis=1)


# ---------------------------------------------------------------------------------------------
# extractor


def test_extractor_recovers_the_generators_positions_and_velocities(test_digits):
    ds = _dataset(test_digits)
    walls = 0
    for i in range(100):
        info = ds.trajectory(i)
        truth, velocities = info["positions"][0], info["velocities"][0]
        found = extract_positions(ds[i], test_digits[info["digit_ids"][0]]).numpy()
        np.testing.assert_array_equal(found, truth)
        steps = displacements(found)
        hit = _wall_frames(truth, velocities)
        # between walls the displacement is the velocity; into a wall it is clamped short of it
        np.testing.assert_array_equal(steps[~hit], velocities[:-1][~hit])
        clamped = np.clip(truth[:-1] + velocities[:-1], 0, LIMIT - 1)
        np.testing.assert_array_equal(steps, clamped - truth[:-1])
        walls += hit.sum()
    assert walls > 50  # wall hits were exercised


@pytest.mark.parametrize("sigma, noise, scale", [(1.0, 0.1, 1.0), (3.0, 0.0, 1.0), (0.0, 0.3, 1.0),
                                                 (2.0, 0.0, 0.4)])
def test_extractor_tolerates_blur_noise_and_faded_digits(test_digits, sigma, noise, scale):
    ds = _dataset(test_digits, seed=6)
    g = torch.Generator().manual_seed(0)
    for i in range(40):
        info = ds.trajectory(i)
        video = scale * _blur(ds[i], sigma) + 0.05 * (scale < 1)  # faded digit on a grey haze
        video = (video + noise * torch.randn(video.shape, generator=g)).clamp(0, 1)
        found = extract_positions(video, test_digits[info["digit_ids"][0]]).numpy()
        np.testing.assert_array_equal(found, info["positions"][0])


def test_extractor_checks_its_inputs(test_digits):
    with pytest.raises(ValueError, match="non-empty 2-D"):
        extract_positions(torch.zeros(3, 1, 64, 64), torch.zeros(32, 32))
    with pytest.raises(ValueError, match=r"\(\.\.\., 1, H, W\)"):
        extract_positions(torch.zeros(3, 64, 64), test_digits[0])


# ---------------------------------------------------------------------------------------------
# the exact true distribution


def test_truth_is_a_delta_until_the_wall_then_follows_the_wall_rules(test_digits):
    ds = _dataset(test_digits, length=16, seed=7)
    n_past, checked = 5, 0
    for i in range(60):
        info = ds.trajectory(i)
        p, v = info["positions"][0], info["velocities"][0]
        hit = _wall_frames(p, v)
        if hit[n_past - 2] or np.isin(p[n_past - 1], (0, LIMIT - 1)).any():
            continue  # (maybe) a wall at the last given frame: the velocity in effect is uncertain
        truth = true_displacement_distributions(p[:n_past], len(p) - n_past, TABLE)
        np.testing.assert_allclose(truth.sum(axis=(1, 2)), 1.0)
        assert (truth >= 0).all()
        later = np.flatnonzero(hit[n_past - 1:])
        wall_step = later[0] + 1 if len(later) else len(truth)  # the step out of the wall frame
        for t in range(min(wall_step, len(truth))):  # delta at the simulated displacement
            dx, dy = p[n_past + t] - p[n_past - 1 + t]
            assert truth[t, dy + 4, dx + 4] == pytest.approx(1.0)
        if wall_step < len(truth):
            assert first_random_step(truth) == wall_step
            frame = n_past - 1 + wall_step  # the wall frame: which wall? an x wall's draw wins
            raw = p[frame - 1] + v[frame - 1]
            dy, dx = np.meshgrid(np.arange(-4, 5), np.arange(-4, 5), indexing="ij")
            support = truth[wall_step] > 0
            if raw[0] < 0:
                assert (dx[support] > 0).all()
            elif raw[0] >= LIMIT:
                assert (dx[support] < 0).all()
            elif raw[1] < 0:
                assert (dy[support] > 0).all()
            else:
                assert (dy[support] < 0).all()
            checked += 1
    assert checked > 10


def test_truth_of_a_single_wall_hit_is_the_masked_table(test_digits):
    ds = _dataset(test_digits, length=10, seed=0)
    index, info, truth = find_trajectory(ds, 5)
    p = info["positions"][0]
    assert first_random_step(truth) == 2
    wall_frame = 6
    assert p[wall_frame, 1] == LIMIT - 1 and 4 < p[wall_frame, 0] < LIMIT - 5  # bottom, far from sides
    np.testing.assert_allclose(truth[2], allowed_velocity_table(TABLE, "bottom"))


@pytest.mark.parametrize("table", [TABLE, UNIFORM], ids=["nonuniform", "uniform"])
def test_truth_weighs_a_possible_wall_hit_at_the_last_given_frame(table):
    # (2, 10) -> (0, 6): dx = -2 lands on the wall (no hit, dx stays -2, the wall is hit next frame);
    # dx = -3 or -4 hit it now, and the velocity is redrawn from the left-wall table.
    truth = true_displacement_distributions([(2, 10), (0, 6)], 1, table)[0]
    w = table[0, 2] / table[0, :3].sum()  # P(dx = -2 | dy = -4, dx in -4..-2), rows dy, cols dx
    expect = (1 - w) * allowed_velocity_table(table, "left")
    expect[0, 4] += w  # no hit: clamped at x = 0 next frame, displacement (0, -4)
    np.testing.assert_allclose(truth, expect)
    assert w == pytest.approx(21 / 80 if table is TABLE else 1 / 3)


class _Scripted:
    """A numpy Generator whose first ``integers`` / ``choice`` calls return given values."""

    def __init__(self, rng, integers=(), choices=()):
        self.rng, self.ints, self.choices = rng, list(integers), list(choices)

    def integers(self, *args, **kwargs):
        return self.ints.pop(0) if self.ints else self.rng.integers(*args, **kwargs)

    def choice(self, *args, **kwargs):
        return self.choices.pop(0) if self.choices else self.rng.choice(*args, **kwargs)


def _simulated_frequencies(start, given, n_steps, table, runs, scripted_choices=()):
    """Per-step displacement counts of simulations that start at ``start`` and pass through
    ``given`` (rejection), with ``simulate_trajectory`` itself."""
    rng = np.random.default_rng(123)
    n_past = len(given)
    counts = np.zeros((n_steps, 9, 9))
    for _ in range(runs):
        scripted = _Scripted(rng, integers=start, choices=scripted_choices)
        p, _ = simulate_trajectory(scripted, n_past + n_steps, table=None if table is UNIFORM else table)
        assert tuple(p[0]) == tuple(start)
        if (p[:n_past] == given).all():
            d = displacements(p)[n_past - 1:]
            counts[np.arange(n_steps), d[:, 1] + 4, d[:, 0] + 4] += 1
    return counts


def _assert_matches(truth, counts):
    n = counts[0].sum()
    assert n > 1000
    freq = counts / n
    assert (freq[truth == 0] == 0).all()  # the simulations never leave the exact support
    sd = np.sqrt(truth * (1 - truth) / n)
    assert (np.abs(freq - truth) <= 5 * sd + 1e-12).all()


def test_truth_matches_simulations_through_the_wall(test_digits):
    ds = _dataset(test_digits, length=10, seed=0)
    _, info, _ = find_trajectory(ds, 5)
    p, v = info["positions"][0], info["velocities"][0]
    given, n_steps = p[:5], 7
    truth = true_displacement_distributions(given, n_steps, TABLE)
    # the start and first velocity are scripted, so every run passes through the given frames
    k = (v[0, 1] + 4) * 9 + (v[0, 0] + 4)  # the flat index _draw_velocity decodes
    counts = _simulated_frequencies(tuple(p[0]), given, n_steps, TABLE, 6000, scripted_choices=[k])
    assert counts[0].sum() == 6000
    _assert_matches(truth, counts)


@pytest.mark.parametrize("table", [TABLE, UNIFORM], ids=["nonuniform", "uniform"])
def test_truth_matches_simulations_given_an_ambiguous_last_frame(table):
    given = np.array([(2, 10), (0, 6)])
    truth = true_displacement_distributions(given, 3, table)
    counts = _simulated_frequencies((2, 10), given, 3, table, 40_000 if table is UNIFORM else 20_000)
    _assert_matches(truth, counts)


def test_truth_rejects_impossible_conditioning():
    with pytest.raises(ValueError, match="impossible"):
        true_displacement_distributions([(10, 10), (20, 10)], 2, TABLE)  # a jump of 10 pixels
    with pytest.raises(ValueError, match="0..31"):
        true_displacement_distributions([(32, 10)], 2, TABLE)


def test_velocity_table_follows_the_dataset(test_digits):
    uniform = StochasticMovingMNIST("test", num_digits=1, digits=test_digits)
    np.testing.assert_allclose(velocity_table(uniform), UNIFORM)
    np.testing.assert_allclose(velocity_table(_dataset(test_digits)), TABLE)
    with pytest.raises(ValueError, match="deterministic"):
        velocity_table(StochasticMovingMNIST("test", num_digits=1, digits=test_digits, deterministic=True))


# ---------------------------------------------------------------------------------------------
# distances


def _delta(dx, dy, r=4):
    d = np.zeros((2 * r + 1, 2 * r + 1))
    d[dy + r, dx + r] = 1
    return d


def test_distances_on_hand_computed_examples():
    a, b = _delta(0, 0), _delta(3, 4)
    assert total_variation(a, b) == pytest.approx(1.0)
    assert wasserstein(a, b) == pytest.approx(5.0)
    assert total_variation(a, a) == 0 and wasserstein(a, a) == pytest.approx(0)
    half = 0.5 * _delta(0, 0) + 0.5 * _delta(1, 0)
    assert total_variation(half, a) == pytest.approx(0.5)
    assert wasserstein(half, a) == pytest.approx(0.5)
    # 1-D along dx: p = {-1: .25, 2: .75}, q = {0: .5, 2: .5}; W1 = integral |F - G| = .25 + .5
    p = 0.25 * _delta(-1, 0) + 0.75 * _delta(2, 0)
    q = 0.5 * _delta(0, 0) + 0.5 * _delta(2, 0)
    assert total_variation(p, q) == pytest.approx(0.5)
    assert wasserstein(p, q) == pytest.approx(0.75)
    # Euclidean ground distance: half the mass one diagonal step, half one step
    r = 0.5 * _delta(1, 1) + 0.5 * _delta(-1, 0)
    assert wasserstein(a, r) == pytest.approx(0.5 * math.sqrt(2) + 0.5)


def test_off_grid_displacements_count_against_the_model():
    truth = embed(_delta(1, 0), 32)
    model = displacement_histogram([(1, 0), (1, 0), (10, 0), (1, 0)], 32)
    assert crop(model).sum() == pytest.approx(0.75)  # a quarter lands outside the 9x9 grid
    assert total_variation(truth, model) == pytest.approx(0.25)
    assert wasserstein(truth, model) == pytest.approx(0.25 * 9)
    with pytest.raises(ValueError, match="beyond the grid"):
        displacement_histogram([(40, 0)], 32)
    with pytest.raises(ValueError, match="one odd size"):
        total_variation(_delta(0, 0), truth)


# ---------------------------------------------------------------------------------------------
# scoring and reporting on hand-made positions

# truth of 3 predicted steps: two certain steps of (+1, 0), then (+2, -1) or (-2, -1) after a wall
HAND_TRUTH = np.stack([_delta(1, 0), _delta(1, 0), 0.5 * _delta(2, -1) + 0.5 * _delta(-2, -1)])
HAND_GIVEN = np.array([(5, 5), (6, 5)])  # n_past = 2


def _hand_found():
    """(S=2, K=1, T=5, 2) positions; displacements of the predicted steps (from frame 1):
    sample 0: (1, 0), (1, 0), (2, -1); sample 1: (1, 0), (2, 0), (6, 0), the last off the 9x9 grid."""
    return np.array([[[(5, 5), (6, 5), (7, 5), (8, 5), (10, 4)]],
                     [[(5, 5), (6, 5), (7, 5), (9, 5), (15, 5)]]])


def test_scores_of_hand_made_positions_match_a_hand_computation():
    res = score_positions(_hand_found(), HAND_TRUTH, HAND_GIVEN, radius=32)
    # step 0 as the truth; step 1 half right, half one pixel too fast; step 2 half right, half far
    # off the grid, whose mass must travel to (-2, -1): sqrt(8^2 + 1^2) pixels
    np.testing.assert_allclose(res["total_variation"], [0.0, 0.5, 0.5])
    np.testing.assert_allclose(res["wasserstein"], [0.0, 0.5, 0.5 * math.sqrt(65)])
    np.testing.assert_allclose(res["off_grid"], [0.0, 0.0, 0.5])
    np.testing.assert_allclose(res["distributions"][1], 0.5 * _delta(1, 0) + 0.5 * _delta(2, 0))
    np.testing.assert_allclose(res["distributions"][2], 0.5 * _delta(2, -1))
    # the wall is at step 2 (first_random_step): before = steps 0 and 1, after = step 2
    assert res["summary"] == pytest.approx({"tv_before_wall": 0.25, "tv_after_wall": 0.5,
                                            "w1_before_wall": 0.25, "w1_after_wall": 0.5 * math.sqrt(65)})
    assert res["conditioning_positions_recovered"]
    moved = _hand_found()
    moved[1, 0, 0] = (4, 5)  # one sample does not reproduce a given frame
    assert not score_positions(moved, HAND_TRUTH, HAND_GIVEN, radius=32)["conditioning_positions_recovered"]


def test_report_of_hand_made_positions():
    data = StudyData(config=preset("smmnist-1digit-cpu"), trajectory_seed=3, n_past=2, n_frames=5,
                     table=TABLE, video_index=11, positions=_hand_found()[:1, 0],
                     velocities=np.array([(1, 0), (1, 0), (1, 0), (2, -1), (2, -1)]), truth=HAND_TRUTH,
                     digit_ids=np.array([42]), videos=None, templates=None)
    models = {"svg-lp": dict(path="lp.pt", step=7), "det": dict(path="det.pt", step=9)}
    found = {"svg-lp": _hand_found(), "det": _hand_found()[:1]}
    report = build_report(models, found, data, samples=2, seed=4)
    assert json.loads(json.dumps(report)) == report  # plain JSON types only
    s, traj = report["settings"], report["trajectory"]
    assert (s["samples"], s["digits"], s["digit_ids"], s["seed"], s["trajectory_seed"]) == (2, 1, [42], 4, 3)
    assert (s["video_index"], s["n_past"], s["n_frames"], s["image_size"]) == (11, 2, 5, 64)
    # predicted steps run from the last given frame; the wall is hit at the frame before step 2
    assert traj["step_frames"] == [[1, 2], [2, 3], [3, 4]]
    assert (traj["first_random_step"], traj["wall_hit_frame"]) == (2, 3)
    assert traj["positions"] == _hand_found()[0, 0].tolist()
    lp, det = report["models"]["svg-lp"], report["models"]["det"]
    assert (lp["checkpoint"], lp["training_step"], lp["samples_per_digit"]) == ("lp.pt", 7, 2)
    assert (det["checkpoint"], det["training_step"], det["samples_per_digit"]) == ("det.pt", 9, 1)
    np.testing.assert_allclose(lp["total_variation"], [0.0, 0.5, 0.5])
    np.testing.assert_allclose(det["total_variation"], [0.0, 0.0, 0.5])  # sample 0 only: (2, -1) at the wall


# ---------------------------------------------------------------------------------------------
# entry points on tiny checkpoints


@pytest.fixture(scope="module")
def tiny_checkpoints(tmp_path_factory):
    from svg_pyro.training.train import train

    root = tmp_path_factory.mktemp("tiny_1digit")
    paths = {}
    for model in ("svg-lp", "svg-fp", "det"):
        config = preset("smmnist-1digit-cpu", model=model, width=4, g_dim=8, z_dim=2, rnn_size=8,
                        predictor_layers=1, batch_size=2, steps=2, sample_every=1000)
        train(config, root / model, progress=False)
        paths[model] = root / model / "checkpoint.pt"
    return paths


def test_cli_end_to_end(tiny_checkpoints, tmp_path, capsys):
    out = tmp_path / "study"
    rc = run_subcommand("trajectory", ["--checkpoint", str(tiny_checkpoints["svg-lp"]), "--fp-checkpoint", str(tiny_checkpoints["svg-fp"]),
               "--det-checkpoint", str(tiny_checkpoints["det"]), "--out", str(out), "--samples", "3",
               "--digits", "2", "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    study = json.loads((out / "study.json").read_text())
    assert [r["trajectory"]["first_random_step"] for r in study["trajectories"]] == [1, 2, 3, 4]
    for wall, report in zip((1, 2, 3, 4), study["trajectories"]):
        for name in ("trajectory.json", "distributions.png", "distances.png", "velocity_table.png", "samples.png"):
            assert (out / f"wall-step-{wall}" / name).stat().st_size > 0
        assert json.loads((out / f"wall-step-{wall}" / "trajectory.json").read_text()) == report
        s, traj = report["settings"], report["trajectory"]
        assert (s["samples"], s["digits"], s["n_past"], s["n_frames"]) == (3, 2, 5, 15)  # 10 predicted steps
        assert traj["wall_hit_frame"] == 4 + wall and s["deterministic_steps"] == wall
        truth = np.array(report["truth"])
        assert truth.shape == (10, 9, 9) and first_random_step(truth) == wall
        # the reported truth is the exact distribution for the reported trajectory
        np.testing.assert_allclose(truth, true_displacement_distributions(traj["positions"][:5], 10, TABLE))
        assert set(report["models"]) == {"svg-lp", "svg-fp", "det"}
        for name, res in report["models"].items():
            dists, off = np.array(res["distributions"]), np.array(res["off_grid"])
            np.testing.assert_allclose(dists.sum(axis=(1, 2)) + off, 1.0)
            counts = dists * (res["samples_per_digit"] * 2)  # whole numbers of generated videos
            np.testing.assert_allclose(counts, np.round(counts), atol=1e-9)
            tv = 0.5 * (np.abs(truth - dists).sum(axis=(1, 2)) + off)  # truth has no mass off the grid
            np.testing.assert_allclose(res["total_variation"], tv)
            # on the integer grid every unit of mass moved travels at least 1 pixel: W1 >= TV
            assert all(w >= t - 1e-9 for w, t in zip(res["wasserstein"], tv))
            assert res["summary"]["tv_after_wall"] == pytest.approx(np.mean(tv[wall:]))
            assert res["summary"]["tv_before_wall"] == pytest.approx(np.mean(tv[:wall]))
            assert res["conditioning_positions_recovered"]
        assert report["models"]["det"]["samples_per_digit"] == 1
    for name, mean in study["average"].items():
        for key, value in mean.items():
            assert value == pytest.approx(np.mean([r["models"][name]["summary"][key] for r in study["trajectories"]]))
    table = (out / "distances.md").read_text()
    assert table.count("| svg-lp | wall hit after") == 4 and "**mean of 4**" in table
    assert f"**{study['average']['det']['tv_after_wall']:.3f}**" in table
    assert "svg-lp: TV before/after the wall" in capsys.readouterr().out


def test_cli_refuses_mismatched_checkpoints(tiny_checkpoints, tmp_path, capsys):
    rc = run_subcommand("trajectory", ["--checkpoint", str(tiny_checkpoints["svg-lp"]), "--det-checkpoint",
               str(tiny_checkpoints["svg-fp"]), "--out", str(tmp_path), "--no-progress"])
    assert rc == 2 and "pass a checkpoint trained with --model det" in capsys.readouterr().err
    rc = run_subcommand("trajectory", ["--checkpoint", str(tmp_path / "missing.pt"), "--out", str(tmp_path), "--no-progress"])
    assert rc == 2 and "no checkpoint at" in capsys.readouterr().err
