"""Labels beyond the pick through the real window (Azure-protocol server over real
sockets), the real database and the exports: blind turns, tie, all bad, skip, edit. On a
turn alone: its Undo button names the label it undoes, and a blind pick the model never
ranked does not claim the cards show its ranking."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QLabel

from rlhf_desktop import config
from rlhf_desktop.domain import Candidate, Message, SamplingParams, Turn
from rlhf_desktop.ui.chat.label_widgets import LabelBar
from rlhf_desktop.ui.chat.turn_widget import TurnWidget
from rlhf_desktop.ui.main_window import MainWindow
from rlhf_desktop.ui.markdown_render import MarkdownRenderer
from tests.azure_server import AzureServer
from tests.ui.conftest import run, wait_until
from tests.ui.helpers import activate, azure_env, db, press, send, window_for
from tests.ui.test_chat_flow import import_some

KEY = "sk-azure-SECRET-labels-5d21"
ALT = Qt.KeyboardModifier.AltModifier


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[AzureServer]:
    """The Azure-protocol server, with the app's environment pointing at it."""
    with azure_env(monkeypatch, KEY) as srv:
        yield srv



async def finished_turn(window: MainWindow, text: str) -> TurnWidget:
    widget = await send(window, text)
    await wait_until(lambda: not window.chat.generating, 60, "the turn")
    await asyncio.sleep(0.05)
    return widget


def card_texts(widget: TurnWidget) -> list[str]:
    """Every visible label of the turn but the user's message: the cards' badges, footers
    and explanations, the header's status and confidence; and their tooltips."""
    labels = [label for label in widget.findChildren(QLabel)
              if label.isVisible() and not widget.bubble.isAncestorOf(label)]
    return [label.text() for label in labels] + [label.toolTip() for label in labels]


RANK_OR_SCORE = re.compile(r"#\d|score|\bv\d")


@pytest.mark.timeout(120)
def test_blind_turn_hides_scores_and_ranks_until_the_pick_then_reveals_them(
        loop: asyncio.AbstractEventLoop, qtbot: object, server: AzureServer, hh_data: Path,
        tmp_path: Path, warm_imports: None) -> None:
    assert import_some(hh_data, tmp_path, 40) > 20
    window = window_for(qtbot, candidates_per_turn=4, max_tokens=32, retrain_every=1000)
    chat, repo = window.chat, db()

    async def flow() -> None:
        await window.start()
        await wait_until(lambda: window.backend.reward_is_ready, 60, "reward model")
        window.backend.train_now()
        await wait_until(lambda: window.backend.session.reward_version is not None, 120,
                         "a trained reward model")
        assert chat.blind_button.text() == "Blind: off"
        chat.blind_button.click()  # the toggle in the chat view
        assert config.load_settings().blind and chat.blind_button.text() == "Blind: on"
        widget = await finished_turn(window, "Name a colour")
        turn = widget.turn
        assert turn is not None and turn.blind
        await wait_until(lambda: all(c.model_version is not None for c in turn.candidates),
                         60, "ranked")
        # before the pick: no score, no rank, no model version anywhere on the cards
        await asyncio.sleep(0.5)  # time for any explanation of the ranking to arrive
        shown = card_texts(widget)
        assert shown and not [t for t in shown if RANK_OR_SCORE.search(t)], shown
        assert "Blind" in widget.status.text() and "hidden" in widget.status.text()
        stored = repo.conversations.get_turn(turn.id or 0)
        assert stored.blind
        positions = {c.index: c.position for c in stored.candidates}
        assert sorted(positions.values()) == [0, 1, 2, 3]
        assert [positions[c.index] for c in widget.ordered_cards()] == [0, 1, 2, 3]
        await activate(window)
        press(window, Qt.Key.Key_2, ALT)  # pick the card shown second
        await asyncio.sleep(0.05)
        pick_card = next(c for c in widget.cards.values()
                         if c.candidate and c.candidate.id == turn.chosen_candidate_id)
        assert positions[pick_card.index] == 1
        # after the pick: the same cards, where and as they were shown, show the model's
        # ranking and scores
        ranked = sorted(turn.candidates, key=lambda c: -(c.score or 0))
        rank = [c.id for c in ranked].index(turn.chosen_candidate_id) + 1
        assert f"the model ranked your pick #{rank}" in widget.status.text()
        assert pick_card.rank_badge.text() == f"Reply 2 · scored #{rank}"
        assert widget.card_at(1) is pick_card
        assert any(t.startswith("score ") for t in card_texts(widget))
        label = repo.labels.last()
        assert label is not None and label.blind and label.kind == "pick"
        assert repo.labels.kinds() == {"import": 40, "pick": 1}
        meta = next(p for p in repo.pairs.stream() if p.source == "pick").metadata
        assert meta is not None and meta["blind"] is True and meta["chosen_position"] == 1
        assert meta["reward_model_version"] == window.backend.session.reward_version
        assert meta["time_to_pick_s"] is not None and meta["time_to_pick_s"] >= 0
        agreement = window.backend.session.labels.agreement(blind_only=True)
        assert agreement.picks == 1 and agreement.rate == (1.0 if rank == 1 else 0.0)

    try:
        run(loop, flow())
    finally:
        run(loop, window.shutdown())


@pytest.mark.timeout(120)
def test_tie_all_bad_skip_and_edit_from_the_window(loop: asyncio.AbstractEventLoop,
                                                    qtbot: object, server: AzureServer) -> None:
    window = window_for(qtbot, candidates_per_turn=3, max_tokens=32)
    chat, repo = window.chat, db()

    async def flow() -> None:
        await window.start()
        widget = await finished_turn(window, "Say hello")
        turn = widget.turn
        assert turn is not None and turn.id is not None
        bar = widget.findChild(LabelBar)  # Tie…, All bad, Skip under the finished turn
        assert bar is not None and bar.isVisible() and bar.skip_button.isVisible()
        await activate(window)
        # Tie: Alt+T, mark the first and third cards, Alt+T saves
        press(window, Qt.Key.Key_T, ALT)
        press(window, Qt.Key.Key_1, ALT)
        press(window, Qt.Key.Key_3, ALT)
        assert repo.labels.kinds() == {}  # nothing saved while choosing
        press(window, Qt.Key.Key_T, ALT)
        tied = tuple(c.candidate.id for c in (widget.card_at(0), widget.card_at(2))
                     if c is not None and c.candidate is not None)
        stored = repo.conversations.get_turn(turn.id)
        assert stored.label_kind == "tie" and set(stored.ranked_candidate_ids) == set(tied)
        assert repo.pairs.count() == 0
        assert [c.state_badge.text() for c in widget.ordered_cards()] == ["= Tie", "", "= Tie"]
        press(window, Qt.Key.Key_Z, ALT)
        assert repo.labels.kinds() == {} and widget.turn is not None
        assert widget.turn.label_kind is None
        # All bad: Alt+B; a reason may follow
        press(window, Qt.Key.Key_B, ALT)
        assert repo.labels.kinds() == {"all_bad": 1} and repo.pairs.count() == 0
        assert not bar.isVisible()  # a labeled turn: change it with Best, Edit or Alt+Z
        assert widget.reason_row.isVisible()
        assert widget.reason_row.property("tone") == "bad"  # not the green of a pick
        QTest.keyClicks(widget.reason_edit, "all wrong")
        QTest.keyClick(widget.reason_edit, Qt.Key.Key_Return)
        assert repo.labels.last() is not None and repo.labels.last().reason == "all wrong"
        press(window, Qt.Key.Key_Z, ALT)
        assert repo.labels.kinds() == {} and bar.isVisible()
        # Skip (the bar's button, Alt+S does the same): no label
        bar.skip_button.click()
        assert repo.conversations.get_turn(turn.id).skipped and repo.labels.kinds() == {}
        assert "Skipped" in widget.status.text()
        # Edit the second card: the rewrite is chosen over every original reply
        card = widget.card_at(1)
        assert card is not None and card.candidate is not None
        original = card.candidate
        card.edit_button.click()  # type: ignore[attr-defined]
        dialog = chat.edit_dialog
        assert dialog is not None and dialog.editor.toPlainText() == original.text
        dialog.editor.setPlainText(original.text)
        dialog.buttons.button(dialog.buttons.StandardButton.Save).click()
        assert "same as the original" in dialog.error.text()  # refused, text kept
        dialog.editor.setPlainText("Hello! My own, better reply.")
        dialog.buttons.button(dialog.buttons.StandardButton.Save).click()
        assert chat.edit_dialog is None
        pairs = list(repo.pairs.stream())
        assert len(pairs) == 3 and {p.chosen for p in pairs} == {"Hello! My own, better reply."}
        assert all(p.source == "edit" and p.metadata and p.metadata["label_kind"] == "edit"
                   for p in pairs)
        edit_card = next(c for c in widget.cards.values()
                         if c.state_badge.text() == "✎ Your edit")
        assert not edit_card.pick_button.isVisible()
        assert edit_card.footer.text() == "your rewrite of the reply shown at 2"
        # the conversation continues with the edited text
        second = await finished_turn(window, "And now?")
        assert second.messages[1].content == "Hello! My own, better reply."
        # every format exports the edit's pairs; jsonl carries the metadata
        out = tmp_export(window)
        lines = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
        assert {line["metadata"]["label_kind"] for line in lines} == {"edit"}

    try:
        run(loop, flow())
    finally:
        run(loop, window.shutdown())


def tmp_export(window: MainWindow) -> Path:
    from rlhf_desktop.services.datasets.pairs import DatasetService

    path = config.data_dir() / "export.jsonl"
    DatasetService.export("jsonl", path)
    return path



def labeled_turn(kind: str, blind: bool = False) -> Turn:
    """A saved turn of three unscored replies holding a label of ``kind``."""
    cands = [Candidate(index=i, text=f"reply {i}", id=10 + i, position=i) for i in range(3)]
    turn = Turn(conversation_id=1, messages=[Message("user", "Hi")], provider="local",
                model="m", params=SamplingParams(n=3), id=7, candidates=cands, blind=blind)
    turn.label_kind = kind
    if kind in ("pick", "ranking", "edit"):
        turn.chosen_candidate_id = 11
    if kind in ("tie", "ranking"):
        turn.ranked_candidate_ids = (11, 10) if kind == "tie" else (11, 12, 10)
    return turn



@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind,text", [("pick", "Undo pick"), ("tie", "Undo tie"),
                                       ("all_bad", "Undo all bad"),
                                       ("ranking", "Undo ranking")])
def test_undo_button_names_the_label_it_undoes(qtbot: object, kind: str, text: str) -> None:
    widget = TurnWidget("Hi", 3, MarkdownRenderer())
    qtbot.addWidget(widget)  # type: ignore[attr-defined]
    widget.set_turn(labeled_turn(kind))
    widget.mark_pick(widget.turn.chosen_candidate_id if widget.turn else None,
                     undoable=True)
    assert widget.undo_button.text() == text
    assert "pick" not in widget.undo_button.toolTip()



@pytest.mark.timeout(60)
def test_a_blind_pick_the_model_never_ranked_does_not_claim_its_ranking_shows(
        qtbot: object) -> None:
    widget = TurnWidget("Hi", 3, MarkdownRenderer())
    qtbot.addWidget(widget)  # type: ignore[attr-defined]
    widget.set_turn(labeled_turn("pick", blind=True))
    said = widget.status.text()
    assert "the model had not ranked these replies" in said
    assert "now show its ranking" not in said
