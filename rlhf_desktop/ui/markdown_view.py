"""A QTextBrowser that renders Markdown and is as tall as its content (the page scrolls, not
the card); code blocks copy, links open in the browser. Used by the cards and the bubbles."""

from __future__ import annotations

import math

from PySide6.QtCore import QSize, Qt, QUrl
from PySide6.QtGui import QDesktopServices, QGuiApplication, QResizeEvent
from PySide6.QtWidgets import QFrame, QSizePolicy, QTextBrowser, QWidget

from rlhf_desktop.ui.markdown_render import MarkdownRenderer


class MarkdownView(QTextBrowser):
    """A QTextBrowser as tall as its content (the page scrolls, not the card)."""

    def __init__(self, renderer: MarkdownRenderer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.renderer = renderer
        self.code_blocks: list[str] = []
        self.markdown_source = ""
        self.setOpenLinks(False)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.viewport().setAutoFillBackground(False)
        self.setObjectName("markdown")
        self.document().setDocumentMargin(2)
        self.document().setDefaultStyleSheet(renderer.stylesheet())
        self.document().documentLayout().documentSizeChanged.connect(self._fit)
        self.anchorClicked.connect(self._on_anchor)
        self.setMinimumHeight(24)

    def set_markdown_text(self, text: str) -> None:
        """Render ``text`` (Markdown)."""
        self.markdown_source = text
        rendered = self.renderer.render(text)
        self.code_blocks = rendered.code_blocks
        self.setHtml(rendered.html)
        self._fit()

    def restyle(self) -> None:
        """Render the same text again in the renderer's current palette."""
        self.document().setDefaultStyleSheet(self.renderer.stylesheet())
        if self.markdown_source:
            self.set_markdown_text(self.markdown_source)

    def _fit(self) -> None:
        self.document().setTextWidth(self.viewport().width())
        height = math.ceil(self.document().size().height()) + 4
        if height != self.height():
            self.setFixedHeight(max(24, height))

    def resizeEvent(self, event: QResizeEvent) -> None:
        """Re-wrap to the new width."""
        super().resizeEvent(event)
        self._fit()

    def sizeHint(self) -> QSize:
        """As tall as the document."""
        return QSize(300, self.height())

    def _on_anchor(self, url: QUrl) -> None:
        if url.scheme() == "copy":
            index = int(url.path()) if url.path().isdigit() else -1
            if 0 <= index < len(self.code_blocks):
                QGuiApplication.clipboard().setText(self.code_blocks[index])
        elif url.scheme() in ("http", "https", "mailto"):
            QDesktopServices.openUrl(url)
