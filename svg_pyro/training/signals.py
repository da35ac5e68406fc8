"""Stopping a training run on SIGTERM (a scheduler's pre-emption) or Ctrl-C: the current step
finishes, a checkpoint of that step is written, and the process exits with 128 + the signal."""
from __future__ import annotations

import os
import signal
import threading


class Stopped(Exception):
    """The run stopped on a signal after writing its checkpoint; exit with 128 + signum."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum = signum


class GracefulStop:
    """SIGTERM / SIGINT: let the current step finish, then checkpoint and stop. A second signal
    stops the process at once (the last checkpoint on disk is intact: writes are atomic)."""

    def __init__(self):
        self.signum = None

    def _handle(self, signum, frame):
        if self.signum is not None:
            os._exit(128 + signum)
        self.signum = signum

    def __enter__(self):
        self._saved = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._saved[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)
