"""The user's message in a turn; a long one is folded to its first lines. "Edit" opens it
in an inline editor (Send resends it as a new branch, Cancel or Esc keeps it); "‹ 2/3 ›"
browses the branches of an edited message. The rules are the service's
(:mod:`rlhf_desktop.services.chat.branches`): the bubble only shows what it is told and emits
what the user asked for."""

from __future__ import annotations

from PySide6.QtCore import QEvent, Qt, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from rlhf_desktop.services.chat.branches import BranchPoint
from rlhf_desktop.ui.chat.cards import MarkdownView
from rlhf_desktop.ui.markdown_render import MarkdownRenderer
from rlhf_desktop.ui.widgets import claims_escape

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


class EditBox(QPlainTextEdit):
    """The inline editor: Enter sends, Shift+Enter adds a line, Esc cancels (Esc is not the
    window's Stop here)."""

    send_requested = Signal()
    cancelled = Signal()

    MAX_LINES = 12

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setTabChangesFocus(True)
        self.document().documentLayout().documentSizeChanged.connect(self._fit)
        self._fit()

    def _fit(self) -> None:
        """As tall as the message (2 to :attr:`MAX_LINES` lines), then it scrolls."""
        lines = int(self.document().size().height())
        shown = max(2, min(self.MAX_LINES, lines))
        chrome = self.height() - self.viewport().height()
        margin = int(2 * self.document().documentMargin())
        self.setFixedHeight(self.fontMetrics().lineSpacing() * shown + margin + max(chrome, 4))

    def event(self, event: QEvent) -> bool:
        """Claim Esc before the window's shortcut sees it."""
        return claims_escape(event) or super().event(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        """Enter sends, Esc cancels; everything else types."""
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and not (
                event.modifiers() & Qt.KeyboardModifier.ShiftModifier):
            self.send_requested.emit()
            return
        if event.key() == Qt.Key.Key_Escape:
            self.cancelled.emit()
            return
        super().keyPressEvent(event)


class UserBubble(QFrame):
    """"You" and the message; "Show all (N characters)" unfolds a long one.

    ``edit_submitted(text)``: the user sent the edited message (the chat decides whether it
    can go now; :meth:`refuse` keeps the editor open with the reason). ``branch_requested
    (turn id)``: show that branch of the message."""

    edit_submitted = Signal(str)
    branch_requested = Signal(int)

    def __init__(self, text: str, renderer: MarkdownRenderer,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("userBubble")
        self.text = text
        self.head = folded(text)
        self.branch: BranchPoint | None = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(14, 8, 14, 8)
        who = QLabel("You")
        who.setObjectName("who")
        self.prev_button = QPushButton("‹")
        self.prev_button.setObjectName("branchPrev")
        self.prev_button.setFlat(True)
        self.prev_button.setAccessibleName("Previous version of this message")
        self.prev_button.setToolTip("Show the previous version of this message and its replies")
        self.prev_button.clicked.connect(lambda: self._step(-1))
        self.branch_label = QLabel("")
        self.branch_label.setObjectName("branchLabel")
        self.branch_label.setToolTip("Versions of this message: each edit is a branch of the "
                                     "chat; the others are kept with their replies and labels")
        self.next_button = QPushButton("›")
        self.next_button.setObjectName("branchNext")
        self.next_button.setFlat(True)
        self.next_button.setAccessibleName("Next version of this message")
        self.next_button.setToolTip("Show the next version of this message and its replies")
        self.next_button.clicked.connect(lambda: self._step(1))
        self.edit_button = QPushButton("Edit")
        self.edit_button.setObjectName("editMessage")
        self.edit_button.setFlat(True)
        self.edit_button.setToolTip("Edit this message and send it again as a new branch "
                                    "(↑ in an empty message box edits your last message); "
                                    "this version stays, with its replies and labels")
        self.edit_button.clicked.connect(self.start_edit)
        self.edit_button.hide()
        header = QHBoxLayout()
        header.setContentsMargins(0, 0, 0, 0)
        header.setSpacing(2)
        header.addWidget(who)
        header.addStretch(1)
        for w in (self.prev_button, self.branch_label, self.next_button):
            header.addWidget(w)
            w.hide()
        header.addWidget(self.edit_button)
        self.view = MarkdownView(renderer)
        self.toggle = QPushButton(f"Show all ({len(text):,} characters)")
        self.toggle.setFlat(True)
        self.toggle.setToolTip("The whole message was sent; only its display is folded")
        self.toggle.clicked.connect(self._toggle)
        self.toggle.setVisible(self.head is not None)
        self.editor = QFrame()
        self.editor.setObjectName("messageEditor")
        self.edit_box = EditBox()
        self.edit_box.send_requested.connect(self._submit)
        self.edit_box.cancelled.connect(self.cancel_edit)
        self.edit_note = QLabel("Enter sends as a new branch · Shift+Enter adds a line · "
                                "Esc cancels")
        self.edit_note.setObjectName("muted")
        self.edit_note.setWordWrap(True)
        self.send_edit_button = QPushButton("Send")
        self.send_edit_button.setObjectName("primary")
        self.send_edit_button.setToolTip("Send the edited message: new replies, a new branch "
                                         "(Enter)")
        self.send_edit_button.clicked.connect(self._submit)
        self.cancel_edit_button = QPushButton("Cancel")
        self.cancel_edit_button.setToolTip("Keep the message as it is (Esc)")
        self.cancel_edit_button.clicked.connect(self.cancel_edit)
        edit_layout = QVBoxLayout(self.editor)
        edit_layout.setContentsMargins(0, 0, 0, 0)
        buttons = QHBoxLayout()
        buttons.addWidget(self.edit_note, 1)
        buttons.addWidget(self.cancel_edit_button)
        buttons.addWidget(self.send_edit_button)
        edit_layout.addWidget(self.edit_box)
        edit_layout.addLayout(buttons)
        self.editor.hide()
        layout.addLayout(header)
        layout.addWidget(self.view)
        layout.addWidget(self.toggle)
        layout.addWidget(self.editor)
        self.expanded = False
        self.view.set_markdown_text(self.head if self.head is not None else text)

    # ------------------------------------------------------------------ edit and branches

    @property
    def editing(self) -> bool:
        """Whether the inline editor is open."""
        return not self.editor.isHidden()

    def set_editable(self, editable: bool, why: str = "") -> None:
        """Show Edit (a saved turn); disabled with ``why`` (e.g. while replies stream)."""
        self.edit_button.setVisible(editable and not self.editing)
        self.edit_button.setEnabled(not why)
        if why:
            self.edit_button.setToolTip(why)
        else:
            self.edit_button.setToolTip(
                "Edit this message and send it again as a new branch (↑ in an empty message "
                "box edits your last message); this version stays, with its replies and labels")
        self.prev_button.setEnabled(not why and self.branch is not None
                                    and self.branch.previous is not None)
        self.next_button.setEnabled(not why and self.branch is not None
                                    and self.branch.next is not None)

    def set_branch(self, point: BranchPoint | None) -> None:
        """The switcher "‹ 2/3 ›" (hidden when the message has one version)."""
        self.branch = point
        many = point is not None and point.count > 1
        for w in (self.prev_button, self.branch_label, self.next_button):
            w.setVisible(many)
        if point is not None:
            self.branch_label.setText(f"{point.position}/{point.count}")
            self.branch_label.setAccessibleName(
                f"Version {point.position} of {point.count} of this message")
        self.prev_button.setEnabled(point is not None and point.previous is not None)
        self.next_button.setEnabled(point is not None and point.next is not None)

    def _step(self, step: int) -> None:
        point = self.branch
        if point is None:
            return
        target = point.previous if step < 0 else point.next
        if target is not None:
            self.branch_requested.emit(target)

    def start_edit(self) -> None:
        """Open the inline editor on the whole message, the cursor at its end."""
        if not self.edit_button.isEnabled():
            return
        self.edit_box.setPlainText(self.text)
        self.edit_note.setText("Enter sends as a new branch · Shift+Enter adds a line · "
                               "Esc cancels")
        self.view.hide()
        self.toggle.hide()
        self.editor.show()
        self.edit_button.hide()
        cursor = self.edit_box.textCursor()
        cursor.movePosition(cursor.MoveOperation.End)
        self.edit_box.setTextCursor(cursor)
        self.edit_box.setFocus(Qt.FocusReason.OtherFocusReason)

    def cancel_edit(self) -> None:
        """Close the editor; the message stays as it was (the focus goes back to Edit)."""
        typing = self.edit_box.hasFocus()
        self.editor.hide()
        self.view.show()
        self.toggle.setVisible(self.head is not None)
        self.edit_button.show()
        if typing:
            self.edit_button.setFocus(Qt.FocusReason.OtherFocusReason)

    def refuse(self, why: str) -> None:
        """The edit was not sent: say why in the editor, which stays open."""
        self.edit_note.setText(why)
        self.edit_box.setFocus(Qt.FocusReason.OtherFocusReason)

    def _submit(self) -> None:
        self.edit_submitted.emit(self.edit_box.toPlainText())

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
