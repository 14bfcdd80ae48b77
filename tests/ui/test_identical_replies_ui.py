"""A pick among identical replies in the window: the message says which replies were the
same (a tie, no pair), and a pick where every other reply is the same is saved as a tie."""

from __future__ import annotations

import asyncio

import pytest

from rlhf_desktop.domain import Candidate, Message, SamplingParams, Turn
from tests.ui.conftest import run
from tests.ui.helpers import db, window_for


def stored_turn(texts: list[str]) -> Turn:
    conv = db().conversations.create("What is 12 times 12?")
    cands = [Candidate(index=i, text=t, completion_tokens=5, finish_reason="stop")
             for i, t in enumerate(texts)]
    return db().conversations.save_turn(Turn(
        conversation_id=conv.id, messages=[Message("user", "What is 12 times 12?")],
        provider="azure", model="m", params=SamplingParams(n=len(texts)), candidates=cands))


@pytest.mark.timeout(60)
def test_a_pick_says_which_replies_were_the_same_and_an_all_same_pick_is_a_tie(
        loop: asyncio.AbstractEventLoop, qtbot: object) -> None:
    mixed = stored_turn(["12 times 12 equals 144.", "12 times 12 equals 144", "It is 124."])
    same = stored_turn(["Canberra", "Canberra.", "canberra", "Canberra"])
    window = window_for(qtbot, candidates_per_turn=4)
    said: list[str] = []
    window.chat.message.connect(said.append)
    try:
        window.chat.show_conversation(mixed.conversation_id)
        widget = window.chat.widgets[-1]
        window.chat.pick(widget, 0)
        assert said[-1].startswith(
            "Saved your pick: 1 preference pair (1 identical reply: a tie, no pair)"), said
        assert [p.rejected for p in db().pairs.stream()] == ["It is 124."]
        window.chat.show_conversation(same.conversation_id)
        widget = window.chat.widgets[-1]
        window.chat.pick(widget, 2)
        assert said[-1].startswith("Saved as a tie: the other replies are the same reply"), said
        assert db().pairs.count() == 1 and db().labels.kinds() == {"pick": 1, "tie": 1}
        assert widget.turn is not None and widget.turn.label_kind == "tie"
    finally:
        run(loop, window.shutdown())
