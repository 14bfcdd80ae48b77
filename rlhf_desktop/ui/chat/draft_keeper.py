"""The message being typed survives a quit or a crash: the message box's text is kept in the
data folder a moment after each change (``ConversationService.save_draft``) and put back in
the box when the window opens."""

from __future__ import annotations

import logging

from PySide6.QtCore import QObject, QTimer
from PySide6.QtWidgets import QPlainTextEdit

from rlhf_desktop.services.chat.conversations import ConversationService

log = logging.getLogger(__name__)

SAVE_AFTER_MS = 600
"""Typing pauses this long before the draft is written (and at once on quit)."""


class DraftKeeper(QObject):
    """Keeps ``box``'s text as the draft; see the module docstring."""

    def __init__(self, box: QPlainTextEdit, conversations: ConversationService) -> None:
        super().__init__(box)
        self._box = box
        self._conversations = conversations
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(SAVE_AFTER_MS)
        self._timer.timeout.connect(self.flush)
        draft = conversations.draft()
        if draft and not box.toPlainText():
            box.setPlainText(draft)
            box.moveCursor(box.textCursor().MoveOperation.End)
        box.textChanged.connect(self._timer.start)

    @property
    def pending(self) -> bool:
        """Whether a change waits to be written."""
        return self._timer.isActive()

    def flush(self) -> None:
        """Write the box's text now (a failure is logged: the text stays in the box)."""
        self._timer.stop()
        try:
            self._conversations.save_draft(self._box.toPlainText())
        except OSError:
            log.warning("the message being typed could not be kept", exc_info=True)
