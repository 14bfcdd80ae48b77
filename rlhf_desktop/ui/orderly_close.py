"""Closing the main window: an orderly shutdown, and a question first while replies are
being generated (not while the reward model scores finished replies: that is kept as it is).

A turn that is stopped stores its replies (the unfinished ones as stopped) before the
services close; see :meth:`ChatService.send_messages
<rlhf_desktop.services.chat.service.ChatService.send_messages>`.
"""

from __future__ import annotations

import asyncio
import logging

from PySide6.QtCore import QTimer
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import QMainWindow, QMessageBox, QPushButton

from rlhf_desktop.ui.backend import Backend
from rlhf_desktop.ui.chat.cards import CandidateCard
from rlhf_desktop.ui.chat.draft_keeper import DraftKeeper
from rlhf_desktop.ui.chat.view import ChatView

log = logging.getLogger(__name__)
STOP_WAIT_S = 3.0
"""How long quitting waits for a stopped turn to store its replies before cancelling it."""
KEEP = "Keep generating"


def replies_in_progress(chat: ChatView) -> list[CandidateCard]:
    """The cards whose replies are being generated now: those of the turn being sent (its
    widget has no saved turn yet) or being regenerated, still streaming or waiting for
    their first text. Empty while the reward model scores finished replies, after a turn
    ended (with an error or not) and whenever nothing runs."""
    if not chat.generating:
        return []
    return [card for widget in chat.widgets if widget.turn is None or widget.regenerating
            for card in widget.cards.values()
            if card.streaming and (widget.turn is None or card.index in widget.regenerating)]


def quit_question(chat: ChatView) -> tuple[str, str]:
    """The quit question's title and text, by what is in progress."""
    cards = replies_in_progress(chat)
    if not cards:
        return ("Quit now?", "The replies have finished and are saved. Quit now?")
    again = any(widget.turn is not None and widget.regenerating for widget in chat.widgets)
    verb = "regenerated" if again else "generated"
    if len(cards) == 1:
        what = f"Reply {cards[0].position + 1} is still being {verb}"
        title = f"Quit while a reply is being {verb}?"
    else:
        what = f"{len(cards)} replies are still being {verb}"
        title = f"Quit while replies are being {verb}?"
    return title, f"{what}. Quit anyway?"


class OrderlyClose(QMainWindow):
    """The main window's closing (its ``backend`` and ``chat`` are set by the subclass)."""

    backend: Backend
    chat: ChatView
    drafts: DraftKeeper
    quit_button: QPushButton

    def _init_close(self) -> None:
        self._closed = False
        self._closed_event = asyncio.Event()
        self._quit_confirmed = False
        self.quit_confirm: QMessageBox | None = None
        """The "Quit while replies are being generated?" question while it is open."""

    async def wait_closed(self) -> None:
        """Until the window has closed (after its shutdown)."""
        await self._closed_event.wait()

    async def shutdown(self) -> None:
        """Stop generation (the replies so far are kept, as stopped) and training, close the
        provider and the database. The message being typed is kept first."""
        self.drafts.flush()
        self.chat.stop()
        deadline = asyncio.get_running_loop().time() + STOP_WAIT_S
        while self.chat.generating and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)  # the stopped turn stores its replies and ends
        await self.backend.aclose()  # cancels what is left; a cancelled turn stores it too

    def confirm_quit(self) -> QMessageBox:
        """Ask before quitting while replies are being generated (non-blocking; Quit closes).
        The question follows what is in progress while it is open."""
        if self.quit_confirm is not None:
            self.quit_confirm.raise_()
            return self.quit_confirm
        title, text = quit_question(self.chat)
        box = QMessageBox(QMessageBox.Icon.Question, title, text, parent=self)
        box.setInformativeText("Your message and the replies that finished are saved; the "
                               "ones still being generated are kept as far as they got, "
                               "marked as stopped.")
        self.quit_button = box.addButton("Quit", QMessageBox.ButtonRole.AcceptRole)
        keep = box.addButton(KEEP, QMessageBox.ButtonRole.RejectRole)
        box.setDefaultButton(self.quit_button)
        follow = QTimer(box)  # the replies go on behind the question
        follow.setInterval(200)

        def update() -> None:
            title, text = quit_question(self.chat)
            box.setWindowTitle(title)
            box.setText(text)
            if not replies_in_progress(self.chat):
                box.setInformativeText("")
                keep.setText("Stay")
                follow.stop()

        follow.timeout.connect(update)
        follow.start()

        def answered() -> None:
            follow.stop()
            self.quit_confirm = None
            if box.clickedButton() is self.quit_button:
                self._quit_confirmed = True
                self.close()

        box.finished.connect(answered)
        self.quit_confirm = box
        box.open()
        return box

    def closeEvent(self, event: QCloseEvent) -> None:
        """Close after an orderly shutdown of the services (asking first while replies are
        being generated)."""
        if self._closed or self.backend.closed:
            self._closed = True
            self._closed_event.set()
            event.accept()
            return
        event.ignore()
        if replies_in_progress(self.chat) and not self._quit_confirmed:
            self.confirm_quit()
            return
        self.drafts.flush()  # at once, whatever happens to the shutdown below
        self.hide()

        async def finish() -> None:
            try:
                asyncio.get_running_loop()
            except RuntimeError:  # stepped while Qt tears down after the loop stopped
                log.info("closing without a running event loop: no orderly shutdown")
            else:
                try:
                    await asyncio.wait_for(self.shutdown(), timeout=8)
                except Exception:  # closing must always end the app
                    log.warning("shutdown did not finish cleanly", exc_info=True)
            self._closed = True
            self.close()

        self._finish_task = asyncio.ensure_future(finish())
