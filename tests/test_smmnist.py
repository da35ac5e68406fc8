"""Stochastic Moving MNIST against the reference generator's rules."""
import gzip
import math

import numpy as np
import pytest
import torch

from svg_pyro.data.smmnist import (DIGIT_SIZE, StochasticMovingMNIST, _draw_velocity, default_velocity_table,
                                   load_digits)


LIMIT = 64 - DIGIT_SIZE  # 32


@pytest.fixture(scope="module")
def digits():
    return load_digits("train")


def _trajectories(ds, n):
    for i in range(n):
        info = ds.trajectory(i)
        for p, v in zip(info["positions"], info["velocities"]):
            yield p, v


def _classify(p, v):
    """Per transition t -> t+1, which walls were hit before drawing frame t+1."""
    events = []
    for t in range(len(p) - 1):
        raw = p[t] + v[t]
        events.append(dict(top=raw[1] < 0, bottom=raw[1] >= LIMIT, left=raw[0] < 0, right=raw[0] >= LIMIT,
                           raw=raw, pos=p[t + 1], vel=v[t + 1], prev=v[t]))
    return events


def test_reference_bounce_rules(digits):
    ds = StochasticMovingMNIST("train", length=30, num_digits=2, digits=digits, seed=3)
    counts = dict(top=0, bottom=0, left=0, right=0, free=0)
    for p, v in _trajectories(ds, 300):
        assert (p >= 0).all() and (p <= LIMIT).all()
        assert (np.abs(v) <= 4).all()
        for e in _classify(p, v):
            hit_y, hit_x = e["top"] or e["bottom"], e["left"] or e["right"]
            if not (hit_y or hit_x):
                counts["free"] += 1
                assert (e["pos"] == e["raw"]).all() and (e["vel"] == e["prev"]).all()
                continue
            # clamped: y < 0 -> 0, y >= 32 -> 31 (and the same for x)
            expect = e["raw"].copy()
            expect[1] = 0 if e["top"] else LIMIT - 1 if e["bottom"] else expect[1]
            expect[0] = 0 if e["left"] else LIMIT - 1 if e["right"] else expect[0]
            assert (e["pos"] == expect).all()
            dx, dy = e["vel"]
            if e["left"]:
                assert 1 <= dx <= 4
            if e["right"]:
                assert -4 <= dx <= -1
            if not hit_x:  # an x-bounce redraws dy from all of -4..4
                if e["top"]:
                    assert 1 <= dy <= 4
                if e["bottom"]:
                    assert -4 <= dy <= -1
            for wall in ("top", "bottom", "left", "right"):
                counts[wall] += e[wall]
    assert min(counts.values()) > 50  # every kind of bounce was exercised


def test_velocity_draws_cover_the_reference_sets():
    rng = np.random.default_rng(0)
    seen = {w: set() for w in (None, "top", "bottom", "left", "right")}
    for _ in range(3000):
        for wall in seen:
            seen[wall].add(_draw_velocity(rng, None, wall))
    r = range(-4, 5)
    assert seen[None] == {(x, y) for x in r for y in r}
    assert seen["top"] == {(x, y) for x in r for y in range(1, 5)}
    assert seen["bottom"] == {(x, y) for x in r for y in range(-4, 0)}
    assert seen["left"] == {(x, y) for x in range(1, 5) for y in r}
    assert seen["right"] == {(x, y) for x in range(-4, 0) for y in r}


def test_frames_are_the_clipped_sum_of_digits_at_their_positions(digits):
    ds = StochasticMovingMNIST("train", length=12, num_digits=2, digits=digits, seed=5)
    for i in range(5):
        video, info = ds[i], ds.trajectory(i)
        assert video.shape == (12, 1, 64, 64) and video.dtype == torch.float32
        assert video.min() >= 0 and video.max() <= 1
        expect = np.zeros((12, 64, 64), np.float32)
        for d, path in zip(info["digit_ids"], info["positions"]):
            for t, (x, y) in enumerate(path):
                expect[t, y:y + 32, x:x + 32] += digits[d].numpy()
        np.testing.assert_allclose(video[:, 0].numpy(), np.minimum(expect, 1), atol=1e-6)


def test_same_seed_same_videos_and_splits_differ(digits):
    a = StochasticMovingMNIST("train", length=8, digits=digits, seed=1)
    b = StochasticMovingMNIST("train", length=8, digits=digits, seed=1)
    c = StochasticMovingMNIST("train", length=8, digits=digits, seed=2)
    assert torch.equal(a[7], b[7])
    assert not torch.equal(a[7], c[7]) and not torch.equal(a[7], a[8])
    test = StochasticMovingMNIST("test", length=8, seed=1)
    assert not torch.equal(a[7], test[7])


def test_deterministic_variant_reflects(digits):
    ds = StochasticMovingMNIST("train", length=40, num_digits=1, digits=digits, deterministic=True)
    for p, v in _trajectories(ds, 50):
        assert (np.abs(v) == np.abs(v[0])).all()  # speeds never change
        for e in _classify(p, v):
            if e["top"] or e["bottom"]:
                assert e["vel"][1] == -e["prev"][1]


def test_embedded_digit_split_is_fixed_and_disjoint():
    train, test = load_digits("train"), load_digits("test")
    assert train.shape == (4000, 32, 32) and test.shape == (1000, 32, 32)
    assert 0 <= train.min() and train.max() <= 1
    flat_train = {t.numpy().tobytes() for t in train[:500]}
    assert not any(t.numpy().tobytes() in flat_train for t in test)


# --- the supplement's non-uniform variant ---------------------------------------------------


def test_nonuniform_never_draws_an_invalid_direction_and_matches_the_table():
    table = default_velocity_table()
    rng = np.random.default_rng(1)
    n = 25000
    for wall, bad in [("right", lambda dx, dy: dx >= 0), ("left", lambda dx, dy: dx <= 0),
                      ("top", lambda dx, dy: dy <= 0), ("bottom", lambda dx, dy: dy >= 0), (None, None)]:
        counts = np.zeros((9, 9))
        for _ in range(n):
            dx, dy = _draw_velocity(rng, table, wall)
            assert bad is None or not bad(dx, dy)
            counts[dy + 4, dx + 4] += 1
        # expected: the table with invalid entries zeroed and renormalised, written out here
        expected = np.array([[0.0 if bad is not None and bad(dx, dy) else (1.0 + dx * dx + dy * dy)
                              for dx in range(-4, 5)] for dy in range(-4, 5)])
        expected /= expected.sum()
        tv = 0.5 * np.abs(counts / n - expected).sum()
        assert tv < 0.035, (wall, tv)  # sampling noise alone gives about 0.02


def test_nonuniform_default_favours_greater_speeds():
    table = default_velocity_table()
    speed = np.hypot(*np.meshgrid(np.arange(-4, 5), np.arange(-4, 5)))
    assert table[8, 8] > 30 * table[4, 4]
    fast, slow = table[speed >= 3].mean(), table[speed <= 1.5].mean()
    assert fast > 3 * slow
    ds = StochasticMovingMNIST("train", length=30, num_digits=1, velocity="nonuniform", num_videos=200)
    for p, v in _trajectories(ds, 200):
        for e in _classify(p, v):
            if e["right"] and not (e["top"] or e["bottom"]):
                assert e["vel"][0] < 0


def test_bad_velocity_tables_are_rejected():
    with pytest.raises(ValueError, match="9x9"):
        StochasticMovingMNIST(velocity="nonuniform", velocity_table=np.ones((3, 3)), digits=torch.zeros(1, 32, 32))
    only_right = np.zeros((9, 9))
    only_right[4, 8] = 1  # dx = +4 only: nothing can leave the right wall
    with pytest.raises(ValueError, match="right wall"):
        _draw_velocity(np.random.default_rng(0), only_right, "right")


# --- MNIST IDX files ------------------------------------------------------------------------


def _write_idx(path, images, compress=False):
    header = (2051).to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in images.shape)
    data = header + images.astype(np.uint8).tobytes()
    (gzip.open if compress else open)(path, "wb").write(data)


def test_mnist_root_reads_idx_files(tmp_path):
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, size=(7, 28, 28))
    test = np.zeros((3, 28, 28))
    test[:, 10:18, 10:18] = 255
    _write_idx(tmp_path / "train-images-idx3-ubyte", train)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", test, compress=True)
    got = load_digits("train", tmp_path)
    assert got.shape == (7, 32, 32)
    ref = torch.nn.functional.interpolate(torch.tensor(train / 255.0, dtype=torch.float32)[:, None], size=32,
                                          mode="bilinear")[:, 0]
    torch.testing.assert_close(got, ref.clamp(0, 1))
    got_test = load_digits("test", tmp_path)
    assert got_test.shape == (3, 32, 32) and math.isclose(got_test.max().item(), 1.0)
    ds = StochasticMovingMNIST("test", length=4, mnist_root=tmp_path)
    assert ds[0].shape == (4, 1, 64, 64)


def test_mnist_root_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a directory"):
        load_digits("train", tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        load_digits("train", tmp_path)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"garbage" * 10)
    with pytest.raises(ValueError, match="not an MNIST image file"):
        load_digits("train", tmp_path)
    _write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((5, 28, 28)))
    data = (tmp_path / "train-images-idx3-ubyte").read_bytes()
    (tmp_path / "train-images-idx3-ubyte").write_bytes(data[:-100])
    with pytest.raises(ValueError, match="truncated"):
        load_digits("train", tmp_path)


def test_corrupt_deflate_data_in_a_gzipped_idx_file_is_named(tmp_path):
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((5, 28, 28)), compress=True)
    data = bytearray((tmp_path / "train-images-idx3-ubyte.gz").read_bytes())
    data[12:40] = bytes(range(28))  # a valid gzip header, broken deflate stream
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="cannot read MNIST IDX file .*download it again"):
        load_digits("train", tmp_path)
