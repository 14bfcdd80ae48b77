"""The reward model: learning curve, agreement with your picks, labels over time, train now,
what it learned (learned.py), your labeling habits and the leaderboard of candidate
sources (arena.py), more panels (:meth:`ModelView.add_panel`), and the versions with a
switch back (versions.py)."""

from __future__ import annotations

import time

import shiboken6
from PySide6.QtCharts import (
    QChart,
    QChartView,
    QDateTimeAxis,
    QLineSeries,
    QScatterSeries,
    QValueAxis,
)
from PySide6.QtCore import QDateTime, QMargins, QPointF, Qt
from PySide6.QtGui import QColor, QPainter, QPen, QResizeEvent
from PySide6.QtWidgets import (
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from rlhf_desktop.domain import ModelVersion
from rlhf_desktop.services.ranking.models import VersionError
from rlhf_desktop.services.ranking.retraining import RetrainStatus
from rlhf_desktop.ui.backend import EARLY_LABELS, Backend, is_early
from rlhf_desktop.ui.model.arena import HabitsPanel, LeaderboardPanel
from rlhf_desktop.ui.model.learned import LearnedPanel
from rlhf_desktop.ui.model.ranker import RankerPanel
from rlhf_desktop.ui.model.tune import TunePanel
from rlhf_desktop.ui.model.versions import VersionsTable

ACCENT = QColor("#2f81f7")
WIDE = 1000  # from this width the figures sit in one row and the charts side by side
MIN_AGREEMENT_PICKS = 5
"""Ranked picks before the agreement card shows a percentage (one pick would read 0 % or
100 %, a verdict from no data)."""


def kpi(title: str) -> tuple[QFrame, QLabel, QLabel]:
    """A small card: a big value and a caption."""
    box = QFrame()
    box.setObjectName("kpi")
    layout = QVBoxLayout(box)
    layout.setContentsMargins(14, 10, 14, 10)
    value = QLabel("–")
    value.setObjectName("kpiValue")
    caption = QLabel(title)
    caption.setObjectName("kpiCaption")
    caption.setWordWrap(True)
    layout.addWidget(value)
    layout.addWidget(caption)
    return box, value, caption


PAGE_SCROLL_STEP = 40
"""Pixels a scroll step moves the model page (a wheel click moves three)."""


class ModelView(QWidget):
    """The model page; :meth:`refresh` reloads everything from the database."""

    def __init__(self, backend: Backend, dark: bool = False,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.backend = backend
        self.dark = dark
        boxes = [kpi("current reward model"), kpi("cross-validated pairwise accuracy"),
                 kpi("reward model agreed with you"), kpi("labels · preference pairs")]
        self.version_value, self.accuracy_value = boxes[0][1], boxes[1][1]
        self.agree_value, self.labels_value = boxes[2][1], boxes[3][1]
        self.agree_caption = boxes[2][2]
        self.accuracy_caption = boxes[1][2]
        self.train_button = QPushButton("Train now")
        self.train_button.setObjectName("primary")
        self.train_button.setToolTip("Train a new reward-model version on every stored pair")
        self.train_button.clicked.connect(backend.train_now)
        self.train_status = QLabel("")
        self.train_status.setObjectName("muted")
        self.train_status.setWordWrap(True)
        self.side = QWidget()
        side = QVBoxLayout(self.side)
        side.setContentsMargins(0, 0, 0, 0)
        side.addWidget(self.train_button)
        side.addWidget(self.train_status)
        side.addStretch(1)
        self.kpis = [box for box, _v, _c in boxes]
        self.rejected = QLabel("")
        """The one notice of a version that was trained and not adopted (wraps, never cut)."""
        self.rejected.setObjectName("notice")
        self.rejected.setWordWrap(True)
        self.rejected.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.rejected.setStyleSheet("QLabel#notice { border: 1px solid #d29922; "
                                    "border-radius: 6px; padding: 8px; }")
        self.rejected.hide()
        self.top = QGridLayout()
        self.top.setSpacing(10)

        self.curve_chart, self.curve_view = self._chart(
            "Learning curve: CV accuracy by version (dashed: chance)")
        self.labels_chart, self.labels_view = self._chart("Labels over time")
        self.charts = QGridLayout()
        self.learned = LearnedPanel(dark)
        self.habits_panel = HabitsPanel()
        self._columns = 0
        self._arrange(wide=True)

        self.switching = False
        self.table = VersionsTable(self.use_version)
        self.versions_title = QLabel("Versions")
        self.versions_title.setObjectName("kpiValue")
        self.versions_title.setStyleSheet("font-size: 16px;")
        self.versions_note = QLabel("")
        self.versions_note.setObjectName("muted")
        self.versions_note.setWordWrap(True)
        self.latest_button = QPushButton("Use the newest adopted version")
        self.latest_button.setToolTip("Stop using a version chosen here; every new adopted "
                                      "version is used again as soon as it is trained")
        self.latest_button.clicked.connect(lambda: self.use_version(None))
        versions_head = QHBoxLayout()
        versions_head.addWidget(self.versions_title)
        versions_head.addWidget(self.versions_note, 1)
        versions_head.addWidget(self.latest_button)

        # Everything in a scroll area: a small window scrolls the page, nothing overlaps.
        content = QWidget()
        content.setObjectName("modelPage")
        layout = QVBoxLayout(content)
        layout.setContentsMargins(16, 12, 16, 12)
        layout.setSpacing(12)
        layout.addWidget(self.rejected)
        layout.addLayout(self.top)
        layout.addLayout(self.charts, 1)
        layout.addWidget(self.learned)
        self.habits_title, self.habits = self.habits_panel.title, self.habits_panel.text
        layout.addWidget(self.habits_panel)
        self.leaderboard = LeaderboardPanel(backend)
        layout.addWidget(self.leaderboard)
        # The spot for more panels (tuning the chat model, a stronger ranker): add_panel().
        self.panels = QVBoxLayout()
        self.panels.setSpacing(12)
        layout.addLayout(self.panels)
        self.tune = TunePanel(backend)
        self.add_panel(self.tune)
        self.ranker_panel = RankerPanel(backend)
        self.add_panel(self.ranker_panel)
        layout.addLayout(versions_head)
        layout.addWidget(self.table)
        self.page_scroll = QScrollArea()
        self.page_scroll.setWidgetResizable(True)
        self.page_scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.page_scroll.setWidget(content)
        # A long page of panels: at Qt's 20 px a step (60 a wheel click) a new user found
        # it slow to scroll to the versions table.
        self.page_scroll.verticalScrollBar().setSingleStep(PAGE_SCROLL_STEP)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(self.page_scroll)
        backend.retrain_status.connect(self.on_status)
        backend.model_trained.connect(lambda _v: self.refresh_if_visible())
        backend.labels_changed.connect(self.refresh_if_visible)
        self.refresh()

    def add_panel(self, panel: QWidget) -> None:
        """Place another section on the page, after the leaderboard and before the
        versions (in the order added)."""
        self.panels.addWidget(panel)

    def _arrange(self, wide: bool) -> None:
        """Four figures and the Train button in a row, charts side by side (wide); or two
        figures a row, the button under them, charts stacked (narrow)."""
        columns = 5 if wide else 2
        if columns == self._columns:
            return
        self._columns = columns
        for w in (*self.kpis, self.side, self.curve_view, self.labels_view):
            self.top.removeWidget(w)
            self.charts.removeWidget(w)
        for i, box in enumerate(self.kpis):
            self.top.addWidget(box, i // columns, i % columns)
        if wide:
            self.top.addWidget(self.side, 0, 4)
        else:
            self.top.addWidget(self.side, 2, 0, 1, 2)
        for c in range(5):
            self.top.setColumnStretch(c, 1 if c < columns else 0)
        self.charts.addWidget(self.curve_view, 0, 0)
        self.charts.addWidget(self.labels_view, 0 if wide else 1, 1 if wide else 0)
        self.charts.setColumnStretch(0, 1)
        self.charts.setColumnStretch(1, 1 if wide else 0)
        self.learned.arrange(wide)
        self.habits_panel.arrange(wide)

    def resizeEvent(self, event: QResizeEvent) -> None:
        """Reflow for the new width."""
        super().resizeEvent(event)
        self._arrange(self.width() >= WIDE)

    def _chart(self, title: str) -> tuple[QChart, QChartView]:
        chart = QChart()
        chart.setTitle(title)
        chart.legend().hide()
        chart.setMargins(QMargins(6, 6, 6, 6))
        chart.setBackgroundRoundness(6)
        chart.setTheme(QChart.ChartTheme.ChartThemeDark if self.dark
                       else QChart.ChartTheme.ChartThemeLight)
        view = QChartView(chart)
        view.setRenderHint(QPainter.RenderHint.Antialiasing)
        view.setMinimumHeight(260)
        return chart, view

    def set_dark(self, dark: bool) -> None:
        """Follow a change of the system's colour scheme."""
        self.dark = dark
        for chart in (self.curve_chart, self.labels_chart):
            chart.setTheme(QChart.ChartTheme.ChartThemeDark if dark
                           else QChart.ChartTheme.ChartThemeLight)
            chart.setBackgroundRoundness(6)
        self.learned.set_dark(dark)
        self.refresh_if_visible()  # setTheme reset the series colours; shown pages redraw

    def refresh_if_visible(self) -> None:
        """Cheap refresh only when the page is shown."""
        if self.isVisible():
            self.refresh()

    def on_status(self, status: RetrainStatus) -> None:
        """Training progress next to the button."""
        self.train_status.setText(self.backend.status_text(status, early_accuracy=True))
        self.train_button.setText("Train again after this run" if status.running else "Train now")

    def refresh(self) -> None:
        """Reload the figures and charts."""
        overview = self.backend.session.models.overview()
        versions = overview.versions
        models = self.backend.session.models
        # the version that ranks (or will once loaded), never a newer one not adopted
        latest = models.current() or overview.latest
        if latest is None:
            self.version_value.setText("untrained")
            self.accuracy_value.setText("–")
            self.accuracy_caption.setText("cross-validated pairwise accuracy")
        else:
            self.version_value.setText(f"v{latest.version}")
            acc = latest.cv_accuracy
            self.accuracy_value.setText("n/a" if acc is None else f"{acc * 100:.0f} %")
            self.accuracy_caption.setText(
                "cross-validated pairwise accuracy" + (
                    f" · early estimate: noisy under {EARLY_LABELS} labels"
                    if is_early(latest.labels) else ""))
        rejected = models.rejection()
        self.rejected.setText(rejected or "")
        self.rejected.setVisible(bool(rejected))
        agreement, bias = overview.agreement, overview.position_bias
        if agreement.rate is None:
            self.agree_value.setText("–")
            self.agree_caption.setText("model agreed with you: no ranked picks yet")
        elif agreement.picks < MIN_AGREEMENT_PICKS:
            n = agreement.picks
            hits = round(agreement.rate * n)
            self.agree_value.setText("too few picks")
            on = " on blind turns" if agreement.blind_only else ""  # as the habits say
            self.agree_caption.setText(
                f"model's top reply was your pick {hits} of {n} time{'s' if n != 1 else ''}"
                f"{on} so far: a percentage needs {MIN_AGREEMENT_PICKS} ranked picks")
        else:
            self.agree_value.setText(f"{agreement.rate * 100:.0f} %")
            n = agreement.picks
            last = "your last pick" if n == 1 else f"your last {n} picks"
            where = "blind " if agreement.blind_only else ""
            self.agree_caption.setText(f"model's top reply was your pick, {last} ({where}"
                                       f"turns) · {bias.words}")
        self.agree_caption.setToolTip(f"Agreement {agreement.note}.\nPosition bias: "
                                      f"{bias.words}. Blind mode (beside Send) shows the "
                                      "replies in a random order without scores.")
        self.labels_value.setText(f"{overview.labels:,} · {overview.pairs:,}")
        self.train_status.setText(self.backend.status_text(overview.status,
                                                           early_accuracy=True))
        self._fill_curve(versions)
        self._fill_labels(overview.label_times)
        self.learned.show_learned(models.learned())
        self.habits_panel.show_habits(overview.habits)
        self.leaderboard.refresh()
        self._fill_versions()

    def _fill_curve(self, versions: list[ModelVersion]) -> None:
        chart = _cleared(self.curve_chart)
        line, dots, chance = QLineSeries(), QScatterSeries(), QLineSeries()
        line.setPen(QPen(ACCENT, 2))
        dots.setColor(ACCENT)
        dots.setMarkerSize(8)
        max_x, low = 10.0, 30.0
        for v in versions:
            if v.cv_accuracy is None:
                continue
            point = QPointF(float(v.labels), v.cv_accuracy * 100)
            line.append(point)
            dots.append(point)
            max_x = max(max_x, float(v.labels) * 1.1)
            # every point stays on the chart, off its bottom edge (11 % on a 10 % floor
            # read as clipped): the axis starts a tick lower when a point is within 3
            low = max(0.0, min(low, 10.0 * ((v.cv_accuracy * 100 - 3) // 10)))
        chance.setPen(QPen(QColor("#8b949e"), 1, Qt.PenStyle.DashLine))
        x, y = QValueAxis(), QValueAxis()
        x.setTitleText("labels when trained")
        x.setLabelFormat("%d")
        x.setRange(0, max_x)
        x.applyNiceNumbers()
        chance.append(0, 50)
        chance.append(x.max(), 50)  # across the whole chart
        y.setTitleText("CV accuracy %")
        # ticks every 10 points, or 20 over a wider range: eleven labels on the chart's
        # height were all elided to "…"
        step = 10.0 if 100 - low <= 60 else 20.0
        low = step * (low // step)
        y.setRange(low, 100)
        y.setTickCount(int((100 - low) // step) + 1)
        y.setLabelFormat("%d")
        chart.addAxis(x, Qt.AlignmentFlag.AlignBottom)
        chart.addAxis(y, Qt.AlignmentFlag.AlignLeft)
        for series in (chance, line, dots):
            chart.addSeries(series)
            series.attachAxis(x)
            series.attachAxis(y)

    def _fill_labels(self, times: list[float]) -> None:
        chart = _cleared(self.labels_chart)
        series = QLineSeries()
        series.setPen(QPen(QColor("#3fb950"), 2))
        step = max(1, len(times) // 2000)  # keep the chart light for big imports
        for i in range(0, len(times), step):
            series.append(times[i] * 1000.0, float(i + 1))
        if times:
            series.append(times[-1] * 1000.0, float(len(times)))
        start = (times[0] if times else time.time() - 3600) * 1000.0
        end = max(start + 60_000.0, (times[-1] if times else time.time()) * 1000.0)
        x, y = QDateTimeAxis(), QValueAxis()
        x.setFormat("dd MMM HH:mm")
        x.setRange(QDateTime.fromMSecsSinceEpoch(int(start)),
                   QDateTime.fromMSecsSinceEpoch(int(end)))
        x.setTickCount(4)
        y.setTitleText("labels (cumulative)")
        y.setLabelFormat("%d")
        y.setRange(0, max(5, len(times) * 1.1))
        y.applyNiceNumbers()
        chart.addAxis(x, Qt.AlignmentFlag.AlignBottom)
        chart.addAxis(y, Qt.AlignmentFlag.AlignLeft)
        chart.addSeries(series)
        series.attachAxis(x)
        series.attachAxis(y)

    def _fill_versions(self) -> None:
        models = self.backend.session.models
        rows = models.version_rows()
        self.table.fill(rows, busy=self.switching)
        pinned = models.pinned
        in_use = models.in_use
        self.latest_button.setVisible(pinned is not None)
        self.latest_button.setEnabled(not self.switching)
        if self.switching:
            return
        if not rows:
            self.versions_note.setText("none yet")
        elif pinned is not None and in_use == pinned:
            self.versions_note.setText(f"You chose reward model v{pinned}: it ranks till you pick "
                                       "another or a new version is adopted.")
        else:
            self.versions_note.setText("A new version is used only if it is not worse than "
                                       "the one in use on labels that one never saw.")

    def use_version(self, version: int | None) -> None:
        """Rank with ``version`` from now on (None: the newest adopted); the chat re-ranks."""
        if self.switching:
            return
        self.switching = True
        self.versions_note.setText("Switching to " + (f"reward model v{version}…" if version
                                                      else "the newest adopted version…"))
        self._fill_versions()
        self.backend.spawn(self._use(version), "use a model version")

    async def _use(self, version: int | None) -> None:
        message = ""
        try:
            record = await self.backend.session.models.use(version)
            message = f"Now ranking with reward model v{record.version}." if record else ""
        except VersionError as exc:
            message = str(exc)
        finally:
            self.switching = False
        if not shiboken6.isValid(self):  # the window closed meanwhile
            return
        self.refresh()
        if message:
            self.versions_note.setText(message)


def _cleared(chart: QChart) -> QChart:
    """``chart`` without its series and axes, ready to be filled again."""
    chart.removeAllSeries()
    for axis in chart.axes():
        chart.removeAxis(axis)
    return chart
