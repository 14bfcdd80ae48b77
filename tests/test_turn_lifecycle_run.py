"""A turn run by the lifecycle (``session.turns.run``) without a window: sent to a real
Azure-protocol server over a loopback socket, streamed, saved in a real SQLite file, and
settled; each step (a finished reply, a reply asked again, the new chat) is a ``TurnView``
published through ``turn_did_change``, and how the send ended (complete, stopped, failed
with the provider's fault, unsent) is in the last one.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

import pytest

from rlhf_desktop import config
from rlhf_desktop.config import Settings
from rlhf_desktop.domain import Message
from rlhf_desktop.services.chat.service import TurnControl
from rlhf_desktop.services.session import AppSession
from rlhf_desktop.services.turns import COMPLETE, FAILED, STOPPED, UNSENT, TurnView
from rlhf_desktop.storage.repo import Repository
from tests.azure_server import AzureServer
from tests.fakes import HashEmbedder

pytestmark = pytest.mark.slow  # a real server and session per test

PROMPT = "Why does the moon keep one face to us?"


def _use(server: AzureServer, monkeypatch: pytest.MonkeyPatch, n: int,
         retries: int = 0) -> None:
    for name, value in server.environment().items():
        monkeypatch.setenv(name, value)
    config.save_settings(Settings(candidates_per_turn=n, max_retries=retries))


@pytest.mark.timeout(90)
def test_a_turn_runs_from_send_through_streaming_to_its_settled_snapshot(
        monkeypatch: pytest.MonkeyPatch) -> None:
    with AzureServer(reply_length=5, chunk_delay_s=0.005) as server:
        _use(server, monkeypatch, 3)

        async def scenario() -> tuple[list[TurnView], dict[int, str], TurnView, TurnView]:
            session = AppSession(embedder=HashEmbedder())  # type: ignore[arg-type]
            seen: list[TurnView] = []
            session.hooks.turn_did_change.append(seen.append)
            await session.rebuild_provider()
            streamed: dict[int, str] = defaultdict(str)

            def on_delta(index: int, text: str) -> None:
                streamed[index] += text

            view = session.turns.begin([Message("user", PROMPT)], 3, blind_mode=False,
                                       arena=False)
            last = await session.turns.run(view.key, TurnControl(range(3)),
                                           conversation_id=None, text=PROMPT,
                                           on_delta=on_delta)
            replies = [session.turns.reply(view.key, i) for i in range(3)]
            texts = {c.index: c.text for c in replies if c is not None}
            assert texts == dict(streamed)  # every delta reached on_delta, in order

            # Regenerate all: exactly the same messages, in the chat the first turn made
            assert last.conversation_id is not None
            again = session.turns.begin(last.messages, 3, blind_mode=False, arena=False)
            second = await session.turns.run(again.key, TurnControl(range(3)),
                                             conversation_id=last.conversation_id)
            await session.aclose()
            return [v for v in seen if v.key == view.key], texts, last, second

        views, texts, last, second = asyncio.run(asyncio.wait_for(scenario(), 60))

    # sent: every reply streams, no chat yet; then the new chat, before any reply is over
    assert views[0].streaming and views[0].conversation_id is None
    assert [r.state for r in views[0].replies] == ["streaming"] * 3
    assert views[1].conversation_id is not None and views[1].outcome is None
    assert [r.state for r in views[1].replies] == ["streaming"] * 3
    # one snapshot per finished reply; the last one finished is being ranked
    finishing = [v for v in views if v.streaming][2:]
    assert [sum(r.state != "streaming" for r in v.replies) for v in finishing] == [1, 2, 3]
    assert [v.ranking for v in finishing] == [False, False, True]
    assert not finishing[-1].ranker_ready  # no reward model was loaded
    # settled: saved, complete, nothing to say
    assert last is views[-1] and last.outcome == COMPLETE and last.error is None
    assert not last.streaming and not last.ranking and last.turn_id is not None
    assert all(r.pickable and r.state == "whole" for r in last.replies)
    assert second.outcome == COMPLETE and second.conversation_id == last.conversation_id
    assert second.messages == last.messages and second.turn_id != last.turn_id
    assert last.conversation_id is not None
    repo = Repository.open()
    try:
        stored = repo.conversations.get_turn(last.turn_id)
        chat = repo.conversations.get(last.conversation_id)
    finally:
        repo.close()
    assert {c.index: c.text for c in stored.candidates} == texts
    assert chat is not None and chat.title == PROMPT


@pytest.mark.timeout(90)
def test_a_stopped_turn_settles_as_stopped_with_its_partial_replies(
        monkeypatch: pytest.MonkeyPatch) -> None:
    with AzureServer(reply_length=400, chunk_delay_s=0.01) as server:
        _use(server, monkeypatch, 2)

        async def scenario() -> TurnView:
            session = AppSession(embedder=HashEmbedder())  # type: ignore[arg-type]
            await session.rebuild_provider()
            control = TurnControl(range(2))
            view = session.turns.begin([Message("user", PROMPT)], 2, blind_mode=False,
                                       arena=False)
            last = await session.turns.run(
                view.key, control, conversation_id=None, text=PROMPT,
                on_delta=lambda _i, _t: control.stop_all())  # Esc at the first text
            await session.aclose()
            return last

        last = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert last.outcome == STOPPED and last.error is None and last.turn_id is not None
    assert all(r.state in ("stopped", "empty") for r in last.replies)


@pytest.mark.timeout(90)
def test_a_provider_fault_settles_the_turn_as_failed_with_the_reason(
        monkeypatch: pytest.MonkeyPatch) -> None:
    with AzureServer(reply_length=6, chunk_delay_s=0.005) as server:
        _use(server, monkeypatch, 2)
        server.inject("server_error")

        async def scenario() -> list[TurnView]:
            session = AppSession(embedder=HashEmbedder())  # type: ignore[arg-type]
            seen: list[TurnView] = []
            session.hooks.turn_did_change.append(seen.append)
            await session.rebuild_provider()
            view = session.turns.begin([Message("user", PROMPT)], 2, blind_mode=False,
                                       arena=False)
            last = await session.turns.run(view.key, TurnControl(range(2)),
                                           conversation_id=None, text=PROMPT)
            assert last is seen[-1]
            await session.aclose()
            return [v for v in seen if v.key == view.key]

        views = asyncio.run(asyncio.wait_for(scenario(), 60))
    last = views[-1]
    assert last.outcome == FAILED and last.turn_id is not None and not last.streaming
    assert last.error and "500" in last.error
    assert [r.state for r in last.replies] == ["failed", "failed"]
    assert not any(r.pickable for r in last.replies)
    repo = Repository.open()
    try:
        stored = repo.conversations.get_turn(last.turn_id)
    finally:
        repo.close()
    assert stored.messages == [Message("user", PROMPT)]  # the user's message is kept
    assert all(c.error == last.error for c in stored.candidates)


@pytest.mark.timeout(90)
def test_a_turn_with_no_provider_ends_unsent_with_the_sessions_reason(
        monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_API_KEY",
                 "AZURE_OPENAI_DEPLOYMENT_NAME"):
        monkeypatch.delenv(name, raising=False)
    config.save_settings(Settings(provider="azure", candidates_per_turn=2))

    async def scenario() -> tuple[list[TurnView], str | None]:
        session = AppSession(embedder=HashEmbedder())  # type: ignore[arg-type]
        seen: list[TurnView] = []
        session.hooks.turn_did_change.append(seen.append)
        await session.rebuild_provider()
        view = session.turns.begin([Message("user", PROMPT)], 2, blind_mode=False,
                                   arena=False)
        await session.turns.run(view.key, TurnControl(range(2)), conversation_id=None,
                                text=PROMPT)
        await session.aclose()
        return [v for v in seen if v.key == view.key], session.provider_error

    views, why = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert why  # the session says why it has no provider
    last = views[-1]
    assert (last.outcome, last.error) == (UNSENT, why)
    assert not last.streaming and last.turn_id is None and last.conversation_id is None
    assert last.messages == (Message("user", PROMPT),)  # what Retry sends again
    repo = Repository.open()
    try:
        chats = repo.conversations.count()
    finally:
        repo.close()
    assert chats == 0  # nothing was sent, no chat was made


@pytest.mark.timeout(90)
def test_a_reply_asked_again_is_published_as_a_restart_and_streams_anew(
        monkeypatch: pytest.MonkeyPatch) -> None:
    with AzureServer(reply_length=6, chunk_delay_s=0.005) as server:
        # retries as the app has them: the redo may go out on the connection the cut
        # stream's server just closed ("Server disconnected"), which a retry reopens
        _use(server, monkeypatch, 1, retries=2)
        server.inject("truncate", after=2)  # cut with no finish reason: asked again

        async def scenario() -> tuple[list[TurnView], list[tuple[int, str]], str]:
            session = AppSession(embedder=HashEmbedder())  # type: ignore[arg-type]
            seen: list[TurnView] = []
            session.hooks.turn_did_change.append(seen.append)
            await session.rebuild_provider()
            events: list[tuple[int, str]] = []  # (restarts seen so far, delta)

            view = session.turns.begin([Message("user", PROMPT)], 1, blind_mode=False,
                                       arena=False)
            last = await session.turns.run(
                view.key, TurnControl(range(1)), conversation_id=None, text=PROMPT,
                on_delta=lambda _i, text: events.append((seen[-1].replies[0].restarts, text)))
            reply = session.turns.reply(view.key, 0)
            assert last.outcome == COMPLETE and reply is not None
            await session.aclose()
            return [v for v in seen if v.key == view.key], events, reply.text

        views, events, text = asyncio.run(asyncio.wait_for(scenario(), 60))
    restarted = [v for v in views if v.replies[0].restarts == 1]
    assert restarted and restarted[0].streaming and restarted[0].replies[0].state == "streaming"
    assert views[0].replies[0].restarts == 0
    assert {n for n, _ in events} == {0, 1}  # text streamed before and after the restart
    assert "".join(t for n, t in events if n == 1) == text  # the card starts over
