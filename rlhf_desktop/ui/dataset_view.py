"""The preference pairs: a lazily paged table, a text filter, delete, export."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QPersistentModelIndex,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QColor, QTextCursor, QTextDocument
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QSplitter,
    QTableView,
    QTextBrowser,
    QTextEdit,
    QVBoxLayout,
    QWidget,
)

from rlhf_desktop.domain import PreferencePair
from rlhf_desktop.services.datasets import DatasetService, DeletedPairs, PairRow
from rlhf_desktop.ui.backend import Backend

PAGE = 500
COLUMNS = ("Prompt", "Chosen", "Rejected", "Reason", "Time", "Source", "Matched in")
MATCH_COLUMN = 6  # shown first, and only while a filter is set
EXPORTS = {
    "JSON Lines, project format (*.jsonl)": ("jsonl", ".jsonl"),
    "TRL standard (*.jsonl)": ("trl", ".jsonl"),
    "TRL conversational (*.jsonl)": ("trl-conversational", ".jsonl"),
    "Anthropic HH-RLHF (*.jsonl)": ("hh", ".jsonl"),
    "CSV (*.csv)": ("csv", ".csv"),
}
Index = QModelIndex | QPersistentModelIndex


def one_line(text: str, limit: int = 300) -> str:
    """Cell text: the first ``limit`` characters on one line."""
    flat = " ".join(text[: limit + 50].split())
    return flat if len(flat) <= limit else flat[:limit] + "…"


class PairsModel(QAbstractTableModel):
    """Pairs, newest first, fetched a page at a time (``canFetchMore``/``fetchMore``)."""

    def __init__(self, datasets: DatasetService) -> None:
        super().__init__()
        self.datasets = datasets
        self.text_filter = ""
        self.rows: list[PairRow] = []
        self.total = 0
        self.reload()

    def reload(self, text_filter: str | None = None) -> None:
        """Start again from the first page (after a filter change or a delete)."""
        self.beginResetModel()
        if text_filter is not None:
            self.text_filter = text_filter
        self.total = self.datasets.count(self.text_filter)
        self.rows = self.datasets.page(None, PAGE, self.text_filter)
        self.endResetModel()

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        """Rows loaded so far."""
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        """Seven columns."""
        return 0 if parent.isValid() else len(COLUMNS)

    def canFetchMore(self, parent: Index = QModelIndex()) -> bool:  # noqa: B008
        """More pages in the database."""
        return not parent.isValid() and len(self.rows) < self.total

    def fetchMore(self, parent: Index = QModelIndex()) -> None:  # noqa: B008
        """Load the next page."""
        if parent.isValid():
            return
        before = self.rows[-1][0] if self.rows else None
        page = self.datasets.page(before, PAGE, self.text_filter)
        if not page:
            self.total = len(self.rows)
            return
        self.beginInsertRows(QModelIndex(), len(self.rows), len(self.rows) + len(page) - 1)
        self.rows.extend(page)
        self.endInsertRows()

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        """Cell text; the tooltip holds more of it."""
        if not index.isValid() or index.row() >= len(self.rows):
            return None
        row = self.rows[index.row()]
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return self._cell(row, col)
        if role == Qt.ItemDataRole.ToolTipRole and col < 4:
            return one_line(self._full(row, col), 600)
        if role == Qt.ItemDataRole.ToolTipRole and col == MATCH_COLUMN and row[7]:
            return f"“{self.text_filter}” occurs in: {row[7]}"
        return None

    @staticmethod
    def _full(row: PairRow, col: int) -> str:
        return (row[1], row[2], row[3], row[4] or "")[col]

    def _cell(self, row: PairRow, col: int) -> str:
        if col < 4:
            return one_line(self._full(row, col))
        if col == 4:
            return time.strftime("%Y-%m-%d %H:%M", time.localtime(row[6] or 0.0))
        return row[5] if col == 5 else row[7]

    def headerData(self, section: int, orientation: Qt.Orientation,
                   role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        """Column titles."""
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return COLUMNS[section]
        return None


class DatasetView(QWidget):
    """The dataset page."""

    changed = Signal()  # pairs deleted or restored
    deleted = Signal(int)  # how many pairs were deleted (undo_delete() puts them back)

    def __init__(self, backend: Backend, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.backend = backend
        self.last_deleted: DeletedPairs | None = None
        self.datasets = backend.session.datasets
        self.model = PairsModel(self.datasets)
        self.filter = QLineEdit()
        self.filter.setPlaceholderText("Filter by text in prompt, replies or reason")
        self.filter.setClearButtonEnabled(True)
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(250)
        self._debounce.timeout.connect(lambda: self.model.reload(self.filter.text().strip()))
        self.filter.textChanged.connect(lambda _t: self._debounce.start())
        self.count_label = QLabel("")
        self.count_label.setObjectName("muted")
        self.delete_button = QPushButton("Delete selected…")
        # (clicked(bool) would pass False as ``confirm`` and delete without asking)
        self.delete_button.clicked.connect(lambda: self.delete_selected())
        self.export_button = QPushButton("Export…")
        self.export_button.setObjectName("primary")
        self.export_button.clicked.connect(self.export_dialog)
        top = QHBoxLayout()
        top.addWidget(self.filter, 1)
        top.addWidget(self.count_label)
        top.addWidget(self.delete_button)
        top.addWidget(self.export_button)

        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        self.table.verticalHeader().setDefaultSectionSize(26)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        for col, width in enumerate((260, 300, 300, 160, 130, 70, 110)):
            self.table.setColumnWidth(col, width)
        header.moveSection(MATCH_COLUMN, 0)
        self.table.setColumnHidden(MATCH_COLUMN, True)
        header.setStretchLastSection(True)
        self.table.selectionModel().selectionChanged.connect(lambda *_: self._show_detail())
        self.model.modelReset.connect(self._update_count)
        self.model.modelReset.connect(self._show_match_column)
        self.model.modelReset.connect(self._show_detail)  # a deleted pair never lingers
        self.model.rowsInserted.connect(lambda *_: self._update_count())

        self.detail = QTextBrowser()
        self.detail.setObjectName("pairDetail")
        self.detail.setPlaceholderText(
            "Select a pair to read its prompt and both replies in full.")
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.table)
        splitter.addWidget(self.detail)
        splitter.setSizes([520, 180])

        layout = QVBoxLayout(self)
        layout.setContentsMargins(16, 12, 16, 12)
        layout.addLayout(top)
        layout.addWidget(splitter, 1)
        self._update_count()

    def refresh(self) -> None:
        """Reload from the database (new picks, deletes, imports)."""
        self.model.reload()

    def _show_match_column(self) -> None:
        self.table.setColumnHidden(MATCH_COLUMN, not self.model.text_filter)

    def _update_count(self) -> None:
        m = self.model
        what = "pairs" if not m.text_filter else "matching pairs"
        self.count_label.setText(f"{m.total:,} {what} (loaded {len(m.rows):,})")

    def selected_ids(self) -> list[int]:
        """The selected rows' pair ids."""
        rows = sorted({i.row() for i in self.table.selectionModel().selectedRows()})
        return [self.model.rows[r][0] for r in rows if r < len(self.model.rows)]

    def _show_detail(self) -> None:
        ids = self.selected_ids()
        if not ids:
            self.detail.clear()
            return
        p = self.datasets.get(ids[0])
        self.detail.document().setMarkdown(
            pair_markdown(p), QTextDocument.MarkdownFeature.MarkdownNoHTML)
        self._highlight(self.model.text_filter)

    def _highlight(self, text: str) -> None:
        """Mark every occurrence of the filter text in the detail pane."""
        marks: list[QTextEdit.ExtraSelection] = []
        doc = self.detail.document()
        cursor = doc.find(text) if text else QTextCursor()
        while not cursor.isNull() and len(marks) < 500:
            mark = QTextEdit.ExtraSelection()
            mark.cursor = cursor
            mark.format.setBackground(QColor("#ffd33d"))
            mark.format.setForeground(QColor("#1f2328"))
            marks.append(mark)
            cursor = doc.find(text, cursor)
        self.detail.setExtraSelections(marks)

    def delete_selected(self, confirm: bool = True) -> int:
        """Delete the selected pairs after a confirmation that names the count. Returns how
        many were deleted; :meth:`undo_delete` puts them back."""
        ids = self.selected_ids()
        if not ids:
            return 0
        n = len(ids)
        if confirm:
            answer = QMessageBox.question(
                self, "Delete pairs",
                f"Delete {n} preference pair{'s' if n != 1 else ''}? The next training will "
                "not use them. You can undo this from the status bar right after.",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                QMessageBox.StandardButton.No)
            if answer != QMessageBox.StandardButton.Yes:
                return 0
        removed, self.last_deleted = self.datasets.delete(ids)
        self.model.reload()
        self.changed.emit()
        self.deleted.emit(removed)
        return removed

    def undo_delete(self) -> int:
        """Restore the pairs (and labels) of the last delete. Returns how many."""
        if self.last_deleted is None:
            return 0
        restored = self.datasets.restore(self.last_deleted)
        self.last_deleted = None
        self.model.reload()
        self.changed.emit()
        return restored

    def export_dialog(self) -> None:
        """Ask for a file and a format, then export in a worker thread."""
        path, chosen = QFileDialog.getSaveFileName(
            self, "Export preference pairs", str(Path.home() / "preferences.jsonl"),
            ";;".join(EXPORTS))  # not the working folder: a menu launch has none of its own
        if not path:
            return
        fmt, suffix = EXPORTS.get(chosen, ("jsonl", ".jsonl"))
        if "." not in path.rsplit("/", 1)[-1]:
            path += suffix
        self.backend.spawn(self.export(fmt, path), "export")

    async def export(self, fmt: str, path: str) -> int:
        """Export every pair to ``path`` in ``fmt`` without blocking the window."""
        self.export_button.setEnabled(False)
        self.count_label.setText("Exporting…")

        try:
            count = await asyncio.get_running_loop().run_in_executor(
                None, self.datasets.export, fmt, path)
        except (OSError, ValueError) as exc:
            QMessageBox.warning(self, "Export failed", f"Could not export to {path}: {exc}")
            return 0
        finally:
            self.export_button.setEnabled(True)
            self._update_count()
        self.count_label.setText(f"Exported {count:,} pairs to {path}")
        return count


def pair_markdown(p: PreferencePair) -> str:
    """The detail pane: what was asked, the two replies, then the earlier conversation.

    Reply text is shown as Markdown with HTML off (a reply is data, never markup)."""
    asked = p.prompt[-1].content if p.prompt else ""
    parts = [f"**Prompt:** {asked}", f"**Chosen:**\n\n{p.chosen}",
             f"**Rejected:**\n\n{p.rejected}"]
    if p.reason:
        parts.append(f"**Reason:** {p.reason}")
    if len(p.prompt) > 1:
        earlier = "\n\n".join(f"**{m.role}:** {m.content}" for m in p.prompt[:-1])
        parts.append(f"*Earlier in the conversation:*\n\n{earlier}")
    return "\n\n---\n\n".join(parts)
