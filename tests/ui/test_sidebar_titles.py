"""Chat titles in the sidebar: emoji-only, long emoji sequences and right-to-left text keep
their time line, and a long title cut to its start and end never splits an emoji sequence.

Real SQLite (the data folder of the test), the real sidebar widget."""

from __future__ import annotations

import asyncio

import pytest

from rlhf_desktop.domain import Candidate, Message, SamplingParams, Turn
from rlhf_desktop.ui.sidebar import ID_ROLE, Sidebar, display_title, when
from tests.ui.conftest import run
from tests.ui.helpers import db, window_for

FAMILY = "👨‍👩‍👧‍👦"  # one grapheme, 7 code points
FLAG = "🇫🇷"  # one grapheme, 2 regional indicators
THUMB = "👍🏽"  # one grapheme, with its skin tone
PROMPTS = ["🎉", FAMILY * 30, FLAG * 40, THUMB * 50, "مرحبا بالعالم " * 8, "שלום עולם",
           "A plain question about rivers?"]


def _chat(prompt: str) -> int:
    conv = db().create_conversation(" ".join(prompt.split())[:60].strip())  # as sending does
    db().save_turn(Turn(conversation_id=conv.id, messages=[Message("user", prompt)],
                        provider="azure", model="m", params=SamplingParams(n=1),
                        candidates=[Candidate(index=0, text="ok", finish_reason="stop")]))
    return conv.id


@pytest.mark.parametrize("unit", [FAMILY, FLAG, THUMB])
def test_a_long_title_is_cut_between_whole_emoji(unit: str) -> None:
    prompt = unit * 40
    shown = display_title(" ".join(prompt.split())[:60].strip(), prompt)
    head, tail = shown.split(" … ")
    assert head and tail
    assert head.replace(unit, "") == "" and tail.replace(unit, "") == "", repr(shown)


@pytest.mark.timeout(60)
def test_every_entry_keeps_its_time(loop: asyncio.AbstractEventLoop, qtbot: object) -> None:
    ids = {_chat(prompt): prompt for prompt in PROMPTS}
    window = window_for(qtbot)
    sidebar: Sidebar = window.sidebar
    try:
        window.resize(1000, 800)
        assert sidebar.list.count() == len(PROMPTS)
        for row in range(sidebar.list.count()):
            item = sidebar.list.item(row)
            conv = db().get_conversation(int(item.data(ID_ROLE)))
            assert conv is not None and conv.id in ids
            title, time_line = item.text().split("\n")
            assert time_line == when(conv.updated_at)
            assert "\u200d" not in (title[:1], title[-1:])
            rect = sidebar.list.visualItemRect(item)
            lines = sidebar.list.fontMetrics().lineSpacing() * 2
            assert rect.height() >= lines, (title, rect.height(), lines)  # room for the time
    finally:
        run(loop, window.shutdown())
