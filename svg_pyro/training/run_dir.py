"""A training run's directory: one run at a time holds it (an advisory lock the OS drops when the
process dies), a start is checked before anything is written (a fresh run, or a resume that fits),
a start clears what a crash left half-written, and a resume drops the metric rows logged after its
checkpoint."""
from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

from svg_pyro.atomic import atomic_path
from svg_pyro.checkpoint import WEIGHTS_FORMAT, CheckpointError, check_compatible, load_checkpoint
from svg_pyro.config import Config
from svg_pyro.errors import InvalidInput, SvgPyroError


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


class RunDirectory:
    """``out`` for the life of one training: ``start`` takes the lock and checks the start,
    ``close`` drops the lock, and with it a directory this run made and left empty (a refused start
    leaves nothing behind)."""

    def __init__(self, out: Path, config: Config, resume: bool, processes: int = 1):
        self.out, self.config, self.resume, self.processes = out, config, resume, processes
        self.checkpoint = out / "checkpoint.pt"
        self.created = not out.exists()
        self.lock = None

    def start(self) -> dict | None:
        """The checkpoint to resume from (None for a fresh run); a start that cannot go on raises."""
        self.lock = lock_run_dir(self.out)
        try:
            return self._check()
        except Exception:
            self.close()
            raise

    def _check(self) -> dict | None:
        config, ckpt = self.config, self.checkpoint
        if config.batch_size < self.processes:
            raise InvalidInput(f"--batch-size {config.batch_size} is smaller than the {self.processes} processes; "
                               "the batch is split between them, so give each at least one video")
        if not self.resume:
            if ckpt.exists():
                raise CheckpointError(f"{self.out} already holds a checkpoint; pass --resume to continue it or "
                                      "choose another --out (nothing was overwritten)")
            return None
        state = load_checkpoint(ckpt)
        if state["format"] == WEIGHTS_FORMAT:
            raise CheckpointError(f"{ckpt} holds weights only (no optimizer or RNG state), so training cannot "
                                  "resume from it; train into a new --out")
        check_compatible(Config.from_dict(state["config"]), config, ckpt)
        if state["step"] > config.steps:
            raise InvalidInput(f"{ckpt} is at step {state['step']}, past --steps {config.steps}; give "
                               f"--steps above {state['step']} to train on (nothing was changed)")
        return state

    def close(self) -> None:
        if self.lock is None:
            return
        self.lock.close()
        self.lock = None
        if {p.name for p in self.out.iterdir()} <= {".lock"}:
            (self.out / ".lock").unlink(missing_ok=True)
            if self.created:
                self.out.rmdir()
