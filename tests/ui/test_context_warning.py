"""The too-long warning above the message box goes when its message is no longer there.

A 30,000-character paste on the built-in model is held back with "This message is about
7,515 tokens … Press Enter again to send it anyway"; once the user clears the box and types
"hello", the warning (with its Send anyway) must not still speak of the long message."""

from __future__ import annotations

import pytest
from PySide6.QtWidgets import QApplication, QPushButton

from rlhf_desktop.ui.chat.composer import Composer, ComposerBar


@pytest.mark.timeout(60)
def test_the_context_warning_goes_when_the_held_message_is_changed(qtbot: object) -> None:
    composer = Composer()
    bar = ComposerBar(composer, [QPushButton("Send")])
    qtbot.addWidget(bar)  # type: ignore[attr-defined]
    bar.show()
    long_text = "word " * 10_000
    composer.setPlainText(long_text)
    bar.warning.warn(long_text.strip(), "⚠ This message is about 12,500 tokens")
    QApplication.processEvents()
    assert bar.warning.isVisible()
    composer.setPlainText(long_text + "  ")  # the same message (spacing aside): it stays
    QApplication.processEvents()
    assert bar.warning.isVisible() and bar.warning.held_text == long_text.strip()
    composer.clear()
    composer.setPlainText("hello")
    QApplication.processEvents()
    assert not bar.warning.isVisible() and bar.warning.held_text == ""
