"""Crash-safe file writes."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable
from pathlib import Path


def atomic_write_bytes(path: Path, data: bytes, mode: int = 0o644, durable: bool = True
                       ) -> None:
    """Write ``data`` to ``path`` so that a crash leaves the old file or the new, never half.

    Temp file in the same folder, fsync, rename, fsync of the folder. The temp file is named
    per process and thread, so two threads writing the same file never rename each other's.
    ``durable=False`` skips both fsyncs (milliseconds each on the window's thread): an app
    crash still leaves the old file or the new, a power cut may lose the last write.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)




def publish_numbered(root: Path, staging: Path, prefix: str,
                     prepare: Callable[[int], None] | None = None) -> tuple[int, Path]:
    """Rename the finished folder ``staging`` (inside ``root``) to the next free
    ``<prefix>NNNN``; returns the number and the folder.

    ``prepare(number)`` runs before each attempt (e.g. to write the number into a manifest).
    The rename fails when another process took the number meanwhile; then the next is tried.
    """
    name = re.compile(rf"^{re.escape(prefix)}(\d{{4,}})$")
    while True:
        used = [int(m.group(1)) for c in root.iterdir() if (m := name.match(c.name))]
        number = max(used, default=0) + 1
        if prepare is not None:
            prepare(number)
        target = root / f"{prefix}{number:04d}"
        try:
            staging.rename(target)
        except OSError:
            if target.exists():
                continue
            raise
        return number, target
