"""Property-based, time-bounded fuzzing of the Markdown rendering path.

Any reply text — Markdown, raw HTML, half-open fences, control characters — renders through
``MarkdownRenderer.render`` and into the reply view (``MarkdownView``) without an exception;
raw HTML from the text never becomes markup (no script, no event handler, no tag outside
what Markdown itself produces), and clicking any link in the result opens nothing but
http/https/mailto in the browser (``copy:N`` copies a code block) and never raises.
"""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PySide6.QtCore import QUrl
from PySide6.QtWidgets import QApplication

from rlhf_desktop.ui import markdown_view
from rlhf_desktop.ui.markdown_render import MarkdownRenderer

FUZZ = settings(max_examples=100, deadline=None,
                suppress_health_check=[HealthCheck.too_slow,
                                       HealthCheck.function_scoped_fixture])

TOKENS = (
    "<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "<iframe src='http://x'>",
    "<a href=\"javascript:alert(1)\">x</a>", "<style>*{display:none}</style>", "<!--", "-->",
    "<div onclick='x()'>", "</div>", "<b>", "<http://example.com>", "<mail@example.com>",
    "[link](javascript:alert(1))", "[l](http://example.com \"t\")", "[c](copy:abc)",
    "[c](copy:99)", "[c](copy:-1)", "[f](file:///etc/passwd)", "![i](file:///etc/passwd)",
    "![i](http://example.com/x.png)", "[x](http://a\" onclick=\"y)", "```python\n", "```",
    "```js\n", "~~~", "`", "``", "**", "*", "_", "# ", "###### ", "> ", ">> ", "- ", "* ",
    "1. ", "    ", "\t", "| a | b |\n|---|---|\n| 1 | 2 |\n", "|", "---\n", "&amp;", "&#0;",
    "&#x27;", "&", "<", ">", "\n", "\n\n", "\r\n", "\x00", "\u202e", "\ufeff", "😀", "\\",
    "[", "]", "(", ")", "<pre>", "</pre>", "<table>", "<td>", "&lt;script&gt;",
    "<svg onload=alert(1)>", "<math>", "<object data=x>", "<embed src=x>", "<form>",
    "<input>", "<link rel=stylesheet href=x>", "<meta http-equiv=refresh content=0>",
)

reply_text = st.lists(st.one_of(st.sampled_from(TOKENS), st.text(max_size=12)),
                      max_size=25).map("".join)

# Tags Markdown (tables, sane_lists) and the code-block header produce; nothing else.
ALLOWED_TAGS = {"p", "h1", "h2", "h3", "h4", "h5", "h6", "em", "strong", "code", "pre", "a",
                "ul", "ol", "li", "blockquote", "hr", "br", "table", "thead", "tbody", "tr",
                "th", "td", "span", "img"}


class Markup(HTMLParser):
    """Every tag and attribute in the rendered HTML."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str]] = []
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            self.attrs.append((name, value or ""))
            if tag == "a" and name == "href":
                self.hrefs.append(value or "")


def markup(html: str) -> Markup:
    parser = Markup()
    parser.feed(html)
    parser.close()
    return parser


@pytest.fixture(scope="module")
def renderers() -> dict[bool, MarkdownRenderer]:
    return {False: MarkdownRenderer(False), True: MarkdownRenderer(True)}


@pytest.mark.timeout(60)
@FUZZ
@given(text=reply_text, dark=st.booleans())
def test_any_text_renders_without_markup_from_the_text(
        renderers: dict[bool, MarkdownRenderer], text: str, dark: bool) -> None:
    rendered = renderers[dark].render(text)
    found = markup(rendered.html)
    assert set(found.tags) <= ALLOWED_TAGS, set(found.tags) - ALLOWED_TAGS
    assert not any(name.startswith("on") for name, _ in found.attrs), found.attrs
    lowered = rendered.html.lower()
    for raw in ("<script", "<iframe", "<style", "<svg", "<object", "<embed", "<meta", "<form",
                "<input", "<link"):
        assert raw not in lowered
    # Code blocks: what Copy puts on the clipboard is the block's text.
    assert all(block in text for block in rendered.code_blocks)
    # A copy link only from the renderer's own code-block headers, or from the text itself.
    own = sum(1 for h in found.hrefs if h.startswith("copy:"))
    assert own >= len(rendered.code_blocks)


@pytest.mark.timeout(60)
@FUZZ
@given(text=reply_text)
def test_any_text_shows_in_the_reply_view_and_links_open_only_the_web(
        qapp: QApplication, monkeypatch: pytest.MonkeyPatch,
        renderers: dict[bool, MarkdownRenderer], text: str) -> None:
    opened: list[str] = []
    monkeypatch.setattr(markdown_view.QDesktopServices, "openUrl",
                        lambda url: opened.append(url.scheme()) or True)
    view = markdown_view.MarkdownView(renderers[False])
    try:
        view.resize(500, 200)
        view.set_markdown_text(text)
        qapp.processEvents()
        for href in markup(view.toHtml()).hrefs + markup(renderers[False].render(text).html).hrefs:
            view._on_anchor(QUrl(href))  # a click on the link: must never raise
        assert set(opened) <= {"http", "https", "mailto"}, opened
    finally:
        view.deleteLater()
