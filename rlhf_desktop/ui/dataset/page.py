"""The preference pairs: a lazily paged table, a text filter, delete, export."""

from __future__ import annotations

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
from rlhf_desktop.services.datasets.export_folder import FolderExport
from rlhf_desktop.services.datasets.pairs import DatasetService, DeletedPairs, PairRow
from rlhf_desktop.ui.backend import Backend

PAGE = 500
COLUMNS = ("Prompt", "Chosen", "Rejected", "Reason", "Time", "Source", "Matched in", "Note")
MATCH_COLUMN = 6  # shown first, and only while a filter is set
NOTE_COLUMN = 7  # "rejected cut at max tokens", "same reply on both sides: never exported"
FOLDER = "folder"
"""The export that writes a folder: every format, the labels file and a dataset card."""
EXPORTS: dict[str, tuple[str, str, bool]] = {
    # name filter: (format, suffix, parquet), as ``rlhf-desktop export`` takes them
    "JSON Lines, project format, with metadata (*.jsonl)": ("jsonl", ".jsonl", False),
    "TRL standard (*.jsonl)": ("trl", ".jsonl", False),
    "TRL conversational (*.jsonl)": ("trl-conversational", ".jsonl", False),
    "Anthropic HH-RLHF (*.jsonl)": ("hh", ".jsonl", False),
    "OpenAI or Azure OpenAI DPO fine-tuning (*.jsonl)": ("openai-dpo", ".jsonl", False),
    "CSV (*.csv)": ("csv", ".csv", False),
    "Rankings, one line per ranked turn (*.jsonl)": ("ranking", ".jsonl", False),
    "Labels, one line per labeled turn, ties and all bad included (*.jsonl)":
        ("labels", ".jsonl", False),
    "Parquet, project format, needs the datasets package (*.parquet)":
        ("jsonl", ".parquet", True),
    "Dataset folder: every format, the labels and a dataset card (*)": (FOLDER, "", False),
}
NOUNS = {"ranking": "rankings", "labels": "labeled turns"}
Index = QModelIndex | QPersistentModelIndex


def one_line(text: str, limit: int = 300) -> str:
    """Cell text: the first ``limit`` characters on one line."""
    flat = " ".join(text[: limit + 50].split())
    return flat if len(flat) <= limit else flat[:limit] + "…"


NOTE_TIPS = {
    "rejected cut at max tokens": (
        "The rejected reply was cut at max tokens. The pair is kept and exported with "
        "metadata.rejected_cut = true; reward training leaves such pairs out by default "
        "(cut replies are the longest, so they teach 'shorter wins')."),
    "same reply on both sides: never exported": (
        "Chosen and rejected are the same reply (ignoring case, spacing and a final full "
        "stop): a tie, not a preference. Stored before that rule; never exported or "
        "trained on. Delete it to tidy up."),
}


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
        """Eight columns."""
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
        if role == Qt.ItemDataRole.ToolTipRole and col == NOTE_COLUMN and row[8]:
            return NOTE_TIPS.get(row[8], row[8])
        return None

    @staticmethod
    def _full(row: PairRow, col: int) -> str:
        return (row[1], row[2], row[3], row[4] or "")[col]

    def _cell(self, row: PairRow, col: int) -> str:
        if col < 4:
            return one_line(self._full(row, col))
        if col == 4:
            return time.strftime("%Y-%m-%d %H:%M", time.localtime(row[6] or 0.0))
        return row[5] if col == 5 else row[7] if col == MATCH_COLUMN else row[8]

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
        self.last_export_error = ""
        """What the last failed export said ("" after a success)."""
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
        for col, width in enumerate((260, 300, 300, 160, 130, 70, 110, 170)):
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
        note = next((r[8] for r in self.model.rows if r[0] == ids[0]), "")
        self.detail.document().setMarkdown(
            pair_markdown(p, note), QTextDocument.MarkdownFeature.MarkdownNoHTML)
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
        """Ask for a file (or a folder name) and a format, then export in a worker thread:
        every format ``rlhf-desktop export`` writes, through the same service functions."""
        path, chosen = QFileDialog.getSaveFileName(
            self, "Export preference pairs", str(Path.home() / "preferences.jsonl"),
            ";;".join(EXPORTS))  # not the working folder: a menu launch has none of its own
        if not path:
            return
        fmt, suffix, parquet = EXPORTS.get(chosen, ("jsonl", ".jsonl", False))
        if fmt == FOLDER:
            path = path.removesuffix(".jsonl")  # the suggested name was a file's
        elif "." not in path.rsplit("/", 1)[-1]:
            path += suffix
        self.backend.spawn(self.export(fmt, path, parquet), "export")

    async def export(self, fmt: str, path: str, parquet: bool = False) -> int:
        """Export ``fmt`` to ``path`` without blocking the window (``folder``: every format,
        the labels and a dataset card into the folder ``path``). Returns the rows written
        (pairs, rankings or labeled turns; a folder's pairs); an error is shown, not
        raised, and returns 0."""
        self.export_button.setEnabled(False)
        self.count_label.setText("Exporting…")
        runner = self.backend.session.runner
        try:
            if fmt == FOLDER:
                done: FolderExport = await runner.call(self.datasets.export_folder, path)
                count = done.rows("jsonl")
            else:
                count = await runner.call(self.datasets.export, fmt, path, parquet)
        except (OSError, ValueError) as exc:  # ExportError is a ValueError
            self.last_export_error = f"Could not export to {path}: {exc}"
            QMessageBox.warning(self, "Export failed", self.last_export_error)
            return 0
        finally:
            self.export_button.setEnabled(True)
            self._update_count()
        self.last_export_error = ""
        if fmt == FOLDER:
            self.count_label.setText(f"Exported {count:,} pairs, every format and a dataset "
                                     f"card (README.md) to {path}")
        else:
            self.count_label.setText(f"Exported {count:,} {NOUNS.get(fmt, 'pairs')} to {path}")
        return count


def pair_markdown(p: PreferencePair, note: str = "") -> str:
    """The detail pane: what was asked, the two replies, then the earlier conversation
    (``note``: the row's note, e.g. "rejected cut at max tokens", said first).

    Reply text is shown as Markdown with HTML off (a reply is data, never markup)."""
    asked = p.prompt[-1].content if p.prompt else ""
    parts = [f"*Note: {NOTE_TIPS.get(note, note)}*"] if note else []
    parts += [f"**Prompt:** {asked}", f"**Chosen:**\n\n{p.chosen}",
              f"**Rejected:**\n\n{p.rejected}"]
    if p.reason:
        parts.append(f"**Reason:** {p.reason}")
    if len(p.prompt) > 1:
        earlier = "\n\n".join(f"**{m.role}:** {m.content}" for m in p.prompt[:-1])
        parts.append(f"*Earlier in the conversation:*\n\n{earlier}")
    return "\n\n---\n\n".join(parts)
