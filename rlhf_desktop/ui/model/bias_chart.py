"""A bar chart of the share of picks by card position, each bar with its chance line
(QPainter; the same figures as text for screen readers and the tooltip)."""

from __future__ import annotations

from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFont, QPainter, QPaintEvent, QPalette, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

from rlhf_desktop.services.labels.habits import SIGNIFICANT, PositionReport, p_words

BAR = QColor("#2f81f7")
OFF = QColor("#f0883e")  # a position picked more (or less) often than chance explains
CHANCE = QColor("#8b949e")


def describe(report: PositionReport) -> str:
    """The chart in words, one position a line."""
    if not report.shares:
        return "Picks by card position: no picks with recorded card positions yet."
    lines = [f"Picks by card position ({report.picks} picks):"]
    for s in report.shares:
        lines.append(f"{s.name} card: {s.share:.0%} of {s.turns} picks (chance "
                     f"{s.chance:.0%}, {p_words(s.p_value)})")
    return "\n".join(lines)


class BiasChart(QWidget):
    """Bars per display position (share of picks), a dashed chance line on each bar; a bar
    is orange when a binomial test says chance does not explain it (p < 0.05)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.report = PositionReport((), 0, ())
        self.setMinimumSize(280, 200)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setAccessibleName("Picks by card position")
        self.set_report(self.report)

    def sizeHint(self) -> QSize:
        """Wide enough for eight bars, as tall as the habits' sentences."""
        return QSize(420, 220)

    def set_report(self, report: PositionReport) -> None:
        """Show ``report`` (and say it in the accessible description and tooltip)."""
        self.report = report
        text = describe(report)
        self.setAccessibleDescription(text)
        self.setToolTip(text + ("\n" + report.note if report.shares else ""))
        self.update()

    def paintEvent(self, event: QPaintEvent) -> None:
        """Axis, bars, chance lines, labels."""
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        text = self.palette().color(QPalette.ColorRole.WindowText)
        muted = QColor(text)
        muted.setAlpha(110)
        font = QFont(self.font())
        font.setPointSizeF(max(7.0, font.pointSizeF() * 0.9))
        painter.setFont(font)
        line_h = painter.fontMetrics().height()
        left, top = 40.0, line_h + 8.0
        bottom = self.height() - 2.0 * line_h - 8.0
        right = self.width() - 8.0
        painter.setPen(text)
        painter.drawText(QRectF(0, 0, self.width(), line_h + 4),
                         Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                         "Picks by card position (dashed: chance)")
        height = max(bottom - top, 10.0)
        for tick in (0, 25, 50, 75, 100):
            y = bottom - height * tick / 100
            painter.setPen(QPen(muted, 1, Qt.PenStyle.SolidLine if tick == 0
                                else Qt.PenStyle.DotLine))
            painter.drawLine(int(left), int(y), int(right), int(y))
            painter.setPen(text)
            painter.drawText(QRectF(0, y - line_h / 2, left - 6, line_h),
                             Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
                             f"{tick}%")
        shares = self.report.shares
        if not shares:
            painter.setPen(muted)
            painter.drawText(QRectF(left, top, right - left, height),
                             Qt.AlignmentFlag.AlignCenter, "no picks with card positions yet")
            painter.end()
            return
        slot = (right - left) / len(shares)
        width = min(slot * 0.6, 70.0)
        for i, s in enumerate(shares):
            x = left + slot * i + (slot - width) / 2
            bar_h = height * s.share
            off = s.p_value < SIGNIFICANT
            painter.fillRect(QRectF(x, bottom - bar_h, width, bar_h), OFF if off else BAR)
            chance_y = bottom - height * s.chance
            painter.setPen(QPen(CHANCE if not off else text, 2, Qt.PenStyle.DashLine))
            painter.drawLine(int(x - 6), int(chance_y), int(x + width + 6), int(chance_y))
            painter.setPen(text)
            painter.drawText(QRectF(x - 20, bottom - bar_h - line_h - 2, width + 40, line_h),
                             Qt.AlignmentFlag.AlignCenter, f"{s.share:.0%}")
            painter.drawText(QRectF(left + slot * i, bottom + 4, slot, line_h),
                             Qt.AlignmentFlag.AlignCenter, s.name)
            painter.setPen(muted)
            painter.drawText(QRectF(left + slot * i, bottom + 4 + line_h, slot, line_h),
                             Qt.AlignmentFlag.AlignCenter, f"of {s.turns} picks")
        painter.end()
