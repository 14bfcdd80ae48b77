"""The app's theme: the UI font falls back to a colour emoji font for emoji only."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QFont, QFontDatabase, QFontMetrics, QImage, QPainter
from PySide6.QtWidgets import QApplication

from rlhf_desktop.ui import theme


def test_the_app_font_falls_back_to_a_colour_emoji_font(qapp: QApplication) -> None:
    plain = QFont(qapp.font())
    theme.apply(qapp, dark=False)
    font = qapp.font()
    assert "Noto Color Emoji" in font.families()
    assert font.families()[0] != "Noto Color Emoji"  # the UI font stays first
    # Text keeps the UI font's letters, digits and spaces (the emoji font has digits and a
    # space too, for keycaps; behind a generic alias such as "Sans Serif" Qt took them).
    sample = "What would you like 135 to talk about? v1 · 65 %"
    assert (QFontMetrics(font).horizontalAdvance(sample)
            == QFontMetrics(plain).horizontalAdvance(sample))
    if "Noto Color Emoji" not in QFontDatabase.families():
        pytest.skip("fonts-noto-color-emoji is not installed here")
    image = QImage(64, 64, QImage.Format.Format_ARGB32)
    image.fill(QColor("white"))
    painter = QPainter(image)
    painter.setFont(font)
    painter.setPen(QColor("black"))
    painter.drawText(image.rect(), int(Qt.AlignmentFlag.AlignCenter), "\U0001F600")
    painter.end()
    colours = [image.pixelColor(x, y) for x in range(64) for y in range(64)]
    assert any(c.saturation() > 80 for c in colours), "the emoji drew as black text or a box"
