"""Small inline SVG icons (no emoji font needed). Paths from Material Icons (Apache-2.0)."""

from __future__ import annotations

from PySide6.QtCore import QByteArray
from PySide6.QtGui import QIcon, QPixmap

THUMB_UP = (
    "M1 21h4V9H1v12zm22-11c0-1.1-.9-2-2-2h-6.31l.95-4.57.03-.32c0-.41-.17-.79-.44-1.06L14.17 "
    "1 7.59 7.59C7.22 7.95 7 8.45 7 9v10c0 1.1.9 2 2 2h9c.83 0 1.54-.5 1.84-1.22l3.02-7.05c"
    ".09-.23.14-.47.14-.73v-2z"
)
_cache: dict[tuple[str, str, int], QIcon] = {}


def svg_icon(path: str, color: str, size: int = 18) -> QIcon:
    """A one-path 24×24 SVG icon in ``color``."""
    key = (path, color, size)
    if key not in _cache:
        svg = (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" width="{size * 2}" '
               f'height="{size * 2}"><path fill="{color}" d="{path}"/></svg>')
        pixmap = QPixmap()
        pixmap.loadFromData(QByteArray(svg.encode()), "SVG")
        _cache[key] = QIcon(pixmap)
    return _cache[key]


def thumb_up(color: str = "#57606a") -> QIcon:
    """The pick button's icon."""
    return svg_icon(THUMB_UP, color)
