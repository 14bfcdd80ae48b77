"""The keyboard shortcuts list (Ctrl+/ or F1, and the Help button's menu)."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QLabel,
    QMenu,
    QMessageBox,
    QTableWidget,
    QTableWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

SHORTCUTS: tuple[tuple[str, str], ...] = (
    ("Enter or Ctrl+Enter", "Send the message (Shift+Enter adds a line)"),
    ("Alt+1 … Alt+9", "Pick that reply (plain 1 … 9 when the replies have the focus, "
                      "never while you type)"),
    ("Alt+T", "Tie: then mark the equally good replies with Alt+1 … Alt+9, and Alt+T again "
              "saves the tie (no preference pairs)"),
    ("Alt+R", "Rank the last turn: then Alt+1 … Alt+9 (or Best) on the replies from best "
              "to worst, each card shows its place; it saves when all are placed, Enter or "
              "Alt+R saves the top ones placed so far (the rest tied below), Esc cancels"),
    ("Alt+B", "All bad: flag every reply of the last turn as bad (no preference pairs)"),
    ("Alt+S", "Skip the last turn (no label)"),
    ("Alt+Z", "Undo the last pick, tie, ranking, all-bad flag or edit (Ctrl+Z undoes typing "
              "in the message box)"),
    ("Esc", "Stop generating (partial replies are kept); while ranking: cancel the ranking"),
    ("Ctrl+R", "Regenerate the turn"),
    ("↑ in the empty message box", "Edit your last message (or Edit on any message): Enter "
                                   "resends it as a new branch, Esc cancels; ‹ › on an "
                                   "edited message shows its other versions"),
    ("Ctrl+N", "New chat"),
    ("Ctrl+F", "Search chats (on the dataset page: filter the pairs)"),
    ("Ctrl+1 / Ctrl+2 / Ctrl+3", "Chat / dataset / model view"),
    ("Ctrl+,", "Settings"),
    ("Ctrl+/ or F1", "This list"),
    ("Ctrl+Q", "Quit"),
)
OPEN_KEYS = ("Ctrl+/", "F1")


class ShortcutsDialog(QDialog):
    """A read-only table of :data:`SHORTCUTS` (non-modal)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("shortcutsDialog")
        self.setWindowTitle("Keyboard shortcuts")
        self.table = QTableWidget(len(SHORTCUTS), 2)
        self.table.setHorizontalHeaderLabels(["Keys", "Action"])
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.table.setWordWrap(True)
        self.table.setShowGrid(False)
        self.table.setAlternatingRowColors(True)
        self.table.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.table.setTextElideMode(Qt.TextElideMode.ElideNone)
        self.table.setStyleSheet("QTableWidget::item { padding: 5px 10px; }")
        for row, (keys, action) in enumerate(SHORTCUTS):
            key_item = QTableWidgetItem(keys)
            font = key_item.font()
            font.setBold(True)
            key_item.setFont(font)
            self.table.setItem(row, 0, key_item)
            self.table.setItem(row, 1, QTableWidgetItem(action))
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().setSectionResizeMode(
            QHeaderView.ResizeMode.ResizeToContents)
        note = QLabel("On macOS, Ctrl is the ⌘ key.")
        note.setObjectName("muted")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.close)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table, 1)
        layout.addWidget(note)
        layout.addWidget(buttons)
        self.setMinimumWidth(520)
        self.resize(620, 480)

    def showEvent(self, event: QShowEvent) -> None:
        """Fit the height to the rows once they are laid out at the width shown."""
        super().showEvent(event)
        QTimer.singleShot(0, self._fit)

    def _fit(self) -> None:
        self.table.resizeRowsToContents()
        rows = self.table.verticalHeader().length()
        header = self.table.horizontalHeader().height()
        self.table.setFixedHeight(rows + header + 2 * self.table.frameWidth() + 2)
        self.resize(self.width(), self.sizeHint().height())

    def texts(self) -> list[tuple[str, str]]:
        """The rows as shown."""
        def cell(row: int, col: int) -> str:
            item = self.table.item(row, col)
            return "" if item is None else item.text()

        return [(cell(r, 0), cell(r, 1)) for r in range(self.table.rowCount())]


def help_button(parent: QWidget, show_shortcuts: Callable[[], object]) -> QToolButton:
    """A "?" button whose menu opens the shortcuts list and the About box."""
    button = QToolButton(parent)
    button.setObjectName("helpButton")
    button.setText("?")
    button.setToolTip("Help: keyboard shortcuts (Ctrl+/ or F1), about")
    button.setAccessibleName("Help")
    button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
    menu = QMenu(button)
    action = menu.addAction("Keyboard shortcuts", show_shortcuts)
    action.setShortcut("Ctrl+/")
    action.setShortcutContext(Qt.ShortcutContext.WidgetShortcut)  # the window binds the keys
    menu.addAction("About RLHF Desktop", lambda: about(parent))
    button.setMenu(menu)
    return button


def about(parent: QWidget) -> None:
    """A short About box."""
    from rlhf_desktop import __version__

    QMessageBox.about(
        parent, "About RLHF Desktop",
        f"RLHF Desktop {__version__}\n\nEveryday chatting doubles as preference labelling: "
        "pick the best of several replies, and a small reward model learns from your picks.")
