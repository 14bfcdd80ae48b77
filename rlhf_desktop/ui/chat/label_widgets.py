"""The widgets of labels beyond the pick: the Tie / Rank / All bad / Skip bar under a turn,
the keys of a ranking being chosen (Enter saves, Esc cancels), the Edit dialog, and the Edit
action on a card."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import (
    QApplication,
    QDialog,
    QDialogButtonBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLayout,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from rlhf_desktop.ui.chat.cards import CandidateCard

TIE_KEY, ALL_BAD_KEY, SKIP_KEY, RANK_KEY = "Alt+T", "Alt+B", "Alt+S", "Alt+R"
TIE_TIP = (f"Two or more replies are equally good ({TIE_KEY}): then mark them with Best "
           "or Alt+1…9, and save")
PAIR_TIE_TIP = f"The two replies are equally good ({TIE_KEY}): saved at once, no pair"


class LabelBar(QFrame):
    """Tie…, Rank…, All bad and Skip under a turn's cards; while choosing a tie or a
    ranking, its Save button and Cancel."""

    tie_clicked = Signal()
    rank_clicked = Signal()
    all_bad_clicked = Signal()
    skip_clicked = Signal()
    cancel_clicked = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("labelBar")
        self.hint = QLabel("")
        self.hint.setObjectName("muted")
        self.hint.setWordWrap(True)
        self.tie_button = _button("Tie…", TIE_TIP)
        self._pair = False
        self.all_bad_button = _button("All bad", f"Every reply is bad ({ALL_BAD_KEY}): a flag"
                                      " in the export, never turned into pairs")
        self.rank_button = _button("Rank…", f"Put the replies in order, best first ({RANK_KEY}):"
                                   " then click Best or press Alt+1…9 on each in turn")
        self.skip_button = _button("Skip", f"No label for this turn ({SKIP_KEY})")
        self.cancel_button = _button("Cancel", "Leave the tie or ranking without saving it "
                                     "(Esc)")
        self.cancel_button.hide()
        self.tie_button.clicked.connect(self.tie_clicked)
        self.rank_button.clicked.connect(self.rank_clicked)
        self.all_bad_button.clicked.connect(self.all_bad_clicked)
        self.skip_button.clicked.connect(self.skip_clicked)
        self.cancel_button.clicked.connect(self.cancel_clicked)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.hint, 1)
        for b in (self.tie_button, self.rank_button, self.cancel_button, self.all_bad_button,
                  self.skip_button):
            row.addWidget(b)

    def choosing(self, chosen: int | None) -> None:
        """Show the tie being chosen (``chosen`` replies marked; None: not choosing)."""
        active = chosen is not None
        self.cancel_button.setVisible(active)
        self.all_bad_button.setVisible(not active)
        self.skip_button.setVisible(not active)
        self.rank_button.setVisible(not active)
        if active:
            self.tie_button.setText(f"Save tie ({chosen})")
            self.tie_button.setEnabled((chosen or 0) >= 2)
            self.hint.setText("Choosing a tie: mark two or more equally good replies with "
                              f"Best or Alt+1…9, then Save tie ({TIE_KEY})")
        else:
            self.set_pair(self._pair)
            self.tie_button.setEnabled(True)
            self.hint.setText("")

    def set_pair(self, pair: bool) -> None:
        """A turn of two whole replies ties them in one click ("Tie"); with more, "Tie…"
        starts choosing which replies tie."""
        self._pair = pair
        self.tie_button.setText("Tie" if pair else "Tie…")
        self.tie_button.setToolTip(PAIR_TIE_TIP if pair else TIE_TIP)

    def ranking(self, ranked: int | None, total: int = 0) -> None:
        """Show the ranking being chosen (``ranked`` of ``total`` replies placed; None: not
        ranking)."""
        active = ranked is not None
        self.cancel_button.setVisible(active)
        for b in (self.tie_button, self.all_bad_button, self.skip_button):
            b.setVisible(not active)
        if active:
            self.rank_button.setText(f"Save ranking ({ranked} of {total})")
            self.rank_button.setEnabled((ranked or 0) >= 2)
            self.hint.setText(
                "Ranking: click Best or press Alt+1…9 on the replies from best to worst "
                "(again on a ranked one takes it out); it saves when all are ranked, or "
                "Enter saves the top ones ranked so far (the rest count as tied below) · "
                "Esc cancels")
        else:
            self.rank_button.setText("Rank…")
            self.rank_button.setEnabled(True)
            self.hint.setText("")


class RankKeys(QObject):
    """While a ranking is being chosen (installed on the application): Enter saves it and
    Esc cancels it, wherever the focus is in ``view``'s window, except that Enter in a text
    field holding text keeps its meaning (sending a message, saving a reason)."""

    def __init__(self, view: QWidget, save: Callable[[], object],
                 cancel: Callable[[], object]) -> None:
        super().__init__(view)
        self._view = view
        self._save = save
        self._cancel = cancel

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        """Take Enter and Esc (Esc before the window's "stop generating" shortcut)."""
        kind = event.type()
        if kind not in (QEvent.Type.ShortcutOverride, QEvent.Type.KeyPress) \
                or not isinstance(event, QKeyEvent):
            return False
        focus = QApplication.focusWidget()
        if focus is None or focus.window() is not self._view.window():
            return False  # another window (a dialog) keeps its Enter and Esc
        if event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier:
            return False
        key = event.key()
        if key == Qt.Key.Key_Escape:
            if kind == QEvent.Type.ShortcutOverride:
                event.accept()  # the key comes as a key press, not as the window's Esc
            else:
                self._cancel()
            return True
        if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and kind == QEvent.Type.KeyPress \
                and not _typing(focus):
            self._save()
            return True
        return False


def _typing(widget: QObject) -> bool:
    """Whether ``widget`` is a text field with text in it."""
    if isinstance(widget, QPlainTextEdit):
        return bool(widget.toPlainText().strip())
    if isinstance(widget, QLineEdit):
        return bool(widget.text().strip())
    return False


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
