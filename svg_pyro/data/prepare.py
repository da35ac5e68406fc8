"""Convert the published KTH and BAIR files into video stores (see ``svg_pyro.data.video_store``).

    svg-pyro prepare kth  --src DIR --out DIR [--size 64|128]
    svg-pyro prepare bair --src DIR --out DIR

KTH: every ``personNN_ACTION_dN_uncomp.avi`` under --src (any depth) is decoded with PyAV (whose
wheel ships FFmpeg), converted to grayscale and resized (squashed, area averaging) from 160x120 to
size x size. Persons 1-20 go to the training split, 21-25 to the test split.

BAIR: the TFRecord files ``softmotion30_44k/{train,test}/*.tfrecords`` are read without TensorFlow
(``svg_pyro.data.tfrecord``: the record framing, its CRC32C checksums and the ``tf.train.Example`` protobuf). Frames 0..29 of each record are the raw 64x64x3 uint8 bytes under ``'{i}/image_aux1/encoded'``.

The unit of work is one source file. Each is committed to the store when done, so a re-run skips
finished files and retries failed ones; a corrupt or truncated file is reported by name, listed at
the end, and left out, without stopping the others. The exit status is 0 when every file was
prepared, 1 when some failed, 2 on a usage error.
"""
from __future__ import annotations

import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from svg_pyro.data.tfrecord import CorruptRecord, parse_example, read_tfrecords
from svg_pyro.data.video_store import StoreWriter
from svg_pyro.errors import SvgPyroError


KTH_ACTIONS = ("boxing", "handclapping", "handwaving", "jogging", "running", "walking")
KTH_NAME = re.compile(r"person(\d\d)_([a-z]+)_d([1-4])_uncomp\.avi")
KTH_TEST_PERSONS = range(21, 26)  # persons 1-20 train, 21-25 test

BAIR_FRAME_KEY = "{}/image_aux1/encoded"
BAIR_FRAME_SHAPE = (64, 64, 3)


class PrepareError(SvgPyroError):
    """A usage problem that stops preparation (missing --src, incompatible --out)."""


class CorruptSource(Exception):
    """One source file cannot be read; it is reported and skipped."""


@dataclass
class Summary:
    prepared: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # already in the store
    failed: dict[str, str] = field(default_factory=dict)  # source -> reason
    ignored: list[str] = field(default_factory=list)  # files that are not dataset files


def _check_src(src) -> Path:
    src = Path(src)
    if not src.is_dir():
        raise PrepareError(f"--src {src} does not exist or is not a directory; pass the directory "
                           "holding the downloaded (unpacked) dataset files")
    return src


def _run(writer: StoreWriter, jobs, summary: Summary, desc: str, progress: bool = True) -> Summary:
    """jobs: (source key, split, path, reader); reader(path) -> [(metadata, uint8 frames)]."""
    todo = []
    for job in jobs:
        if writer.done(job[0]):
            summary.skipped.append(job[0])
        else:
            todo.append(job)
    for key, split, path, reader in tqdm(todo, desc=desc, unit="file", dynamic_ncols=True, disable=not progress):
        try:
            videos = reader(path)
        except CorruptSource as err:
            tqdm.write(f"FAILED {key}: {err}", file=sys.stderr)
            summary.failed[key] = str(err)
            writer.fail(key, str(err))
            continue
        writer.add(key, split, videos)
        summary.prepared.append(key)
    return summary


# ---------------------------------------------------------------------------------------------
# KTH


def decode_video(path: Path, convert) -> list[np.ndarray]:
    """Every frame of a video file PyAV decodes, each through ``convert`` (a PyAV frame -> array);
    an unreadable or truncated file is a ``CorruptSource`` naming why."""
    import av  # PyAV; imported here so BAIR preparation does not need it

    av.logging.set_level(None)  # errors are reported below, by file name
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise CorruptSource("no video stream")
            stream = container.streams.video[0]
            declared = stream.frames
            frames = [convert(frame) for frame in container.decode(stream)]
    except av.error.FFmpegError as err:
        raise CorruptSource(f"FFmpeg cannot decode it ({err})") from err
    if not frames:
        raise CorruptSource("no frame could be decoded (empty or not a video)")
    if declared and len(frames) < declared:
        raise CorruptSource(f"only {len(frames)} of the {declared} frames its header declares could be "
                            "decoded (truncated or damaged file); download it again")
    return frames


def decode_kth_video(path: Path, size: int) -> np.ndarray:
    """All frames of one KTH AVI as uint8 (T, 1, size, size), grayscale, area-resized."""
    frames = decode_video(path, lambda frame: frame.reformat(width=size, height=size, format="gray",
                                                              interpolation="AREA").to_ndarray())
    return np.stack(frames)[:, None]


def kth_jobs(src: Path, size: int, summary: Summary) -> list:
    jobs = []
    for path in sorted(src.rglob("*.avi"), key=lambda p: p.name):
        match = KTH_NAME.fullmatch(path.name)
        person = int(match.group(1)) if match else 0
        if not match or match.group(2) not in KTH_ACTIONS or not 1 <= person <= 25:
            summary.ignored.append(str(path))
            continue
        meta = {"name": path.name[: -len("_uncomp.avi")], "person": person,
                "action": match.group(2), "scenario": int(match.group(3))}
        split = "test" if person in KTH_TEST_PERSONS else "train"

        def reader(path, meta=meta):
            return [(meta, decode_kth_video(path, size))]

        jobs.append((path.name, split, path, reader))
    return jobs


def prepare_kth(src, out, size: int = 64, progress: bool = True) -> Summary:
    src = _check_src(src)
    if size not in (64, 128):
        raise PrepareError(f"--size must be 64 or 128, not {size}")
    summary = Summary()
    jobs = kth_jobs(src, size, summary)
    if not jobs:
        raise PrepareError(f"no KTH video (personNN_ACTION_dN_uncomp.avi) under --src {src}; unzip the "
                           f"six action archives ({', '.join(a + '.zip' for a in KTH_ACTIONS)}) there")
    if duplicates := sorted(k for k, n in Counter(j[0] for j in jobs).items() if n > 1):
        raise PrepareError(f"--src {src} holds several copies of {duplicates[:3]}; keep one of each")
    writer = StoreWriter(out, "kth", (1, size, size), {"size": size})
    _run(writer, jobs, summary, f"KTH {size}x{size}", progress)
    writer.finish()
    return summary


# ---------------------------------------------------------------------------------------------
# BAIR


def bair_frames(features: dict, where: str) -> np.ndarray:
    """Frames 0, 1, ... of one BAIR example as uint8 (T, 3, 64, 64)."""
    frames = []
    while (key := BAIR_FRAME_KEY.format(len(frames))) in features:
        values = features[key]
        if len(values) != 1 or len(values[0]) != np.prod(BAIR_FRAME_SHAPE):
            raise CorruptSource(f"{where}: {key!r} holds {[len(v) for v in values]} bytes, expected "
                                f"one raw 64x64x3 image ({np.prod(BAIR_FRAME_SHAPE)} bytes)")
        frames.append(np.frombuffer(values[0], np.uint8).reshape(BAIR_FRAME_SHAPE))
    if not frames:
        raise CorruptSource(f"{where} has no {BAIR_FRAME_KEY.format(0)!r} feature (keys: "
                            f"{sorted(features)[:4]}...); is this softmotion30_44k?")
    return np.stack(frames).transpose(0, 3, 1, 2)


def read_bair_file(path: Path, stem: str) -> list:
    videos = []
    try:
        for number, record in enumerate(read_tfrecords(path)):
            frames = bair_frames(parse_example(record), f"record {number}")
            videos.append(({"name": f"{stem}/{number:04d}"}, frames))
    except CorruptRecord as err:
        raise CorruptSource(str(err)) from err
    if not videos:
        raise CorruptSource("holds no record")
    return videos


def bair_root(src: Path) -> Path:
    for root in (src / "softmotion30_44k", src):
        if any((root / split).is_dir() for split in ("train", "test")):
            return root
    raise PrepareError(f"--src {src} holds neither softmotion30_44k/ nor train/ and test/ folders; unpack "
                       "bair_robot_pushing_dataset_v0.tar and pass the folder it created")


def prepare_bair(src, out, progress: bool = True) -> Summary:
    root = bair_root(_check_src(src))
    summary, jobs = Summary(), []
    for split in ("train", "test"):
        for path in sorted((root / split).glob("*.tfrecords")):
            key = f"{split}/{path.name}"
            jobs.append((key, split, path, lambda p, key=key: read_bair_file(p, key[:-len(".tfrecords")])))
    if not jobs:
        raise PrepareError(f"no *.tfrecords file under {root}/train or {root}/test")
    writer = StoreWriter(out, "bair", (3, 64, 64), {})
    _run(writer, jobs, summary, "BAIR", progress)
    writer.finish()
    return summary


# ---------------------------------------------------------------------------------------------

