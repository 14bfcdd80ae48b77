"""Small widgets the window shares: a label that elides instead of widening the window."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QSize, Qt
from PySide6.QtGui import QKeyEvent, QPainter, QPaintEvent
from PySide6.QtWidgets import QLabel, QSizePolicy, QWidget


def claims_escape(event: QEvent) -> bool:
    """Accept Esc's shortcut override, so a widget's own Esc (cancel an edit, skip a turn)
    comes before the window's Esc shortcut (stop the replies); True when it did."""
    if event.type() == QEvent.Type.ShortcutOverride and isinstance(event, QKeyEvent) \
            and event.key() == Qt.Key.Key_Escape:
        event.accept()
        return True
    return False


class ElidedLabel(QLabel):
    """One line of text that ends in "…" when there is no room for it (the tooltip, or
    :meth:`text`, has it whole). Its minimum width is small, so a long status never sets
    the window's minimum width."""

    def __init__(self, text: str = "", parent: QWidget | None = None,
                 mode: Qt.TextElideMode = Qt.TextElideMode.ElideRight) -> None:
        super().__init__(text, parent)
        self.mode = mode
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Preferred)
        self.setMinimumWidth(40)

    def minimumSizeHint(self) -> QSize:
        """A few characters wide."""
        return QSize(40, super().minimumSizeHint().height())

    def shown_text(self) -> str:
        """The text as it fits now; cut on the right, it ends after a whole word (a single
        word too long for the room is cut inside)."""
        text = self.text()
        room = self.contentsRect().width()
        shown = self.fontMetrics().elidedText(text, self.mode, room)
        if self.mode != Qt.TextElideMode.ElideRight or shown == text or not shown.endswith("…"):
            return shown
        kept = shown[:-1]
        if kept[-1:].isalnum() and text[len(kept):len(kept) + 1].isalnum():
            word_start = max(kept.rfind(" "), kept.rfind("\t"))
            whole = kept[:word_start].rstrip(" ·|,;:-") if word_start > 0 else ""
            if whole:
                return whole + "…"
        return shown

    def paintEvent(self, event: QPaintEvent) -> None:
        """Paint the elided text where QLabel would paint the whole."""
        painter = QPainter(self)
        painter.setPen(self.palette().color(self.foregroundRole()))
        rect = self.contentsRect()
        painter.drawText(rect, int(self.alignment() | Qt.AlignmentFlag.AlignVCenter),
                         self.shown_text())
        painter.end()
