"""Your own videos: ``svg-pyro prepare folder`` turns any folder of clips into a video store.

    svg-pyro prepare folder --src DIR --out STORE [--size 64|128] [--channels 1|3]
        [--frames-per-clip T] [--stride S] [--test-fraction F] [--seed S] [--overwrite] [--no-progress]

Sources, found recursively under DIR (in sorted order):
- video files PyAV decodes: .mp4, .avi, .mov, .webm, .mkv, .m4v, .mpg, .mpeg, .gif (one source each);
- folders of numbered frames (.png, .jpg, .jpeg, .bmp), in natural order (frame2 before frame10);
- arrays of videos: .npy, or every array of an .npz, shaped (N, T, H, W) or (N, T, H, W, C), uint8 or
  float in [0, 1] (one source per file, its N videos together).

Every frame is centre-cropped to a square (the aspect ratio is kept) and resized to size x size
(area averaging), converted to grayscale or RGB, and each video is cut into clips of T frames every
S frames (S = T: back to back; a shorter tail is dropped). Sources, not clips, are split between
train and test (a seeded shuffle; about F of them, at least one of each when there are two or more),
so no clip of a file is in both. The store is the one KTH and BAIR use (``svg_pyro.data.video_store``),
its manifest naming each clip's source, clip number and frame range. A source that cannot be read
is named with the reason and left out; the others are prepared. The store counts as prepared only
when the whole run ends: training refuses one that a stopped run left half-made, and the same
command finishes it.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np

from svg_pyro.data.prepare import CorruptSource, PrepareError, Summary, _check_src, _run, decode_video
from svg_pyro.data.video_store import MANIFEST, StoreWriter
from svg_pyro.errors import InvalidInput


VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".webm", ".mkv", ".m4v", ".mpg", ".mpeg", ".gif")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
ARRAY_SUFFIXES = (".npy", ".npz")


def _natural(name: str):
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def find_sources(src: Path) -> list[tuple[str, Path]]:
    """(kind, path) of every source under ``src``: "video", "frames" (a folder) or "array"."""
    sources = []
    for path in sorted(src.rglob("*")):
        if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
            sources.append(("video", path))
        elif path.is_file() and path.suffix.lower() in ARRAY_SUFFIXES:
            sources.append(("array", path))
        elif path.is_dir() and any(p.suffix.lower() in IMAGE_SUFFIXES for p in path.iterdir() if p.is_file()):
            sources.append(("frames", path))
    return sources


def square_frame(image: np.ndarray, size: int, channels: int) -> np.ndarray:
    """One frame (H, W) or (H, W, C), uint8, centre-cropped to a square, area-resized to size x size
    and converted to ``channels``: uint8 (channels, size, size)."""
    from PIL import Image

    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    picture = Image.fromarray(np.ascontiguousarray(image[top:top + side, left:left + side]))
    picture = picture.convert("L" if channels == 1 else "RGB").resize((size, size), Image.Resampling.BOX)
    array = np.asarray(picture)
    return array[None] if channels == 1 else array.transpose(2, 0, 1)


def _to_uint8(array: np.ndarray, where: str) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
            raise CorruptSource(f"{where}: float values must lie in [0, 1]")
        return (array * 255 + 0.5).astype(np.uint8)
    raise CorruptSource(f"{where}: {array.dtype} values; give uint8 (0-255) or floats in [0, 1]")


def read_frame_folder(path: Path) -> list[np.ndarray]:
    """The images of a folder of numbered frames, in natural order; all must have one size."""
    from PIL import Image, UnidentifiedImageError

    files = sorted((p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
                   key=lambda p: _natural(p.name))
    frames = []
    for file in files:
        try:
            with Image.open(file) as image:
                frames.append(np.asarray(image.convert("RGB")))
        except (OSError, UnidentifiedImageError) as err:
            raise CorruptSource(f"{file.name} is not a readable image ({err})") from err
        if frames[-1].shape != frames[0].shape:
            raise CorruptSource(f"{file.name} is {frames[-1].shape[1]}x{frames[-1].shape[0]} but {files[0].name} is "
                                f"{frames[0].shape[1]}x{frames[0].shape[0]}; a video's frames share one size")
    return frames


def read_arrays(path: Path) -> list[list[np.ndarray]]:
    """The videos of an .npy or .npz file: per video, its frames (H, W) or (H, W, C), uint8."""
    try:
        loaded = np.load(path, allow_pickle=False)
        arrays = [loaded[key] for key in loaded.files] if path.suffix.lower() == ".npz" else [loaded]
    except Exception as err:  # not numpy, truncated, an object array
        raise CorruptSource(f"not a readable numpy file ({type(err).__name__}: {err})") from err
    videos = []
    for array in arrays:
        if array.ndim not in (4, 5) or (array.ndim == 5 and array.shape[-1] not in (1, 3, 4)):
            raise CorruptSource(f"an array of shape {array.shape}; videos are (N, T, H, W) or (N, T, H, W, C)")
        array = _to_uint8(array, path.name)
        videos += [list(video) for video in array]
    return videos


def read_source(kind: str, path: Path) -> list[list[np.ndarray]]:
    """The videos of one source (a list of frames each): one for a video file or a frame folder,
    N for an array file."""
    if kind == "video":
        return [decode_video(path, lambda frame: frame.to_ndarray(format="rgb24"))]
    if kind == "frames":
        return [read_frame_folder(path)]
    return read_arrays(path)


def cut_clips(frames: np.ndarray, length: int, stride: int) -> list[tuple[int, np.ndarray]]:
    """(first frame, clip) of every clip of ``length`` frames starting every ``stride`` frames."""
    return [(start, frames[start:start + length]) for start in range(0, len(frames) - length + 1, stride)]


def split_sources(keys: list[str], test_fraction: float, seed: int) -> dict[str, str]:
    """Source -> "train" or "test": a seeded shuffle puts about ``test_fraction`` of the sources (at
    least one of each split when there are two or more) in test."""
    order = np.random.default_rng(seed).permutation(len(keys))
    tests = round(test_fraction * len(keys))
    if len(keys) >= 2:
        tests = min(max(tests, 1 if test_fraction > 0 else 0), len(keys) - 1)
    chosen = {keys[i] for i in order[:tests]}
    return {key: "test" if key in chosen else "train" for key in keys}


def prepare_folder(src, out, size: int = 64, channels: int = 1, frames_per_clip: int = 20,
                   stride: int | None = None, test_fraction: float = 0.1, seed: int = 0,
                   overwrite: bool = False, progress: bool = True) -> Summary:
    """Prepare every source under ``src`` into the store ``out`` (module doc)."""
    src = _check_src(src)
    stride = frames_per_clip if stride is None else stride
    if size not in (64, 128) or channels not in (1, 3):
        raise PrepareError(f"--size must be 64 or 128 and --channels 1 or 3, not {size} and {channels}")
    if frames_per_clip < 2 or stride < 1 or not 0 <= test_fraction < 1:
        raise PrepareError("--frames-per-clip must be at least 2, --stride at least 1 and --test-fraction in [0, 1)")
    out = Path(out)
    if out.resolve().is_relative_to(src.resolve()):
        raise PrepareError(f"--out {out} lies inside --src {src}; the source folder is only read: write elsewhere")
    if (out / MANIFEST).exists() and overwrite:

        shutil.rmtree(out)
    sources = find_sources(src)
    if not sources:
        raise PrepareError(f"--src {src} holds no video file ({', '.join(VIDEO_SUFFIXES)}), frame folder or "
                           ".npy/.npz array")
    keys = [str(path.relative_to(src)) for _, path in sources]
    splits = split_sources(keys, test_fraction, seed)
    settings = {"size": size, "channels": channels, "frames_per_clip": frames_per_clip, "stride": stride,
                "test_fraction": test_fraction, "seed": seed}
    try:
        writer = StoreWriter(out, "folder", (channels, size, size), settings)
    except InvalidInput as err:
        if (out / MANIFEST).exists():
            raise PrepareError(f"{err}; or pass --overwrite to replace it") from err
        raise

    def reader(kind: str, path: Path, key: str):
        def read(_):
            videos = read_source(kind, path)
            clips = []
            for v, frames in enumerate(videos):
                frames = np.stack([square_frame(f, size, channels) for f in frames])
                for start, clip in cut_clips(frames, frames_per_clip, stride):
                    name = f"{key}#{v}:{start}" if kind == "array" else f"{key}#{start}"
                    clips.append(({"name": name, "source": key, "video": v, "clip": len(clips),
                                   "frames": [start, start + frames_per_clip - 1]}, clip))
            if not clips:
                longest = max(len(f) for f in videos)
                raise CorruptSource(f"{longest} frames, fewer than --frames-per-clip {frames_per_clip}: no clip")
            return clips
        return read

    jobs = [(key, splits[key], path, reader(kind, path, key)) for (kind, path), key in zip(sources, keys)]
    summary = _run(writer, jobs, Summary(), "your videos", progress=progress)
    if not writer.manifest["sources"]:
        raise PrepareError(f"no usable clip under --src {src}: every source failed ("
                           + "; ".join(f"{k}: {r}" for k, r in list(summary.failed.items())[:3]) + ")")
    writer.finish()
    return summary
