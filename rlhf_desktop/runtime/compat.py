"""Guards against defects of particular PySide6 builds.

PySide6 6.12.0 on Python 3.11 gives back one reference to ``None`` too many on every call
of a method that returns nothing (``show``, ``setText``, ``update``, ``processEvents`` …),
and to ``True``/``False`` on some signal emissions. Python 3.12 made those objects
immortal, so there it is harmless; on 3.11 the count reaches zero after a few thousand UI
updates and the interpreter aborts with "Fatal Python error: none_dealloc". pyproject.toml
keeps 6.12 off Python 3.11, and :func:`guard_singleton_refcounts` protects a process that
got such a build anyway: it measures the leak once at start-up and, if present, gives the
three singletons a reference count that cannot be exhausted (what Python 3.12 does).
"""

from __future__ import annotations

import ctypes
import logging
import sys
from collections.abc import Callable

log = logging.getLogger(__name__)

PROBE_CALLS = 64
RESERVE = 1 << 40


def leaked_none_refs(probe: Callable[[], object], calls: int = PROBE_CALLS) -> int:
    """How many references to ``None`` ``calls`` calls of ``probe`` lost (0 when sound)."""
    before = sys.getrefcount(None)
    for _ in range(calls):
        probe()
    return max(0, before - sys.getrefcount(None))


def _reserve(obj: object) -> None:
    """Add RESERVE to the object's reference count (CPython layout: ob_refcnt first)."""
    ctypes.c_ssize_t.from_address(id(obj)).value += RESERVE


def guard_singleton_refcounts(probe: Callable[[], object] | None = None) -> bool:
    """Detect the leak with ``probe`` (a void Qt call) and neutralise it. True if found."""
    if sys.version_info >= (3, 12) or sys.implementation.name != "cpython":
        return False  # immortal None/True/False: nothing to protect
    if probe is None:
        from PySide6.QtCore import QObject

        holder = QObject()

        def probe() -> object:
            holder.setObjectName("probe")
            return None

    lost = leaked_none_refs(probe)
    if lost < PROBE_CALLS // 2:
        return False
    for singleton in (None, True, False):
        _reserve(singleton)
    try:
        from PySide6 import __version__ as pyside_version
    except ImportError:  # pragma: no cover - the probe above needed PySide6
        pyside_version = "?"
    log.warning("PySide6 %s loses a reference to None on every call (%d of %d); guarded. "
                "Install PySide6 < 6.12 on Python 3.11 to avoid it.",
                pyside_version, lost, PROBE_CALLS)
    return True
