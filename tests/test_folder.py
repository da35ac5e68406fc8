"""Your own videos: `svg-pyro prepare folder` on real files made here (PyAV-encoded MPEG-4 and H.264
mp4, an MJPEG avi, a folder of PNG frames, .npy arrays), checked frame by frame against the sources,
then trained on, resumed, evaluated and sampled."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from svg_pyro.cli import run_subcommand
from svg_pyro.config import preset
from svg_pyro.data.video_store import MANIFEST, StoreWriter, read_manifest, split_path
from svg_pyro.errors import InvalidInput
from svg_pyro.training.train import train


T = 24  # frames per source video


def moving_square(height: int, width: int, frames: int = T, shift: int = 0) -> np.ndarray:
    """(T, H, W) uint8: a bright square crossing a dark background."""
    video = np.full((frames, height, width), 30, np.uint8)
    for t in range(frames):
        x = (shift + 2 * t) % (width - 12)
        video[t, height // 2 - 6:height // 2 + 6, x:x + 12] = 220
    return video


def write_video(path, frames: np.ndarray, codec: str) -> None:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=10)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        for frame in frames:
            rgb = np.repeat(frame[..., None], 3, axis=2)
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def store_frames(store, split: str) -> np.ndarray:
    manifest = json.loads((store / MANIFEST).read_text())
    return np.fromfile(split_path(store, split), np.uint8).reshape(-1, *manifest["frame_shape"]), manifest


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    src = tmp_path_factory.mktemp("videos")
    write_video(src / "street.mp4", moving_square(72, 96), "mpeg4")  # 4:3, centre-cropped to 72x72
    write_video(src / "phone.mp4", moving_square(64, 64, shift=2), "libx264")  # H.264
    (src / "lab").mkdir()
    write_video(src / "lab" / "camera.avi", moving_square(64, 64, shift=5), "mjpeg")
    (src / "frames").mkdir()
    for t, frame in enumerate(moving_square(64, 64, shift=9)):
        Image.fromarray(frame).save(src / "frames" / f"f{t}.png")  # f2 before f10: natural order
    np.save(src / "arrays.npy", np.stack([moving_square(64, 80, shift=s) for s in (1, 3)]).astype(np.float32) / 255)
    return src


def test_prepare_keeps_the_source_frames_and_splits_by_file(sources, tmp_path, capsys):
    store = tmp_path / "store"
    before = sorted((p.relative_to(sources), p.stat().st_size, p.stat().st_mtime) for p in sources.rglob("*"))
    assert run_subcommand("prepare", ["folder", "--src", str(sources), "--out", str(store), "--frames-per-clip", "8",
                                      "--test-fraction", "0.5", "--no-progress"]) == 0
    assert "5 files prepared" in capsys.readouterr().out
    assert sorted((p.relative_to(sources), p.stat().st_size, p.stat().st_mtime) for p in sources.rglob("*")) == before
    manifest = json.loads((store / MANIFEST).read_text())
    assert manifest["complete"] and manifest["frame_shape"] == [1, 64, 64]
    splits = {key: s["split"] for key, s in manifest["sources"].items()}
    assert sorted(splits) == ["arrays.npy", "frames", "lab/camera.avi", "phone.mp4", "street.mp4"]
    assert sorted(splits.values()) == ["test", "test", "train", "train", "train"]  # by file: no clip in both
    frames = {split: store_frames(store, split)[0] for split in ("train", "test")}

    def clips(key):
        entries = manifest["sources"][key]["videos"]
        return [frames[splits[key]][e["start"]:e["start"] + e["length"], 0] for e in entries], entries

    # lossless sources, exactly: PNG frames at the store's size, and float arrays whose 80 columns are
    # cropped to the central 64
    got, entries = clips("frames")
    assert [e["frames"] for e in entries] == [[0, 7], [8, 15], [16, 23]]  # 24 frames: 3 clips of 8
    np.testing.assert_array_equal(np.concatenate(got), moving_square(64, 64, shift=9))
    got, entries = clips("arrays.npy")
    assert [(e["video"], e["frames"][0]) for e in entries] == [(0, 0), (0, 8), (0, 16), (1, 0), (1, 8), (1, 16)]
    expected = np.concatenate([moving_square(64, 80, shift=s)[:, :, 8:72] for s in (1, 3)])
    np.testing.assert_array_equal(np.concatenate(got), expected)
    # lossy codecs, within their loss; the 4:3 video loses 12 columns each side and is area-resized
    got, _ = clips("lab/camera.avi")
    assert np.abs(np.concatenate(got).astype(int) - moving_square(64, 64, shift=5)).mean() < 4
    got, _ = clips("phone.mp4")
    assert np.abs(np.concatenate(got).astype(int) - moving_square(64, 64, shift=2)).mean() < 4
    got, _ = clips("street.mp4")
    square = moving_square(72, 96)[:, :, 12:84]
    resized = np.stack([np.asarray(Image.fromarray(f).resize((64, 64), Image.Resampling.BOX)) for f in square])
    assert np.abs(np.concatenate(got).astype(int) - resized).mean() < 6
    # a store already there is refused unless asked
    assert run_subcommand("prepare", ["folder", "--src", str(sources), "--out", str(store), "--frames-per-clip", "6",
                                      "--no-progress"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert run_subcommand("prepare", ["folder", "--src", str(sources), "--out", str(store), "--frames-per-clip", "6",
                                      "--overwrite", "--no-progress"]) == 0
    assert json.loads((store / MANIFEST).read_text())["settings"]["frames_per_clip"] == 6


def test_broken_sources_are_named_and_the_rest_prepared(sources, tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    write_video(src / "good.mp4", moving_square(64, 64), "mpeg4")
    data = (src / "good.mp4").read_bytes()
    (src / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (src / "empty.mp4").write_bytes(b"")
    (src / "notes.mp4").write_text("this is not a video")
    (src / "odd").mkdir()
    for t, frame in enumerate(moving_square(64, 64, frames=10)):
        Image.fromarray(frame if t != 4 else frame[:32]).save(src / "odd" / f"{t:03d}.png")
    store = tmp_path / "store"
    assert run_subcommand("prepare", ["folder", "--src", str(src), "--out", str(store), "--frames-per-clip", "8",
                                      "--no-progress"]) == 1
    err = capsys.readouterr().err
    for name in ("truncated.mp4", "empty.mp4", "notes.mp4", "odd: 004.png is 64x32"):
        assert name in err, (name, err)
    manifest = json.loads((store / MANIFEST).read_text())
    assert list(manifest["sources"]) == ["good.mp4"] and set(manifest["failed"]) == {
        "truncated.mp4", "empty.mp4", "notes.mp4", "odd"}
    empty = tmp_path / "nothing"
    empty.mkdir()
    (empty / "readme.txt").write_text("no videos here")
    assert run_subcommand("prepare", ["folder", "--src", str(empty), "--out", str(tmp_path / "s2"), "--no-progress"]) == 2
    assert "holds no video file" in capsys.readouterr().err
    assert run_subcommand("prepare", ["folder", "--src", str(sources), "--out", str(sources / "store"),
                                      "--no-progress"]) == 2
    assert "lies inside --src" in capsys.readouterr().err


def test_a_store_whose_preparation_stopped_is_refused_until_finished(tmp_path):
    writer = StoreWriter(tmp_path, "folder", (1, 64, 64), {})
    writer.add("a.npy", "train", [({"name": "a#0"}, np.zeros((8, 1, 64, 64), np.uint8))])
    with pytest.raises(InvalidInput, match="unfinished.*run the same `svg-pyro prepare` command again"):
        read_manifest(tmp_path, "folder")
    writer.finish()
    assert read_manifest(tmp_path, "folder")["complete"]


def test_train_resume_evaluate_and_sample_on_a_prepared_folder(sources, tmp_path, capsys):
    import svg_pyro

    store = tmp_path / "store"
    assert run_subcommand("prepare", ["folder", "--src", str(sources), "--out", str(store), "--frames-per-clip", "8",
                                      "--channels", "3", "--test-fraction", "0.5", "--no-progress"]) == 0
    run = tmp_path / "run"
    # frame size and channels come from the store: the tiny preset says nothing of them
    argv = ["--preset", "tiny", "--dataset", "folder", "--data-root", str(store), "--steps", "2", "--sample-every", "2",
            "--out", str(run), "--no-progress"]
    assert run_subcommand("train", argv) == 0
    assert json.loads((run / "config.json").read_text())["channels"] == 3
    assert run_subcommand("train", ["--out", str(run), "--resume", "--steps", "3", "--no-progress"]) == 0
    assert run_subcommand("train", [*argv[:-3], "--channels", "1", "--out", str(tmp_path / "gray"), "--no-progress"]) == 2
    assert "has 3 channel(s) but config.channels is 1; train with --channels 3" in capsys.readouterr().err
    assert run_subcommand("evaluate", ["--checkpoint", str(run / "checkpoint.pt"), "--out", str(tmp_path / "eval"),
                                       "--samples", "2", "--videos", "2", "--horizon", "3", "--no-progress"]) == 0
    results = json.loads((tmp_path / "eval" / "metrics.json").read_text())["results"]
    assert set(results) == {"svg", "copy_last_frame"}
    model = svg_pyro.load(run / "checkpoint.pt")
    videos = model.test_videos(2)
    assert videos.shape == (2, 5, 3, 64, 64)
    assert model.sample(videos, samples=2).shape == (2, 2, 5, 3, 64, 64)
    assert torch.isfinite(torch.as_tensor(model.surprise(videos, particles=2))).all()
