"""Files written so that a crash, a signal or a full disk leaves the previous version whole: write a
temporary file beside the target, fsync it, rename it over the target, fsync the folder. Used for
checkpoints, metrics, figures and the prepared video store."""
from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

NEARLY_FULL = 1 << 20  # bytes left on a filesystem that a failed write is blamed on


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
    except RuntimeError as err:  # torch.save reports a full disk as a RuntimeError of its C++ writer
        disk_full = _free_bytes(path.parent) < NEARLY_FULL  # measured before the partial file goes
        tmp.unlink(missing_ok=True)
        if disk_full:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp)) from err
        raise
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


def _free_bytes(folder: Path) -> int:
    try:
        stat = os.statvfs(folder)
    except OSError:
        return NEARLY_FULL  # unknown: do not blame the disk
    return stat.f_bavail * stat.f_frsize
