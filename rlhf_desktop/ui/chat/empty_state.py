"""A new chat's empty page: a title, what happens, and example prompts that wrap."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import (
    QGridLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

EXAMPLES: tuple[tuple[str, str], ...] = (
    ("Education", "Explain gravity like I'm 5 years old."),
    ("Professional", "Write a thank-you email after a job interview."),
    ("Creative", "Describe the ocean as if it could talk."),
    ("Technical", "Write a Python function to check if a number is prime."),
    ("Empathy", "How would you comfort a friend who failed an exam?"),
)
TWO_COLUMNS_WIDTH = 520


class Chip(QPushButton):
    """An example prompt; its text wraps (a QPushButton's own text does not)."""

    def __init__(self, category: str, prompt: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("chip")
        self.prompt = prompt
        self.setAccessibleName(f"{category}: {prompt}")
        self.label = QLabel(f"{category}\n{prompt}")
        self.label.setWordWrap(True)
        self.label.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(14, 12, 14, 12)
        layout.addWidget(self.label)
        policy = QSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        policy.setHeightForWidth(True)
        self.setSizePolicy(policy)

    def text(self) -> str:
        """The chip's text (held by its label)."""
        return self.label.text()

    def sizeHint(self) -> QSize:
        """What the wrapped label needs."""
        layout = self.layout()
        return layout.sizeHint() if layout is not None else super().sizeHint()

    def minimumSizeHint(self) -> QSize:
        """Narrow: the label wraps."""
        return QSize(120, super().minimumSizeHint().height())

    def hasHeightForWidth(self) -> bool:
        """The wrapped label's height depends on the width."""
        return True

    def heightForWidth(self, width: int) -> int:
        """Height of the wrapped label plus the margins."""
        layout = self.layout()
        return layout.totalHeightForWidth(width) if layout is not None else -1


class EmptyState(QWidget):
    """Title, hint and example chips; one column of chips when narrow."""

    def __init__(self, send: Callable[[str], None], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("emptyState")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 40, 0, 0)
        title = QLabel("What would you like to talk about?")
        title.setObjectName("emptyTitle")
        title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        title.setWordWrap(True)
        hint = QLabel("Every message gets several replies, ranked by your own reward model "
                      "(in an arena: shown blind until you pick). Pick the best one with its "
                      "Best button (or Alt+1–9): each pick teaches the model.")
        hint.setObjectName("emptyHint")
        hint.setWordWrap(True)
        hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.grid = QGridLayout()
        self.grid.setSpacing(10)
        self.chips: list[Chip] = []
        for category, prompt in EXAMPLES:
            chip = Chip(category, prompt)
            chip.setToolTip(f"Send “{prompt}”")
            chip.setCursor(Qt.CursorShape.PointingHandCursor)
            chip.clicked.connect(lambda _=False, p=prompt: send(p))
            self.chips.append(chip)
        self.columns = 0
        self._arrange(2)
        layout.addWidget(title)
        layout.addWidget(hint)
        layout.addSpacing(18)
        layout.addLayout(self.grid)

    def _arrange(self, columns: int) -> None:
        if columns == self.columns:
            return
        self.columns = columns
        for chip in self.chips:
            self.grid.removeWidget(chip)
        for i, chip in enumerate(self.chips):
            self.grid.addWidget(chip, i // columns, i % columns)
        for col in range(2):
            self.grid.setColumnStretch(col, 1 if col < columns else 0)

    def resizeEvent(self, event: QResizeEvent) -> None:
        """Two columns of chips when there is room, else one."""
        super().resizeEvent(event)
        self._arrange(2 if event.size().width() >= TWO_COLUMNS_WIDTH else 1)
