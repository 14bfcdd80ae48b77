"""The chat's turn list: the turns one under the other in a scroll area that follows a
streaming turn, and the empty page (with its example prompts) while there are none."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QHBoxLayout, QScrollArea, QVBoxLayout, QWidget

from rlhf_desktop.ui.chat.empty_state import EmptyState
from rlhf_desktop.ui.chat.scroll_follow import ScrollFollower
from rlhf_desktop.ui.chat.turn_widget import TurnWidget

__all__ = ["TurnList"]


class TurnList(QScrollArea):
    """The turns shown (:attr:`widgets`, in order); ``dropped`` hears of each one removed."""

    def __init__(self, send_example: Callable[[str], None],
                 dropped: Callable[[TurnWidget], None],
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._dropped = dropped
        self.widgets: list[TurnWidget] = []
        self.setObjectName("chatScroll")
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        page = QWidget()
        page.setObjectName("chatPage")
        page_layout = QHBoxLayout(page)
        page_layout.setContentsMargins(24, 12, 24, 12)
        column = QWidget()
        column.setMaximumWidth(1180)
        self.column_layout = QVBoxLayout(column)
        self.column_layout.setContentsMargins(0, 0, 0, 0)
        self.column_layout.setSpacing(14)
        self.empty = EmptyState(send_example)
        self.chips = self.empty.chips
        self.column_layout.addWidget(self.empty)
        self.column_layout.addStretch(1)
        page_layout.addStretch(0)
        page_layout.addWidget(column, 1)
        page_layout.addStretch(0)
        self.setWidget(page)
        self.follower = ScrollFollower(self)

    def add(self, widget: TurnWidget) -> None:
        """Show ``widget`` after the last turn."""
        self.column_layout.insertWidget(self.column_layout.count() - 1, widget)
        self.widgets.append(widget)
        self.empty.hide()

    def remove(self, widget: TurnWidget) -> None:
        """Take ``widget`` off the page."""
        if widget in self.widgets:
            self.widgets.remove(widget)
        self.column_layout.removeWidget(widget)
        widget.deleteLater()
        self._dropped(widget)

    def remove_from(self, at: int) -> None:
        """Take the turn at ``at`` and every later one off the page."""
        for widget in self.widgets[at:]:
            self.remove(widget)

    def clear(self) -> None:
        """No turns: the empty page."""
        self.remove_from(0)
        self.empty.show()

    def scroll_to(self, widget: QWidget) -> None:
        """Keep ``widget``'s top at the top of the view while it grows (streaming), until
        the user scrolls or the turn ends."""
        self.follower.top(widget)

    def reveal(self, widget: QWidget) -> None:
        """Scroll ``widget`` (a reason field, an error) into view."""
        self.follower.reveal(widget)
