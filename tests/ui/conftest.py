"""Fixtures for the window tests: qasync's loop on pytest-qt's QApplication, a heartbeat."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

pytest.importorskip("PySide6")
qasync = pytest.importorskip("qasync")

from PySide6.QtCore import QCoreApplication, QEvent, QSettings  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from rlhf_desktop.runtime.collector import MainThreadCollector  # noqa: E402
from rlhf_desktop.runtime.heartbeat import Heartbeat  # noqa: E402,F401  (tests import it from here)

if TYPE_CHECKING:
    from rlhf_desktop.ui.main_window import MainWindow

T = TypeVar("T")


@pytest.fixture(scope="session")
def warm_imports() -> None:
    """Import the embedder's libraries once per session, before any heartbeat starts, as the
    app does at start-up. Never torch: the app does not import it, and torch's OpenMP beside
    xllamacpp's in one process aborted the built-in model's tests."""
    import safetensors.numpy  # noqa: F401
    import tokenizers  # noqa: F401

    import rlhf_desktop.reward.bert_encoder  # noqa: F401


@pytest.fixture(autouse=True)
def qsettings_dir(tmp_path: Path) -> Iterator[Path]:
    """QSettings in an INI file under the test's temp dir (never the user's real ones)."""
    folder = tmp_path / "qsettings"
    folder.mkdir()
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(folder))
    yield folder


@pytest.fixture(scope="session", autouse=True)
def main_thread_collector(qapp: QApplication) -> Iterator[MainThreadCollector]:
    """As in the app: cycles (and the Qt objects in them) are collected on this thread only."""
    collector = MainThreadCollector(qapp)
    yield collector
    collector.stop()


@pytest.fixture
def loop(qapp: QApplication) -> Iterator[asyncio.AbstractEventLoop]:
    """qasync's QEventLoop on pytest-qt's QApplication."""
    qapp.setOrganizationName("rlhf-desktop-tests")
    qapp.setApplicationName("rlhf-desktop-tests")
    event_loop = qasync.QEventLoop(qapp)
    asyncio.set_event_loop(event_loop)
    yield event_loop
    # Delete this test's hidden windows now, while the loop is still open, rather than
    # whenever Python's collector gets to them during a later test.
    for widget in QApplication.topLevelWidgets():
        if not widget.isVisible():
            widget.deleteLater()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete.value)
    qapp.processEvents()
    event_loop.close()
    asyncio.set_event_loop(None)
    gc.collect()  # this test's garbage dies here, on the GUI thread


def run(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T], timeout: float = 120) -> T:
    """Run a coroutine on the Qt loop, with a deadline.

    qasync's ``run_until_complete`` stops the loop from a done-callback that ``call_soon``
    queues; when one call's future finishes just as it returns, that queued stop can end the
    next call's run at once ("Event loop stopped before Future completed": seen once a full
    run, never alone). The app never stops the loop, so a stop before the task is done is
    that stale callback: run again until the task is done (the deadline still holds).
    """
    task = asyncio.ensure_future(asyncio.wait_for(coro, timeout), loop=loop)
    while True:
        try:
            return loop.run_until_complete(task)
        except RuntimeError as exc:
            if task.done() or "stopped before Future completed" not in str(exc):
                raise


async def wait_until(predicate: Callable[[], object], timeout: float = 30.0,
                     what: str = "condition") -> None:
    """Poll ``predicate`` while the loop keeps running."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


class SignalWaiter:
    """Records a Qt signal from the moment it is made; ``await waiter.wait()`` returns the
    arguments of the first emission not waited for yet (no polling, no fixed sleeps)."""

    def __init__(self, signal: Any) -> None:
        self._signal = signal
        self._seen: list[tuple[Any, ...]] = []
        self._waiting: asyncio.Future[tuple[Any, ...]] | None = None
        signal.connect(self._fired)

    def _fired(self, *args: Any) -> None:
        if self._waiting is not None and not self._waiting.done():
            self._waiting.set_result(args)
            self._waiting = None
        else:
            self._seen.append(args)

    async def wait(self, timeout: float = 60.0, what: str = "the signal") -> tuple[Any, ...]:
        if self._seen:
            return self._seen.pop(0)
        self._waiting = asyncio.get_running_loop().create_future()
        try:
            return await asyncio.wait_for(self._waiting, timeout)
        except TimeoutError:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}") from None

    def close(self) -> None:
        self._signal.disconnect(self._fired)


@pytest.fixture
def window(loop: asyncio.AbstractEventLoop, qtbot: object) -> Iterator[MainWindow]:
    """The main window (no provider chosen yet), shut down and closed after the test.

    (Not given to qtbot: it would close the window before this teardown, and the close
    would start a second shutdown that the closed loop never runs.)"""
    from tests.ui.helpers import make_window  # helpers imports this module

    w = make_window()
    yield w
    run(loop, w.shutdown())
    w.close()
