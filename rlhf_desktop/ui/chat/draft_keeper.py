"""The message being typed stays with its chat and survives a quit or a crash: the message
box's text is kept per chat in the data folder a moment after each change
(``ConversationService.save_draft``), put back when that chat is shown again, and the
window opens with the draft of the chat it opens."""

from __future__ import annotations

import logging

from PySide6.QtCore import QObject, QTimer
from PySide6.QtWidgets import QPlainTextEdit

from rlhf_desktop.services.chat.conversations import ConversationService

log = logging.getLogger(__name__)

SAVE_AFTER_MS = 600
"""Typing pauses this long before the draft is written (and at once on quit)."""


class DraftKeeper(QObject):
    """Keeps ``box``'s text as the shown chat's draft; see the module docstring."""

    def __init__(self, box: QPlainTextEdit, conversations: ConversationService) -> None:
        super().__init__(box)
        self._box = box
        self._conversations = conversations
        self._chat: int | None = None
        self._loading = False
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(SAVE_AFTER_MS)
        self._timer.timeout.connect(self.flush)
        box.textChanged.connect(self._changed)

    @property
    def pending(self) -> bool:
        """Whether a change waits to be written."""
        return self._timer.isActive()

    def show_chat(self, conversation_id: int | None) -> None:
        """Another chat is shown (None: the new chat): keep the text typed so far with the
        chat it was typed in, and put that chat's draft in the box."""
        if self.pending:  # what is not written yet (the rest already is)
            self.flush()
        self._chat = conversation_id
        self._loading = True
        try:
            self._box.setPlainText(self._conversations.draft(conversation_id))
            self._box.moveCursor(self._box.textCursor().MoveOperation.End)
        finally:
            self._loading = False

    def chat_created(self, conversation_id: int | None) -> None:
        """The new chat became ``conversation_id`` (its first message was sent): what is
        typed now belongs to it."""
        if conversation_id == self._chat:
            return
        before, self._chat = self._chat, conversation_id
        self._write(moved_from=before)

    def flush(self) -> None:
        """Write the box's text now (a failure is logged: the text stays in the box)."""
        self._timer.stop()
        self._write(moved_from=self._chat)

    def _changed(self) -> None:
        if not self._loading:
            self._timer.start()

    def _write(self, moved_from: int | None) -> None:
        self._timer.stop()
        try:
            self._conversations.save_draft(self._chat, self._box.toPlainText(), moved_from)
        except OSError:
            log.warning("the message being typed could not be kept", exc_info=True)
