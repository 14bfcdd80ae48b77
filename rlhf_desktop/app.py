"""The desktop app: QApplication on qasync's event loop, the main window, crash handling.

The window shows before any heavy library loads: the reward model and the MiniLM embedder
(numpy) load afterwards in a worker thread (see ui/backend.py); llama.cpp loads on the first
message, scikit-learn and scipy on their first use (``tests/test_lazy_loading.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from rlhf_desktop import config

log = logging.getLogger("rlhf_desktop.app")
ORG = "rlhf-desktop"
CRASH_LOG = "crash.log"
DESKTOP_FILE = "rlhf-desktop"  # resources/rlhf-desktop.desktop


def write_crash_report(exc_type: type[BaseException], exc: BaseException,
                       tb: TracebackType | None) -> Path:
    """Append a redacted traceback to ``logs/crash.log``; returns the file."""
    text = "".join(traceback.format_exception(exc_type, exc, tb))
    text = config.redact(text)
    path = config.logs_dir() / CRASH_LOG
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    with path.open("a", encoding="utf-8") as fh:
        fh.write(f"--- {stamp} unhandled exception\n{text}\n")
    log.error("unhandled exception (details in %s):\n%s", path, text)
    return path


class CrashHandler:
    """``sys.excepthook`` (and the loop's handler): log, then a non-modal dialog."""

    def __init__(self) -> None:
        self._dialog: Any = None

    def __call__(self, exc_type: type[BaseException], exc: BaseException,
                 tb: TracebackType | None) -> None:
        """Handle one unhandled exception; the app keeps running."""
        if issubclass(exc_type, KeyboardInterrupt):
            sys.__excepthook__(exc_type, exc, tb)
            return
        try:
            path = write_crash_report(exc_type, exc, tb)
        except OSError:
            path = None
        self.show(exc, path)

    def show(self, exc: BaseException, path: Path | None) -> None:
        """A dialog that names the error and the log file (never blocks the loop)."""
        from PySide6.QtWidgets import QApplication, QMessageBox

        if QApplication.instance() is None or (self._dialog is not None
                                               and self._dialog.isVisible()):
            return
        where = f"\n\nDetails were saved to {path}." if path else ""
        message = config.redact(f"{type(exc).__name__}: {exc}")[:800]
        box = QMessageBox(QMessageBox.Icon.Critical, "Unexpected error",
                          f"Something went wrong, but your data is safe.\n\n{message}{where}")
        box.setModal(False)
        box.show()
        self._dialog = box

    def loop_handler(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """asyncio's exception handler."""
        exc = context.get("exception")
        if isinstance(exc, BaseException):
            self(type(exc), exc, exc.__traceback__)
        else:
            log.error("event loop: %s", config.redact(str(context.get("message"))))

    def thread_hook(self, args: threading.ExceptHookArgs) -> None:
        """Worker threads: log the redacted traceback (no dialog from another thread)."""
        if args.exc_value is not None:
            try:
                write_crash_report(args.exc_type, args.exc_value, args.exc_traceback)
            except OSError:
                pass


def _apply_data_dir(data_dir: str | None) -> None:
    """``--data-dir`` for this run; otherwise the folder chosen in Settings (``config``
    finds it), after moving a choice that older versions kept in QSettings."""
    from PySide6.QtCore import QSettings

    if data_dir:
        config.set_data_dir(data_dir)
        return
    legacy = QSettings().value("data_dir", "")
    if isinstance(legacy, str) and legacy and config.remembered_data_dir() is None:
        config.remember_data_dir(legacy)
    QSettings().remove("data_dir")


def window_arguments(argv: Sequence[str]) -> argparse.Namespace:
    """The global options that matter to the window (``__main__`` handles commands)."""
    parser = argparse.ArgumentParser(prog="rlhf-desktop", add_help=False)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("-v", "--verbose", action="store_true")
    args, _rest = parser.parse_known_args(list(argv))
    return args


def missing_display(env: dict[str, str] | None = None) -> str | None:
    """Why no window can open here (Linux without X11/Wayland), or None."""
    env = dict(os.environ) if env is None else env
    if not sys.platform.startswith("linux") or env.get("QT_QPA_PLATFORM"):
        return None
    if env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"):
        return None
    return ("no display to open the window on (neither DISPLAY nor WAYLAND_DISPLAY is set). "
            "Run it in a desktop session, under xvfb-run, or use the commands without a "
            "window: rlhf-desktop --help.")


def main(argv: Sequence[str] | None = None) -> int:
    """Open the main window and run until it is closed."""
    args = window_arguments(sys.argv[1:] if argv is None else argv)
    problem = missing_display()
    if problem:
        print(f"rlhf-desktop: {problem}", file=sys.stderr)
        return 2
    from PySide6.QtCore import QCoreApplication
    from PySide6.QtWidgets import QApplication, QMessageBox

    QCoreApplication.setOrganizationName(ORG)
    QCoreApplication.setApplicationName(ORG)
    _apply_data_dir(args.data_dir)
    config.setup_logging("INFO" if args.verbose else None)
    handler = CrashHandler()
    sys.excepthook = handler
    threading.excepthook = handler.thread_hook

    from rlhf_desktop.storage.db import DatabaseError
    from rlhf_desktop.storage.lock import AlreadyRunning, InstanceLock

    try:
        instance = InstanceLock(config.data_dir()).acquire()
    except AlreadyRunning as exc:
        QApplication.instance() or QApplication(sys.argv[:1])
        QMessageBox.information(None, "RLHF Desktop", str(exc))
        return 1
    try:
        built = build()
    except (DatabaseError, config.ConfigError, OSError) as exc:
        QMessageBox.critical(None, "RLHF Desktop", config.redact(str(exc)))
        instance.release()
        return 2
    loop, window, backend = built.loop, built.window, built.backend
    loop.set_exception_handler(handler.loop_handler)
    signal.signal(signal.SIGINT, signal.SIG_DFL)

    async def run() -> None:
        window.show()
        window.chat.composer.setFocus()
        backend.spawn(window.start(), "start-up")
        await window.wait_closed()

    try:
        loop.run_until_complete(run())
    except RuntimeError as exc:  # Qt quit under us, e.g. the display server went away
        if "Event loop stopped" not in str(exc):
            raise
        logging.getLogger(__name__).warning("the window system closed the app: %s", exc)
        return 1
    finally:
        loop.close()
        instance.release()
    return 0


@dataclass
class Built:
    """What :func:`build` made: the application, its event loop, the session's adapter and
    the main window (not shown yet)."""

    app: Any
    loop: asyncio.AbstractEventLoop
    backend: Any
    window: Any
    collector: Any
    pyside_leaks: bool
    """The PySide6 build loses references to None (guarded; the self-test fails on it)."""


def build(*, backend: Any = None, collect_on_gui_thread: bool = True) -> Built:
    """The one start-up of the window, used by :func:`main`, the self-test and
    ``benchmarks/app_perf.py``: QApplication, the PySide6 guard, garbage collection on the
    GUI thread, the theme, qasync's loop, the session (``backend``: one made already) and the
    main window. Raises what opening the data folder raises."""
    import qasync
    from PySide6.QtCore import QCoreApplication
    from PySide6.QtWidgets import QApplication

    from rlhf_desktop.runtime import compat
    from rlhf_desktop.runtime.collector import MainThreadCollector
    from rlhf_desktop.ui import theme

    QCoreApplication.setOrganizationName(ORG)
    QCoreApplication.setApplicationName(ORG)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    app.setQuitOnLastWindowClosed(False)
    set_app_identity(app)
    leaks = compat.guard_singleton_refcounts()
    collector = MainThreadCollector(app) if collect_on_gui_thread else None
    dark = theme.apply(app)
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    from rlhf_desktop.ui.backend import Backend
    from rlhf_desktop.ui.main_window import MainWindow

    backend = backend or Backend()
    return Built(app, loop, backend, MainWindow(backend, dark), collector, leaks)


def set_app_identity(app: Any) -> None:
    """The window icon (from ``resources/``) and the desktop-entry name for the taskbar."""
    from PySide6.QtGui import QIcon

    app.setDesktopFileName(DESKTOP_FILE)
    icon = config.resource_path("icon.svg")
    if icon.is_file():
        app.setWindowIcon(QIcon(str(icon)))


# ------------------------------------------------------------------------ --self-test


def self_test() -> int:
    """``rlhf-desktop --self-test``: Qt offscreen plus the Qt-free checks (services/selftest)."""
    os.environ["QT_QPA_PLATFORM"] = "offscreen"
    from rlhf_desktop.services import selftest

    return selftest.run(_qt_check)


def _qt_check() -> str:
    """Build the real main window offscreen in the (temporary) data folder and show it."""
    from PySide6.QtCore import QCoreApplication, QSettings
    from PySide6.QtGui import QGuiApplication, QPixmap

    started = time.perf_counter()
    QCoreApplication.setOrganizationName(ORG)
    QCoreApplication.setApplicationName(ORG)
    qsettings_dir = str(config.data_dir() / "qsettings")  # never the user's real settings
    for fmt in (QSettings.Format.NativeFormat, QSettings.Format.IniFormat):
        QSettings.setPath(fmt, QSettings.Scope.UserScope, qsettings_dir)
    built = build(collect_on_gui_thread=False)
    if built.pyside_leaks:
        raise RuntimeError("this PySide6 build loses a reference to None on every call (6.12.0 "
                           "on Python 3.11); build the bundle with PySide6 < 6.12")
    app, loop, window, backend = built.app, built.loop, built.window, built.backend
    platform = QGuiApplication.platformName()
    icon = QPixmap(str(config.resource_path("icon.svg")))
    if icon.isNull():
        raise RuntimeError("the SVG icon did not load (is the Qt SVG image plugin missing?)")

    async def show() -> float:
        window.show()
        shown = time.perf_counter() - started
        await asyncio.sleep(0.2)
        if not window.isVisible():
            raise RuntimeError("the main window did not become visible")
        await backend.aclose()
        return shown

    try:
        shown = loop.run_until_complete(show())
    finally:
        window.hide()
        window.deleteLater()
        app.processEvents()
        loop.close()
        asyncio.set_event_loop(None)
    return f"window shown on {platform} after {shown:.2f} s"

