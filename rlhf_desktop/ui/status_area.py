"""The status bar: the window's messages, provider and why, training progress, Undo delete.

QStatusBar paints a message only in the room its permanent widgets leave and cuts it there
mid-word ("…Ente Built-in model"). So the message shows in a label of its own, the first
permanent widget, that stretches: while a message shows, the provider's why steps aside and
the provider and training labels shrink as far as the message needs, down to
:data:`ROOM_WHILE_MESSAGE` (their tooltips keep them whole); a message still too long ends
in "…" and its tooltip has it whole.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject, Qt, QTimer
from PySide6.QtWidgets import QProgressBar, QPushButton, QStatusBar

from rlhf_desktop import config
from rlhf_desktop.services.retraining import RetrainStatus
from rlhf_desktop.ui.backend import KIND_NAMES, Backend
from rlhf_desktop.ui.widgets import ElidedLabel

UNDO_SECONDS = 30
ROOM_WHILE_MESSAGE = 200  # px each for the provider and the training status while a message
NO_LIMIT = 16777215  # QWIDGETSIZE_MAX


class StatusArea(QObject):
    """Builds its widgets into ``bar``; the window keeps references to them."""

    def __init__(self, bar: QStatusBar) -> None:
        super().__init__(bar)
        self.bar = bar
        self.message_label = ElidedLabel("")
        self.message_label.setObjectName("statusMessage")
        self.provider_label = ElidedLabel("Choosing a provider…")
        self.provider_label.setObjectName("providerLabel")
        # why this provider (see providers/select.py); cut in the middle when narrow, so
        # that its end ("… are set", "… missing") still shows; the tooltip has it whole
        self.provider_why = ElidedLabel("", mode=Qt.TextElideMode.ElideMiddle)
        self.provider_why.setObjectName("providerWhy")
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setFixedWidth(140)
        self.progress.setTextVisible(False)
        self.progress.hide()
        self.retrain_label = ElidedLabel("")
        self.retrain_label.setObjectName("retrainLabel")
        self.undo_button = QPushButton("Undo delete")
        self.undo_button.setObjectName("undoDelete")
        self.undo_button.hide()
        self._undo: Callable[[], object] | None = None
        self.undo_button.clicked.connect(self._undo_clicked)
        self._undo_timer = QTimer(self)
        self._undo_timer.setSingleShot(True)
        self._undo_timer.setInterval(UNDO_SECONDS * 1000)
        self._undo_timer.timeout.connect(self.undo_button.hide)
        # All permanent (a temporary message hides the normal widgets); the message's label
        # stretches, the others elide rather than widen the window.
        bar.addPermanentWidget(self.message_label, 1)
        for widget in (self.undo_button, self.provider_label, self.provider_why,
                       self.progress, self.retrain_label):
            bar.addPermanentWidget(widget)
        bar.messageChanged.connect(self._show_message)

    def _show_message(self, text: str) -> None:
        """A message (a pick saved, a ranking's keys) or none: the why makes room for it,
        the provider and training labels shrink."""
        self.message_label.setText(text)
        self.message_label.setToolTip(text)
        self.provider_why.setHidden(bool(text))
        cap = NO_LIMIT
        if text:  # what the message leaves them, in halves, but at least ROOM_WHILE_MESSAGE
            need = self.message_label.fontMetrics().horizontalAdvance(text) + 60
            if self.undo_button.isVisibleTo(self.bar):
                need += self.undo_button.sizeHint().width()
            cap = max(ROOM_WHILE_MESSAGE, (self.bar.width() - need) // 2)
        for label in (self.provider_label, self.retrain_label):
            label.setMaximumWidth(cap)

    def show_provider(self, b: Backend) -> None:
        """The provider in use and why it was chosen (or what is wrong)."""
        if b.provider_error:
            self.provider_label.setText("No provider")
            self.provider_label.setToolTip(b.provider_error)
            self.provider_why.setText(f"— {b.provider_error}")
            self.provider_why.setToolTip(b.provider_error)
            return
        if not b.provider_kind:
            return
        name = KIND_NAMES.get(b.provider_kind, b.provider_kind)
        self.provider_label.setText(f"{name} · {b.provider_model}")
        self.provider_label.setToolTip(b.provider_reason)
        arena = b.provider_kind == "arena"  # its why repeats the label ("Arena: a (1) vs b (1)")
        self.provider_why.setText(f"— {b.provider_why}" if b.provider_why and not arena else "")
        self.provider_why.setToolTip(
            f"Why this provider: {config.redact(b.provider_reason)}\n\nSwitch it above the "
            "chat or in Settings; the README lists the order in which it is chosen.")

    def switching(self) -> None:
        """While the provider is rebuilt."""
        self.provider_label.setText("Switching provider…")
        self.provider_why.setText("")

    def show_retrain(self, text: str, status: RetrainStatus) -> None:
        """Training progress, or the model and the labels to the next training."""
        self.retrain_label.setText(text)
        self.retrain_label.setToolTip(text)
        self.progress.setVisible(status.running)
        if status.running:
            self.progress.setValue(int((status.progress or 0.0) * 100))

    def offer_undo(self, message: str, undo: Callable[[], object], what: str) -> None:
        """Show ``message`` and an "Undo ``what``" button for :data:`UNDO_SECONDS` seconds
        (the button says what it undoes: a narrow bar has no room for the message)."""
        self._undo = undo
        self.undo_button.setText(f"Undo {what}")
        self.undo_button.setToolTip(message)
        self.undo_button.show()
        self.bar.showMessage(message, UNDO_SECONDS * 1000)  # after: it makes room for both
        self._undo_timer.start()

    def _undo_clicked(self) -> None:
        self.undo_button.hide()
        self._undo_timer.stop()
        undo, self._undo = self._undo, None
        if undo is not None:
            undo()
