"""Light and dark look, following the system's colour scheme."""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QFont, QFontInfo, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication


@dataclass(frozen=True)
class Colors:
    """The few colours the stylesheet uses."""

    window: str
    surface: str
    surface_alt: str
    border: str
    text: str
    muted: str
    accent: str
    accent_text: str
    bubble: str
    chosen: str
    chosen_bg: str
    error_bg: str
    error_border: str
    banner_bg: str


LIGHT = Colors("#f6f7f9", "#ffffff", "#eef1f5", "#d8dde4", "#1f2328", "#656d76", "#2f6fde",
               "#ffffff", "#e8f0fe", "#1a7f37", "#eefbf1", "#fff1f0", "#f5a19a", "#fff8e1")
DARK = Colors("#0f1115", "#171a21", "#1f232b", "#30363d", "#e6edf3", "#8d96a0", "#4c8df6",
              "#ffffff", "#1c2a44", "#3fb950", "#13261a", "#2d1516", "#8e3b37", "#2b2412")


# Tried after the UI font for characters it lacks, so replies with emoji render where one
# of these is installed (Debian/Ubuntu: fonts-noto-color-emoji), whatever the UI font is.
EMOJI_FAMILIES = ("Noto Color Emoji", "Apple Color Emoji", "Segoe UI Emoji", "Twemoji",
                  "EmojiOne Color", "Symbola")


def with_emoji_fallback(font: QFont) -> QFont:
    """``font`` with the emoji families appended to its family list (once).

    The list starts with the family the font really resolves to: a generic alias such as
    "Sans Serif" is no installed family, and Qt would then take the digits and spaces from
    the emoji font (which has glyphs for them, for keycaps)."""
    resolved = QFontInfo(font).family()
    families = [resolved] if resolved else []
    families += [f for f in (list(font.families()) or [font.family()]) if f not in families]
    families += [f for f in EMOJI_FAMILIES if f not in families]
    font.setFamilies(families)
    return font


def system_is_dark() -> bool:
    """Whether the system asks for a dark scheme."""
    hints = QGuiApplication.styleHints()
    return bool(hints.colorScheme() == Qt.ColorScheme.Dark)


def stylesheet(c: Colors) -> str:
    """The application stylesheet."""
    return f"""
QMainWindow, QDialog {{ background: {c.window}; }}
QTextBrowser#markdown {{ background: transparent; }}
QWidget#chatPage, QScrollArea#chatScroll {{ background: {c.window}; }}
QWidget#sidebar {{ background: {c.surface_alt}; }}
QListWidget#conversations {{ background: transparent; border: none; }}
QListWidget#conversations::item {{ padding: 8px 8px; border-radius: 6px; margin: 1px 0; }}
QListWidget#conversations::item:selected {{ background: {c.bubble}; color: {c.text}; }}
QFrame#card {{ background: {c.surface}; border: 1px solid {c.border}; border-radius: 10px; }}
QFrame#card[state="streaming"] {{ border: 1px dashed {c.accent}; }}
QFrame#card[state="chosen"] {{ border: 2px solid {c.chosen}; background: {c.chosen_bg}; }}
QFrame#card[state="other"] {{ background: {c.surface_alt}; }}
QFrame#userBubble {{ background: {c.bubble}; border-radius: 12px; }}
QLabel#who {{ color: {c.muted}; font-size: 11px; font-weight: 600; }}
QLabel#turnStatus, QLabel#cardFooter, QLabel#muted {{ color: {c.muted}; font-size: 12px; }}
QLabel[badge] {{ border-radius: 9px; padding: 2px 8px; font-size: 12px; font-weight: 600; }}
QLabel[badge="rank1"] {{ background: {c.accent}; color: {c.accent_text}; }}
QLabel[badge="rank"] {{ background: {c.surface_alt}; color: {c.text};
    border: 1px solid {c.border}; }}
QLabel[badge="neutral"] {{ background: {c.surface_alt}; color: {c.muted}; }}
QLabel[badge="score"] {{ color: {c.text}; background: transparent; font-weight: 500; }}
QLabel[badge="version"] {{ color: {c.muted}; border: 1px solid {c.border}; }}
QLabel[badge="state"] {{ background: {c.chosen}; color: white; }}
QLabel[badge="bad"] {{ background: {c.error_border}; color: {c.text}; }}
QToolButton#pickButton {{ border: 1px solid {c.border}; border-radius: 8px; padding: 3px 10px;
    background: {c.surface}; font-weight: 600; }}
QToolButton#pickButton:hover {{ border-color: {c.chosen}; color: {c.chosen}; }}
QToolButton#pickButton:disabled {{ color: {c.muted}; }}
QFrame#reasonRow {{ background: {c.chosen_bg}; border: 1px solid {c.chosen}; border-radius: 8px; }}
QFrame#reasonRow[tone="bad"] {{ background: {c.error_bg}; border: 1px solid {c.error_border}; }}
QFrame#errorRow {{ background: {c.error_bg}; border: 1px solid {c.error_border};
    border-radius: 8px; }}
QFrame#banner {{ background: {c.banner_bg}; border-bottom: 1px solid {c.border}; }}
QFrame#composerBar {{ background: {c.window}; border-top: 1px solid {c.border}; }}
QPlainTextEdit#composer {{ background: {c.surface}; border: 1px solid {c.border};
    border-radius: 10px; padding: 6px 8px; font-size: 14px; }}
QPlainTextEdit#composer:focus {{ border-color: {c.accent}; }}
QPushButton {{ padding: 6px 14px; border-radius: 7px; border: 1px solid {c.border};
    background: {c.surface}; }}
QPushButton:hover {{ border-color: {c.accent}; }}
QPushButton:disabled {{ color: {c.muted}; background: {c.surface_alt}; border-color: {c.border}; }}
QPushButton#primary, QPushButton#newChat {{ background: {c.accent}; color: {c.accent_text};
    border: none; font-weight: 600; }}
QPushButton#primary:disabled {{ background: {c.surface_alt}; color: {c.muted};
    border: 1px solid {c.border}; font-weight: normal; }}
QPushButton#chip {{ text-align: left; padding: 12px 14px; border-radius: 10px;
    background: {c.surface}; font-size: 13px; }}
QPushButton#chip:hover {{ border-color: {c.accent}; background: {c.bubble}; }}
QPushButton#nav {{ border: none; background: transparent; padding: 6px 14px;
    font-weight: 600; color: {c.muted}; }}
QPushButton#nav:checked {{ color: {c.accent}; border-bottom: 2px solid {c.accent};
    border-radius: 0px; }}
QLabel#emptyTitle {{ font-size: 22px; font-weight: 600; }}
QLabel#emptyHint {{ color: {c.muted}; font-size: 13px; }}
QFrame#kpi {{ background: {c.surface}; border: 1px solid {c.border}; border-radius: 10px; }}
QLabel#kpiValue {{ font-size: 24px; font-weight: 700; }}
QLabel#kpiCaption {{ color: {c.muted}; font-size: 12px; }}
QStatusBar {{ background: {c.surface_alt}; border-top: 1px solid {c.border}; }}
QStatusBar QLabel {{ padding: 0 6px; }}
QGroupBox {{ font-weight: 600; border: 1px solid {c.border}; border-radius: 8px;
    margin-top: 10px; padding: 12px 10px 8px 10px; background: {c.surface}; }}
QGroupBox::title {{ subcontrol-origin: margin; left: 10px; padding: 0 4px; }}
QLineEdit {{ padding: 5px 8px; border: 1px solid {c.border}; border-radius: 7px;
    background: {c.surface}; }}
"""


def apply(app: QApplication, dark: bool | None = None) -> bool:
    """Fusion style, a palette and the stylesheet for the system scheme. Returns ``dark``."""
    dark = system_is_dark() if dark is None else dark
    c = DARK if dark else LIGHT
    app.setStyle("Fusion")
    pal = QPalette()
    roles = {
        QPalette.ColorRole.Window: c.window, QPalette.ColorRole.Base: c.surface,
        QPalette.ColorRole.AlternateBase: c.surface_alt, QPalette.ColorRole.Text: c.text,
        QPalette.ColorRole.WindowText: c.text, QPalette.ColorRole.Button: c.surface,
        QPalette.ColorRole.ButtonText: c.text, QPalette.ColorRole.Highlight: c.accent,
        QPalette.ColorRole.HighlightedText: c.accent_text, QPalette.ColorRole.ToolTipBase:
        c.surface, QPalette.ColorRole.ToolTipText: c.text, QPalette.ColorRole.PlaceholderText:
        c.muted, QPalette.ColorRole.Link: c.accent,
    }
    for role, color in roles.items():
        pal.setColor(role, QColor(color))
    disabled = QPalette.ColorGroup.Disabled  # setColor(role, …) set every group: say it
    for role in (QPalette.ColorRole.Text, QPalette.ColorRole.WindowText,
                 QPalette.ColorRole.ButtonText):
        pal.setColor(disabled, role, QColor(c.muted))
    pal.setColor(disabled, QPalette.ColorRole.Base, QColor(c.surface_alt))
    app.setPalette(pal)
    app.setFont(with_emoji_fallback(app.font()))
    app.setStyleSheet(stylesheet(c))
    return dark
