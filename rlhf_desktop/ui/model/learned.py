"""The model page's "What your reward model learned": style preferences in words and a plot
of the style effects with their uncertainty (a forest plot: ± 2 standard deviations)."""

from __future__ import annotations

from html import escape

from PySide6.QtCharts import (
    QCategoryAxis,
    QChart,
    QChartView,
    QLineSeries,
    QScatterSeries,
    QValueAxis,
)
from PySide6.QtCore import QMargins, Qt
from PySide6.QtGui import QColor, QPainter, QPen
from PySide6.QtWidgets import QFrame, QGridLayout, QLabel, QVBoxLayout, QWidget

from rlhf_desktop.services.ranking.models import Learned, StylePreference

LIKED = QColor("#3fb950")
DISLIKED = QColor("#f85149")
UNCLEAR = QColor("#8b949e")
Z = 2.0  # the bars span ± Z standard deviations (the "found" rule of model_words.py)


def color_of(p: StylePreference) -> QColor:
    """Green: you prefer more of it; red: less; grey: no clear effect."""
    if not p.clear:
        return UNCLEAR
    return LIKED if p.effect > 0 else DISLIKED


class LearnedPanel(QFrame):
    """Sentences on the left, the plot on the right (wide) or under them (narrow)."""

    def __init__(self, dark: bool = False, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("kpi")
        self.dark = dark
        self.title = QLabel("What your reward model learned")
        self.title.setObjectName("kpiValue")
        self.title.setStyleSheet("font-size: 16px;")
        self.subtitle = QLabel("")
        self.subtitle.setObjectName("kpiCaption")
        self.subtitle.setWordWrap(True)
        self.sentences = QLabel("")
        self.sentences.setWordWrap(True)
        self.sentences.setTextFormat(Qt.TextFormat.RichText)
        self.sentences.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.sentences.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        words = QWidget()
        words_layout = QVBoxLayout(words)
        words_layout.setContentsMargins(0, 0, 0, 0)
        words_layout.addWidget(self.title)
        words_layout.addWidget(self.subtitle)
        words_layout.addWidget(self.sentences)
        legend = QLabel(f"<span style='color:{LIKED.name()}'>●</span> you prefer more of it"
                        f" · <span style='color:{DISLIKED.name()}'>●</span> less of it · "
                        f"<span style='color:{UNCLEAR.name()}'>●</span> no clear effect. "
                        "Effects are in logit: +0.7 turns a 50/50 pick into about 2 to 1.")
        legend.setObjectName("kpiCaption")
        legend.setWordWrap(True)
        words_layout.addWidget(legend)
        words_layout.addStretch(1)
        self.words = words

        self.chart = QChart()
        self.chart.setTitle("Style effects, logit per unit (bars: ± 2 standard deviations)")
        self.chart.legend().hide()
        self.chart.setMargins(QMargins(6, 6, 6, 6))
        self.chart.setBackgroundRoundness(6)
        self.view = QChartView(self.chart)
        self.view.setRenderHint(QPainter.RenderHint.Antialiasing)
        self.view.setStyleSheet("background: transparent;")
        self.view.setMinimumHeight(430)
        self.grid = QGridLayout(self)
        self.grid.setContentsMargins(14, 10, 14, 10)
        self._wide: bool | None = None
        self.arrange(True)
        self.set_dark(dark)
        self.preferences: list[StylePreference] = []

    def arrange(self, wide: bool) -> None:
        """Words beside the plot (wide) or above it."""
        if wide == self._wide:
            return
        self._wide = wide
        self.grid.removeWidget(self.words)
        self.grid.removeWidget(self.view)
        self.grid.addWidget(self.words, 0, 0)
        self.grid.addWidget(self.view, 0 if wide else 1, 1 if wide else 0)
        self.grid.setColumnStretch(0, 1)
        self.grid.setColumnStretch(1, 1 if wide else 0)

    def set_dark(self, dark: bool) -> None:
        """The chart's theme (the caller refills it: setTheme resets series colours)."""
        self.dark = dark
        self.chart.setTheme(QChart.ChartTheme.ChartThemeDark if dark
                            else QChart.ChartTheme.ChartThemeLight)
        self.chart.setBackgroundRoundness(6)

    def show_learned(self, learned: Learned) -> None:
        """Fill the words and the plot from ``learned``."""
        self.preferences = learned.preferences
        if learned.version is None:
            self.subtitle.setText("No trained reward model yet: pick the best reply a few times, "
                                  "then train.")
            self.sentences.setText("")
        elif not learned.preferences:
            self.subtitle.setText(f"Reward model v{learned.version} was trained before the "
                                  "reward model had style features: train again to see them.")
            self.sentences.setText("")
        else:
            found = [p for p in learned.preferences if p.clear]
            self.subtitle.setText(
                f"Reward model v{learned.version}, from {learned.labels:,} labels · "
                f"{len(found)} of {len(learned.preferences)} style preferences found "
                "(an effect counts when it is at least 2 standard deviations from zero)")
            self.sentences.setText(sentences_html(learned.preferences))
        self._fill_plot(learned.preferences)

    def _fill_plot(self, prefs: list[StylePreference]) -> None:
        chart = self.chart
        chart.removeAllSeries()
        for axis in chart.axes():
            chart.removeAxis(axis)
        n = len(prefs)
        x, y = QValueAxis(), QCategoryAxis()
        x.setTitleText("effect (logit): + you prefer more of it")
        reach = max([abs(p.effect) + Z * (0.0 if p.std != p.std else p.std) for p in prefs]
                    or [1.0])
        reach = min(max(reach, 0.5), 4.0)  # a huge ± of a rare feature must not squash the rest
        x.setRange(-reach, reach)
        x.applyNiceNumbers()
        y.setRange(-0.5, max(n, 1) - 0.5)
        y.setStartValue(-0.5)
        for row, p in enumerate(reversed(prefs)):  # the strongest at the top
            y.append(p.noun, row + 0.5)
        y.setLabelsPosition(QCategoryAxis.AxisLabelsPosition.AxisLabelsPositionCenter)
        y.setGridLineVisible(False)
        chart.addAxis(x, Qt.AlignmentFlag.AlignBottom)
        chart.addAxis(y, Qt.AlignmentFlag.AlignLeft)
        zero = QLineSeries()
        zero.setPen(QPen(UNCLEAR, 1, Qt.PenStyle.DashLine))
        zero.append(0.0, -0.5)
        zero.append(0.0, max(n, 1) - 0.5)
        series: list[QLineSeries | QScatterSeries] = [zero]
        dots = {c.name(): QScatterSeries() for c in (LIKED, DISLIKED, UNCLEAR)}
        for row, p in enumerate(reversed(prefs)):
            color = color_of(p)
            std = 0.0 if p.std != p.std else p.std
            bar = QLineSeries()
            bar.setPen(QPen(color, 3, Qt.PenStyle.SolidLine, Qt.PenCapStyle.FlatCap))
            bar.append(max(-reach * 1.5, p.effect - Z * std), float(row))
            bar.append(min(reach * 1.5, p.effect + Z * std), float(row))
            series.append(bar)
            dots[color.name()].append(p.effect, float(row))
        for name, dot in dots.items():
            dot.setColor(QColor(name))
            dot.setBorderColor(QColor(name))
            dot.setMarkerSize(10)
            series.append(dot)
        for s in series:
            chart.addSeries(s)
            s.attachAxis(x)
            s.attachAxis(y)


def sentences_html(prefs: list[StylePreference]) -> str:
    """Found preferences as a list in bold colour, the rest muted in one line each."""
    rows = []
    for p in prefs:
        if p.clear:
            rows.append(f"<li><span style='color:{color_of(p).name()}'>●</span> "
                        f"<b>{escape(p.sentence)}</b></li>")
        else:
            rows.append(f"<li><span style='color:{UNCLEAR.name()}'>{escape(p.sentence)}"
                        "</span></li>")
    return "<ul style='margin-left: -20px'>" + "".join(rows) + "</ul>"
