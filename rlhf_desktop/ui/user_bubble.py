"""The user's message in a turn; a long one is folded to its first lines."""

from __future__ import annotations

from PySide6.QtWidgets import QFrame, QLabel, QPushButton, QVBoxLayout, QWidget

from rlhf_desktop.ui.cards import MarkdownView
from rlhf_desktop.ui.markdown_render import MarkdownRenderer

FOLD_CHARS = 1500
FOLD_LINES = 15
SHOWN_LINES = 8
SHOWN_CHARS = 600


def folded(text: str) -> str | None:
    """The first lines of a long message (None when it is short enough to show whole)."""
    lines = text.splitlines()
    if len(text) <= FOLD_CHARS and len(lines) <= FOLD_LINES:
        return None
    head = "\n".join(lines[:SHOWN_LINES])[:SHOWN_CHARS].rstrip()
    if head.count("```") % 2:  # do not leave a code fence open
        head += "\n```"
    return head + "\n\n…"


class UserBubble(QFrame):
    """"You" and the message; "Show all (N characters)" unfolds a long one."""

    def __init__(self, text: str, renderer: MarkdownRenderer,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("userBubble")
        self.text = text
        self.head = folded(text)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(14, 8, 14, 8)
        who = QLabel("You")
        who.setObjectName("who")
        self.view = MarkdownView(renderer)
        self.toggle = QPushButton(f"Show all ({len(text):,} characters)")
        self.toggle.setFlat(True)
        self.toggle.setToolTip("The whole message was sent; only its display is folded")
        self.toggle.clicked.connect(self._toggle)
        self.toggle.setVisible(self.head is not None)
        layout.addWidget(who)
        layout.addWidget(self.view)
        layout.addWidget(self.toggle)
        self.expanded = False
        self.view.set_markdown_text(self.head if self.head is not None else text)

    def _toggle(self) -> None:
        self.set_expanded(not self.expanded)

    def set_expanded(self, expanded: bool) -> None:
        """Show the whole message (True) or its first lines."""
        if self.head is None:
            return
        self.expanded = expanded
        self.view.set_markdown_text(self.text if expanded else self.head)
        self.toggle.setText("Show less" if expanded
                            else f"Show all ({len(self.text):,} characters)")
