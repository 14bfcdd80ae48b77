"""The window at its minimum size: a narrow window hides the chat list behind a button
(Ctrl+F or the button shows it), and the model page shows every text whole, without
overlap, and never widens the window."""

from __future__ import annotations

from PySide6.QtCore import QRect, Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QAbstractButton, QApplication, QLabel, QWidget

from rlhf_desktop.ui import theme
from rlhf_desktop.ui.main_window import MainWindow
from rlhf_desktop.ui.widgets import ElidedLabel
from tests.ui.helpers import add_version, db, resize, settle

MIN_SIZE = (590, 547)  # the window's minimum size


def test_a_narrow_window_hides_the_chat_list_and_the_button_shows_it(
        window: MainWindow) -> None:
    resize(window, 1200, 800)
    assert window.sidebar.isVisible()
    resize(window, *MIN_SIZE)
    assert not window.sidebar.isVisible(), "the chat list takes half of a narrow window"
    toggle = window.controls.sidebar_button
    assert toggle.isVisible()
    QTest.mouseClick(toggle, Qt.MouseButton.LeftButton)
    assert window.sidebar.isVisible()
    QTest.mouseClick(toggle, Qt.MouseButton.LeftButton)
    assert not window.sidebar.isVisible()
    window.focus_search()  # Ctrl+F opens it to search
    assert window.sidebar.isVisible()
    resize(window, 1200, 800)
    assert window.sidebar.isVisible()
    resize(window, 300, 300)  # as small as it goes: the conversation keeps some room
    assert window.height() >= 480 and window.chat.scroll_area.height() >= 150
    assert not window.sidebar.isVisible()


def _text_fits(label: QLabel) -> bool:
    room = label.contentsRect()
    if isinstance(label, ElidedLabel) or not label.text():
        return True
    if label.wordWrap():
        return label.heightForWidth(room.width()) <= room.height() + 1
    metrics = label.fontMetrics()
    return (metrics.horizontalAdvance(label.text()) <= room.width() + 1
            and metrics.height() <= room.height() + 1)


def _visible_rect(widget: QWidget, root: QWidget) -> QRect:
    return QRect(widget.mapTo(root, widget.rect().topLeft()), widget.size())


def test_the_model_page_at_minimum_size_shows_every_text_whole_without_overlap(
        window: MainWindow, qapp: QApplication) -> None:
    theme.apply(qapp, dark=False)  # the app's look: its font sizes decide what fits
    for v, labels, acc in ((1, 5, 0.27), (2, 10, 0.58), (3, 25, 0.64)):
        add_version(db(), v, labels, acc)
    window.backend.latest = db().versions.latest()
    resize(window, *MIN_SIZE)
    window.show_page(2)
    settle(window)
    page = window.model_view
    texts = [w for w in page.findChildren(QLabel) if w.isVisibleTo(page)]
    assert texts
    cut = [w.text() for w in texts if not _text_fits(w)]
    assert not cut, f"text cut or squeezed at {MIN_SIZE}: {cut}"
    items: list[QWidget] = [*texts, page.curve_view, page.labels_view, page.table]
    items += [w for w in page.findChildren(QAbstractButton) if w.isVisibleTo(page)]
    rects = [(w, _visible_rect(w, page)) for w in items]
    overlaps = [(a.objectName() or type(a).__name__, b.objectName() or type(b).__name__)
                for i, (a, ra) in enumerate(rects) for b, rb in rects[i + 1:]
                if ra.intersects(rb) and not a.isAncestorOf(b) and not b.isAncestorOf(a)]
    assert not overlaps, overlaps
    assert window.width() <= MIN_SIZE[0] + 1, window.size()  # the page never widened it
    assert window.height() <= MIN_SIZE[1] + 1, window.size()
