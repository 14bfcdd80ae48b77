"""The widgets of labels beyond the pick: the Tie / All bad / Skip bar under a turn, the
Edit dialog, and the Edit action on a card."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLayout,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from rlhf_desktop.ui.cards import CandidateCard

TIE_KEY, ALL_BAD_KEY, SKIP_KEY = "Alt+T", "Alt+B", "Alt+S"


class LabelBar(QFrame):
    """Tie…, All bad and Skip under a turn's cards; while choosing a tie, Save tie and
    Cancel."""

    tie_clicked = Signal()
    all_bad_clicked = Signal()
    skip_clicked = Signal()
    cancel_clicked = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("labelBar")
        self.hint = QLabel("")
        self.hint.setObjectName("muted")
        self.hint.setWordWrap(True)
        self.tie_button = _button("Tie…", f"Two or more replies are equally good ({TIE_KEY}):"
                                  " then mark them with Best or Alt+1…9, and save")
        self.all_bad_button = _button("All bad", f"Every reply is bad ({ALL_BAD_KEY}): a flag"
                                      " in the export, never turned into pairs")
        self.skip_button = _button("Skip", f"No label for this turn ({SKIP_KEY})")
        self.cancel_button = _button("Cancel", "Leave the tie without saving it")
        self.cancel_button.hide()
        self.tie_button.clicked.connect(self.tie_clicked)
        self.all_bad_button.clicked.connect(self.all_bad_clicked)
        self.skip_button.clicked.connect(self.skip_clicked)
        self.cancel_button.clicked.connect(self.cancel_clicked)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.hint, 1)
        for b in (self.tie_button, self.cancel_button, self.all_bad_button, self.skip_button):
            row.addWidget(b)

    def choosing(self, chosen: int | None) -> None:
        """Show the tie being chosen (``chosen`` replies marked; None: not choosing)."""
        active = chosen is not None
        self.cancel_button.setVisible(active)
        self.all_bad_button.setVisible(not active)
        self.skip_button.setVisible(not active)
        if active:
            self.tie_button.setText(f"Save tie ({chosen})")
            self.tie_button.setEnabled((chosen or 0) >= 2)
            self.hint.setText("Choosing a tie: mark two or more equally good replies with "
                              f"Best or Alt+1…9, then Save tie ({TIE_KEY})")
        else:
            self.tie_button.setText("Tie…")
            self.tie_button.setEnabled(True)
            self.hint.setText("")


def _button(text: str, tip: str) -> QPushButton:
    button = QPushButton(text)
    button.setObjectName("cardAction")
    button.setToolTip(tip)
    button.setCursor(Qt.CursorShape.PointingHandCursor)
    return button


class EditDialog(QDialog):
    """The reply's text, editable; Save stores the rewrite as the chosen reply."""

    def __init__(self, text: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("editDialog")
        self.setWindowTitle("Edit the reply")
        note = QLabel("Write the reply you wanted. Saving stores your version as the chosen "
                      "reply, preferred over every original reply, and the conversation "
                      "continues with it. The original is kept.")
        note.setWordWrap(True)
        self.editor = QPlainTextEdit()
        self.editor.setPlainText(text)
        self.error = QLabel("")
        self.error.setObjectName("errorText")
        self.error.setWordWrap(True)
        self.error.hide()
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save
                                        | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(note)
        layout.addWidget(self.editor, 1)
        layout.addWidget(self.error)
        layout.addWidget(self.buttons)
        self.resize(640, 420)

    def show_error(self, message: str) -> None:
        """Say why the rewrite was not saved (the text stays)."""
        self.error.setText(message)
        self.error.show()


def add_edit_button(card: CandidateCard, on_click: Callable[..., object]) -> QPushButton:
    """An "Edit" action beside the card's Copy and Regenerate."""
    button = _button("Edit", "Rewrite this reply; your version becomes the chosen reply")
    button.setFlat(True)
    button.clicked.connect(on_click)
    holder = _layout_holding(card.layout(), card.regen_button)
    if holder is not None:
        holder.insertWidget(holder.indexOf(card.regen_button) + 1, button, 0,
                            Qt.AlignmentFlag.AlignBottom)
    return button


def _layout_holding(layout: QLayout | None, widget: QWidget) -> QHBoxLayout | None:
    if layout is None:
        return None
    if isinstance(layout, QHBoxLayout) and layout.indexOf(widget) >= 0:
        return layout
    for i in range(layout.count()):
        item = layout.itemAt(i)
        found = _layout_holding(item.layout() if item is not None else None, widget)
        if found is not None:
            return found
    return None
