"""After a restart the window opens the most recent chat, where the user left off, and
creates nothing; a fresh data folder starts with the empty new chat.

A real Azure-protocol server on a loopback socket answers; the data folder's SQLite file is
what the second window (the restart) reads."""

from __future__ import annotations

import asyncio

import pytest

from rlhf_desktop.domain import Candidate, Message, SamplingParams, Turn
from tests.ui.conftest import run, wait_until
from tests.ui.helpers import azure_env, db, send, window_for

KEY = "sk-azure-SECRET-reopen-51c0d7"


def _stored_chat(title: str, prompt: str) -> int:
    conv = db().conversations.create(title)
    cands = [Candidate(index=i, text=f"{prompt} reply {i}", completion_tokens=3,
                       finish_reason="stop") for i in range(2)]
    db().conversations.save_turn(Turn(conversation_id=conv.id, messages=[Message("user", prompt)],
                                      provider="azure", model="m", params=SamplingParams(n=2),
                                      candidates=cands))
    return conv.id


@pytest.mark.timeout(90)
def test_restart_opens_the_chat_the_user_was_in_and_creates_nothing(
        loop: asyncio.AbstractEventLoop, qtbot: object,
        monkeypatch: pytest.MonkeyPatch) -> None:
    with azure_env(monkeypatch, KEY):
        first = window_for(qtbot, candidates_per_turn=2, max_retries=0, max_tokens=32)
        # A fresh data folder: the empty new chat, nothing stored.
        assert first.chat.conversation_id is None and first.chat.widgets == []
        assert first.sidebar.list.count() == 0

        async def chat_then_quit() -> int:
            await first.backend.rebuild_provider()
            await send(first, "Where do rivers begin?")
            await wait_until(lambda: not first.chat.generating, 30, "the turn to end")
            cid = first.chat.conversation_id
            assert cid is not None
            first.close()
            await asyncio.wait_for(first.wait_closed(), 30)
            return cid

        cid = run(loop, chat_then_quit())

        again = window_for(qtbot, candidates_per_turn=2, max_retries=0, max_tokens=32)
        try:
            assert again.chat.conversation_id == cid
            assert len(again.chat.widgets) == 1
            assert "Where do rivers begin?" in again.chat.widgets[0].prompt_view.toPlainText()
            assert again.sidebar.current_id == cid
            selected = again.sidebar.list.selectedItems()
            assert len(selected) == 1 and "Where do rivers begin?" in selected[0].text()
            assert [c.id for c in db().conversations.list_all()] == [cid]  # no empty "New chat"
        finally:
            run(loop, again.shutdown())


@pytest.mark.timeout(60)
def test_restart_opens_the_most_recent_of_several_chats(
        loop: asyncio.AbstractEventLoop, qtbot: object) -> None:
    older = _stored_chat("Tides", "Why are there tides?")
    newer = _stored_chat("Bread", "How do I bake bread?")
    window = window_for(qtbot, candidates_per_turn=2)
    try:
        assert window.chat.conversation_id == newer != older
        assert "How do I bake bread?" in window.chat.widgets[0].prompt_view.toPlainText()
        assert len(db().conversations.list_all()) == 2
        window.new_chat()  # Ctrl+N still gives the empty new chat
        assert window.chat.conversation_id is None and window.chat.widgets == []
        # and no chat of the list looks like the one shown (neither selected nor current)
        assert window.sidebar.list.selectedItems() == []
        assert window.sidebar.list.currentRow() == -1
    finally:
        run(loop, window.shutdown())


@pytest.mark.timeout(120)
def test_the_message_being_typed_stays_with_its_chat_survives_a_quit_and_goes_once_sent(
        loop: asyncio.AbstractEventLoop, qtbot: object,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from rlhf_desktop.services.chat.conversations import draft_path

    older = _stored_chat("Tides", "Why are there tides?")
    with azure_env(monkeypatch, KEY):
        first = window_for(qtbot, candidates_per_turn=2, max_retries=0, max_tokens=32)
        assert first.chat.conversation_id == older
        typed = "A long question I am still writing:\n- first point\n- é ✓"
        first.chat.composer.setPlainText(typed)
        assert first.drafts.pending  # written once the typing pauses, or at quit
        first.new_chat()  # the text stays with the chat it was typed in
        assert first.chat.composer.toPlainText() == ""
        first.chat.composer.setPlainText("for the new chat")
        first._select_conversation(older)
        assert first.chat.composer.toPlainText() == typed

        async def quit_now() -> None:
            first.close()
            await asyncio.wait_for(first.wait_closed(), 30)

        run(loop, quit_now())
        assert draft_path().stat().st_mode & 0o077 == 0  # the user's eyes only

        second = window_for(qtbot, candidates_per_turn=2, max_retries=0, max_tokens=32)
        try:  # the chat it opens has its draft back; the new chat keeps its own
            assert second.chat.conversation_id == older
            assert second.chat.composer.toPlainText() == typed
            second.chat.composer.setPlainText(typed + " more")
            # kept while the window is still open (a crash now would lose nothing)
            run(loop, wait_until(lambda: not second.drafts.pending, 10, "the draft kept"))
            second.new_chat()
            assert second.chat.composer.toPlainText() == "for the new chat"

            async def send_it() -> None:  # the new chat's draft goes with its first send
                await second.backend.rebuild_provider()
                second.chat.send_from_composer()
                await wait_until(lambda: not second.chat.generating, 30, "the turn to end")
                await wait_until(lambda: not second.drafts.pending, 10, "the empty draft")

            run(loop, send_it())
            assert second.chat.composer.toPlainText() == ""
            second._select_conversation(older)
            assert second.chat.composer.toPlainText() == typed + " more"
            second.chat.composer.clear()  # emptied: nothing is kept any more
            run(loop, wait_until(lambda: not second.drafts.pending, 10, "the empty draft"))
            assert not draft_path().exists()
        finally:
            run(loop, second.shutdown())
