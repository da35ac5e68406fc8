"""The exact posterior of a digit's motion given any observed frames, against independent computations:
every path of the generator enumerated on small arenas, Monte Carlo on the real generator, and the
forward-only ``true_displacement_distributions`` for a prefix."""
import numpy as np
import pytest

from svg_pyro.data.smmnist import (DIGIT_SIZE, default_velocity_table, simulate_trajectory,
                                   true_displacement_distributions)
from svg_pyro.data.smmnist_posterior import posterior_displacement_distributions
from svg_pyro.errors import InvalidInput


N = None  # an unobserved frame in the cases below
SPEEDS = range(-4, 5)
_rng = np.random.default_rng(7)
ASYMMETRIC = np.where(_rng.random((9, 9)) < 0.2, 0.0, _rng.random((9, 9)))  # catches dx/dy swaps
TABLES = {"uniform": None, "default": default_velocity_table(), "asymmetric": ASYMMETRIC}


def _as_array(observations):
    return np.array([(np.nan, np.nan) if o is None else o for o in observations], dtype=float)


# ---------------------------------------------------------------------------------------------
# brute force: every path of the generator, written from simulate_trajectory's rules


def _redraws(table, wall):
    """[(probability, dx, dy)] of the generator's velocity draw after hitting ``wall``."""
    if table is None:  # reference: dx, dy uniform on -4..4, the hit axis forced away from the wall
        xs = {"left": range(1, 5), "right": range(-4, 0)}.get(wall, SPEEDS)
        ys = {"top": range(1, 5), "bottom": range(-4, 0)}.get(wall, SPEEDS)
        return [(1 / (len(xs) * len(ys)), dx, dy) for dy in ys for dx in xs]
    leaves = {None: lambda dx, dy: True, "top": lambda dx, dy: dy > 0, "bottom": lambda dx, dy: dy < 0,
              "left": lambda dx, dy: dx > 0, "right": lambda dx, dy: dx < 0}[wall]
    weights = [(table[dy + 4, dx + 4], dx, dy) for dy in SPEEDS for dx in SPEEDS
               if leaves(dx, dy) and table[dy + 4, dx + 4] > 0]
    total = sum(w for w, _, _ in weights)
    return [(w / total, dx, dy) for w, dx, dy in weights]


def _enumerate(observations, limit, table):
    """P(displacement of each step | observations) summed over every consistent path, and whether
    any consistent path hits a wall."""
    T = len(observations)
    draws = {wall: _redraws(table, wall) for wall in (None, "top", "bottom", "left", "right")}
    out, steps, bounced = np.zeros((T - 1, 9, 9)), [None] * (T - 1), [False]

    def visit(t, x, y, dx, dy, p, hit):  # the state (x, y, dx, dy) recorded at frame t
        nx, ny, redraw = x + dx, y + dy, None  # move, then the walls as simulate_trajectory applies them
        if ny < 0:
            ny, redraw = 0, draws["top"]
        elif ny >= limit:
            ny, redraw = limit - 1, draws["bottom"]
        if nx < 0:  # an x wall draws (dx, dy) again: the y wall's draw is overwritten
            nx, redraw = 0, draws["left"]
        elif nx >= limit:
            nx, redraw = limit - 1, draws["right"]
        if observations[t + 1] is not None and (nx, ny) != tuple(observations[t + 1]):
            return
        steps[t] = (nx - x, ny - y)
        hit = hit or redraw is not None
        if t + 1 == T - 1:  # the draw at the last frame moves nothing observed: its branches sum to 1
            for s, (sx, sy) in enumerate(steps):
                out[s, sy + 4, sx + 4] += p
            bounced[0] |= hit
            return
        for q, ndx, ndy in redraw or [(1.0, dx, dy)]:
            visit(t + 1, nx, ny, ndx, ndy, p * q, hit)

    for q, dx, dy in draws[None]:
        visit(0, *observations[0], dx, dy, q, False)
    assert out[0].sum() > 0, "the case's observations are impossible"
    return out / out[0].sum(), bounced[0]


CASES = [  # (table, limit, observed positions (x, y) per frame, does any consistent path bounce)
    ("uniform", 5, [(1, 2), N, N, N, (3, 0)], True),                # first and last frame only
    ("default", 5, [(1, 2), (0, 4), N, N, N], True),                # prefix only; frame 1 maybe a bounce
    ("default", 5, [(1, 2), (0, 4), N, N, N, (4, 1)], True),        # prefix + a later frame
    ("asymmetric", 6, [(5, 0), N, (2, 3), N, N], True),             # first + a middle frame
    ("uniform", 6, [(0, 5), N, N, N, N, (5, 0)], True),             # corner to corner
    ("asymmetric", 8, [(3, 4), (6, 3), N, N, (5, 2), N], True),    # right wall at frame 2
    ("asymmetric", 17, [(8, 8), N, N], False),                      # too far from the walls to reach them
    ("default", 16, [(6, 6), N, N, (12, 9), N], False),             # only the straight path gets there
]


@pytest.mark.parametrize("table_name, limit, observations, bounces", CASES)
def test_matches_enumeration_of_every_path(table_name, limit, observations, bounces):
    table = TABLES[table_name]
    expected, bounced = _enumerate(observations, limit, table)
    assert bounced == bounces
    got = posterior_displacement_distributions(_as_array(observations), np.ones((9, 9)) if table is None else table,
                                               image_size=DIGIT_SIZE + limit)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# Monte Carlo on the real generator


class _StartAt:
    """A Generator whose first two ``integers`` draws (simulate_trajectory's start x, then y) return
    ``start``; every other draw is the real generator's. The start is drawn independently of the
    motion, so this conditions exactly on frame 0 without rejecting 1023 videos in 1024."""

    def __init__(self, rng, start):
        self.rng, self.pending = rng, list(start)

    def integers(self, *args, **kwargs):
        return self.pending.pop(0) if self.pending else self.rng.integers(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.rng, name)


def test_matches_the_generator_by_monte_carlo():
    table, start, frame, corner = default_velocity_table(), (3, 27), 2, (0, 31)
    rng = np.random.default_rng(0)
    paths = np.stack([simulate_trajectory(_StartAt(rng, start), 5, 64, table=table)[0] for _ in range(12000)])
    assert (paths[:, 0] == start).all()
    kept = paths[(paths[:, frame] == corner).all(axis=1)]  # the bottom-left corner at frame 2
    n = len(kept)
    assert n >= 800
    steps = np.diff(kept, axis=1)  # (n, 4, 2) as (dx, dy)
    empirical = np.zeros((4, 9, 9))
    for t in range(4):
        np.add.at(empirical[t], (steps[:, t, 1] + 4, steps[:, t, 0] + 4), 1.0 / n)

    exact = posterior_displacement_distributions([start, N, corner, N, N], table)
    assert (empirical[exact == 0] == 0).all()  # nothing the posterior rules out happens
    sigma = np.sqrt(exact * (1 - exact) / n)
    assert (np.abs(empirical - exact) <= 5 * sigma + 1e-12).all()
    # the check has power: filtering forward from frame 0 alone is far from what the generator does
    forward = true_displacement_distributions([start], 4, table)
    assert 0.5 * np.abs(empirical - forward).sum(axis=(1, 2)).max() > 0.3


# ---------------------------------------------------------------------------------------------
# prefixes, the study's pattern, bad input


@pytest.mark.parametrize("table, given, n_steps", [
    (default_velocity_table(), None, 10),  # a simulated digit's frames 0-4, as in the study
    (np.ones((9, 9)), [(2, 10), (0, 6)], 6),  # frame 1 on the left wall: the velocity after it is uncertain
    (ASYMMETRIC, [(30, 1)], 8),
])
def test_a_prefix_gives_the_forward_filter(table, given, n_steps):
    if given is None:
        given = simulate_trajectory(np.random.default_rng(5), 5, 64, table=table)[0]
    given = np.asarray(given)
    positions = np.concatenate([given, np.full((n_steps, 2), np.nan)])
    got = posterior_displacement_distributions(positions, table)
    assert got.shape == (len(given) - 1 + n_steps, 9, 9)
    np.testing.assert_allclose(got[len(given) - 1:], true_displacement_distributions(given, n_steps, table),
                               rtol=0, atol=1e-12)
    for t, (dx, dy) in enumerate(np.diff(given, axis=0)):  # observed steps are certain
        assert got[t, dy + 4, dx + 4] == pytest.approx(1.0)


def test_bridge_steps_add_up_to_the_observed_gap():
    """Frames 0-4 and 14 observed: every consistent path covers frame 4 -> 14 exactly, so the posterior
    mean displacements of steps 5..14 sum to the gap (a forward filter ignoring frame 14 would not)."""
    table = default_velocity_table()
    path = simulate_trajectory(np.random.default_rng(24), 15, 64, table=table)[0]  # bounces between 4 and 14
    positions = path.astype(float)
    positions[5:14] = np.nan
    got = posterior_displacement_distributions(positions, table)
    speeds = np.arange(-4, 5)
    mean_step = np.stack([got.sum(axis=1) @ speeds, got.sum(axis=2) @ speeds], axis=1)  # (dx, dy): columns, rows
    assert got[4:].max(axis=(1, 2)).min() < 0.6  # the bridge is uncertain, not one forced path
    np.testing.assert_allclose(mean_step[4:].sum(axis=0), path[14] - path[4], atol=1e-9)
    np.testing.assert_allclose(got.sum(axis=(1, 2)), 1.0, atol=1e-12)


def test_after_a_corner_the_digit_can_hug_the_top_wall():
    """(2, 2) -> (0, 0) -> (0, 0) leaves one path: velocity (-2, -2), then a corner hit at frame 2, where
    the left wall's draw overwrites the top wall's, so dy may point up again and be clamped to 0."""
    table = default_velocity_table()
    got = posterior_displacement_distributions([(2, 2), (0, 0), (0, 0), N], table)[2]
    expected = np.zeros((9, 9))
    for dx in range(1, 5):  # the left wall's table: dx > 0, any dy, weight 1 + dx^2 + dy^2
        for dy in range(-4, 5):
            expected[max(dy, 0) + 4, dx + 4] += 1 + dx**2 + dy**2
    np.testing.assert_allclose(got, expected / expected.sum(), rtol=0, atol=1e-12)


def test_none_rows_and_masked_rows_mean_unobserved():
    table = default_velocity_table()
    nan_rows = posterior_displacement_distributions([(3, 27), (np.nan, np.nan), (0, 31)], table)
    masked = np.ma.masked_array([(3, 27), (0, 0), (0, 31)], mask=[[0, 0], [1, 1], [0, 0]])
    np.testing.assert_array_equal(posterior_displacement_distributions([(3, 27), None, (0, 31)], table), nan_rows)
    np.testing.assert_array_equal(posterior_displacement_distributions(masked, table), nan_rows)


@pytest.mark.parametrize("positions, message", [
    ([(10, 10), N, (30, 10)], r"from \[10, 10\] at frame 0 to \[30, 10\] at frame 2"),  # 20 px in 2 steps
    ([(10, 10), (12, 10), (12, 10)], r"at frame 1 to \[12, 10\] at frame 2"),  # stopped mid-air
    ([(10, 10), (12, 10), N, (17, 10)], r"at frame 1 to \[17, 10\] at frame 3"),  # off the constant velocity
    ([(10, 2), (12, 0), (14, 0), (16, 0)], r"at frame 2 to \[16, 0\] at frame 3"),  # a top bounce must leave
    ([N, (1, 1)], "frame 0 must be observed"),
    ([(1, 1), (np.nan, 2)], "both observed or both NaN"),
    ([(1, 32)], "integers in 0..31"),
    ([(1, 1.5)], "integers in 0..31"),
])
def test_impossible_or_malformed_observations_raise(positions, message):
    with pytest.raises(InvalidInput, match=message):
        posterior_displacement_distributions(_as_array(positions), default_velocity_table())
