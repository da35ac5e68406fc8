"""The motion probe: digits found by least squares, certain steps from the generator's rules,
errors as defined, and its place in training (rows at the sample steps, the RNG stream untouched)."""
import itertools
import json

import numpy as np
import pytest
import torch

from svg_pyro.config import preset
from svg_pyro.data.smmnist import StochasticMovingMNIST, velocity_table
from svg_pyro.evaluation.motion import (MotionProbe, certain_steps, digit_positions, extract_pair_positions,
                                        score_motion)
from svg_pyro.training.train import train


def test_pair_search_is_the_least_squares_pair_found_by_brute_force():
    gen = torch.Generator().manual_seed(0)
    for trial in range(20):
        a, b = torch.rand(4, 4, generator=gen), torch.rand(4, 4, generator=gen)
        frame = torch.rand(1, 11, 11, generator=gen)
        if trial % 2:  # two digits and a little noise: the search prunes most pairs
            x = torch.randint(0, 8, (4,), generator=gen).tolist()
            frame = 0.1 * frame
            frame[0, x[1]:x[1] + 4, x[0]:x[0] + 4] += a
            frame[0, x[3]:x[3] + 4, x[2]:x[2] + 4] += b
        best, arg = None, None
        for p in itertools.product(range(8), repeat=2):  # (x, y) placements of each 4x4 digit
            for q in itertools.product(range(8), repeat=2):
                canvas = torch.zeros(11, 11)
                canvas[p[1]:p[1] + 4, p[0]:p[0] + 4] += a
                canvas[q[1]:q[1] + 4, q[0]:q[0] + 4] += b
                loss = ((frame[0] - canvas) ** 2).sum().item()
                if best is None or loss < best:
                    best, arg = loss, (p, q)
        assert extract_pair_positions(frame, a, b).tolist() == [list(arg[0]), list(arg[1])]


@pytest.mark.parametrize("digits", [1, 2])
def test_digits_are_found_where_the_generator_drew_them(digits):
    ds = StochasticMovingMNIST("test", 8, num_digits=digits, num_videos=64)
    exact = crossing = 0
    for i in range(24):
        info = ds.trajectory(i)
        found = digit_positions(ds[i], ds.digits[torch.as_tensor(info["digit_ids"])]).numpy()  # (T, D, 2)
        truth = info["positions"].swapaxes(0, 1)
        ink = [ds.render(info["digit_ids"][d:d + 1], info["positions"][d:d + 1]) for d in range(digits)]
        apart = (ink[0] * ink[-1]).flatten(1).sum(1) == 0 if digits == 2 else torch.ones(8, dtype=torch.bool)
        assert (found[apart.numpy()] == truth[apart.numpy()]).all()  # strokes apart: always exact
        exact += (found == truth).all(axis=(1, 2)).sum()
        crossing += (~apart).sum().item()
    assert exact >= 0.95 * 24 * 8 and (digits == 1 or crossing > 0)  # crossing strokes: exact but for a few


def test_certain_steps_end_where_the_wall_redraws_the_velocity():
    table = velocity_table(StochasticMovingMNIST("test", 2, num_digits=1, num_videos=1))
    # x = 27, 28, 29 moving right by 1 on 64x64 frames (placements 0..31): 29 -> 30 -> 31 are certain,
    # the step into the wall is clamped to 31 -> 31 (certain too), the draw after it is not
    path = np.array([[[27, 10], [28, 10], [29, 10], [0, 0], [0, 0], [0, 0], [0, 0], [0, 0]]])
    assert certain_steps(path, 3, table, 64).tolist() == [[True, True, True, False, False]]
    slow = np.array([[[10, 10], [11, 10], [12, 10], [0, 0], [0, 0], [0, 0]]])  # far from every wall
    assert certain_steps(slow, 3, table, 64).tolist() == [[True, True, True]]
    assert certain_steps(path, 3, None, 64).all()  # reflecting walls: nothing is random


def test_scores_match_a_hand_computation():
    truth = np.array([[[[0, 0], [1, 0], [2, 0], [3, 0]]]])  # K=1 video, D=1 digit, n=3 steps
    found = np.stack([truth, np.zeros_like(truth)])  # sample 0 exact, sample 1 stays at (0, 0)
    certain = np.array([[[True, True, False]]])
    s = score_motion(found, truth, certain)
    assert s["position_error_best_t"] == [0, 0, 0]
    assert s["position_error_mean_t"] == [0.5, 1.0, 1.5] and s["position_error_mean"] == 1.0
    assert s["copy_last_position_error"] == pytest.approx(2.0)
    # certain steps 1 and 2: sample 0 is off by 0, sample 1 by 1 (it does not move) -> mean 0.5
    assert s["certain_displacement_error"] == 0.5 and s["copy_last_certain_displacement_error"] == 1.0
    assert s["certain_steps"] == 2
    # the best sample is chosen per video over all steps, not per step
    mixed = np.array([[[[0, 0], [1, 0], [2, 0], [9, 0]]], [[[0, 0], [0, 0], [2, 0], [3, 0]]]])[:, None]
    assert score_motion(mixed, truth, certain)["position_error_best_t"] == [1, 0, 0]
    assert score_motion(found, truth, np.zeros_like(certain))["certain_displacement_error"] is None


def test_probe_rows_come_at_the_sample_steps_and_leave_training_as_it_was(tmp_path):
    common = dict(num_digits=1, velocity="nonuniform", steps=6, checkpoint_every=6, sample_every=3, log_every=2)
    rows = train(preset("tiny", probe_videos=3, **common), tmp_path / "on", progress=False)
    off = train(preset("tiny", probe_videos=0, **common), tmp_path / "off", progress=False)
    assert [r["step"] for r in rows] == [2, 3, 4, 6]  # logged steps plus the sample step 3
    probed = [r["step"] for r in rows if "position_error_best" in r]
    assert probed == [3, 6] and not any("position_error_best" in r for r in off)
    assert [r["loss"] for r in rows] == [r["loss"] for r in off]
    logged = [json.loads(line) for line in (tmp_path / "on" / "metrics.jsonl").read_text().splitlines()]
    last = logged[-1]
    assert len(last["position_error_best_t"]) == 3 and len(last["one_step_displacement_error_t"]) == 3


def test_probe_refuses_what_it_cannot_follow():
    ds = StochasticMovingMNIST("test", 6, num_digits=3, num_videos=4)
    with pytest.raises(ValueError, match="1 or 2 digits"):
        MotionProbe(ds, 3)
    with pytest.raises(ValueError, match="test videos"):
        MotionProbe(StochasticMovingMNIST("test", 6, num_digits=1, num_videos=4), 3, videos=5)
