"""The keyboard shortcuts list: Ctrl+/, F1 and the help button open it, it lists every
shortcut, and its first line says Enter sends, as the message box does."""

from __future__ import annotations

import asyncio

from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QAbstractButton

from rlhf_desktop.ui.main_window import MainWindow
from rlhf_desktop.ui.shortcuts import SHORTCUTS, ShortcutsDialog
from tests.ui.conftest import run
from tests.ui.helpers import activate

SPEC = ("Ctrl+Enter", "Alt+1", "Alt+Z", "Esc", "Ctrl+R", "Ctrl+N", "Ctrl+F", "Ctrl+1",
        "Ctrl+,", "Ctrl+/", "Ctrl+Q")


def test_the_shortcuts_list_opens_by_ctrl_slash_f1_and_the_help_button(
        window: MainWindow, loop: asyncio.AbstractEventLoop) -> None:
    run(loop, activate(window))

    def shown() -> ShortcutsDialog | None:
        found = [d for d in window.findChildren(ShortcutsDialog) if d.isVisible()]
        return found[0] if found else None

    QTest.keyClick(window, Qt.Key.Key_Slash, Qt.KeyboardModifier.ControlModifier)
    dialog = shown()
    assert dialog is not None, "Ctrl+/ opened nothing"
    rows = dialog.texts()
    assert [keys for keys, _ in rows] == [keys for keys, _ in SHORTCUTS]
    for keys in SPEC:
        assert any(keys in k for k, _ in rows), keys
    assert any("Ctrl+Z" in action for _, action in rows)  # says what Ctrl+Z does instead
    dialog.close()
    run(loop, activate(window))
    QTest.keyClick(window, Qt.Key.Key_F1)
    assert shown() is not None, "F1 opened nothing"
    dialog.close()
    help_button = window.findChild(QAbstractButton, "helpButton")
    assert help_button is not None and help_button.isVisible()
    menu = help_button.menu()  # type: ignore[attr-defined]
    actions = {a.text(): a for a in menu.actions()}
    actions["Keyboard shortcuts"].trigger()
    assert shown() is not None


def test_shortcuts_list_says_enter_sends_as_the_message_box_does() -> None:
    from rlhf_desktop.ui.shortcuts import SHORTCUTS

    keys, action = SHORTCUTS[0]
    assert keys.split(" or ")[0] == "Enter" and "Shift+Enter adds a line" in action
