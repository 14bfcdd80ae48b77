"""One window per data folder: an advisory lock file held while the window is open.

The command line does not take it: its commands are safe beside a running window (SQLite
serialises writers; model versions get their numbers atomically).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO

LOCK_FILENAME = "window.lock"


class AlreadyRunning(Exception):
    """Another window holds this data folder; the message says what to do."""


class InstanceLock:
    """An exclusive, non-blocking lock on ``<data folder>/window.lock``.

    Released by :meth:`release` or when the process ends (even by SIGKILL: the OS drops it).
    """

    def __init__(self, folder: Path) -> None:
        self.path = folder / LOCK_FILENAME
        self._fh: IO[str] | None = None

    def acquire(self) -> InstanceLock:
        """Take the lock or raise :class:`AlreadyRunning`."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = self.path.open("a+", encoding="utf-8")
        try:
            _lock(fh)
        except OSError as exc:
            fh.seek(0)
            owner = fh.read().strip() or "another process"
            fh.close()
            raise AlreadyRunning(
                f"rlhf-desktop is already open on the data folder {self.path.parent} "
                f"(pid {owner}). Switch to that window, or start this one with "
                "--data-dir to use another folder."
            ) from exc
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._fh = fh
        return self

    def release(self) -> None:
        """Drop the lock."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def _lock(fh: IO[str]) -> None:
    if os.name == "nt":
        import msvcrt

        fh.seek(0)
        msvcrt.locking(fh.fileno(), msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
    else:
        import fcntl

        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
