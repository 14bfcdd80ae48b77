"""Ranking a turn from the real window (Azure-protocol server over real sockets, the real
database): Alt+R, Alt+digits in order, Enter for the top ones, Esc to cancel, Alt+Z to
undo, and a blind turn revealed once its ranking is saved."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from rlhf_desktop.ui.chat.label_view import ordinal
from rlhf_desktop.ui.chat.label_widgets import LabelBar
from rlhf_desktop.ui.chat.turn_widget import TurnWidget
from rlhf_desktop.ui.shortcuts import SHORTCUTS
from tests.azure_server import AzureServer
from tests.ui.conftest import run, wait_until
from tests.ui.helpers import activate, azure_env, db, press, window_for
from tests.ui.test_chat_flow import import_some
from tests.ui.test_label_kinds_ui import RANK_OR_SCORE, card_texts, finished_turn

KEY = "sk-azure-SECRET-ranking-7b90"
ALT = Qt.KeyboardModifier.AltModifier
DIGITS = {1: Qt.Key.Key_1, 2: Qt.Key.Key_2, 3: Qt.Key.Key_3, 4: Qt.Key.Key_4}


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[AzureServer]:
    """The Azure-protocol server, with the app's environment pointing at it."""
    with azure_env(monkeypatch, KEY) as srv:
        yield srv


def shown_id(widget: TurnWidget, key: int) -> int:
    """The candidate id of the card that Alt+``key`` presses."""
    card = widget.card_at(key - 1)
    assert card is not None and card.candidate is not None and card.candidate.id is not None
    return card.candidate.id


def badges(widget: TurnWidget) -> list[str]:
    return [c.state_badge.text() if c.state_badge.isVisible() else ""
            for c in widget.ordered_cards()]


def stored_pairs() -> dict[tuple[int | None, int | None], float]:
    return {(p.chosen_candidate_id, p.rejected_candidate_id): p.weight
            for p in db().pairs.stream() if p.source == "pick"}


@pytest.mark.timeout(120)
def test_rank_with_alt_r_and_alt_digits_saves_weighted_pairs(
        loop: asyncio.AbstractEventLoop, qtbot: object, server: AzureServer) -> None:
    window = window_for(qtbot, candidates_per_turn=4, max_tokens=32)
    chat, repo = window.chat, db()

    async def flow() -> None:
        await window.start()
        widget = await finished_turn(window, "Rank these")
        turn = widget.turn
        assert turn is not None and turn.id is not None
        bar = widget.findChild(LabelBar)
        assert bar is not None and bar.rank_button.isVisible()
        await activate(window)
        # Alt+R, Alt+3, Alt+1: the cards show their places; nothing is saved yet
        press(window, Qt.Key.Key_R, ALT)
        assert chat.ranking == [] and "Ranking" in bar.hint.text()
        press(window, Qt.Key.Key_3, ALT)
        press(window, Qt.Key.Key_1, ALT)
        assert badges(widget) == ["2nd", "", "1st", ""]
        assert bar.rank_button.text() == "Save ranking (2 of 4)"
        assert repo.labels.kinds() == {}
        press(window, Qt.Key.Key_3, ALT)  # again: out, the later one moves up
        assert badges(widget) == ["1st", "", "", ""]
        press(window, Qt.Key.Key_Escape)  # Esc cancels: nothing saved, nothing marked
        assert chat.ranking is None and badges(widget) == ["", "", "", ""]
        assert repo.labels.kinds() == {} and bar.rank_button.text() == "Rank…"
        # the top two, then Enter: the other two count as tied below
        press(window, Qt.Key.Key_R, ALT)
        press(window, Qt.Key.Key_3, ALT)
        press(window, Qt.Key.Key_1, ALT)
        press(window, Qt.Key.Key_Return)
        first, second = shown_id(widget, 3), shown_id(widget, 1)
        rest = [shown_id(widget, k) for k in (2, 4)]
        assert repo.labels.kinds() == {"ranking": 1}
        pairs = stored_pairs()
        assert set(pairs) == {(first, second)} | {(a, b) for a in (first, second) for b in rest}
        assert all(w == pytest.approx(3 / 5) for w in pairs.values())
        assert "You ranked 2 replies (the other 2 tied below)" in widget.status.text()
        press(window, Qt.Key.Key_Z, ALT)
        assert repo.labels.kinds() == {} and repo.pairs.count() == 0
        assert widget.turn is not None and widget.turn.label_kind is None
        # every card in order, started from the bar: saved when the last one is placed
        bar.rank_button.click()
        keys = (2, 4, 1, 3)
        order = [shown_id(widget, k) for k in keys]
        for k in keys:
            press(window, DIGITS[k], ALT)
        assert chat.ranking is None
        stored = repo.conversations.get_turn(turn.id)
        assert stored.label_kind == "ranking" and stored.ranked_candidate_ids == tuple(order)
        assert stored.chosen_candidate_id == order[0]
        pairs = stored_pairs()
        assert set(pairs) == {(order[i], order[j]) for i in range(4) for j in range(i + 1, 4)}
        assert all(w == pytest.approx(0.5) for w in pairs.values())
        meta = [p.metadata for p in repo.pairs.stream()]
        assert {m["label_kind"] for m in meta if m} == {"ranking"}
        place = {cid: i + 1 for i, cid in enumerate(order)}
        assert sorted(badges(widget)) == ["1st", "2nd", "3rd", "4th"]
        assert {c.candidate.id: c.state_badge.text() for c in widget.cards.values()
                if c.candidate is not None} == {cid: ordinal(n) for cid, n in place.items()}
        assert not bar.isVisible()  # labeled: change it with Best, Rank again or Alt+Z
        # the conversation continues with the first
        nxt = await finished_turn(window, "And then?")
        first_text = next(c.text for c in stored.candidates if c.id == order[0])
        assert nxt.messages[1].content == first_text
        # ranking an earlier turn from its bar: Alt+1…9 place its replies, not the last turn's
        press(window, Qt.Key.Key_Z, ALT)
        assert repo.labels.kinds() == {} and bar.isVisible()
        bar.rank_button.click()
        press(window, Qt.Key.Key_4, ALT)
        press(window, Qt.Key.Key_2, ALT)
        press(window, Qt.Key.Key_Enter)  # the keypad's Enter saves too
        assert repo.conversations.get_turn(turn.id).ranked_candidate_ids == (shown_id(widget, 4),
                                                             shown_id(widget, 2))
        assert nxt.turn is not None and nxt.turn.label_kind is None

    try:
        run(loop, flow())
    finally:
        run(loop, window.shutdown())
    assert any(keys == "Alt+R" and "Rank" in what for keys, what in SHORTCUTS)


@pytest.mark.timeout(120)
def test_a_blind_turn_reveals_the_models_ranking_once_the_ranking_is_saved(
        loop: asyncio.AbstractEventLoop, qtbot: object, server: AzureServer, hh_data: Path,
        tmp_path: Path, warm_imports: None) -> None:
    assert import_some(hh_data, tmp_path, 40) > 20
    window = window_for(qtbot, candidates_per_turn=3, max_tokens=32, retrain_every=1000,
                        blind=True)
    chat, repo = window.chat, db()
    said: list[str] = []
    chat.message.connect(said.append)

    async def flow() -> None:
        await window.start()
        await wait_until(lambda: window.backend.reward_is_ready, 60, "reward model")
        window.backend.train_now()
        await wait_until(lambda: window.backend.session.reward_version is not None, 120,
                         "a trained reward model")
        widget = await finished_turn(window, "Name a fruit")
        turn = widget.turn
        assert turn is not None and turn.blind
        await wait_until(lambda: all(c.model_version is not None for c in turn.candidates),
                         60, "ranked")
        await activate(window)
        press(window, Qt.Key.Key_R, ALT)
        press(window, Qt.Key.Key_2, ALT)
        press(window, Qt.Key.Key_3, ALT)
        await asyncio.sleep(0.3)
        shown = card_texts(widget)  # while ranking: places, but no score and no rank
        assert "1st" in shown and "2nd" in shown
        assert not [t for t in shown if RANK_OR_SCORE.search(t)], shown
        first = shown_id(widget, 2)
        press(window, Qt.Key.Key_1, ALT)  # the last one: saved
        label = repo.labels.last()
        assert label is not None and label.kind == "ranking" and label.blind
        ranked = sorted(turn.candidates, key=lambda c: -(c.score or 0))
        rank = [c.id for c in ranked].index(first) + 1
        assert f"the model ranked your first #{rank} of 3" in widget.status.text()
        first_card = next(c for c in widget.cards.values()
                          if c.candidate is not None and c.candidate.id == first)
        assert first_card.rank_badge.text() == f"Reply 2 · scored #{rank}"  # as shown
        assert first_card.state_badge.text() == "1st"
        assert any(t.startswith("score ") for t in card_texts(widget))
        meta = next(p.metadata for p in repo.pairs.stream() if p.source == "pick")
        assert meta is not None and meta["blind"] is True and meta["weight"] == pytest.approx(
            2 / 3)
        assert re.search(r"blind: the model ranked your first #\d", said[-1])

    try:
        run(loop, flow())
    finally:
        run(loop, window.shutdown())
