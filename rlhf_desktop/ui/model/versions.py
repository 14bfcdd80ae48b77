"""The model page's version list: metrics, adopted or not (with the reason), and Use."""

from __future__ import annotations

import time
from collections.abc import Callable

from PySide6.QtCore import Qt
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

from rlhf_desktop.services.ranking.models import VersionRow
from rlhf_desktop.ui.backend import EARLY_LABELS, is_early

COLUMNS = ["Version", "Trained", "Labels", "Pairs", "CV accuracy", "Status", "Why", ""]
USE_COLUMN = len(COLUMNS) - 1
ACCURACY_COLUMN = COLUMNS.index("CV accuracy")


def accuracy_cell(row: VersionRow) -> str:
    """``71.2 %``, or ``11 % (early)`` under :data:`EARLY_LABELS` labels: cross-validated on a
    handful of pairs the figure swings far either side of 50 % (a new user read 11 % after 3
    picks as a broken model)."""
    if row.cv_accuracy is None:
        return "n/a"
    if is_early(row.labels):
        return f"{row.cv_accuracy * 100:.0f} % (early)"
    return f"{row.cv_accuracy * 100:.1f} %"


def accuracy_tip(row: VersionRow) -> str:
    """The accuracy cell's tooltip: what the figure is, and why an early one is noisy."""
    if row.cv_accuracy is not None and is_early(row.labels):
        return (f"An early estimate from {row.labels} labels: cross-validated on so few pairs "
                f"it is noisy until about {EARLY_LABELS} labels")
    return "Cross-validated accuracy on the pairs this version was trained on"


def status_text(row: VersionRow) -> str:
    """"in use", "adopted" or "not adopted"."""
    if row.in_use:
        return "in use"
    return "adopted" if row.adopted else "not adopted"


class VersionsTable(QTableWidget):
    """Newest first; each row's Use button calls ``on_use(version)``."""

    def __init__(self, on_use: Callable[[int], None], parent: QWidget | None = None) -> None:
        super().__init__(0, len(COLUMNS), parent)
        self.on_use = on_use
        self.rows: list[VersionRow] = []
        self.setHorizontalHeaderLabels(COLUMNS)
        self.verticalHeader().setVisible(False)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.setWordWrap(False)
        header = self.horizontalHeader()
        for col in range(len(COLUMNS)):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(COLUMNS.index("Why"), QHeaderView.ResizeMode.Stretch)
        # a cell widget has no contents to size by: the Use column is as wide as its buttons
        header.setSectionResizeMode(USE_COLUMN, QHeaderView.ResizeMode.Fixed)
        self.setMinimumHeight(90)

    def fill(self, rows: list[VersionRow], busy: bool = False) -> None:
        """Show ``rows``; ``busy``: a switch is running, every Use button waits."""
        self.rows = rows
        self.setRowCount(len(rows))
        bold = QFont()
        bold.setBold(True)
        widest = 60
        for r, row in enumerate(rows):
            cells = [f"v{row.version}",
                     time.strftime("%Y-%m-%d %H:%M", time.localtime(row.created_at)),
                     f"{row.labels:,}", f"{row.pairs:,}",
                     accuracy_cell(row), status_text(row), row.reason]
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(accuracy_tip(row) if col == ACCURACY_COLUMN else row.reason)
                if row.in_use:
                    item.setFont(bold)
                if col == COLUMNS.index("Status") and not row.adopted:
                    item.setForeground(Qt.GlobalColor.darkYellow)
                self.setItem(r, col, item)
            button = QPushButton("In use" if row.in_use else "Use")
            button.setEnabled(not row.in_use and not busy)
            button.setToolTip("The reward model that ranks now" if row.in_use else
                              f"Rank with reward model v{row.version} from now on (the chat "
                              "re-ranks the turn waiting for your pick)")
            button.clicked.connect(lambda _=False, v=row.version: self.on_use(v))
            self.setCellWidget(r, USE_COLUMN, button)
            widest = max(widest, button.sizeHint().width() + 8)
        self.setColumnWidth(USE_COLUMN, widest)
        self.resizeRowsToContents()
        rows_height = sum(self.rowHeight(r) for r in range(self.rowCount()))
        height = self.horizontalHeader().sizeHint().height() + rows_height + 2 * self.frameWidth()
        self.setFixedHeight(max(90, min(height + 2, 320)))  # as tall as its rows, then scrolls

    def use_button(self, version: int) -> QPushButton | None:
        """The Use button of ``version``'s row."""
        for r, row in enumerate(self.rows):
            if row.version == version:
                widget = self.cellWidget(r, USE_COLUMN)
                return widget if isinstance(widget, QPushButton) else None
        return None
