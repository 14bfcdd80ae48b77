"""The arena in the window: Settings → Candidate sources (edited, saved, bad input refused
inline), "Replies from … Arena" above the chat, and an arena turn's cards, which name no
source (nor score, nor rank) before the label and each card's source after it — also when the
conversation is opened again. One test runs the arena through two real loopback servers."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QDialog, QLabel, QWidget

from rlhf_desktop import config
from rlhf_desktop.config import Settings
from rlhf_desktop.domain import Candidate, CandidateSource, Message, SamplingParams, Turn
from rlhf_desktop.ui import theme
from rlhf_desktop.ui.chat.controls import ARENA, ChatControls
from rlhf_desktop.ui.chat.label_widgets import LabelBar
from rlhf_desktop.ui.chat.turn_widget import TurnWidget
from rlhf_desktop.ui.main_window import MainWindow
from rlhf_desktop.ui.settings.dialog import SettingsDialog
from tests.azure_server import AzureServer
from tests.ui.conftest import run, wait_until
from tests.ui.helpers import activate, azure_env, db, press, send, window_for

ALT = Qt.KeyboardModifier.AltModifier

KEY = "sk-azure-SECRET-arena-77c1"
SOURCES = [CandidateSource("cool base", provider="local", temperature=0.3, count=2),
           CandidateSource("hot tuned", provider="local", temperature=1.2, count=2,
                           chat_model_version=3)]
RANK_OR_SCORE = re.compile(r"#\d|score|\bv\d")


def everything_said(widget: TurnWidget) -> list[str]:
    """Every text a user (or a screen reader) can get from the turn's cards and header:
    visible labels' texts, tooltips and accessible names, and the buttons' too."""
    said: list[str] = [widget.status.text(), widget.status.toolTip()]
    for child in widget.findChildren(QWidget):
        if not child.isVisible() or widget.bubble.isAncestorOf(child):
            continue
        said += [child.toolTip(), child.accessibleName(), child.accessibleDescription()]
        if isinstance(child, QLabel):
            said.append(child.text())
        text = getattr(child, "text", None)
        if callable(text) and not isinstance(child, QLabel):
            value = text()
            if isinstance(value, str):
                said.append(value)
    return [s for s in said if s]


def leaks(widget: TurnWidget, names: list[str]) -> list[str]:
    """What the turn says that names a source or shows a score or rank."""
    return [s for s in everything_said(widget)
            if any(n in s for n in names) or RANK_OR_SCORE.search(s)]


# ---------------------------------------------------------------------------- the editor


def type_into(field: QWidget, text: str) -> None:
    """Replace a field's text as the user would (select all, type)."""
    field.setFocus()
    QTest.keyClick(field, Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier)
    if text:
        QTest.keyClicks(field, text)
    else:
        QTest.keyClick(field, Qt.Key.Key_Delete)


@pytest.mark.timeout(60)
def test_sources_editor_saves_sources_and_refuses_bad_input_inline(qtbot: object) -> None:
    config.save_settings(Settings())
    dialog = SettingsDialog(config.load_settings())
    qtbot.addWidget(dialog)  # type: ignore[attr-defined]
    dialog.show()
    editor = dialog.sources_editor
    dialog.focus_field("candidate_sources")
    assert dialog.tabs.tabText(dialog.tabs.currentIndex()) == "Candidate sources"
    assert editor.list.count() == 0 and not editor.form_box.isEnabled()

    editor.add_button.click()
    type_into(editor.name, "azure mini")
    editor.provider.setCurrentIndex(editor.provider.findData("azure"))
    editor.provider.activated.emit(editor.provider.currentIndex())
    assert editor.model_label.text() == "Deployment" and not editor.version.isEnabled()
    type_into(editor.model, "gpt-4o-mini")
    editor.temperature.setValue(0.3)
    editor.count.setValue(2)

    editor.add_button.click()
    editor.provider.setCurrentIndex(editor.provider.findData("local"))
    editor.provider.activated.emit(editor.provider.currentIndex())
    assert editor.version.isEnabled() and not editor.model.isEnabled()
    assert editor.version.itemText(0) == "the base model (v0)"
    assert editor.temperature.text() == "the chat's"  # a new source: the chat's temperature
    # a bad value: the same name twice. Said in words under the form, Save refused.
    type_into(editor.name, "azure mini")
    assert editor.error.isVisible() and "Two sources are called “azure mini”" in \
        editor.error.text()
    dialog.accept()
    assert dialog.result() != QDialog.DialogCode.Accepted and dialog.isVisible()
    assert config.load_settings().candidate_sources == []  # nothing written
    assert editor.name.text() == "azure mini"  # nothing lost: the typed value stays
    assert editor.list.currentRow() == 1 and dialog.focusWidget() is editor.name
    # an empty name
    type_into(editor.name, "")
    assert "Source 2 needs a name" in editor.error.text()
    type_into(editor.name, "built-in")
    assert not editor.error.isVisible()
    # a compatible server whose URL is not http(s)
    editor.add_button.click()
    editor.provider.setCurrentIndex(editor.provider.findData("compatible"))
    editor.provider.activated.emit(editor.provider.currentIndex())
    type_into(editor.base_url, "localhost:11434/v1")
    assert "must start with http:// or https://" in editor.error.text()
    dialog.accept()
    assert dialog.isVisible() and dialog.focusWidget() is editor.base_url
    assert editor.base_url.text() == "localhost:11434/v1"
    type_into(editor.base_url, "http://localhost:11434/v1")
    # the arena on with too many replies in all (2 + 2 + 8 > 8)
    editor.count.setValue(8)
    editor.arena.setChecked(True)
    assert "ask for 12 replies per turn; 8 is the most" in editor.error.text()
    editor.count.setValue(2)
    assert not editor.error.isVisible()
    # removing down to one source with the arena on: refused, in words
    editor.list.setCurrentRow(2)
    editor.remove_button.click()
    editor.list.setCurrentRow(1)
    editor.remove_button.click()
    assert editor.list.count() == 1
    assert "The arena needs two or more sources" in editor.error.text()
    editor.arena.setChecked(False)
    assert not editor.error.isVisible()
    editor.add_button.click()
    type_into(editor.name, "hot")
    editor.temperature.setValue(1.2)
    editor.arena.setChecked(True)

    dialog.accept()
    assert dialog.result() == QDialog.DialogCode.Accepted
    saved = config.load_settings()
    assert saved.arena and dialog.provider_changed
    assert saved.sources() == [
        CandidateSource("azure mini", provider="azure", model="gpt-4o-mini", temperature=0.3,
                        count=2),
        CandidateSource("hot", temperature=1.2, count=2)]
    # the dialog opens on what was saved
    again = SettingsDialog(saved)
    qtbot.addWidget(again)  # type: ignore[attr-defined]
    assert again.sources_editor.list.item(0).text() == \
        "azure mini — Azure OpenAI · gpt-4o-mini · temperature 0.3 · 2 replies"
    assert again.sources_editor.arena.isChecked()


# ---------------------------------------------------------------------------- the chooser


@pytest.mark.timeout(60)
def test_replies_from_offers_the_arena_only_with_two_sources(qtbot: object) -> None:
    controls = ChatControls()
    qtbot.addWidget(controls)  # type: ignore[attr-defined]
    changes: list[tuple[Settings, bool]] = []
    controls.changed.connect(lambda s, rebuild: changes.append((s, rebuild)))
    arena = controls.provider.findData(ARENA)
    item = controls.provider.model().item(arena)  # type: ignore[attr-defined]

    one = Settings(candidate_sources=[SOURCES[0].to_dict()])
    controls.sync(one, "local", "SmolLM2")
    assert not item.isEnabled()
    tip = str(controls.provider.itemData(arena, Qt.ItemDataRole.ToolTipRole))
    assert "Settings → Candidate sources" in tip and "two or more" in tip
    assert "Settings → Candidate sources" in controls.provider.toolTip()

    two = Settings(candidate_sources=[s.to_dict() for s in SOURCES])
    config.save_settings(two)
    controls.sync(two, "local", "SmolLM2")
    assert item.isEnabled()
    assert controls.provider.itemText(arena) == "Arena: cool base (2) vs hot tuned (2)"
    controls.provider.setCurrentIndex(arena)
    controls.provider.activated.emit(arena)
    assert changes and changes[-1][1] is True and changes[-1][0].arena
    assert config.load_settings().arena  # written through the settings file
    controls.sync(config.load_settings(), "arena", "cool base vs hot tuned")
    assert not controls.replies.isEnabled() and controls.replies.value() == 4
    assert "Candidate sources" in controls.replies.toolTip()
    assert controls.model.isHidden()
    # back to one provider: the arena is off, the provider rebuilt
    local = controls.provider.findData("local")
    controls.provider.setCurrentIndex(local)
    controls.provider.activated.emit(local)
    saved = config.load_settings()
    assert not saved.arena and saved.provider == "local" and changes[-1][1] is True
    controls.sync(saved, "local", "SmolLM2")
    assert controls.replies.isEnabled() and not controls.model.isHidden()


# ---------------------------------------------------------------------------- the cards


def arena_turn(texts: list[str], names: list[str], prompt: str) -> Turn:
    """A stored arena turn (as ChatService saves one), scored by reward model v2."""
    conv = db().conversations.create(prompt)
    by_name = {s.name: s for s in SOURCES}
    cands = [Candidate(index=i, text=t, finish_reason="stop", completion_tokens=20,
                       latency_s=0.8, origin=by_name[n].origin(by_name[n].temperature or 0.7))
             for i, (t, n) in enumerate(zip(texts, names, strict=True))]
    turn = Turn(conversation_id=conv.id, messages=[Message("user", prompt)], provider=ARENA,
                model=" vs ".join(dict.fromkeys(names)), params=SamplingParams(n=len(texts)),
                candidates=cands, blind=True)
    saved = db().conversations.save_turn(turn)
    db().conversations.set_scores([(c.id or 0, 0.5 - i, 2) for i, c in enumerate(saved.candidates)])
    return saved


@pytest.mark.timeout(120)
def test_arena_turn_names_no_source_before_the_pick_and_each_after(
        loop: asyncio.AbstractEventLoop, qtbot: object) -> None:
    names = [s.name for s in SOURCES]
    saved = arena_turn(["Go to bed earlier.", "Keep a regular schedule.",
                        "Move bedtime by 15 minutes.", "Get bright light early."],
                       [names[0], names[0], names[1], names[1]], "How can I get up early?")
    app = QApplication.instance()
    assert isinstance(app, QApplication)
    old_style = app.styleSheet()
    theme.apply(app, False)  # the app's stylesheet: badges need their real width
    window = window_for(qtbot, candidates_per_turn=4)
    try:
        window.chat.show_conversation(saved.conversation_id)
        qtbot.wait(50)  # type: ignore[attr-defined]
        widget = window.chat.widgets[-1]
        assert widget.turn is not None and widget.turn.hidden
        assert not leaks(widget, names), leaks(widget, names)
        assert widget.status.text().startswith("Arena: 4 replies from 2 sources")
        assert all(not c.source_badge.isVisible() and not c.source_badge.text()
                   for c in widget.cards.values())
        # shuffled (index 3 first); numbered by place, since the index tells the source
        assert widget.order == [3, 0, 2, 1]
        assert [c.rank_badge.text() for c in widget.ordered_cards()] == \
            ["Reply 1", "Reply 2", "Reply 3", "Reply 4"]

        card = widget.card_at(2)
        assert card is not None and card.candidate is not None
        card.pick_button.click()
        qtbot.wait(50)  # type: ignore[attr-defined]
        picked = card.candidate.origin
        assert picked is not None
        assert card.source_badge.isVisible()
        assert card.source_badge.text() == f"from {picked['name']}"
        assert "Built-in model" in card.source_badge.toolTip()
        for c in widget.cards.values():
            assert c.candidate is not None and c.candidate.origin is not None
            assert c.source_badge.text() == f"from {c.candidate.origin['name']}"
            assert c.source_badge.accessibleName() == f"Source: {c.candidate.origin['name']}"
        assert "chat model v3 (tuned)" in next(c for c in widget.cards.values()
                                  if c.source_badge.text() == "from hot tuned"
                                  ).source_badge.toolTip()
        assert "each card now shows the source it came from" in widget.status.text()
        for c in widget.cards.values():  # a badge never widens a card (two fit side by side)
            shown_width = c.minimumSizeHint().width()
            c.show_origin(False)
            QApplication.processEvents()  # the layouts see the badge hidden
            assert shown_width <= c.minimumSizeHint().width()
            c.show_origin(True)
            QApplication.processEvents()
            assert c.minimumSizeHint().width() == shown_width
        widths = {c is card: c.minimumSizeHint().width() for c in widget.cards.values()}
        assert widths[True] <= widths[False]  # "✓ Your pick" went below, beside the source
        assert card.meta.indexOf(card.state_badge) == 1
        # numbered as shown when picked, each with the model's rank
        assert [c.rank_badge.text().split(" · ")[0] for c in widget.ordered_cards()] == \
            ["Reply 1", "Reply 2", "Reply 3", "Reply 4"] and widget.card_at(2) is card
        assert all(" · scored #" in c.rank_badge.text() for c in widget.cards.values())
        label = db().labels.last()
        assert label is not None and label.blind

        # reopened: the labeled arena turn still shows its sources
        window.chat.show_conversation(None)
        window.chat.show_conversation(saved.conversation_id)
        qtbot.wait(50)  # type: ignore[attr-defined]
        again = window.chat.widgets[-1]
        assert sorted(c.source_badge.text() for c in again.cards.values()) == \
            ["from cool base", "from cool base", "from hot tuned", "from hot tuned"]
        # undoing the pick hides them again (the turn is blind again)
        window.chat.undo_pick()
        qtbot.wait(50)  # type: ignore[attr-defined]
        again = window.chat.widgets[-1]
        assert not leaks(again, names), leaks(again, names)
    finally:
        run(loop, window.shutdown())
        app.setStyleSheet(old_style)


@pytest.mark.timeout(60)
def test_blind_cards_stream_in_a_random_order_that_the_saved_turn_keeps(
        qtbot: object) -> None:
    from rlhf_desktop.services.hooks import SessionHooks
    from rlhf_desktop.services.labels.labeling import LabelingService
    from rlhf_desktop.services.turns import TurnLifecycle
    from rlhf_desktop.services.turns.labels import TurnLabels
    from rlhf_desktop.storage.repo import Repository
    from rlhf_desktop.ui.markdown_render import MarkdownRenderer

    repo = Repository.open()
    labeling = LabelingService(repo)
    hooks = SessionHooks()
    turns = TurnLifecycle(labeling, TurnLabels(labeling, hooks, lambda: None), hooks,
                          labeling.pick, labeling.undo)
    orders = set()
    for _ in range(12):
        view = turns.begin([Message("user", "Hi")], 4, blind_mode=False, arena=True)
        widget = TurnWidget("Hi", 4, MarkdownRenderer(), order=view.order)
        qtbot.addWidget(widget)  # type: ignore[attr-defined]
        streamed = list(widget.order)
        assert view.hidden and streamed == list(view.order)
        orders.add(tuple(streamed))
        turn = Turn(conversation_id=1, messages=[Message("user", "Hi")], provider=ARENA,
                    model="a vs b", params=SamplingParams(n=4), id=7,
                    candidates=[Candidate(index=i, text=f"reply {i}", id=10 + i,
                                          origin={"name": "ab"[i // 2]}) for i in range(4)])
        saved = turns.settle(view.key, turn)
        widget.set_turn(turn)
        assert turn.blind and saved.hidden and widget.order == streamed
        assert [c.position for c in sorted(turn.candidates, key=lambda c: c.index)] == \
            [streamed.index(i) for i in range(4)]
    repo.close()
    assert len(orders) > 1  # 12 draws of 24 orders all alike: one chance in 24**11


# ---------------------------------------------------------------------------- end to end


@pytest.fixture
def two_servers(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[AzureServer, AzureServer]]:
    """An Azure-protocol server (the chat's provider) and an OpenAI-compatible one."""
    with azure_env(monkeypatch, KEY) as azure, \
            AzureServer(api_key="sk-compatible-9f", model="served-model", reply_length=12,
                        chunk_delay_s=0.001) as compatible:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-compatible-9f")
        yield azure, compatible


@pytest.mark.timeout(120)
def test_arena_through_two_real_servers_from_the_chooser_to_the_reveal(
        loop: asyncio.AbstractEventLoop, qtbot: object,
        two_servers: tuple[AzureServer, AzureServer], tmp_path: Path) -> None:
    azure, compatible = two_servers
    sources = [CandidateSource("azure cool", provider="azure", temperature=0.3, count=2),
               CandidateSource("server hot", provider="compatible", model="served-model",
                               base_url=compatible.base_url, temperature=1.2, count=2)]
    window: MainWindow = window_for(qtbot, candidates_per_turn=4, max_tokens=24,
                                    candidate_sources=[s.to_dict() for s in sources])
    chat, controls = window.chat, window.controls
    names = [s.name for s in sources]

    async def flow() -> None:
        await window.start()
        assert window.backend.provider_kind == "azure"
        arena = controls.provider.findData(ARENA)
        assert controls.provider.itemText(arena) == "Arena: azure cool (2) vs server hot (2)"
        controls.provider.setCurrentIndex(arena)
        controls.provider.activated.emit(arena)  # the user chooses the arena
        await wait_until(lambda: window.backend.provider_kind == "arena", 30, "the arena")
        await wait_until(lambda: "azure cool vs server hot" in
                         window.provider_label.text(), 10, "the status bar")
        widget = await send(window, "Name a fruit")
        await wait_until(lambda: not chat.generating and widget.turn is not None, 60,
                         "the arena turn")
        turn = widget.turn
        assert turn is not None and turn.provider == "arena" and turn.blind
        assert sorted(str((c.origin or {}).get("name")) for c in turn.candidates) == \
            sorted(names * 2)
        assert {r.path.split("?")[0] for r in azure.requests} == {
            "/openai/deployments/gpt-test/chat/completions"}
        assert any(r.path == "/v1/chat/completions" for r in compatible.requests)
        assert not leaks(widget, names), leaks(widget, names)
        card = widget.card_at(0)
        assert card is not None
        card.pick_button.click()
        await wait_until(lambda: card.source_badge.isVisible(), 10, "the reveal")
        assert {c.source_badge.text() for c in widget.cards.values()} == \
            {f"from {n}" for n in names}
        stored = db().conversations.get_turn(turn.id or 0)
        assert stored.blind and stored.chosen_candidate_id == card.candidate.id  # type: ignore[union-attr]

    try:
        run(loop, flow())
    finally:
        run(loop, window.shutdown())


@pytest.mark.timeout(60)
def test_a_source_turned_off_in_the_editor_stays_listed_and_gives_no_replies(
        qtbot: object) -> None:
    config.save_settings(Settings(candidate_sources=[
        CandidateSource(name, provider="local", count=1).to_dict()
        for name in ("base", "hot", "cool")]))
    dialog = SettingsDialog(config.load_settings())
    qtbot.addWidget(dialog)  # type: ignore[attr-defined]
    dialog.show()
    editor = dialog.sources_editor
    dialog.focus_field("candidate_sources")
    editor.arena.setChecked(True)
    editor.list.setCurrentRow(2)
    assert editor.active.isChecked()
    editor.active.setChecked(False)
    assert editor.list.item(2).text().startswith("cool (off) — ")
    editor.list.setCurrentRow(1)
    editor.active.setChecked(False)  # one source left in use: refused, in words
    assert "two or more sources in use" in editor.error.text()
    editor.active.setChecked(True)
    assert not editor.error.isVisible()
    dialog.accept()
    saved = config.load_settings()
    assert saved.arena and [s.name for s in saved.arena_sources()] == ["base", "hot"]
    assert [s.name for s in saved.sources()] == ["base", "hot", "cool"]


@pytest.mark.timeout(120)
def test_a_head_to_head_says_so_above_the_chat_and_ties_in_one_click(
        loop: asyncio.AbstractEventLoop, qtbot: object,
        two_servers: tuple[AzureServer, AzureServer]) -> None:
    """A blind head-to-head (one reply from each of two sources, as "Try vN blind" sets up)
    shows 2 replies where the chat showed 4: the banner says so, names the sources and how
    to end it; "Tie" saves the two replies as a tie in one click."""
    _azure, compatible = two_servers
    sources = [CandidateSource("azure cool", provider="azure", temperature=0.3, count=1),
               CandidateSource("server hot", provider="compatible", model="served-model",
                               base_url=compatible.base_url, temperature=1.2, count=1)]
    window: MainWindow = window_for(qtbot, candidates_per_turn=4, max_tokens=24,
                                    candidate_sources=[s.to_dict() for s in sources])
    chat, controls = window.chat, window.controls

    async def flow() -> None:
        await window.start()
        assert not window.banner.isVisible()  # Azure answers: no banner
        arena = controls.provider.findData(ARENA)
        controls.provider.setCurrentIndex(arena)
        controls.provider.activated.emit(arena)
        await wait_until(lambda: window.backend.provider_kind == "arena", 30, "the arena")
        assert window.banner.isVisible()
        said = window.banner_text.text()
        assert "each turn shows 2 replies, 1 from azure cool and 1 from server hot, in " \
            "random order" in said
        assert "(4 replies a turn)" in said and '"from" above the chat' in said
        # the chat's model line names no single model (it said "… (provider default)")
        assert window.chat_summary.text().startswith(
            "Model: each source's own (azure cool vs server hot)"), window.chat_summary.text()
        widget = await send(window, "Name a fruit")
        await wait_until(lambda: not chat.generating and widget.turn is not None, 60,
                         "the arena turn")
        turn = widget.turn
        assert turn is not None and turn.id is not None and len(turn.candidates) == 2
        bar = widget.findChild(LabelBar)
        assert bar is not None and bar.tie_button.text() == "Tie"  # two replies: nothing to choose
        # on a turn already picked, Alt+T does not replace the pick in one key
        first = widget.card_at(0)
        assert first is not None
        first.pick_button.click()
        await wait_until(lambda: db().conversations.get_turn(turn.id).labeled, 10,
                         "the pick")
        await activate(window)
        before = (db().labels.last(), db().conversations.get_turn(turn.id))
        press(window, Qt.Key.Key_T, ALT)
        assert (db().labels.last(), db().conversations.get_turn(turn.id)) == before
        bar.cancel_button.click()  # leave the tie chooser it opened
        press(window, Qt.Key.Key_Z, ALT)  # undo the pick: the bar's one-click Tie again
        await wait_until(lambda: bar.isVisible() and bar.tie_button.text() == "Tie", 10,
                         "the bar after the undo")
        bar.tie_button.click()
        stored = db().conversations.get_turn(turn.id)
        assert stored.label_kind == "tie"
        assert set(stored.ranked_candidate_ids) == {c.id for c in turn.candidates}
        assert db().pairs.count() == 0
        # back to one provider: the comparison's banner goes
        azure_item = controls.provider.findData("azure")
        controls.provider.setCurrentIndex(azure_item)
        controls.provider.activated.emit(azure_item)
        await wait_until(lambda: window.backend.provider_kind == "azure", 30, "Azure again")
        assert not window.banner.isVisible()

    try:
        run(loop, flow())
    finally:
        run(loop, window.shutdown())
