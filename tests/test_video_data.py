"""KTH and BAIR pipelines on small files written here in the published formats.

KTH: AVI files named like the real ones (160x120 grayscale, 25 fps), written with PyAV (FFV1,
lossless, and MPEG-4 in yuv420p like the published DivX files). BAIR: TFRecord files with the real
framing, CRC32C checksums and tf.train.Example features, written by the small writer below.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from svg_pyro.cli import run_subcommand
from svg_pyro.config import preset
from svg_pyro.data import prepare, tfrecord, video_store
from svg_pyro.data.datasets import make_datasets, training_batch


REPO = Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------------------------------------
# KTH test files

# (file name, frames, codec); persons 1-2 are training persons, 21-22 test persons
KTH_FILES = [
    ("person01_boxing_d1_uncomp.avi", 24, "ffv1"),
    ("person01_walking_d2_uncomp.avi", 30, "mpeg4"),
    ("person02_handclapping_d3_uncomp.avi", 21, "ffv1"),
    ("person21_running_d1_uncomp.avi", 44, "ffv1"),
    ("person22_jogging_d4_uncomp.avi", 41, "mpeg4"),
]


def kth_frames(seed: int, length: int) -> np.ndarray:
    """Smooth moving patterns (resampling methods agree on them), distinct per video and frame."""
    yy, xx = np.mgrid[0:120, 0:160].astype(float)
    t = np.arange(length)[:, None, None]
    wave = np.sin(xx / (11 + seed) + t / 4 + seed) * np.cos(yy / 13 - t / 7)
    return np.clip(120 + 80 * wave + 2 * t - 10 * seed, 0, 255).astype(np.uint8)


def write_avi(path: Path, frames: np.ndarray, codec: str) -> None:
    with av.open(str(path), "w", format="avi") as container:
        options = {"qmin": "1", "qmax": "2"} if codec == "mpeg4" else {}
        stream = container.add_stream(codec, rate=25, options=options)
        stream.width, stream.height = 160, 120
        stream.pix_fmt = "gray" if codec == "ffv1" else "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="gray")))
        container.mux(stream.encode())


def area_resize(frames: np.ndarray, size: int) -> np.ndarray:
    """Exact area averaging (each output pixel averages the input area it covers)."""
    def weights(n_out, n_in):
        w, scale = np.zeros((n_out, n_in)), n_in / n_out
        for o in range(n_out):
            lo, hi = o * scale, (o + 1) * scale
            for i in range(int(lo), int(np.ceil(hi))):
                w[o, i] = min(hi, i + 1) - max(lo, i)
        return w / scale
    return weights(size, frames.shape[1]) @ frames.astype(float) @ weights(size, frames.shape[2]).T


@pytest.fixture(scope="module")
def kth(tmp_path_factory):
    """A KTH source folder (one file in a subfolder, as unzipped archives may be), and its store."""
    src = tmp_path_factory.mktemp("kth_src")
    (src / "walking").mkdir()
    written = {}
    for seed, (name, length, codec) in enumerate(KTH_FILES):
        frames = kth_frames(seed, length)
        folder = src / "walking" if "walking" in name else src
        write_avi(folder / name, frames, codec)
        written[name[: -len("_uncomp.avi")]] = (frames, codec)
    (src / "00sequences.txt").write_text("not a video\n")
    out = tmp_path_factory.mktemp("kth_store") / "store"
    assert run_subcommand("prepare", ["kth", "--src", str(src), "--out", str(out)]) == 0
    return src, out, written


def kth_config(store, **overrides):
    return preset("kth-cpu", data_root=str(store), **overrides)


def test_kth_frames_match_the_written_videos(kth):
    _, store, written = kth
    train, test = make_datasets(kth_config(store))
    assert train.length == test.length == 20
    checked = set()
    for ds in (train, test):
        for i in range(len(ds)):
            info = ds.clip_info(i)
            if info["name"] in checked:
                continue
            checked.add(info["name"])
            clip = ds[i]
            assert clip.dtype == torch.float32 and clip.shape == (20, 1, 64, 64)
            frames, codec = written[info["name"]]
            first = info["first_frame"]
            expected = area_resize(frames[first:first + 20], 64) / 255
            error = np.abs(clip[:, 0].double().numpy() - expected)
            # FFV1 is lossless: only rounding; MPEG-4 at high quality adds a little
            assert error.mean() < (0.75 if codec == "ffv1" else 2.0) / 255, (info["name"], error.mean())
            # every frame is closest to its own expected frame: frame order is kept
            dist = ((clip[:, 0].double().numpy()[:, None] - expected[None]) ** 2).mean((2, 3))
            assert (dist.argmin(1) == np.arange(20)).all()
    # person02 has 21 frames (>= 20, in train); test clips need 40 frames: persons 21 and 22
    assert checked == set(written)


def test_kth_split_by_person_and_test_set(kth):
    _, store, written = kth
    train, test = make_datasets(kth_config(store))
    lengths = {name: len(frames) for name, (frames, _) in written.items()}
    train_names = {name for name in lengths if int(name[6:8]) <= 20}
    assert {v["name"] for v in train.videos} == train_names
    assert {v["name"] for v in test.videos} == set(lengths) - train_names
    assert all(v["person"] <= 20 for v in train.videos) and all(v["person"] >= 21 for v in test.videos)
    # every crop of 20 frames of every training video, each exactly once
    assert len(train) == sum(lengths[n] - 20 + 1 for n in train_names)
    crops = {(train.clip_info(i)["name"], train.clip_info(i)["first_frame"]) for i in range(len(train))}
    assert crops == {(n, s) for n in train_names for s in range(lengths[n] - 20 + 1)}
    # the fixed test set: 1,000 clips of 40 frames that fit in their videos, both test persons used
    assert len(test) == video_store.KTH_TEST_CLIPS
    infos = [test.clip_info(i) for i in range(len(test))]
    assert all(0 <= c["first_frame"] <= c["length"] - 40 for c in infos)
    assert {c["person"] for c in infos} == {21, 22}
    # shorter test clips are the first frames of the same clips
    _, test10 = make_datasets(kth_config(store), (20, 10))
    assert [test10.clip_info(i) for i in range(len(test10))] == infos
    assert torch.equal(test10[7], test[7][:10])


def test_datasets_are_deterministic(kth):
    _, store, _ = kth
    config = kth_config(store)
    train, test = make_datasets(config)
    train2, test2 = make_datasets(config)
    for i in (0, 3, len(train) - 1, -1):
        assert torch.equal(train[i], train2[i]) and torch.equal(train[i], train[i])
    assert all(torch.equal(test[i], test2[i]) for i in (0, 500, 999))
    assert not torch.equal(train[0], train[1])  # consecutive crops differ
    batch = training_batch(train, seed=0, step=3, batch_size=5)
    assert batch.shape == (5, 20, 1, 64, 64) and torch.equal(batch, training_batch(train2, 0, 3, 5))
    with pytest.raises(IndexError):
        train[len(train)]
    # the dataset survives pickling (DataLoader workers) and still reads the same clip
    import pickle
    assert torch.equal(pickle.loads(pickle.dumps(train))[2], train[2])


def test_rerun_skips_finished_files_and_cuts_an_interrupted_append(kth, tmp_path, capsys):
    src, store, _ = kth
    src, store = shutil.copytree(src, tmp_path / "src"), shutil.copytree(store, tmp_path / "store")
    before = (store / "train.u8").read_bytes()
    summary = prepare.prepare_kth(src, store, 64)
    assert summary.prepared == [] and len(summary.skipped) == len(KTH_FILES) and not summary.failed
    assert (store / "train.u8").read_bytes() == before
    # a crash after appending frames but before committing them: the tail is cut off
    with open(store / "train.u8", "ab") as f:
        f.write(b"\xff" * 5000)
    write_avi(src / "person03_boxing_d1_uncomp.avi", kth_frames(9, 22), "ffv1")
    assert run_subcommand("prepare", ["kth", "--src", str(src), "--out", str(store)]) == 0
    assert "1 files prepared, 5 already in the store" in capsys.readouterr().out
    assert (store / "train.u8").read_bytes()[: len(before)] == before
    assert (store / "train.u8").stat().st_size == len(before) + 22 * 64 * 64
    train, _ = make_datasets(kth_config(store))
    i = next(i for i in range(len(train)) if train.clip_info(i)["name"] == "person03_boxing_d1"
             and train.clip_info(i)["first_frame"] == 2)
    expected = area_resize(kth_frames(9, 22)[2:22], 64) / 255
    assert np.abs(train[i][:, 0].double().numpy() - expected).mean() < 0.75 / 255


def test_corrupt_avi_files_are_reported_by_name(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    good = kth_frames(0, 12)
    write_avi(src / "person05_boxing_d1_uncomp.avi", good, "mpeg4")
    data = (src / "person05_boxing_d1_uncomp.avi").read_bytes()
    (src / "person06_boxing_d1_uncomp.avi").write_bytes(data[: len(data) // 2])  # truncated
    (src / "person07_boxing_d1_uncomp.avi").write_bytes(random.Random(0).randbytes(3000))  # not a video (fixed bytes: random ones may parse as another format)
    out = tmp_path / "out"
    assert run_subcommand("prepare", ["kth", "--src", str(src), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "person06_boxing_d1_uncomp.avi" in err and "truncated" in err
    assert "person07_boxing_d1_uncomp.avi" in err and "FFmpeg cannot decode" in err
    manifest = json.loads((out / "store.json").read_text())
    assert list(manifest["sources"]) == ["person05_boxing_d1_uncomp.avi"]
    assert set(manifest["failed"]) == {"person06_boxing_d1_uncomp.avi", "person07_boxing_d1_uncomp.avi"}
    assert (out / "train.u8").stat().st_size == 12 * 64 * 64
    # replacing a bad file and re-running prepares just that one
    (src / "person07_boxing_d1_uncomp.avi").write_bytes(data)
    summary = prepare.prepare_kth(src, out, 64)
    assert summary.prepared == ["person07_boxing_d1_uncomp.avi"]
    assert summary.skipped == ["person05_boxing_d1_uncomp.avi"]
    assert list(summary.failed) == ["person06_boxing_d1_uncomp.avi"]


def test_missing_and_mismatched_inputs_give_clear_errors(kth, tmp_path, capsys):
    _, store, _ = kth
    assert run_subcommand("prepare", ["kth", "--src", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert run_subcommand("prepare", ["kth", "--src", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert "boxing.zip" in capsys.readouterr().err
    assert run_subcommand("prepare", ["bair", "--src", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert "softmotion30_44k" in capsys.readouterr().err
    # resuming into a store made with another size
    src = kth[0]
    assert run_subcommand("prepare", ["kth", "--src", str(src), "--out", str(store), "--size", "128"]) == 2
    assert "different settings" in capsys.readouterr().err
    # an --out that is a file
    (tmp_path / "a-file").write_text("x")
    assert run_subcommand("prepare", ["kth", "--src", str(src), "--out", str(tmp_path / "a-file")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot write") and err.count("\n") == 1

    for root in (None, tmp_path / "missing", tmp_path / "empty"):
        with pytest.raises(ValueError, match=r"svg-pyro prepare kth"):
            make_datasets(kth_config(root))
    with pytest.raises(ValueError, match="holds a kth store"):
        make_datasets(preset("bair-cpu", data_root=str(store)))
    with pytest.raises(ValueError, match="--size 128"):
        make_datasets(kth_config(store, image_size=128))
    with pytest.raises(ValueError, match="no training video .* 60 frames"):
        make_datasets(kth_config(store, n_past=30, n_future=30))
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "store.json").write_text((store / "store.json").read_text())
    with pytest.raises(ValueError, match="damaged"):
        make_datasets(kth_config(damaged))


# ---------------------------------------------------------------------------------------------
# BAIR test files: a small TFRecord / tf.train.Example writer, independent of the reader


def crc32c_reference(data: bytes) -> int:
    """Bitwise CRC32C (Castagnoli, reflected polynomial 0x82F63B78)."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def tfrecord_mask(crc: int) -> int:
    return ((crc >> 15 | crc << 17) + 0xA282EAD8) % 2**32


def pb_varint(n: int) -> bytes:
    n %= 2**64
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    return bytes(out + bytes([n]))


def pb_field(number: int, payload: bytes) -> bytes:  # length-delimited
    return pb_varint(number << 3 | 2) + pb_varint(len(payload)) + payload


def pb_feature(value) -> bytes:
    if isinstance(value, bytes):
        return pb_field(1, pb_field(1, value))  # bytes_list
    if isinstance(value[0], float):
        return pb_field(2, pb_field(1, struct.pack(f"<{len(value)}f", *value)))  # packed floats
    return pb_field(3, pb_field(1, b"".join(pb_varint(v) for v in value)))  # packed int64


def pb_example(features: dict) -> bytes:
    entries = b"".join(pb_field(1, pb_field(1, k.encode()) + pb_field(2, pb_feature(v)))
                       for k, v in features.items())
    return pb_field(1, entries)


def bair_example(frames: np.ndarray, rng) -> bytes:
    features = {}
    for i, frame in enumerate(frames):  # as in softmotion30_44k: more features than the frames
        features[f"{i}/action"] = rng.normal(size=4).tolist()
        features[f"{i}/endeffector_pos"] = rng.normal(size=3).tolist()
        features[f"{i}/image_main/encoded"] = bytes(255 - frame)
        features[f"{i}/image_aux1/encoded"] = frame.tobytes()
    return pb_example(features)


def write_tfrecords(path: Path, records: list[bytes], crc=None) -> None:
    crc = crc or (lambda b: __import__("google_crc32c").value(b))
    with open(path, "wb") as f:
        for data in records:
            length = struct.pack("<Q", len(data))
            f.write(length + struct.pack("<I", tfrecord_mask(crc(length))))
            f.write(data + struct.pack("<I", tfrecord_mask(crc(data))))


def bair_videos(seed: int, count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=(30, 64, 64, 3), dtype=np.uint8) for _ in range(count)]


@pytest.fixture(scope="module")
def bair(tmp_path_factory):
    base = tmp_path_factory.mktemp("bair_src")
    rng = np.random.default_rng(0)
    videos = {}
    for split, files in (("train", {"traj_0_to_255": 3, "traj_256_to_511": 2}),
                         ("test", {"traj_0_to_255": 4})):
        folder = base / "softmotion30_44k" / split
        folder.mkdir(parents=True)
        for seed, (stem, count) in enumerate(files.items()):
            clips = bair_videos(seed + 10 * (split == "test"), count)
            write_tfrecords(folder / f"{stem}.tfrecords", [bair_example(v, rng) for v in clips])
            videos.update({f"{split}/{stem}/{k:04d}": v for k, v in enumerate(clips)})
    out = tmp_path_factory.mktemp("bair_store") / "store"
    # once through the command line, as a user runs it
    done = subprocess.run([sys.executable, "-m", "svg_pyro", "prepare", "bair", "--src", str(base),
                           "--out", str(out)], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "3 files prepared" in done.stdout
    return base, out, videos


def test_crc32c_and_example_parser():
    assert crc32c_reference(b"123456789") == 0xE3069283  # the standard CRC32C check value
    data = os.urandom(1000)
    assert tfrecord.masked_crc32c(data) == tfrecord_mask(crc32c_reference(data))
    features = {"img": b"\x00\x01\xff", "f": [0.5, -2.0], "i": [3, -7, 2**40]}
    parsed = tfrecord.parse_example(pb_example(features))
    assert [bytes(v) for v in parsed["img"]] == [b"\x00\x01\xff"]
    assert parsed["f"] == [0.5, -2.0] and parsed["i"] == [3, -7, 2**40]
    # unpacked (one field per value) floats and int64s are read too
    unpacked = pb_field(2, b"".join(pb_varint(1 << 3 | 5) + struct.pack("<f", x) for x in (1.0, 4.0)))
    example = pb_field(1, pb_field(1, pb_field(1, b"u") + pb_field(2, unpacked)))
    assert tfrecord.parse_example(example) == {"u": [1.0, 4.0]}


def test_bair_frames_match_the_records(bair):
    _, store, videos = bair
    train, test = make_datasets(preset("bair-cpu", data_root=str(store)))
    # test set: every test video, frames 0..11, in file order
    assert [v["name"] for v in test.videos] == [f"test/traj_0_to_255/{k:04d}" for k in range(4)]
    assert len(test) == 4
    for i in range(4):
        expected = videos[f"test/traj_0_to_255/{i:04d}"][:12].transpose(0, 3, 1, 2)
        assert torch.equal(test[i], torch.from_numpy(expected).float() / 255)
    # training: every crop of 12 of the 30 frames of the 5 training videos, pixel-exact
    assert len(train) == 5 * (30 - 12 + 1)
    for i in (0, 18, 19, 60, len(train) - 1):
        info = train.clip_info(i)
        first = info["first_frame"]
        expected = videos[info["name"]][first:first + 12].transpose(0, 3, 1, 2)
        assert torch.equal(train[i], torch.from_numpy(expected).float() / 255)
    assert {train.clip_info(i)["first_frame"] for i in range(len(train))} == set(range(19))
    _, full = make_datasets(preset("bair-cpu", data_root=str(store)), (12, 30))
    assert full[3].shape == (30, 3, 64, 64)
    with pytest.raises(ValueError, match="the test videos have 30 frames but 31"):
        make_datasets(preset("bair-cpu", data_root=str(store)), (12, 31))


def test_bair_rerun_skips_and_corrupt_records_are_reported(bair, tmp_path, capsys):
    base, store, videos = bair
    summary = prepare.prepare_bair(base, store)
    assert summary.prepared == [] and len(summary.skipped) == 3

    src = tmp_path / "softmotion30_44k"
    (src / "train").mkdir(parents=True)
    (src / "test").mkdir()
    rng = np.random.default_rng(1)
    records = [bair_example(v, rng) for v in bair_videos(5, 2)]
    write_tfrecords(src / "test" / "good.tfrecords", records)
    write_tfrecords(src / "train" / "badcrc.tfrecords", records)
    raw = bytearray((src / "train" / "badcrc.tfrecords").read_bytes())
    raw[-100] ^= 0x01  # one flipped bit in the last record's data
    (src / "train" / "badcrc.tfrecords").write_bytes(bytes(raw))
    (src / "train" / "truncated.tfrecords").write_bytes(bytes(raw[: len(raw) - 1000]))
    write_tfrecords(src / "train" / "notbair.tfrecords", [pb_example({"x": b"1"})])
    import gzip

    deflated = bytearray(gzip.compress((src / "test" / "good.tfrecords").read_bytes()))
    deflated[12:40] = bytes(range(28))  # a valid gzip header, then a broken deflate stream
    (src / "train" / "baddeflate.tfrecords").write_bytes(bytes(deflated))
    out = tmp_path / "out"
    assert run_subcommand("prepare", ["bair", "--src", str(tmp_path), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "train/badcrc.tfrecords: data checksum mismatch in record 1" in err
    assert "train/truncated.tfrecords: file ends inside record 1" in err
    assert "train/notbair.tfrecords: record 0 has no '0/image_aux1/encoded'" in err
    assert "train/baddeflate.tfrecords: cannot read it (Error -3 while decompressing data" in err
    manifest = json.loads((out / "store.json").read_text())
    assert list(manifest["sources"]) == ["test/good.tfrecords"]
    assert manifest["splits"] == {"train": {"frames": 0}, "test": {"frames": 60}}
    with pytest.warns(UserWarning, match="4 source files failed preparation .* train/badcrc"), \
            pytest.raises(ValueError, match="no training video"):
        make_datasets(preset("bair-cpu", data_root=str(out)))


# ---------------------------------------------------------------------------------------------


def test_training_runs_on_prepared_kth(kth, tmp_path):
    from svg_pyro.training.train import train

    _, store, _ = kth
    config = kth_config(store, width=4, g_dim=8, z_dim=2, rnn_size=8, batch_size=2, n_past=2,
                        n_future=2, steps=2, checkpoint_every=2, sample_every=1000)
    metrics = train(config, tmp_path / "run", progress=False)
    assert [m["step"] for m in metrics][-1] == 2
    assert all(np.isfinite(m["loss"]) for m in metrics)
    assert (tmp_path / "run" / "checkpoint.pt").exists()


def test_evaluation_runs_on_prepared_kth(kth, tmp_path):
    from svg_pyro.evaluation.evaluate import evaluate
    from svg_pyro.training.train import train

    _, store, _ = kth
    config = kth_config(store, width=4, g_dim=8, z_dim=2, rnn_size=8, batch_size=2, n_past=2,
                        n_future=2, steps=1, checkpoint_every=1, sample_every=1000)
    train(config, tmp_path / "run", progress=False)
    metrics = evaluate(tmp_path / "run" / "checkpoint.pt", tmp_path / "eval", samples=2, videos=4, horizon=3,
                       device="cpu", progress=False)
    assert metrics["protocol"]["dataset"] == "kth" and metrics["time_steps"] == [2, 3, 4]
    for name in ("svg", "copy_last_frame"):
        for metric in ("ssim", "psnr"):
            best = metrics["results"][name][metric]["best"]
            assert len(best["per_step"]) == 3 and np.isfinite(best["mean"])
    assert (tmp_path / "eval" / "metrics.json").exists()
