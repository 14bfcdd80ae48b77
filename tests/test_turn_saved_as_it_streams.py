"""A turn is stored as it streams: the user's message when it is sent, each reply when it
finishes, and the replies still streaming (as stopped) when the turn is cancelled, as closing
the window does. A real Azure-protocol server streams slowly over a loopback socket; the
SQLite file is read back by a fresh connection.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from rlhf_desktop import config
from rlhf_desktop.config import Settings
from rlhf_desktop.providers.base import CANCELLED
from rlhf_desktop.services.session import AppSession
from rlhf_desktop.storage.repo import Repository
from tests.azure_server import AzureServer
from tests.fakes import HashEmbedder

PROMPT = "Tell me about the tides"


async def _until(predicate: Any, what: str) -> None:
    for _ in range(1500):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.timeout(90)
def test_cancelled_turn_keeps_the_message_the_finished_reply_and_the_partial_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    with AzureServer(reply_length=12, chunk_delay_s=0.1) as server:
        server.ignore_n = True  # reply 1 streams alone, then reply 2 in its own request
        for name, value in server.environment().items():
            monkeypatch.setenv(name, value)
        config.save_settings(Settings(candidates_per_turn=2, max_retries=0))

        async def scenario() -> tuple[int, str]:
            session = AppSession(embedder=HashEmbedder())  # type: ignore[arg-type]
            await session.rebuild_provider()
            assert session.chat is not None
            texts: dict[int, str] = {}
            finished: dict[int, str] = {}
            ids: list[int] = []

            def delta(index: int, text: str) -> None:
                texts[index] = texts.get(index, "") + text

            task = asyncio.ensure_future(session.chat.send(
                None, PROMPT, delta, lambda c: finished.setdefault(c.index, c.text),
                on_conversation=ids.append))
            # The message is stored before any reply has finished.
            await _until(lambda: bool(ids), "the conversation")
            assert [t.prompt for t in session.conversations.turns(ids[0])] == [PROMPT]
            await _until(lambda: 0 in finished and texts.get(1), "reply 1 done, 2 streaming")
            task.cancel()  # what closing the window does to a turn that is still running
            with pytest.raises(asyncio.CancelledError):
                await task
            await session.aclose()
            return ids[0], finished[0]

        cid, first = asyncio.run(asyncio.wait_for(scenario(), 60))

    repo = Repository.open()
    try:
        (turn,) = repo.conversations.list_turns(cid)
    finally:
        repo.close()
    assert turn.prompt == PROMPT
    by_index = {c.index: c for c in turn.candidates}
    assert by_index[0].text == first and by_index[0].finish_reason == "stop"
    assert by_index[1].finish_reason == CANCELLED and by_index[1].text.startswith("Reply")
