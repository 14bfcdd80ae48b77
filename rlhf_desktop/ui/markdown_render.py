"""Markdown → the HTML subset QTextBrowser renders, with highlighted, copyable code blocks.

Raw HTML in a reply is escaped, never rendered. A single newline is a line break (as in
ChatGPT), not markdown's soft break. Fenced code blocks are split out first (an
unclosed fence while a reply is still streaming counts as code up to the end), highlighted
with pygments (inline styles), and get a header with the language and a ``copy:N`` link.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Any

FENCE = re.compile(r"^[ \t]*```[ \t]*([\w+#.-]*)[^\n]*\n(.*?)(?:^[ \t]*```[ \t]*$|\Z)",
                   re.S | re.M)


@dataclass(frozen=True)
class Palette:
    """Colours of the rendered text (light or dark)."""

    code_bg: str
    code_border: str
    code_head_bg: str
    code_head_fg: str
    inline_code_bg: str
    link: str
    pygments_style: str


LIGHT = Palette("#f6f8fa", "#d0d7de", "#eaeef2", "#57606a", "#eff1f3", "#0969da", "friendly")
DARK = Palette("#161b22", "#30363d", "#21262d", "#9da7b3", "#2d333b", "#58a6ff", "github-dark")


@dataclass(frozen=True)
class Rendered:
    """HTML for a QTextBrowser and the raw text of each code block (for ``copy:N``)."""

    html: str
    code_blocks: list[str]


def split_fences(text: str) -> list[tuple[str, str, str]]:
    """``(kind, lang, content)`` segments; kind is ``text`` or ``code``."""
    out: list[tuple[str, str, str]] = []
    pos = 0
    for match in FENCE.finditer(text):
        if match.start() > pos:
            out.append(("text", "", text[pos : match.start()]))
        code = match.group(2)
        out.append(("code", match.group(1), code[:-1] if code.endswith("\n") else code))
        pos = match.end()
    if pos < len(text):
        out.append(("text", "", text[pos:]))
    return out


def markdown_converter() -> Any:
    """A python-markdown instance: tables, sane lists, nl2br; raw HTML escaped, never rendered.

    The extensions are given as objects, not names: a name makes python-markdown read every
    installed package's entry points to find it (tens of milliseconds at start-up)."""
    import markdown
    from markdown.extensions.nl2br import Nl2BrExtension
    from markdown.extensions.sane_lists import SaneListExtension
    from markdown.extensions.tables import TableExtension

    # nl2br: a single newline is a line break, as in chat apps (a poem, an address, an
    # edited haiku keep their lines); code blocks, lists and tables are unaffected.
    md = markdown.Markdown(extensions=[TableExtension(), SaneListExtension(), Nl2BrExtension()])
    # Never render HTML from a reply: escape it like text.
    for name in ("html_block",):
        if name in md.preprocessors:
            md.preprocessors.deregister(name)
    if "html" in md.inlinePatterns:
        md.inlinePatterns.deregister("html")
    return md


class MarkdownRenderer:
    """Reusable renderer: the python-markdown instance is built on the first render (an
    empty chat shows without it) and then reused."""

    def __init__(self, dark: bool = False) -> None:
        self.palette = DARK if dark else LIGHT
        self.dark = dark
        self._converter: Any = None

    @property
    def _md(self) -> Any:
        if self._converter is None:
            self._converter = markdown_converter()
        return self._converter

    def set_dark(self, dark: bool) -> None:
        """Render from now on in the dark (or light) palette."""
        self.dark = dark
        self.palette = DARK if dark else LIGHT

    def stylesheet(self) -> str:
        """Default stylesheet for the QTextDocument."""
        p = self.palette
        return (
            f"code {{ background-color: {p.inline_code_bg}; font-family: monospace; }}"
            f" a {{ color: {p.link}; text-decoration: none; }}"
            " p { margin-top: 0px; margin-bottom: 8px; }"
            " h1, h2, h3, h4 { margin-top: 6px; margin-bottom: 6px; }"
            " li { margin-bottom: 2px; }"
            " table.md { border-collapse: collapse; }"
        )

    def render(self, text: str) -> Rendered:
        """Render a (possibly partial) Markdown reply."""
        parts: list[str] = []
        blocks: list[str] = []
        for kind, lang, content in split_fences(text):
            if kind == "code":
                parts.append(self._code(content, lang, len(blocks)))
                blocks.append(content)
            elif content.strip():
                self._md.reset()
                parts.append(self._md.convert(_escape_html(content)))
        return Rendered("".join(parts), blocks)

    def _code(self, code: str, lang: str, number: int) -> str:
        p = self.palette
        body = highlight(code, lang, p.pygments_style)
        label = html.escape(lang or "code")
        return (
            f'<table width="100%" cellspacing="0" cellpadding="6" '
            f'style="border: 1px solid {p.code_border}; margin-top: 4px; margin-bottom: 8px;">'
            f'<tr><td style="background-color: {p.code_head_bg}; color: {p.code_head_fg};">'
            f'<span style="font-size: small;">{label}&nbsp;&nbsp;·&nbsp;&nbsp;'
            f'<a href="copy:{number}">Copy</a></span></td></tr>'
            f'<tr><td style="background-color: {p.code_bg};">'
            f'<pre style="white-space: pre-wrap; font-family: monospace; margin: 0px;">'
            f"{body}</pre></td></tr></table>"
        )


def _escape_html(text: str) -> str:
    """Escape ``<`` and ``&`` that start HTML; keep ``>`` (Markdown block quotes)."""
    text = re.sub(r"&(?![a-zA-Z]+;|#\d+;)", "&amp;", text)
    return text.replace("<", "&lt;")


def highlight(code: str, lang: str, style: str) -> str:
    """Code as HTML spans with inline colours (plain escaped text for unknown languages)."""
    from pygments import highlight as pyg_highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import get_lexer_by_name
    from pygments.util import ClassNotFound

    try:
        lexer = get_lexer_by_name(lang or "text", stripnl=False)
    except ClassNotFound:
        lexer = get_lexer_by_name("text", stripnl=False)
    formatter = HtmlFormatter(noclasses=True, nowrap=True, style=style)
    out = pyg_highlight(code, lexer, formatter)
    return out[:-1] if out.endswith("\n") and not code.endswith("\n") else out


def warm_up() -> None:
    """Import pygments and its Python lexer, and python-markdown with its extensions (a
    converter built and dropped), in the session's loading worker, so that the first reply
    and the first code block render without a pause on the UI thread."""
    highlight("print(1)", "python", "friendly")
    markdown_converter().convert("*warm*")
