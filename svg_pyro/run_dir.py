"""A training run's directory: one run at a time holds it (an advisory lock the OS drops when the
process dies), a start clears what a crash left half-written, and a resume drops the metric rows
logged after its checkpoint."""
from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

from svg_pyro.atomic import atomic_path
from svg_pyro.errors import SvgPyroError


class RunLocked(SvgPyroError, RuntimeError):
    pass


def truncate_metrics(path: Path, last_step: int) -> None:
    """Drop rows logged after the checkpoint we resume from (they will be recomputed)."""
    if not path.exists():
        return
    keep = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= last_step]
    with atomic_path(path) as tmp:
        tmp.write_text("".join(line + "\n" for line in keep))


def lock_run_dir(out: Path):
    """Hold an advisory lock on ``out`` for the life of this process (the OS drops it when the
    process dies, however it dies); a second run into the same directory is refused."""
    out.mkdir(parents=True, exist_ok=True)
    lock = open(out / ".lock", "a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip() or "another process"
        lock.close()
        raise RunLocked(f"{out} is in use by a running training ({holder}); wait for it to end, "
                        "or choose another --out") from None
    lock.seek(0)
    lock.truncate()
    lock.write(f"pid {os.getpid()}\n")
    lock.flush()
    for stray in out.glob("*.tmp"):  # left by a crash in the middle of a write
        stray.unlink()
    return lock
