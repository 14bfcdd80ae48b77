"""Closing the main window: an orderly shutdown, and a question first while replies stream.

A turn that is stopped stores its replies (the unfinished ones as stopped) before the
services close; see :meth:`ChatService.send_messages
<rlhf_desktop.services.chat.ChatService.send_messages>`.
"""

from __future__ import annotations

import asyncio
import logging

from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import QMainWindow, QMessageBox, QPushButton

from rlhf_desktop.ui.backend import Backend
from rlhf_desktop.ui.chat_view import ChatView

log = logging.getLogger(__name__)
STOP_WAIT_S = 3.0
"""How long quitting waits for a stopped turn to store its replies before cancelling it."""


class OrderlyClose(QMainWindow):
    """The main window's closing (its ``backend`` and ``chat`` are set by the subclass)."""

    backend: Backend
    chat: ChatView
    quit_button: QPushButton

    def _init_close(self) -> None:
        self._closed = False
        self._closed_event = asyncio.Event()
        self._quit_confirmed = False
        self.quit_confirm: QMessageBox | None = None
        """The "Quit while replies are streaming?" question while it is open."""

    async def wait_closed(self) -> None:
        """Until the window has closed (after its shutdown)."""
        await self._closed_event.wait()

    async def shutdown(self) -> None:
        """Stop generation (the replies so far are kept, as stopped) and training, close the
        provider and the database."""
        self.chat.stop()
        deadline = asyncio.get_running_loop().time() + STOP_WAIT_S
        while self.chat.generating and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)  # the stopped turn stores its replies and ends
        await self.backend.aclose()  # cancels what is left; a cancelled turn stores it too

    def confirm_quit(self) -> QMessageBox:
        """Ask before quitting while replies stream (non-blocking; Quit closes)."""
        if self.quit_confirm is not None:
            self.quit_confirm.raise_()
            return self.quit_confirm
        box = QMessageBox(QMessageBox.Icon.Question, "Quit while replies are streaming?",
                          "Replies are still streaming. Quit anyway?", parent=self)
        box.setInformativeText("Your message and the replies that finished are saved; the "
                               "ones still streaming are kept as far as they got, marked as "
                               "stopped.")
        self.quit_button = box.addButton("Quit", QMessageBox.ButtonRole.AcceptRole)
        box.addButton("Keep generating", QMessageBox.ButtonRole.RejectRole)
        box.setDefaultButton(self.quit_button)

        def answered() -> None:
            self.quit_confirm = None
            if box.clickedButton() is self.quit_button:
                self._quit_confirmed = True
                self.close()

        box.finished.connect(answered)
        self.quit_confirm = box
        box.open()
        return box

    def closeEvent(self, event: QCloseEvent) -> None:
        """Close after an orderly shutdown of the services (asking first while replies
        stream)."""
        if self._closed or self.backend.closed:
            self._closed = True
            self._closed_event.set()
            event.accept()
            return
        event.ignore()
        if self.chat.generating and not self._quit_confirmed:
            self.confirm_quit()
            return
        self.hide()

        async def finish() -> None:
            try:
                await asyncio.wait_for(self.shutdown(), timeout=8)
            except Exception:  # closing must always end the app
                log.warning("shutdown did not finish cleanly", exc_info=True)
            self._closed = True
            self.close()

        self._finish_task = asyncio.ensure_future(finish())
