"""Quitting while replies stream: the window asks first, and nothing the user saw is lost.

A real Azure-protocol server on a loopback socket streams slowly (it ignores ``n`` as
LiteLLM in front of llama.cpp does, so reply 1 finishes before reply 2 starts); the data
folder's SQLite file is read back by a fresh connection and by a new window.
"""

from __future__ import annotations

import asyncio

import pytest
from PySide6.QtWidgets import QMessageBox

from rlhf_desktop.domain import Candidate
from rlhf_desktop.providers.base import CANCELLED
from rlhf_desktop.storage.repo import Repository
from rlhf_desktop.ui.main_window import MainWindow
from tests.azure_server import AzureServer
from tests.ui.conftest import run, wait_until
from tests.ui.helpers import make_window, send

KEY = "sk-azure-SECRET-quit-4f1c2a9e"
PROMPT = "Tell me a long story about the sea"


def _slow_azure(monkeypatch: pytest.MonkeyPatch) -> AzureServer:
    server = AzureServer(api_key=KEY, deployment="gpt-test", reply_length=12,
                         chunk_delay_s=0.12)
    server.ignore_n = True  # reply 1 streams alone, then reply 2 in its own request
    for name, value in server.environment().items():
        monkeypatch.setenv(name, value)
    return server


def _card_done(window: MainWindow, index: int) -> Candidate | None:
    widget = window.chat.widgets[-1]
    return widget.cards[index].candidate


async def _one_done_one_streaming(window: MainWindow) -> None:
    await window.backend.rebuild_provider()
    widget = await send(window, PROMPT)
    await wait_until(lambda: _card_done(window, 0) is not None, 30, "reply 1 to finish")
    await wait_until(lambda: bool(widget.cards[1].text.strip()), 30, "reply 2 to stream")
    assert window.chat.generating


@pytest.mark.timeout(90)
def test_quit_mid_reply_asks_then_keeps_message_finished_and_partial_reply(
        loop: asyncio.AbstractEventLoop, qtbot: object,
        monkeypatch: pytest.MonkeyPatch) -> None:
    with _slow_azure(monkeypatch) as server:
        window = make_window(candidates_per_turn=2, max_retries=0, max_tokens=64)
        qtbot.addWidget(window)  # type: ignore[attr-defined]

        async def scenario() -> tuple[str, str]:
            await _one_done_one_streaming(window)
            finished = _card_done(window, 0)
            assert finished is not None
            window.close()  # the ✕ of the title bar
            box = window.quit_confirm
            assert isinstance(box, QMessageBox), "quitting mid-reply did not ask"
            assert window.isVisible() and window.chat.generating
            await asyncio.sleep(0.3)  # the user reads the question; replies keep streaming
            partial = window.chat.widgets[-1].cards[1].text
            window.quit_button.click()
            await asyncio.wait_for(window.wait_closed(), 30)
            return finished.text, partial

        finished_text, partial_seen = run(loop, scenario())
        assert server.requests, "nothing reached the server"

    repo = Repository.open()  # what the next start reads
    try:
        conversations = repo.conversations.list_all()
        assert len(conversations) == 1
        turns = repo.conversations.list_turns(conversations[0].id)
        assert len(turns) == 1
        assert turns[0].prompt == PROMPT
        by_index = {c.index: c for c in turns[0].candidates}
        assert by_index[0].text == finished_text and by_index[0].finish_reason == "stop"
        assert by_index[0].error is None
        stopped = by_index[1]
        assert stopped.finish_reason == CANCELLED  # flagged as stopped, never a whole reply
        assert stopped.text.startswith(partial_seen.strip()[:8])
        assert stopped.text.strip()
    finally:
        repo.close()

    again = make_window(candidates_per_turn=2, max_retries=0, max_tokens=64)
    qtbot.addWidget(again)  # type: ignore[attr-defined]
    again.chat.show_conversation(conversations[0].id)
    assert len(again.chat.widgets) == 1
    shown = again.chat.widgets[0]
    assert PROMPT in shown.prompt_view.toPlainText()
    assert shown.cards[0].text == finished_text


@pytest.mark.timeout(90)
def test_keep_generating_leaves_the_window_open_and_the_turn_finishes(
        loop: asyncio.AbstractEventLoop, qtbot: object,
        monkeypatch: pytest.MonkeyPatch) -> None:
    with _slow_azure(monkeypatch):
        window = make_window(candidates_per_turn=2, max_retries=0, max_tokens=64)
        qtbot.addWidget(window)  # type: ignore[attr-defined]

        async def scenario() -> None:
            await _one_done_one_streaming(window)
            window.close()
            box = window.quit_confirm
            assert box is not None
            box.reject()  # "Keep generating" (Esc)
            assert window.quit_confirm is None
            assert window.isVisible()
            await wait_until(lambda: not window.chat.generating, 30, "the turn to finish")
            turn = window.chat.widgets[-1].turn
            assert turn is not None
            assert [c.finish_reason for c in turn.candidates] == ["stop", "stop"]
            assert not window.backend.closed

        run(loop, scenario())


@pytest.mark.timeout(60)
def test_a_turn_stopped_by_quitting_before_any_text_reopens_as_stopped_not_failed(
        qtbot: object) -> None:
    """Quit while every reply still waited: the next start shows the turn as stopped (Retry
    asks again), never as "All 3 replies failed" with "the reply came back empty"."""
    from rlhf_desktop.domain import Message, SamplingParams, Turn
    from rlhf_desktop.ui.chat.turn_widget import TurnWidget
    from rlhf_desktop.ui.markdown_render import MarkdownRenderer

    cands = [Candidate(index=i, text="", id=20 + i, position=i, finish_reason=CANCELLED)
             for i in range(3)]
    turn = Turn(conversation_id=1, messages=[Message("user", PROMPT)], provider="azure",
                model="m", params=SamplingParams(n=3), id=9, candidates=cands)
    widget = TurnWidget(PROMPT, 3, MarkdownRenderer())
    qtbot.addWidget(widget)  # type: ignore[attr-defined]
    widget.set_turn(turn)
    widget.show_failures()
    said = widget.status.text() + " " + widget.error_label.text()
    assert "stopped before any text arrived" in said, said
    assert "failed" not in said and "came back empty" not in said, said


@pytest.mark.timeout(60)
def test_replies_stopped_before_any_text_are_said_stopped_not_failed_beside_a_whole_one(
        loop: asyncio.AbstractEventLoop, qtbot: object) -> None:
    """A chat left (another chat opened, Ctrl+N) while three replies had no text yet: back in
    it, the turn says they were stopped, not that they failed, and offers Retry failed."""
    from rlhf_desktop.domain import Message, SamplingParams, Turn
    from tests.ui.helpers import db, window_for

    conv = db().conversations.create("left mid-stream")
    cands = [Candidate(index=0, text="Dragons sleep on gold.", finish_reason="stop"),
             *(Candidate(index=i, text="", finish_reason=CANCELLED) for i in (1, 2, 3))]
    db().conversations.save_turn(Turn(conversation_id=conv.id,
                                      messages=[Message("user", "A dragon story")],
                                      provider="azure", model="m",
                                      params=SamplingParams(n=4), candidates=cands))
    window = window_for(qtbot, candidates_per_turn=4)
    try:
        turn = window.chat.widgets[-1]
        said = turn.error_label.text()
        assert "3 of 4 were stopped before any text arrived" in said, said
        assert "failed" not in said.split(".")[0], said
        assert turn.retry_button.isVisible() and turn.retry_button.text() == "Retry failed"
    finally:
        run(loop, window.shutdown())
