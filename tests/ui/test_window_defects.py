"""Issue 10, window-level defects: n_ctx in Settings (D4), delete confirmation and undo (D7),
the window at its minimum size (D9), the status bar, sidebar titles and the dataset filter
(D11), and replies/provider/model above the chat, the shortcuts list, emoji (D12)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from PySide6.QtCore import QRect, Qt, QTimer
from PySide6.QtGui import QColor, QFont, QFontDatabase, QFontMetrics, QImage, QPainter
from PySide6.QtTest import QTest
from PySide6.QtWidgets import (
    QAbstractButton,
    QApplication,
    QLabel,
    QMessageBox,
    QWidget,
)

from rlhf_desktop import config
from rlhf_desktop.domain import (
    Candidate,
    Message,
    ModelVersion,
    PreferencePair,
    SamplingParams,
    Turn,
)
from rlhf_desktop.services.conversations import ConversationService
from rlhf_desktop.services.hooks import SessionHooks
from rlhf_desktop.storage.repo import Repository
from rlhf_desktop.ui import theme
from rlhf_desktop.ui.dataset_view import MATCH_COLUMN
from rlhf_desktop.ui.main_window import MainWindow
from rlhf_desktop.ui.settings_dialog import SettingsDialog
from rlhf_desktop.ui.shortcuts import SHORTCUTS, ShortcutsDialog
from rlhf_desktop.ui.widgets import ElidedLabel
from tests.helpers import record_version
from tests.ui.conftest import run, wait_until
from tests.ui.helpers import activate, db, make_window

MIN_SIZE = (590, 547)  # the window's minimum size in the issue


@pytest.fixture
def window(loop: asyncio.AbstractEventLoop, qtbot: object) -> Iterator[MainWindow]:
    """The main window (no provider chosen yet), shut down and closed after the test.

    (Not given to qtbot: it would close the window before this teardown, and the close
    would start a second shutdown that the closed loop never runs.)"""
    w = make_window()
    yield w
    run(loop, w.shutdown())
    w.close()


def settle(window: QWidget) -> None:
    """Let resizes and layouts happen."""
    for _ in range(5):
        QApplication.processEvents()
        QTest.qWait(10)


def resize(window: MainWindow, width: int, height: int) -> None:
    window.resize(width, height)
    settle(window)


def answer_next_box(button: QMessageBox.StandardButton, seen: list[str]) -> None:
    """Press ``button`` in the next message box that opens (and note its text)."""
    def answer() -> None:
        box = QApplication.activeModalWidget()
        if isinstance(box, QMessageBox):
            seen.append(box.text())
            box.button(button).click()

    QTimer.singleShot(100, answer)


def add_version(repo: Repository, version: int, labels: int, acc: float) -> None:
    record_version(repo, ModelVersion(
        version=version, created_at=1_700_000_000.0 + version, path="/nowhere",
        metrics={"cv_accuracy": acc, "pairs": labels * 3, "labels": labels},
        pairs=labels * 3, labels=labels))


# ---------------------------------------------------------------------------- D4


def test_settings_offer_the_context_size_and_saving_it_rebuilds_the_provider(
        window: MainWindow, loop: asyncio.AbstractEventLoop) -> None:
    pytest.importorskip("xllamacpp")
    config.default_gguf_path()  # the built-in model is installed by make setup
    dialog = window.open_settings()
    labels = [w.text() for w in dialog.findChildren(QLabel)]
    assert "Context size (n_ctx)" in labels
    dialog.focus_field("n_ctx")  # what an error naming the setting opens
    assert dialog.focusWidget() is dialog.n_ctx and dialog.n_ctx.isVisible()
    assert dialog.n_ctx.value() == 2048
    assert dialog.n_ctx.minimum() >= 256 and dialog.n_ctx.maximum() <= 131072
    dialog.n_ctx.setValue(8192)
    dialog.accept()
    assert config.load_settings().n_ctx == 8192
    assert dialog.provider_changed  # a new context size needs a new llama.cpp context

    async def rebuilt() -> None:
        await wait_until(lambda: window.backend.session.provider is not None, 60, "the provider")

    run(loop, rebuilt())
    assert getattr(window.backend.session.provider, "n_ctx", None) == 8192
    # Out of range from a hand-edited settings file: clamped in the field, never lost.
    again = SettingsDialog(config.load_settings())
    assert again.n_ctx.value() == 8192
    again.deleteLater()


# ---------------------------------------------------------------------------- D7


def test_delete_selected_asks_with_the_count_and_can_be_undone(window: MainWindow) -> None:
    repo = db()
    repo.add_pairs([PreferencePair(prompt=(Message("user", f"q{i}"),), chosen=f"good {i}",
                                   rejected=f"bad {i}", reason="why" if i == 1 else None)
                    for i in range(5)])
    window.show_page(1)
    view = window.dataset
    view.table.selectRow(0)
    view.table.selectionModel().select(
        view.model.index(2, 0), view.table.selectionModel().SelectionFlag.Select
        | view.table.selectionModel().SelectionFlag.Rows)
    assert len(view.selected_ids()) == 2
    seen: list[str] = []
    answer_next_box(QMessageBox.StandardButton.No, seen)
    QTest.mouseClick(view.delete_button, Qt.MouseButton.LeftButton)
    settle(window)
    assert repo.count_pairs() == 5, "the button deleted without asking"
    assert seen and "Delete 2 preference pairs?" in seen[0]

    before = {(p.chosen, p.rejected, p.reason, p.created_at) for p in repo.iter_pairs()}
    labels_before = repo.count_labels()
    answer_next_box(QMessageBox.StandardButton.Yes, seen)
    QTest.mouseClick(view.delete_button, Qt.MouseButton.LeftButton)
    settle(window)
    assert repo.count_pairs() == 3 and repo.count_labels() == labels_before - 2
    undo = window.status.undo_button
    assert undo.isVisible() and "Deleted 2 preference pairs" in window.statusBar().currentMessage()
    assert undo.text() == "Undo delete of 2 preference pairs"
    assert not view.detail.toPlainText()  # the deleted pair is not shown any more
    QTest.mouseClick(undo, Qt.MouseButton.LeftButton)
    assert {(p.chosen, p.rejected, p.reason, p.created_at) for p in repo.iter_pairs()} == before
    assert repo.count_labels() == labels_before and view.model.total == 5
    assert not undo.isVisible()


# ---------------------------------------------------------------------------- D9


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
    window.backend.latest = db().latest_model_version()
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


# ---------------------------------------------------------------------------- D11


def test_the_status_bar_says_why_the_provider_was_chosen(
        window: MainWindow, loop: asyncio.AbstractEventLoop) -> None:
    pytest.importorskip("xllamacpp")
    config.default_gguf_path()
    run(loop, window.backend.rebuild_provider())
    why = window.provider_why
    assert why.isVisible()
    assert "no Azure OpenAI or OpenAI credentials found" in why.text()
    assert window.provider_label.text().startswith("Built-in model · ")
    assert "Why this provider" in why.toolTip() and "Settings" in why.toolTip()


def test_long_prompts_that_begin_alike_get_distinguishable_titles(
        loop: asyncio.AbstractEventLoop, qtbot: object) -> None:
    from rlhf_desktop.ui.sidebar import Sidebar

    repo = Repository.open()
    common = "Please read the following report carefully and then answer my question. " * 3
    endings = ["What is the main risk?", "Summarise it in one line.", "Who wrote it?"]
    for ending in endings:
        prompt = common + "\n\n" + "Lorem ipsum dolor sit amet. " * 40 + ending
        conv = repo.create_conversation(prompt[:60].strip())  # as the chat view titles it
        repo.save_turn(Turn(conversation_id=conv.id, messages=[Message("user", prompt)],
                            provider="test", model="m", params=SamplingParams(n=2),
                            candidates=[Candidate(0, "a"), Candidate(1, "b")]))
    bar = Sidebar(ConversationService(repo, SessionHooks()))
    qtbot.addWidget(bar)  # type: ignore[attr-defined]
    bar.resize(240, 500)
    bar.show()
    settle(bar)
    view = bar.list
    width = view.viewport().width() - 24  # the item's padding
    shown = []
    for row in range(view.count()):
        item = view.item(row)
        first_line = item.text().splitlines()[0]
        shown.append(view.fontMetrics().elidedText(first_line, view.textElideMode(), width))
    assert len(set(shown)) == len(endings), shown
    for row in range(view.count()):  # the tooltip has the prompt, its end included
        assert any(e in view.item(row).toolTip() for e in endings)
    bar._debounce.stop()
    repo.close()


def test_no_accuracy_figure_in_the_status_bar_below_20_labels(window: MainWindow) -> None:
    repo = db()
    add_version(repo, 1, 5, 0.27)
    window.backend.latest = repo.latest_model_version()
    window.backend.refresh_status()
    text = window.retrain_label.text()
    assert "model v1" in text and "%" not in text and "27" not in text, text
    window.show_page(2)
    assert window.model_view.accuracy_value.text() == "27 %"  # the model page marks it early
    assert "early estimate" in window.model_view.accuracy_caption.text()
    add_version(repo, 2, 25, 0.61)
    window.backend.latest = repo.latest_model_version()
    window.backend.refresh_status()
    assert "model v2 · CV accuracy 61 %" in window.retrain_label.text()


def test_the_dataset_filter_shows_where_each_row_matched(window: MainWindow) -> None:
    repo = db()
    repo.add_pairs([
        PreferencePair(prompt=(Message("user", "Tell me about zebras"),
                               Message("assistant", "They are striped."),
                               Message("user", "And their habitat?")),
                       chosen="Savannas.", rejected="Oceans."),
        PreferencePair(prompt=(Message("user", "Name an animal"),),
                       chosen="A zebra.", rejected="A rock."),
        PreferencePair(prompt=(Message("user", "Unrelated"),), chosen="x", rejected="y"),
        PreferencePair(prompt=(Message("system", "Be brief."),
                               Message("user", 'Then the user said "hi" at 100%')),
                       chosen="ok", rejected="no"),
    ])
    window.show_page(1)
    view = window.dataset
    assert view.table.isColumnHidden(MATCH_COLUMN)  # no filter, no column
    view.model.reload("zebra")
    model = view.model
    assert model.total == 2
    assert not view.table.isColumnHidden(MATCH_COLUMN)
    header = view.table.horizontalHeader()
    assert header.visualIndex(MATCH_COLUMN) == 0  # the first thing read
    matched = {model.data(model.index(r, 0)): model.data(model.index(r, MATCH_COLUMN))
               for r in range(model.rowCount())}
    assert matched == {"And their habitat?": "earlier turn", "Name an animal": "chosen"}
    # The prompt is searched in its messages' text, not in the JSON around it, and the
    # filter is taken literally (quotes, % and _ included).
    for text, total in (("content", 0), ("user", 1), ('user said "hi"', 1), ("100%", 1),
                        ("1_0", 0), ('"}, {', 0), ("brief", 1)):
        view.model.reload(text)
        assert view.model.total == len(view.model.rows) == total, text
    assert model.data(model.index(0, MATCH_COLUMN)) == "system prompt"
    view.model.reload("zebra")
    view.table.selectRow(next(r for r in range(model.rowCount())
                              if model.data(model.index(r, 0)) == "And their habitat?"))
    marks = view.detail.extraSelections()
    assert marks and all(m.cursor.selectedText().lower() == "zebra" for m in marks)


# ---------------------------------------------------------------------------- D12


def test_replies_provider_and_model_switch_from_above_the_chat(
        window: MainWindow, loop: asyncio.AbstractEventLoop) -> None:
    controls = window.controls
    assert controls.isVisible() and controls.replies.isVisible()
    assert (controls.replies.minimum(), controls.replies.maximum()) in ((2, 8), (2, 9))
    controls.replies.setValue(6)
    assert config.load_settings().candidates_per_turn == 6
    assert window.backend.sampling_params().n == 6
    dialog = window.open_settings()
    assert dialog.candidates.value() == 6  # one path: the Settings dialog sees it
    dialog.reject()

    # A compatible server by the provider menu; building it connects to nothing.
    settings = config.load_settings()
    settings.openai_base_url = "http://127.0.0.1:9/v1"
    settings.openai_model = "first-model"
    config.save_settings(settings)
    window.backend.apply_settings(settings)
    window._sync_controls()
    index = controls.provider.findData("compatible")
    controls.provider.setCurrentIndex(index)
    controls.provider.activated.emit(index)
    assert config.load_settings().provider == "compatible"

    async def switched(kind: str, model: str) -> None:
        await wait_until(lambda: window.backend.provider_kind == kind
                         and window.backend.provider_kind != ""
                         and window.backend.provider_model == model, 30, f"{kind} {model}")

    run(loop, switched("compatible", "first-model"))
    assert controls.model.text() == "first-model" and not controls.model.isReadOnly()
    assert "chosen explicitly (compatible)" in window.provider_why.text()
    controls.model.setFocus()
    controls.model.selectAll()
    QTest.keyClicks(controls.model, "second-model")
    QTest.keyClick(controls.model, Qt.Key.Key_Return)
    assert config.load_settings().openai_model == "second-model"
    run(loop, switched("compatible", "second-model"))
    assert window.provider_label.text().endswith("second-model")


SPEC = ("Ctrl+Enter", "Alt+1", "Alt+Z", "Esc", "Ctrl+R", "Ctrl+N", "Ctrl+F", "Ctrl+1",
        "Ctrl+,", "Ctrl+/", "Ctrl+Q")


def test_the_shortcuts_list_opens_by_ctrl_slash_f1_and_the_help_button(
        window: MainWindow, loop: asyncio.AbstractEventLoop) -> None:
    run(loop, activate(window))

    def shown() -> ShortcutsDialog | None:
        found = [d for d in window.findChildren(ShortcutsDialog) if d.isVisible()]
        return found[0] if found else None

    QTest.keyClick(window, Qt.Key.Key_Slash, Qt.KeyboardModifier.ControlModifier)
    dialog = shown()
    assert dialog is not None, "Ctrl+/ opened nothing"
    rows = dialog.texts()
    assert [keys for keys, _ in rows] == [keys for keys, _ in SHORTCUTS]
    for keys in SPEC:
        assert any(keys in k for k, _ in rows), keys
    assert any("Ctrl+Z" in action for _, action in rows)  # says what Ctrl+Z does instead
    dialog.close()
    run(loop, activate(window))
    QTest.keyClick(window, Qt.Key.Key_F1)
    assert shown() is not None, "F1 opened nothing"
    dialog.close()
    help_button = window.findChild(QAbstractButton, "helpButton")
    assert help_button is not None and help_button.isVisible()
    menu = help_button.menu()  # type: ignore[attr-defined]
    actions = {a.text(): a for a in menu.actions()}
    actions["Keyboard shortcuts"].trigger()
    assert shown() is not None


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


def test_undo_of_a_delete_survives_reused_ids_and_a_deleted_chat() -> None:
    repo = Repository.open()
    conv = repo.create_conversation("c")
    turn = repo.save_turn(Turn(conversation_id=conv.id, messages=[Message("user", "q")],
                               provider="test", model="m", params=SamplingParams(n=3),
                               candidates=[Candidate(0, "a"), Candidate(1, "b"),
                                           Candidate(2, "c")]))
    assert turn.id is not None and turn.candidates[0].id is not None
    repo.record_pick(turn.id, turn.candidates[0].id, reason="best")
    ids = [p.id for p in repo.iter_pairs() if p.id is not None]
    kept = repo.snapshot_pairs(ids)
    assert repo.delete_pairs(ids) == 2 and repo.count_labels() == 0
    repo.delete_conversation(conv.id)  # its turn and replies go too
    repo.add_pairs([PreferencePair(prompt=(Message("user", "new"),), chosen="x",
                                   rejected="y")])  # takes the freed ids
    assert repo.restore_pairs(kept) == 2
    pairs = {p.rejected: p for p in repo.iter_pairs()}
    assert set(pairs) == {"b", "c", "y"} and repo.count_labels() == 2
    assert pairs["b"].label_id == pairs["c"].label_id != pairs["y"].label_id
    assert pairs["b"].reason == "best" and pairs["b"].chosen_candidate_id is None
    repo.close()
