"""The model page's sections about the user's labels: "Your labeling habits" (the bias
report: sentences and the chart of picks by card position) and the leaderboard of candidate
sources (Bradley-Terry strengths with bootstrap intervals, win rates, battles, and tuned
chat-model versions against the base)."""

from __future__ import annotations

import logging
import math

import shiboken6
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFrame,
    QGridLayout,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from rlhf_desktop.services.labels.habits import Habits
from rlhf_desktop.services.ranking.models import Leaderboard
from rlhf_desktop.ui.backend import Backend
from rlhf_desktop.ui.model.bias_chart import BiasChart

log = logging.getLogger(__name__)

COLUMNS = ("Source", "Strength (95% CI)", "Win rate", "Battles (won · lost · tied)")


def _title(text: str) -> QLabel:
    label = QLabel(text)
    label.setObjectName("kpiValue")
    label.setStyleSheet("font-size: 16px;")
    return label


def _caption(text: str = "") -> QLabel:
    label = QLabel(text)
    label.setObjectName("kpiCaption")
    label.setWordWrap(True)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    return label


def _bound(value: float) -> str:
    """An interval bound; "…" when it is open (no finite estimate in enough resamples)."""
    return f"{value:.0f}" if math.isfinite(value) else "…"


class HabitsPanel(QFrame):
    """The bias report: one sentence per habit, beside (wide) or above the chart."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("kpi")
        self.title = _title("Your labeling habits")
        self.text = QLabel("")
        self.text.setWordWrap(True)
        self.text.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.text.setToolTip("Computed from your own picks, against a user without the habit. "
                             "Blind mode (beside Send) removes the shown order's pull.")
        self.note = _caption()
        self.chart = BiasChart()
        words = QWidget()
        column = QVBoxLayout(words)
        column.setContentsMargins(0, 0, 0, 0)
        column.addWidget(self.title)
        column.addWidget(self.text)
        column.addWidget(self.note)
        column.addStretch(1)
        self.words = words
        self.grid = QGridLayout(self)
        self.grid.setContentsMargins(14, 10, 14, 10)
        self._wide: bool | None = None
        self.arrange(True)

    def arrange(self, wide: bool) -> None:
        """Sentences beside the chart (wide) or above it."""
        if wide == self._wide:
            return
        self._wide = wide
        self.grid.removeWidget(self.words)
        self.grid.removeWidget(self.chart)
        self.grid.addWidget(self.words, 0, 0)
        self.grid.addWidget(self.chart, 0 if wide else 1, 1 if wide else 0)
        self.grid.setColumnStretch(0, 1)
        self.grid.setColumnStretch(1, 1 if wide else 0)

    def show_habits(self, habits: Habits) -> None:
        """Fill the sentences and the chart."""
        self.text.setText("\n".join(f"• {line}" for line in habits.lines))
        report = habits.position
        self.note.setText(report.note + " A p below 0.05 means chance alone rarely gives a "
                          "gap this large." if report.shares else "")
        self.chart.set_report(report)


class LeaderboardPanel(QFrame):
    """The sources, strongest first; computed in the session's background runner
    (``updated`` when shown)."""

    updated = Signal()

    def __init__(self, backend: Backend, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("kpi")
        self.backend = backend
        self.board: Leaderboard | None = None
        self.loading = False
        self._again = False
        self._stale = True
        self.title = _title("Leaderboard of candidate sources")
        self.note = _caption("Reading your arena labels…")
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.table.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.table.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for col in range(1, len(COLUMNS)):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        self.table.setAccessibleName("Leaderboard of candidate sources")
        self.tuned = QLabel("")
        self.tuned.setWordWrap(True)
        self.tuned.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(14, 10, 14, 10)
        layout.addWidget(self.title)
        layout.addWidget(self.note)
        layout.addWidget(self.table)
        layout.addWidget(self.tuned)
        self.table.hide()
        self.tuned.hide()

    def refresh(self) -> None:
        """Reload from the database now if the panel is shown, else when it is (the fit
        runs in the background runner and is cached until the arena labels change)."""
        self._stale = True
        if self.isVisible():
            self._start()

    def showEvent(self, event: QShowEvent) -> None:
        """Load what changed while the page was hidden."""
        super().showEvent(event)
        if self._stale:
            self._start()

    def _start(self) -> None:
        if self.loading:
            self._again = True
            return
        self._stale = False
        self.loading = True
        # callbacks on the loop; none once the session (and its runner) closed
        self.backend.session.models.load_leaderboard(self._loaded, self._failed)

    def _loaded(self, board: Leaderboard) -> None:
        self.loading = False
        if not shiboken6.isValid(self):  # the window closed meanwhile
            return
        self.show_board(board)
        if self._again:
            self._again = False
            self._start()

    def _failed(self, exc: BaseException) -> None:
        """A failed fit must not break the page; say it there."""
        self.loading = False
        log.error("arena leaderboard", exc_info=exc)
        if shiboken6.isValid(self):
            self.note.setText(f"The leaderboard could not be computed: {exc}")

    def show_board(self, board: Leaderboard) -> None:
        """Fill the table and the sentences from ``board``."""
        self.board = board
        if not board.standings:
            self.note.setText("No labeled arena turns yet. Set up two or more candidate "
                              "sources in Settings and turn the arena on in the chat: each "
                              "pick, ranking, tie or \"all bad\" there is a battle between "
                              "the sources, with their names hidden until you label.")
            self.table.hide()
        else:
            self.note.setText((board.verdict + ". " if board.verdict else "") + board.note + ".")
            self._fill(board)
            self.table.show()
        words = [h.words for h in board.head_to_head]
        self.tuned.setText("\n".join(f"• {w[0].upper()}{w[1:]}." for w in words))
        self.tuned.setVisible(bool(words))
        self.setAccessibleDescription(self.text())
        self.updated.emit()

    def _fill(self, board: Leaderboard) -> None:
        self.table.setRowCount(len(board.standings))
        for row, s in enumerate(board.standings):
            strength = ("–" if s.strength is None or s.low is None or s.high is None
                        else f"{s.strength:.0f}  ({_bound(s.low)}–{_bound(s.high)})")
            rate = "–" if s.win_rate is None else f"{s.win_rate:.0%}"
            cells = (s.name, strength, rate, f"{s.battles}  ({s.wins} · {s.losses} · {s.ties})")
            for col, value in enumerate(cells):
                item = QTableWidgetItem(value)
                if col:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight
                                          | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(row, col, item)
        rows = sum(self.table.rowHeight(r) for r in range(self.table.rowCount()))
        self.table.setFixedHeight(rows + self.table.horizontalHeader().sizeHint().height()
                                  + 2 * self.table.frameWidth() + 2)

    def text(self) -> str:
        """The panel in words (screen readers, tests)."""
        lines = [self.note.text()]
        if self.table.isVisibleTo(self):
            for r in range(self.table.rowCount()):
                items = (self.table.item(r, c) for c in range(len(COLUMNS)))
                lines.append(" · ".join(i.text() for i in items if i is not None))
        if self.tuned.isVisibleTo(self):
            lines.append(self.tuned.text())
        return "\n".join(lines)
