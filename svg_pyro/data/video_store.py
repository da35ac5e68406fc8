"""Prepared videos (KTH, BAIR, a folder of your own): the on-disk store, its writer, and the datasets read from it.

A store is one directory written by ``svg-pyro prepare``::

    store.json   the manifest: format version, dataset, frame shape (C, H, W), the number of
                 frames committed to each split file, and per prepared source file the videos it
                 gave ({name, start, length, person, action}, start = first frame in the split file)
    train.u8     every training frame, uint8, shape (frames, C, H, W), C order, no header
    test.u8      the same for the test split

Why this format: a training step reads a batch of random clips of T consecutive frames. With all
frames of a split in one contiguous uint8 array, memory-mapped with ``np.memmap``, a clip is a
single contiguous slice: no decoding, no per-clip file open, no per-frame image files, the
operating system's page cache keeps the hot part in memory, and DataLoader workers share the
mapping. uint8 is 4x smaller than float32, and the (C, H, W) layout is the model's, so a clip
becomes a tensor by one cast. The files are raw rather than ``.npy`` so that preparation can
append one source file at a time and commit it in the manifest: an interrupted run resumes where
it stopped (anything past the committed length is cut off) without a second copy of the data.

Datasets: ``dataset[i]`` is a float32 tensor (T, C, H, W) in [0, 1] and a pure function of ``i``.
The training set enumerates every crop of T consecutive frames of every training video (index ->
absolute first frame), so drawing indices uniformly is drawing crops uniformly. The test sets are
fixed: KTH, 1,000 clips of 40 frames drawn with a fixed seed from the test persons (21-25); BAIR
and a prepared folder, every test video (clip) from frame 0.
"""
from __future__ import annotations

import json
import operator
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from svg_pyro.atomic import atomic_path
from svg_pyro.errors import InvalidInput

MANIFEST = "store.json"
FORMAT = "svg-pyro-video-store"
VERSION = 1
SPLITS = ("train", "test")

KTH_TEST_CLIPS = 1000
KTH_TEST_CLIP_FRAMES = 40
KTH_TEST_SEED = 0

PREPARE_HINT = {
    "kth": "svg-pyro prepare kth --src KTH_AVI_DIR --out STORE_DIR",
    "bair": "svg-pyro prepare bair --src BAIR_DIR --out STORE_DIR",
    "folder": "svg-pyro prepare folder --src YOUR_VIDEOS --out STORE_DIR",
}


class StoreError(InvalidInput):
    """A store is missing, incomplete, or does not fit the request."""


def split_path(root: Path, split: str) -> Path:
    return Path(root) / f"{split}.u8"


# ---------------------------------------------------------------------------------------------
# reading


def read_manifest(root, dataset: str) -> dict:
    """The manifest of the ``dataset`` store at ``root``, checked against its split files."""
    hint = PREPARE_HINT.get(dataset, "svg-pyro prepare kth|bair --src DIR --out DIR")
    if root is None:
        raise StoreError(f"no data_root is set for the {dataset} dataset; prepare the videos once with "
                         f"`{hint}` and pass that STORE_DIR as --data-root (Config.data_root)")
    root = Path(root)
    if not (root / MANIFEST).is_file():
        what = "does not exist" if not root.exists() else f"is not a prepared store (no {MANIFEST})"
        raise StoreError(f"data_root {root} {what}; prepare the {dataset} videos with `{hint}` and "
                         "pass that STORE_DIR as the data root")
    try:
        manifest = json.loads((root / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise StoreError(f"cannot read {root / MANIFEST} ({err}); delete the store directory and "
                         f"prepare it again with `{hint}`") from err
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise StoreError(f"{root / MANIFEST} is not a version-{VERSION} {FORMAT} manifest; prepare "
                         f"the store again with `{hint}`")
    if manifest["dataset"] != dataset:
        raise StoreError(f"{root} holds a {manifest['dataset']} store but the dataset is {dataset!r}; "
                         "point data_root at the matching store or change the dataset/preset")
    if manifest.get("complete") is False:  # stores made before the flag existed are whole
        raise StoreError(f"the store {root} is unfinished: its preparation stopped before the end; run the "
                         f"same `svg-pyro prepare` command again to finish it ({hint})")
    frame_bytes = int(np.prod(manifest["frame_shape"]))
    for split in SPLITS:
        frames = manifest["splits"][split]["frames"]
        path = split_path(root, split)
        size = path.stat().st_size if path.exists() else 0
        if size < frames * frame_bytes:
            raise StoreError(f"{path} holds {size} bytes but the manifest commits {frames} frames of "
                             f"{frame_bytes} bytes: the store is damaged; prepare it again with `{hint}`")
    if manifest.get("failed"):
        failed = sorted(manifest["failed"])
        listed = ", ".join(failed[:5]) + (", ..." if len(failed) > 5 else "")
        warnings.warn(f"{len(failed)} source files failed preparation and are missing from the store "
                      f"{root}: {listed}; replace them and re-run `{hint}`", stacklevel=2)
    return manifest


def store_videos(manifest: dict, split: str) -> list[dict]:
    """The videos of ``split``, sorted by name so a dataset never depends on preparation order."""
    videos = [v for source in manifest["sources"].values() if source["split"] == split
              for v in source["videos"]]
    return sorted(videos, key=lambda v: v["name"])


class VideoClips(torch.utils.data.Dataset):
    """Clips of ``length`` frames of a split file; clip ``i`` starts at absolute frame ``starts[i]``."""

    def __init__(self, root, split: str, frame_shape, total_frames: int, starts, length: int,
                 videos: list[dict], clip_video):
        self.path = split_path(root, split)
        self.split = split
        self.frame_shape = tuple(frame_shape)
        self.total_frames = int(total_frames)
        self.starts = np.asarray(starts, dtype=np.int64)
        self.length = int(length)
        self.videos = videos
        self.clip_video = np.asarray(clip_video, dtype=np.int64)  # clip -> position in videos
        self._frames = None  # opened on first use, so datasets pickle cheaply into workers

    def __len__(self) -> int:
        return len(self.starts)

    def __getstate__(self):
        return {**self.__dict__, "_frames": None}

    def _index(self, index) -> int:
        i = operator.index(index)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"clip {index} is out of range for {len(self)} clips")
        return i

    def clip_info(self, index) -> dict:
        """The video clip ``index`` comes from, and its first frame within that video."""
        i = self._index(index)
        video = self.videos[self.clip_video[i]]
        return {**video, "first_frame": int(self.starts[i] - video["start"])}

    def __getitem__(self, index) -> torch.Tensor:
        i = self._index(index)
        if self._frames is None:
            self._frames = np.memmap(self.path, dtype=np.uint8, mode="r",
                                     shape=(self.total_frames, *self.frame_shape))
        start = int(self.starts[i])
        clip = np.array(self._frames[start:start + self.length])
        return torch.from_numpy(clip).float().div_(255.0)


def training_clips(root, manifest: dict, length: int) -> VideoClips:
    """Every crop of ``length`` consecutive frames of every training video."""
    videos = [v for v in store_videos(manifest, "train") if v["length"] >= length]
    if not videos:
        raise StoreError(f"no training video of the store {root} has {length} frames "
                         "(n_past + n_future); lower n_past/n_future or check the preparation log")
    counts = [v["length"] - length + 1 for v in videos]
    clip_video = np.repeat(np.arange(len(videos)), counts)
    offsets = np.concatenate([np.arange(c) for c in counts])
    starts = np.array([v["start"] for v in videos])[clip_video] + offsets
    return VideoClips(root, "train", manifest["frame_shape"], manifest["splits"]["train"]["frames"],
                      starts, length, videos, clip_video)


def kth_test_clips(root, manifest: dict, length: int) -> VideoClips:
    """The fixed KTH test set: 1,000 clips of 40 frames (seed 0) from persons 21-25.

    Each clip picks a test video uniformly, then a first frame uniformly among those leaving 40
    frames. With ``length`` < 40 each clip keeps its first ``length`` frames (same clips); with
    ``length`` > 40 the clips are drawn the same way at that length (a different set).
    """
    clip_frames = max(KTH_TEST_CLIP_FRAMES, length)
    videos = [v for v in store_videos(manifest, "test") if v["length"] >= clip_frames]
    if not videos:
        raise StoreError(f"the store {root} has no test video (persons 21-25) of {clip_frames} frames; "
                         "check that the persons 21-25 AVI files were in --src when it was prepared")
    rng = np.random.default_rng(KTH_TEST_SEED)
    clip_video = rng.integers(0, len(videos), size=KTH_TEST_CLIPS)
    lengths = np.array([v["length"] for v in videos])
    offsets = rng.integers(0, lengths[clip_video] - clip_frames + 1)
    starts = np.array([v["start"] for v in videos])[clip_video] + offsets
    return VideoClips(root, "test", manifest["frame_shape"], manifest["splits"]["test"]["frames"],
                      starts, length, videos, clip_video)


def first_frames_test_clips(root, manifest: dict, length: int) -> VideoClips:
    """Every test video (BAIR: 256 in the published data; a prepared folder: every test clip), frames
    0..length-1."""
    videos = store_videos(manifest, "test")
    if not videos:
        where = ("a --src that holds softmotion30_44k/test/*.tfrecords" if manifest["dataset"] == "bair"
                 else "more than one source file (test clips come from their own files), or a --test-fraction above 0")
        raise StoreError(f"the store {root} has no test video; prepare it from {where}")
    short = [v["name"] for v in videos if v["length"] < length]
    if short:
        raise StoreError(f"the test videos have {min(v['length'] for v in videos)} frames but "
                         f"{length} were asked for (videos {short[:3]}...); lower n_past/n_future "
                         "or the evaluation horizon")
    return VideoClips(root, "test", manifest["frame_shape"], manifest["splits"]["test"]["frames"],
                      [v["start"] for v in videos], length, videos, np.arange(len(videos)))


def store_datasets(config, train_len: int, test_len: int):
    """(train, test) datasets of the prepared store at ``config.data_root``."""
    manifest = read_manifest(config.data_root, config.dataset)
    channels, height, width = manifest["frame_shape"]
    if channels != config.channels:
        fix = f"train with --channels {channels}" if config.dataset == "folder" else f"use the {config.dataset} presets"
        raise StoreError(f"the {config.dataset} store {config.data_root} has {channels} channel(s) but "
                         f"config.channels is {config.channels}; {fix}")
    if (height, width) != (config.image_size, config.image_size):
        fix = {"kth": f"prepare a store with --size {config.image_size}", "bair": "BAIR frames are 64x64: set image_size=64",
               "folder": f"train with --image-size {height}"}[config.dataset]
        raise StoreError(f"the store {config.data_root} holds {height}x{width} frames but "
                         f"config.image_size is {config.image_size}; {fix}")
    root = Path(config.data_root)
    train = training_clips(root, manifest, train_len)
    test = (kth_test_clips if config.dataset == "kth" else first_frames_test_clips)(root, manifest, test_len)
    return train, test


# ---------------------------------------------------------------------------------------------
# writing


class StoreWriter:
    """Appends prepared source files to a store, committing each in the manifest.

    Opening an existing store checks it was made with the same settings and cuts each split
    file back to its committed length (the tail of an interrupted append).
    """

    def __init__(self, root, dataset: str, frame_shape, settings: dict):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / MANIFEST
        if path.exists():
            try:
                self.manifest = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError) as err:
                raise StoreError(f"cannot read {path} ({err}); delete {self.root} and prepare again") from err
            old = (self.manifest.get("format"), self.manifest.get("version"),
                   self.manifest.get("dataset"), self.manifest.get("settings"))
            if old != (FORMAT, VERSION, dataset, settings):
                raise StoreError(f"--out {self.root} already holds a store made with different settings "
                                 f"({old[2]}, {old[3]}) than now ({dataset}, {settings}); choose another "
                                 "--out or delete that directory")
        else:
            if any(self.root.iterdir()):
                raise StoreError(f"--out {self.root} is a non-empty directory without a {MANIFEST}; "
                                 "choose an empty or new directory")
            self.manifest = {"format": FORMAT, "version": VERSION, "dataset": dataset,
                             "settings": settings, "frame_shape": list(frame_shape),
                             "splits": {s: {"frames": 0} for s in SPLITS}, "sources": {}, "failed": {}}
        self.frame_shape = tuple(self.manifest["frame_shape"])
        self.frame_bytes = int(np.prod(self.frame_shape))
        for split in SPLITS:
            with open(split_path(self.root, split), "ab") as f:
                f.truncate(self.manifest["splits"][split]["frames"] * self.frame_bytes)
        self.manifest["failed"] = {}  # failures are those of the latest run
        self.manifest["complete"] = False  # until this run has tried every source (``finish``)
        self._commit()

    def done(self, source: str) -> bool:
        return source in self.manifest["sources"]

    def add(self, source: str, split: str, videos: list[tuple[dict, np.ndarray]]) -> None:
        """Append the videos ((metadata, uint8 frames (T, C, H, W)), ...) of one source file."""
        entries = []
        start = self.manifest["splits"][split]["frames"]
        with open(split_path(self.root, split), "ab") as f:
            for meta, frames in videos:
                if frames.dtype != np.uint8 or frames.shape[1:] != self.frame_shape:
                    raise InvalidInput(f"frames of {meta['name']} are {frames.dtype} {frames.shape[1:]}, "
                                       f"expected uint8 {self.frame_shape}")
                f.write(np.ascontiguousarray(frames).tobytes())
                entries.append({**meta, "start": start, "length": len(frames)})
                start += len(frames)
            f.flush()
            os.fsync(f.fileno())
        self.manifest["splits"][split]["frames"] = start
        self.manifest["sources"][source] = {"split": split, "videos": entries}
        self.manifest["failed"].pop(source, None)
        self._commit()

    def finish(self) -> None:
        """Mark the store prepared: every source was tried (a stopped run leaves it unfinished, and
        training refuses it until the same command has run to the end)."""
        self.manifest["complete"] = True
        self._commit()

    def fail(self, source: str, reason: str) -> None:
        self.manifest["failed"][source] = reason
        self._commit()

    def _commit(self) -> None:
        with atomic_path(self.root / MANIFEST) as tmp:
            tmp.write_text(json.dumps(self.manifest))
