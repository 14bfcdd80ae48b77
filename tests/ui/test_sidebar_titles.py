"""Chat titles in the sidebar: emoji-only, long emoji sequences and right-to-left text keep
their time line, a long title cut to its start and end never splits an emoji sequence, and
long prompts that begin alike get titles that tell them apart (the tooltip has the prompt,
its end included).

Real SQLite (the data folder of the test), the real sidebar widget."""

from __future__ import annotations

import asyncio

import pytest

from rlhf_desktop.domain import Candidate, Message, SamplingParams, Turn
from rlhf_desktop.services.chat.conversations import ConversationService
from rlhf_desktop.services.hooks import SessionHooks
from rlhf_desktop.storage.repo import Repository
from rlhf_desktop.ui.sidebar import ID_ROLE, Sidebar, display_title, when
from tests.ui.conftest import run
from tests.ui.helpers import db, settle, window_for

FAMILY = "👨‍👩‍👧‍👦"  # one grapheme, 7 code points
FLAG = "🇫🇷"  # one grapheme, 2 regional indicators
THUMB = "👍🏽"  # one grapheme, with its skin tone
PROMPTS = ["🎉", FAMILY * 30, FLAG * 40, THUMB * 50, "مرحبا بالعالم " * 8, "שלום עולם",
           "A plain question about rivers?"]


def _chat(prompt: str) -> int:
    conv = db().conversations.create(" ".join(prompt.split())[:60].strip())  # as sending does
    db().conversations.save_turn(Turn(
        conversation_id=conv.id, messages=[Message("user", prompt)], provider="azure",
        model="m", params=SamplingParams(n=1),
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
            conv = db().conversations.get(int(item.data(ID_ROLE)))
            assert conv is not None and conv.id in ids
            title, time_line = item.text().split("\n")
            assert time_line == when(conv.updated_at)
            assert "\u200d" not in (title[:1], title[-1:])
            rect = sidebar.list.visualItemRect(item)
            lines = sidebar.list.fontMetrics().lineSpacing() * 2
            assert rect.height() >= lines, (title, rect.height(), lines)  # room for the time
    finally:
        run(loop, window.shutdown())


def test_long_prompts_that_begin_alike_get_distinguishable_titles(
        loop: asyncio.AbstractEventLoop, qtbot: object) -> None:
    from rlhf_desktop.ui.sidebar import Sidebar

    repo = Repository.open()
    common = "Please read the following report carefully and then answer my question. " * 3
    endings = ["What is the main risk?", "Summarise it in one line.", "Who wrote it?"]
    for ending in endings:
        prompt = common + "\n\n" + "Lorem ipsum dolor sit amet. " * 40 + ending
        conv = repo.conversations.create(prompt[:60].strip())  # as the chat view titles it
        repo.conversations.save_turn(Turn(
            conversation_id=conv.id, messages=[Message("user", prompt)], provider="test",
            model="m", params=SamplingParams(n=2),
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
