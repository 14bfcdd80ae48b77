"""The status bar: the window's messages, provider and why, training progress, Undo delete.

QStatusBar paints a message only in the room its permanent widgets leave and cuts it there
mid-word ("…Ente Built-in model"). So the message shows in a label of its own, the first
permanent widget, that stretches. Nothing in the bar is cut mid-word: :meth:`StatusArea._fit`
shares the bar's width out by priority (the provider and its model or deployment first, then
the labels to the next training, then the message, then the rest of the training status, then
the provider's why), and each label shows its text whole or a shorter form of it made of whole
parts (:class:`PartsLabel`), with the whole text in its tooltip. While a message shows, the
provider's why steps aside.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QEvent, QObject, QTimer
from PySide6.QtWidgets import QProgressBar, QPushButton, QStatusBar, QWidget

from rlhf_desktop import config
from rlhf_desktop.core.chat_models import tuned_version, version_name
from rlhf_desktop.services.ranking.retraining import RetrainStatus
from rlhf_desktop.ui.backend import KIND_NAMES, Backend
from rlhf_desktop.ui.widgets import ElidedLabel

UNDO_SECONDS = 30
GROUP_SEP = "   |   "  # between the model and the labels to the next training (retrain_text)
PART_SEP = " · "
SPACING = 8  # px the bar's layout puts beside each widget (with some slack)
FRAME = 36  # px of the bar's own margins and size grip


def whole_words(metrics_advance: Callable[[str], int], text: str, room: int) -> str:
    """``text`` cut after its last whole word that fits ``room`` with "…", or "" when not
    even its first word fits (never a word cut in two)."""
    if metrics_advance(text) <= room:
        return text
    words = text.split(" ")
    for n in range(len(words) - 1, 0, -1):
        kept = " ".join(words[:n]).rstrip(" ·|,;:-—")
        if kept and metrics_advance(kept + "…") <= room:
            return kept + "…"
    return ""


def retrain_forms(text: str) -> list[str]:
    """Shorter forms of the training status, whole parts dropped, least important first:
    the model's details, then the model, then "to next training"."""
    *model, labels = text.split(GROUP_SEP)
    forms = []
    if model:
        parts = model[0].split(PART_SEP)
        forms += [PART_SEP.join(parts[:n]) + GROUP_SEP + labels
                  for n in range(len(parts) - 1, 0, -1)]
        forms.append(labels)
    head = labels.split(PART_SEP)
    forms += [PART_SEP.join(head[:n]) for n in range(len(head) - 1, 0, -1)]
    if labels.endswith(" labels to next training"):
        forms.append(labels.removesuffix(" to next training"))
    return forms


def why_forms(text: str) -> list[str]:
    """Shorter forms of the provider's why: whole words dropped from its middle (its start
    and its end, "… are set", stay)."""
    words = text.split(" ")
    forms = []
    for kept in range(len(words) - 1, 2, -1):
        for head in range(2, kept):
            tail = kept - head
            forms.append(" ".join(words[:head]) + " … " + " ".join(words[len(words) - tail:]))
    return forms


class PartsLabel(ElidedLabel):
    """A status text shown whole, or as the first of its shorter forms (``shorten``) that fits
    whole, or else its shortest form cut after a whole word; never cut mid-word. The tooltip
    (set by the owner) has it whole."""

    def __init__(self, text: str = "",
                 shorten: Callable[[str], list[str]] = lambda text: []) -> None:
        super().__init__(text)
        self.shorten = shorten

    def forms(self) -> list[str]:
        """The text and its shorter forms, best first."""
        text = self.text()
        return [text, *self.shorten(text)] if text else []

    def width_for(self, text: str) -> int:
        """The label's width that shows ``text`` whole."""
        if not text:
            return 0
        pad = super().sizeHint().width() - self.fontMetrics().horizontalAdvance(self.text())
        return self.fontMetrics().horizontalAdvance(text) + max(pad, 0) + 2

    def shown_text(self) -> str:
        """What fits now (see the class)."""
        room = self.contentsRect().width()
        forms = self.forms()
        advance = self.fontMetrics().horizontalAdvance
        for form in forms:
            if advance(form) <= room:
                return form
        return whole_words(advance, forms[-1], room) if forms else ""


class StatusArea(QObject):
    """Builds its widgets into ``bar``; the window keeps references to them."""

    def __init__(self, bar: QStatusBar) -> None:
        super().__init__(bar)
        self.bar = bar
        self.message_label = PartsLabel("")
        self.message_label.setObjectName("statusMessage")
        self.provider_label = PartsLabel("Choosing a provider…")
        self.provider_label.setObjectName("providerLabel")
        # why this provider (see providers/select.py); words dropped from its middle when
        # narrow, so that its end ("… are set", "… missing") still shows; the tooltip has it
        self.provider_why = PartsLabel("", shorten=why_forms)
        self.provider_why.setObjectName("providerWhy")
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setFixedWidth(140)
        self.progress.setTextVisible(False)
        self.progress.hide()
        self.retrain_label = PartsLabel("", shorten=retrain_forms)
        self.retrain_label.setObjectName("retrainLabel")
        self.undo_button = QPushButton("Undo delete")
        self.undo_button.setObjectName("undoDelete")
        self.undo_button.hide()
        self._undo: Callable[[], object] | None = None
        self.undo_button.clicked.connect(self._undo_clicked)
        self._undo_timer = QTimer(self)
        self._undo_timer.setSingleShot(True)
        self._undo_timer.setInterval(UNDO_SECONDS * 1000)
        self._undo_timer.timeout.connect(self._hide_undo)
        # All permanent (a temporary message hides the normal widgets); the message's label
        # stretches, the others elide rather than widen the window.
        bar.addPermanentWidget(self.message_label, 1)
        for widget in (self.undo_button, self.provider_label, self.provider_why,
                       self.progress, self.retrain_label):
            bar.addPermanentWidget(widget)
        bar.messageChanged.connect(self._show_message)
        bar.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        """Share the bar out again when its width changes."""
        if watched is self.bar and event.type() == QEvent.Type.Resize:
            self._fit()
        return False

    def _fit(self) -> None:
        """Give each label a width by priority: the provider (name and model) whole, the
        labels to the next training, the message, the rest of the training status, the
        provider's why; each shows whole or a shorter form of whole parts."""
        room = self.bar.width() - FRAME
        fixed: list[QWidget] = [self.undo_button, self.progress]
        for widget in fixed:
            if widget.isVisibleTo(self.bar):
                room -= widget.sizeHint().width() + SPACING
        why_shown = not self.provider_why.isHidden() and bool(self.provider_why.text())
        room -= SPACING * (3 + why_shown)
        provider = min(self.provider_label.width_for(self.provider_label.text()), max(room, 0))
        room -= provider
        forms = self.retrain_label.forms()
        widths = [self.retrain_label.width_for(form) for form in forms]
        retrain = min(min(widths, default=0), max(room, 0))
        room -= retrain
        room -= min(self.message_label.width_for(self.message_label.text()), max(room, 0))
        for width in widths:  # the best form that fits whole in what is left
            if width - retrain <= room:
                room -= max(width - retrain, 0)
                retrain = max(width, retrain)
                break
        why = 0
        if why_shown:
            why = next((w for w in map(self.provider_why.width_for, self.provider_why.forms())
                        if w <= room), 0)
        for label, width in ((self.provider_label, provider), (self.retrain_label, retrain),
                             (self.provider_why, why)):
            label.setMinimumWidth(0)
            label.setFixedWidth(max(width, 0))

    def _show_message(self, text: str) -> None:
        """A message (a pick saved, a ranking's keys) or none: the why makes room for it,
        the training status gives up its less important parts."""
        self.message_label.setText(text)
        self.message_label.setToolTip(text)
        self.provider_why.setHidden(bool(text))
        self._fit()

    def show_provider(self, b: Backend) -> None:
        """The provider in use and why it was chosen (or what is wrong)."""
        if b.provider_error:
            self.provider_label.setText("No provider")
            self.provider_label.setToolTip(b.provider_error)
            self.provider_why.setText(f"— {b.provider_error}")
            self.provider_why.setToolTip(b.provider_error)
            self._fit()
            return
        if not b.provider_kind:
            return
        name = KIND_NAMES.get(b.provider_kind, b.provider_kind)
        model = b.provider_model
        version = tuned_version(model) if b.provider_kind == "local" else 0
        # a tuned version by the name the rest of the window gives it, not "<file>+v0001"
        shown = version_name(version) if version else model
        self.provider_label.setText(f"{name} · {shown}")
        self.provider_label.setToolTip(f"{name} · {model}\n\n{b.provider_reason}")
        arena = b.provider_kind == "arena"  # its why repeats the label ("Arena: a (1) vs b (1)")
        self.provider_why.setText(f"— {b.provider_why}" if b.provider_why and not arena else "")
        self.provider_why.setToolTip(
            f"Why this provider: {config.redact(b.provider_reason)}\n\nSwitch it above the "
            "chat or in Settings; the README lists the order in which it is chosen.")
        self._fit()

    def switching(self) -> None:
        """While the provider is rebuilt."""
        self.provider_label.setText("Switching provider…")
        self.provider_why.setText("")
        self._fit()

    def show_retrain(self, text: str, status: RetrainStatus) -> None:
        """Training progress, or the model and the labels to the next training."""
        self.retrain_label.setText(text)
        self.retrain_label.setToolTip(text)
        self.progress.setVisible(status.running)
        if status.running:
            self.progress.setValue(int((status.progress or 0.0) * 100))
        self._fit()

    def offer_undo(self, message: str, undo: Callable[[], object], what: str) -> None:
        """Show ``message`` and an "Undo ``what``" button for :data:`UNDO_SECONDS` seconds
        (the button says what it undoes: a narrow bar has no room for the message)."""
        self._undo = undo
        self.undo_button.setText(f"Undo {what}")
        self.undo_button.setToolTip(message)
        self.undo_button.show()
        self._fit()
        self.bar.showMessage(message, UNDO_SECONDS * 1000)  # after: it makes room for both
        self._undo_timer.start()

    def _hide_undo(self) -> None:
        self.undo_button.hide()
        self._fit()

    def _undo_clicked(self) -> None:
        self._hide_undo()
        self._undo_timer.stop()
        undo, self._undo = self._undo, None
        if undo is not None:
            undo()
