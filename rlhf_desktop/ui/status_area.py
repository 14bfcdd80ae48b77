"""The status bar's permanent parts: provider and why, training progress, Undo delete."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject, QTimer
from PySide6.QtWidgets import QProgressBar, QPushButton, QStatusBar

from rlhf_desktop import config
from rlhf_desktop.services.retraining import RetrainStatus
from rlhf_desktop.ui.backend import KIND_NAMES, Backend
from rlhf_desktop.ui.widgets import ElidedLabel

UNDO_SECONDS = 30


class StatusArea(QObject):
    """Builds its widgets into ``bar``; the window keeps references to them."""

    def __init__(self, bar: QStatusBar) -> None:
        super().__init__(bar)
        self.bar = bar
        self.provider_label = ElidedLabel("Choosing a provider…")
        self.provider_label.setObjectName("providerLabel")
        self.provider_why = ElidedLabel("")  # why this provider (see providers/select.py)
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
        # All permanent (a temporary message hides the normal widgets), none stretching (the
        # message gets the room); the labels elide rather than widen the window.
        for widget in (self.undo_button, self.provider_label, self.provider_why,
                       self.progress, self.retrain_label):
            bar.addPermanentWidget(widget)
        # while a message shows (a pick saved, a ranking's keys), the why makes room for it
        bar.messageChanged.connect(lambda text: self.provider_why.setHidden(bool(text)))

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
        self.bar.showMessage(message, UNDO_SECONDS * 1000)
        self.undo_button.setText(f"Undo {what}")
        self.undo_button.setToolTip(message)
        self.undo_button.show()
        self._undo_timer.start()

    def _undo_clicked(self) -> None:
        self.undo_button.hide()
        self._undo_timer.stop()
        undo, self._undo = self._undo, None
        if undo is not None:
            undo()
