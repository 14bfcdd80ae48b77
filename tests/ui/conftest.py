"""Fixtures for the window tests: qasync's loop on pytest-qt's QApplication, a heartbeat."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

pytest.importorskip("PySide6")
qasync = pytest.importorskip("qasync")

from PySide6.QtCore import QSettings, Qt, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

T = TypeVar("T")


@pytest.fixture(scope="session")
def warm_imports() -> None:
    """Import sentence-transformers once per session, before any heartbeat starts.

    The first import of sentence-transformers/torch in a worker thread holds the GIL in
    long stretches (see rlhf_desktop/ui/warmup.py); the app pays it once at start-up.
    """
    from rlhf_desktop.ui import warmup

    warmup.preload_torch_libraries()
    import sentence_transformers  # noqa: F401


@pytest.fixture(autouse=True)
def qsettings_dir(tmp_path: Path) -> Iterator[Path]:
    """QSettings in an INI file under the test's temp dir (never the user's real ones)."""
    folder = tmp_path / "qsettings"
    folder.mkdir()
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(folder))
    yield folder


@pytest.fixture
def loop(qapp: QApplication) -> Iterator[asyncio.AbstractEventLoop]:
    """qasync's QEventLoop on pytest-qt's QApplication."""
    qapp.setOrganizationName("rlhf-desktop-tests")
    qapp.setApplicationName("rlhf-desktop-tests")
    event_loop = qasync.QEventLoop(qapp)
    asyncio.set_event_loop(event_loop)
    yield event_loop
    event_loop.close()
    asyncio.set_event_loop(None)


def run(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T], timeout: float = 120) -> T:
    """Run a coroutine on the Qt loop, with a deadline."""
    return loop.run_until_complete(asyncio.wait_for(coro, timeout))


async def wait_until(predicate: Callable[[], object], timeout: float = 30.0,
                     what: str = "condition") -> None:
    """Poll ``predicate`` while the loop keeps running."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


class Heartbeat:
    """A 10 ms QTimer; records the gaps between ticks (an event-loop stall shows as a gap)."""

    def __init__(self, interval_ms: int = 10) -> None:
        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._tick)
        self.gaps: list[float] = []
        self._last: float | None = None

    def _tick(self) -> None:
        now = time.perf_counter()
        if self._last is not None:
            self.gaps.append(now - self._last)

        self._last = now

    def start(self) -> None:
        """Start measuring."""
        self._last = None
        self.timer.start()

    def stop(self) -> None:
        """Stop measuring."""
        self.timer.stop()

    @property
    def max_gap_ms(self) -> float:
        """The longest gap between two ticks."""
        return max(self.gaps, default=0.0) * 1000

    def summary(self) -> str:
        """Ticks, max and 99th percentile gap."""
        if not self.gaps:
            return "no ticks"
        ordered = sorted(self.gaps)
        p99 = ordered[int(len(ordered) * 0.99) - 1] * 1000
        return f"{len(ordered)} ticks, max gap {self.max_gap_ms:.0f} ms, p99 {p99:.0f} ms"
