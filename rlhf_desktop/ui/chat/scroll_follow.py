"""Keeps a widget of the chat in view while the page grows, until the user scrolls."""

from __future__ import annotations

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QScrollArea, QWidget
from shiboken6 import isValid


class ScrollFollower:
    """``top``: keep a widget's top at the top of the view (a streaming turn);
    ``reveal``: keep the whole widget in view (a reason field, an error)."""

    def __init__(self, area: QScrollArea) -> None:
        self.area = area
        self.widget: QWidget | None = None
        self.whole = False
        self._auto = False
        bar = area.verticalScrollBar()
        bar.rangeChanged.connect(lambda _lo, _hi: self.apply())
        bar.actionTriggered.connect(lambda _a: self._user_scrolled())

    def top(self, widget: QWidget) -> None:
        """Follow ``widget``'s top."""
        self.widget, self.whole = widget, False
        self.apply()

    def reveal(self, widget: QWidget) -> None:
        """Bring ``widget`` into view, now and once the layout has settled."""
        self.widget, self.whole = widget, True
        self.apply()
        QTimer.singleShot(0, self.area, self.apply)  # not after the chat is gone

    def stop(self) -> None:
        """Follow nothing."""
        self.widget = None

    def apply(self) -> None:
        """Scroll to the followed widget (after a layout change)."""
        widget, page = self.widget, self.area.widget()
        if widget is None or page is None or not isValid(widget):
            return
        self._auto = True
        try:
            if self.whole:
                self.area.ensureWidgetVisible(widget, 0, 24)
            else:
                top = widget.mapTo(page, widget.rect().topLeft()).y()
                bar = self.area.verticalScrollBar()
                bar.setValue(min(bar.maximum(), max(0, top - 8)))
        finally:
            self._auto = False

    def _user_scrolled(self) -> None:
        if not self._auto:
            self.widget = None
