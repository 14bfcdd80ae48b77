"""How many columns a turn's cards take: two only when two fit at their minimum width.

The turn's own width cannot tell: inside the chat's scroll area it is never less than its
layout's minimum, so two cards that no longer fit would just overflow (the right card's
Best button clipped at 800 px). The width that counts is the scroll area's viewport's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QEvent, QObject, QPoint
from PySide6.QtWidgets import QAbstractScrollArea, QWidget

if TYPE_CHECKING:
    from rlhf_desktop.ui.chat.turn_widget import TurnWidget

TWO_COLUMNS_WIDTH = 640
"""Never two columns below this width, even when two cards would fit."""


class ColumnFitter(QObject):
    """Owned by one turn widget; watches the viewport that shows it."""

    def __init__(self, turn: TurnWidget) -> None:
        super().__init__(turn)
        self.turn = turn
        self._viewport: QWidget | None = None

    def watch(self) -> None:
        """Refit whenever the scroll area's viewport is resized (call once shown)."""
        viewport = self.viewport()
        if viewport is not None and viewport is not self._viewport:
            if self._viewport is not None:
                self._viewport.removeEventFilter(self)
            viewport.installEventFilter(self)
            self._viewport = viewport
        self.fit()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        """The viewport was resized: refit."""
        if event.type() == QEvent.Type.Resize:
            self.fit()
        return False

    def viewport(self) -> QWidget | None:
        """The viewport of the nearest scroll area above the turn (None: not in one)."""
        parent = self.turn.parentWidget()
        while parent is not None and not isinstance(parent, QAbstractScrollArea):
            parent = parent.parentWidget()
        return parent.viewport() if parent is not None else None

    def available(self) -> int:
        """The width the turn may use: its own, capped by the viewport less its margins."""
        width = self.turn.width()
        viewport = self.viewport()
        if viewport is not None and self.turn.isVisible():
            left = max(0, self.turn.mapTo(viewport, QPoint(0, 0)).x())
            width = min(width, viewport.width() - 2 * left)
        return width

    def columns_for(self, width: int) -> int:
        """2 when two cards fit side by side at their minimum width, else 1."""
        cards = self.turn.cards
        if not cards:
            return 2 if width >= TWO_COLUMNS_WIDTH else 1
        card = max(c.minimumSizeHint().width() for c in cards.values())
        need = max(TWO_COLUMNS_WIDTH, 2 * card + self.turn.grid.horizontalSpacing())
        return 2 if width >= need else 1

    def fit(self) -> None:
        """Lay the cards out again when the number of columns changes."""
        columns = self.columns_for(self.available())
        if columns != self.turn.columns:
            self.turn.columns = columns
            self.turn.relayout_cards()
