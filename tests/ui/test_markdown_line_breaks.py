"""A single newline in a reply (or an edit, or the user's message) is a line break, as in
chat apps: an edited haiku keeps its three lines. Code blocks, lists and tables render as
before."""

from __future__ import annotations

import pytest

from rlhf_desktop.ui.markdown_render import MarkdownRenderer
from rlhf_desktop.ui.markdown_view import MarkdownView

HAIKU = "An old silent pond\nA frog jumps into the pond\nSplash! Silence again."


@pytest.fixture(scope="module")
def renderer() -> MarkdownRenderer:
    return MarkdownRenderer()


def test_single_newlines_are_line_breaks_in_the_html(renderer: MarkdownRenderer) -> None:
    html = renderer.render(HAIKU).html
    assert html.count("<br />") == 2 and html.count("<p>") == 1
    assert renderer.render("one\n\ntwo").html.count("<p>") == 2  # a blank line: paragraphs


def test_an_edited_haiku_shows_on_three_lines(qtbot: object,
                                              renderer: MarkdownRenderer) -> None:
    view = MarkdownView(renderer)
    qtbot.addWidget(view)  # type: ignore[attr-defined]
    view.set_markdown_text(HAIKU)
    assert view.toPlainText().splitlines() == HAIKU.splitlines()


def test_code_lists_and_tables_are_unchanged(renderer: MarkdownRenderer) -> None:
    fenced = renderer.render("Run:\n```python\nx = 1\ny = 2\n```\n")
    assert fenced.code_blocks == ["x = 1\ny = 2"]
    assert "<br" not in fenced.html.split("<pre", 1)[1]  # the code keeps its newlines
    indented = renderer.render("Code:\n\n    a = 1\n    b = 2\n").html
    assert "<pre><code>a = 1\nb = 2\n</code></pre>" in indented
    items = renderer.render("- one\n- two\n- three").html
    assert items.count("<li>") == 3 and "<br" not in items
    numbered = renderer.render("1. one\n2. two").html
    assert numbered.count("<li>") == 2 and "<br" not in numbered
    table = renderer.render("a | b\n--|--\n1 | 2\n3 | 4").html
    assert table.count("<tr>") == 3 and "<br" not in table
    # a line break inside a list item (a lazy continuation) is kept too
    assert "one<br />\nmore" in renderer.render("- one\nmore\n- two").html
