"""A blind (or arena) turn keeps the numbers its cards had when the user labeled it: the
pick made as "Reply 4" stays Reply 4, a tie names the replies as they were shown, and the
model's order comes only on request ("Sort by score")."""

from __future__ import annotations

import asyncio

import pytest

from rlhf_desktop.domain import Candidate, Message, SamplingParams, Turn
from rlhf_desktop.services.arena.turns import ARENA
from rlhf_desktop.ui.chat.turn_widget import TurnWidget
from rlhf_desktop.ui.markdown_render import MarkdownRenderer
from tests.ui.conftest import run
from tests.ui.helpers import db, window_for

# Shown positions (index → where the user saw it); scores put index 2 first, index 0 last.
POSITIONS = {0: 1, 1: 3, 2: 0, 3: 2}
SCORES = {0: -0.5, 1: 0.4, 2: 0.9, 3: 0.1}


def blind_turn(scored: bool, provider: str = "azure") -> Turn:
    return Turn(conversation_id=1, messages=[Message("user", "Write a haiku")],
                provider=provider, model="m", params=SamplingParams(n=4), id=7, blind=True,
                candidates=[Candidate(index=i, text=f"reply {i}", id=10 + i,
                                      position=POSITIONS[i],
                                      score=SCORES[i] if scored else None,
                                      model_version=1 if scored else None,
                                      origin={"name": f"source {i}"} if provider == ARENA
                                      else None)
                            for i in range(4)])


def shown_widget(qtbot: object, turn: Turn) -> TurnWidget:
    widget = TurnWidget("Write a haiku", 4, MarkdownRenderer())
    qtbot.addWidget(widget)  # type: ignore[attr-defined]
    widget.resize(1000, 700)
    widget.show()
    widget.set_turn(turn)
    return widget


def numbers(widget: TurnWidget) -> dict[int, str]:
    """Candidate index → the number on its card (without the model's rank beside it)."""
    return {card.index: card.rank_badge.text().split(" · ")[0]
            for card in widget.ordered_cards()}


def card_of(widget: TurnWidget, candidate_id: int) -> int:
    return next(c.position for c in widget.cards.values()
                if c.candidate is not None and c.candidate.id == candidate_id)


SEEN = {i: f"Reply {p + 1}" for i, p in POSITIONS.items()}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("provider", ["azure", ARENA])
def test_an_unscored_blind_pick_keeps_the_number_it_was_picked_as(
        qtbot: object, provider: str) -> None:
    turn = blind_turn(scored=False, provider=provider)
    widget = shown_widget(qtbot, turn)
    assert numbers(widget) == SEEN
    # picked as "Reply 4" (index 1); the label reveals the turn
    turn.chosen_candidate_id, turn.label_kind = 11, "pick"
    widget.set_turn(turn)
    widget.mark_pick(11, undoable=True)
    assert numbers(widget) == SEEN
    picked = widget.card_at(3)
    assert picked is not None and picked.index == 1
    assert picked.state_badge.text() == "✓ Your pick"
    assert not widget.sort_button.isVisible()  # no scores: nothing to sort by


@pytest.mark.timeout(60)
def test_a_scored_blind_pick_keeps_its_order_and_sorts_by_score_on_request(
        qtbot: object) -> None:
    turn = blind_turn(scored=True)
    widget = shown_widget(qtbot, turn)
    assert numbers(widget) == SEEN  # hidden: positions only, no score
    turn.chosen_candidate_id, turn.label_kind = 11, "pick"
    widget.set_turn(turn)
    widget.mark_pick(11, undoable=True)
    # the same numbers; each card now names the model's rank beside it, and its score
    assert numbers(widget) == SEEN
    badges = {card.index: card.rank_badge.text() for card in widget.ordered_cards()}
    assert badges == {2: "Reply 1 · scored #1", 0: "Reply 2 · scored #4",
                      3: "Reply 3 · scored #3", 1: "Reply 4 · scored #2"}
    scores = {card.index: card.score_badge.text() for card in widget.ordered_cards()}
    assert scores == {2: "score +0.900", 1: "score +0.400", 3: "score +0.100",
                      0: "score -0.500"}
    assert "the model ranked your pick #2 of 4" in widget.status.text()
    assert widget.sort_button.isVisible() and not widget.sort_button.isChecked()
    # on request: the model's order, its ranks as the numbers
    widget.sort_button.click()
    assert widget.sort_button.text() == "Order as shown"
    assert [c.index for c in widget.ordered_cards()] == [2, 1, 3, 0]
    assert [c.rank_badge.text() for c in widget.ordered_cards()] == ["#1", "#2", "#3", "#4"]
    assert widget.sort_button.isVisible()
    widget.sort_button.click()  # and back to the order it was labeled in
    assert [c.index for c in widget.ordered_cards()] == [2, 0, 3, 1]
    assert widget.sort_button.text() == "Sort by score"
    # undone while sorted: blind again, in the order it was shown, the toggle gone
    widget.sort_button.click()
    turn.chosen_candidate_id, turn.label_kind = None, None
    widget.mark_pick(None, undoable=False)
    widget.set_turn(turn)
    assert numbers(widget) == SEEN and not widget.sort_button.isVisible()
    assert not widget.sort_button.isChecked()
    assert all(not c.score_badge.isVisible() for c in widget.cards.values())


@pytest.mark.timeout(60)
def test_a_blind_tie_names_the_replies_as_they_were_shown(qtbot: object) -> None:
    turn = blind_turn(scored=True)
    widget = shown_widget(qtbot, turn)
    # the user ties Reply 4 and Reply 3 (indices 1 and 3; the model ranks them #2 and #3)
    turn.label_kind, turn.ranked_candidate_ids = "tie", (11, 13)
    widget.set_turn(turn)
    widget.mark_pick(None, undoable=True)
    assert card_of(widget, 11) == 3 and card_of(widget, 13) == 2
    assert "You marked replies 3 and 4 as equally good" in widget.status.text()
    widget.sort_button.click()  # sorted by score the numbers are the model's ranks
    assert "You marked replies #2 and #3 as equally good" in widget.status.text()


@pytest.mark.timeout(60)
def test_a_blind_pick_in_the_window_keeps_its_number_when_shown_again(
        loop: asyncio.AbstractEventLoop, qtbot: object) -> None:
    conv = db().conversations.create("Write a haiku")
    stored = blind_turn(scored=False)
    stored.id, stored.conversation_id = None, conv.id
    for cand in stored.candidates:
        cand.id, cand.finish_reason = None, "stop"
    saved = db().conversations.save_turn(stored)
    db().conversations.set_scores([(c.id or 0, SCORES[c.index], 1) for c in saved.candidates])
    window = window_for(qtbot, candidates_per_turn=4)
    try:
        window.chat.show_conversation(conv.id)
        widget = window.chat.widgets[-1]
        assert numbers(widget) == SEEN
        card = widget.card_at(3)
        assert card is not None and card.index == 1
        window.chat.pick(widget, card.index)  # Best on "Reply 4"
        assert numbers(widget) == SEEN and widget.card_at(3) is card
        assert card.state_badge.text() == "✓ Your pick"
        assert card.rank_badge.text() == "Reply 4 · scored #2"
        assert card.score_badge.text() == "score +0.400"
        window.chat.show_conversation(conv.id)  # shown again, from the database
        again = window.chat.widgets[-1]
        assert numbers(again) == SEEN
        assert "the model ranked your pick #2 of 4" in again.status.text()
    finally:
        run(loop, window.shutdown())


@pytest.mark.timeout(60)
def test_same_reply_notes_name_the_cards_by_the_numbers_shown(qtbot: object) -> None:
    turn = blind_turn(scored=True)
    for cand in turn.candidates:
        if cand.index in (1, 3):  # shown as Reply 4 and Reply 3
            cand.text = "The same haiku"
    widget = shown_widget(qtbot, turn)
    turn.chosen_candidate_id, turn.label_kind = 12, "pick"
    widget.set_turn(turn)
    widget.mark_pick(12, undoable=True)
    notes = {c.index: c.same_note.text() for c in widget.cards.values() if c.same_note.text()}
    assert notes == {1: "= same as Reply 3 (a tie: no preference pair)",
                     3: "= same as Reply 4 (a tie: no preference pair)"}
    widget.sort_button.click()  # sorted by score: the numbers are the model's ranks
    notes = {c.index: c.same_note.text() for c in widget.cards.values() if c.same_note.text()}
    assert notes[1].startswith("= same as #") and notes[3].startswith("= same as #")


@pytest.mark.timeout(60)
def test_a_skipped_blind_turn_keeps_its_numbers(qtbot: object) -> None:
    turn = blind_turn(scored=True)
    widget = shown_widget(qtbot, turn)
    turn.skipped = True  # Skip reveals the model's scores, in the order shown
    widget.set_turn(turn)
    assert numbers(widget) == SEEN
    assert widget.card_at(0) is not None and widget.card_at(0).rank_badge.text() == \
        "Reply 1 · scored #1"
    assert "Skipped" in widget.status.text() and widget.sort_button.isVisible()
