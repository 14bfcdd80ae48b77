"""Helpers shared by the window tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from PySide6.QtCore import Qt, QTimer
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QMessageBox, QWidget

from rlhf_desktop import config
from rlhf_desktop.config import Settings
from rlhf_desktop.domain import ModelVersion
from rlhf_desktop.storage.repo import Repository
from rlhf_desktop.ui.backend import Backend
from rlhf_desktop.ui.chat.turn_widget import TurnWidget
from rlhf_desktop.ui.main_window import MainWindow
from tests.azure_server import AzureServer
from tests.helpers import record_version
from tests.ui.conftest import wait_until

_repos: dict[str, Repository] = {}


def db() -> Repository:
    """The test's own connection to the window's database (the session keeps its own
    private): real SQLite in WAL mode, so both see each other's committed writes."""
    path = str(config.db_path())
    if path not in _repos:
        _repos[path] = Repository.open()
    return _repos[path]


def make_window(**overrides: Any) -> MainWindow:
    """Save settings, build the backend and the window, show and activate it."""
    config.save_settings(Settings(**overrides))
    window = MainWindow(Backend())
    window.resize(1200, 800)
    window.show()
    window.activateWindow()
    return window


async def activate(window: MainWindow) -> None:
    """Window shortcuts (1..9, Esc, Ctrl+Z) need the window to be active."""
    window.activateWindow()
    window.raise_()
    await wait_until(lambda: QApplication.activeWindow() is window, 5, "window activation")


async def send(window: MainWindow, text: str) -> TurnWidget:
    """Type a message and press Ctrl+Enter; returns the new turn's widget."""
    chat = window.chat
    before = len(chat.widgets)
    chat.composer.setFocus()
    chat.composer.setPlainText(text)
    QTest.keyClick(chat.composer, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    assert len(chat.widgets) == before + 1, "Ctrl+Enter did not send"
    return chat.widgets[-1]


def press(window: MainWindow, key: Qt.Key,
          modifier: Qt.KeyboardModifier = Qt.KeyboardModifier.NoModifier) -> None:
    """A key press with the focus on the chat (not in a text field)."""
    window.chat.scroll_area.setFocus()
    QTest.keyClick(window.chat.scroll_area, key, modifier)


def window_for(qtbot: object, **settings: object) -> MainWindow:
    """A window (see :func:`make_window`) that pytest-qt closes after the test."""
    window = make_window(**settings)
    qtbot.addWidget(window)  # type: ignore[attr-defined]
    return window


@contextmanager
def azure_env(monkeypatch: pytest.MonkeyPatch, key: str) -> Iterator[AzureServer]:
    """The Azure-protocol server (short, fast replies), the app's environment pointing at it."""
    with AzureServer(api_key=key, deployment="gpt-test", reply_length=12,
                     chunk_delay_s=0.001) as srv:
        for name, value in srv.environment().items():
            monkeypatch.setenv(name, value)
        yield srv


def settle(window: QWidget) -> None:
    """Let resizes and layouts happen."""
    for _ in range(5):
        QApplication.processEvents()
        QTest.qWait(10)


def resize(window: MainWindow, width: int, height: int) -> None:
    window.resize(width, height)
    settle(window)


def answer_next_box(button: QMessageBox.StandardButton, seen: list[str]) -> None:
    """Press ``button`` in the next message box that opens (and note its text)."""
    def answer() -> None:
        box = QApplication.activeModalWidget()
        if isinstance(box, QMessageBox):
            seen.append(box.text())
            box.button(button).click()

    QTimer.singleShot(100, answer)


def add_version(repo: Repository, version: int, labels: int, acc: float) -> None:
    record_version(repo, ModelVersion(
        version=version, created_at=1_700_000_000.0 + version, path="/nowhere",
        metrics={"cv_accuracy": acc, "pairs": labels * 3, "labels": labels},
        pairs=labels * 3, labels=labels))
