"""The message after a pick counts the replies left out of its pairs by the same rule the
pairs were made by (failed, stopped, filtered or empty: not whole replies)."""

from __future__ import annotations

import asyncio

import pytest

from rlhf_desktop.domain import Candidate, Message, SamplingParams, Turn
from tests.ui.conftest import run
from tests.ui.helpers import db, window_for


def stored_turn(finish: dict[int, str]) -> Turn:
    """A stored turn of four replies; ``finish`` gives some their finish reason."""
    conv = db().conversations.create("Name a river")
    cands = [Candidate(index=i, text=f"The river number {i}", completion_tokens=5,
                       finish_reason=finish.get(i, "stop")) for i in range(4)]
    turn = Turn(conversation_id=conv.id, messages=[Message("user", "Name a river")],
                provider="azure", model="m", params=SamplingParams(n=4), candidates=cands)
    return db().conversations.save_turn(turn)


@pytest.mark.timeout(60)
def test_a_pick_names_the_filtered_and_stopped_replies_it_left_out(
        loop: asyncio.AbstractEventLoop, qtbot: object) -> None:
    saved = stored_turn({1: "content_filter", 2: "cancelled"})
    window = window_for(qtbot, candidates_per_turn=4)
    said: list[str] = []
    window.chat.message.connect(said.append)
    try:
        window.chat.show_conversation(saved.conversation_id)
        widget = window.chat.widgets[-1]
        window.chat.pick(widget, 0)
        assert said and said[-1].startswith(
            "Saved your pick: 1 preference pair (2 stopped, filtered or failed replies left "
            "out)"), said
        pairs = [p for p in db().pairs.stream() if p.source == "pick"]
        assert len(pairs) == 1  # the message and the pairs agree
    finally:
        run(loop, window.shutdown())
