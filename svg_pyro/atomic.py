"""Files written so that a crash, a signal or a full disk leaves the previous version whole: write a
temporary file beside the target, fsync it, rename it over the target, fsync the folder. Used for
checkpoints, metrics, figures and the prepared video store."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path):
    """A temporary path beside ``path`` to write to; renamed over ``path`` when the block ends
    without error (after an fsync), removed when it fails. A crash leaves the old file intact."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass  # some filesystems cannot fsync a directory
