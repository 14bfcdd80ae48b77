"""The arena: one turn whose replies come from several candidate sources.

Two Azure-protocol servers on real sockets (one as Azure OpenAI, one as an OpenAI-compatible
server), a real SQLite file, the real AppSession (hash embeddings: no torch). Part of
``make check``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from rlhf_desktop import config
from rlhf_desktop.config import Settings
from rlhf_desktop.domain import Candidate, CandidateSource, Message, SamplingParams, Turn
from rlhf_desktop.providers.arena import ArenaProvider, build_arena
from rlhf_desktop.providers.base import CANCELLED, ERROR, Delta, Done
from rlhf_desktop.services.chat.service import RegenerateRefused, TurnControl, TurnFailed
from rlhf_desktop.services.session import AppSession
from rlhf_desktop.storage.repo import Repository
from tests.azure_server import AzureServer
from tests.fakes import HashEmbedder
from tests.providers.conftest import API_VERSION, AZURE_KEY, free_port

MODEL = "gpt-test-model"


@pytest.fixture
def servers(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[AzureServer, AzureServer]]:
    """Server A is the Azure resource (environment), server B an OpenAI-compatible one."""
    with AzureServer(api_key=AZURE_KEY, model=MODEL) as a, \
            AzureServer(api_key=AZURE_KEY, model=MODEL) as b:
        for key, value in a.environment(API_VERSION).items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("OPENAI_API_KEY", AZURE_KEY)
        yield a, b


def azure(**kw: Any) -> CandidateSource:
    return CandidateSource(**{"name": "Azure A", "provider": "azure", "temperature": 0.3,
                              **kw})


def compat(url: str, **kw: Any) -> CandidateSource:
    return CandidateSource(**{"name": "Compat B", "provider": "compatible", "model": MODEL,
                              "base_url": url, **kw})


def arena_settings(*sources: CandidateSource, **kw: Any) -> Settings:
    values: dict[str, Any] = {"request_timeout_s": 5.0, "connect_timeout_s": 2.0,
                              "max_retries": 0, "max_tokens": 50, "temperature": 0.8,
                              "arena": True,
                              "candidate_sources": [s.to_dict() for s in sources]}
    values.update(kw)
    return Settings(**values)


async def started(settings: Settings) -> AppSession:
    session = AppSession(settings, embedder=HashEmbedder())  # type: ignore[arg-type]
    await session.rebuild_provider()
    return session


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 90))


def source(cand: Candidate) -> str:
    assert cand.origin is not None
    return str(cand.origin["name"])


def chat_requests(server: AzureServer) -> list[dict[str, Any]]:
    return [r.body or {} for r in server.requests if r.path.endswith("/chat/completions")]


@pytest.mark.timeout(120)
def test_an_arena_turn_takes_replies_from_both_servers_and_stores_their_origins_blind(
        servers: tuple[AzureServer, AzureServer]) -> None:
    a, b = servers

    async def scenario() -> Turn:
        session = await started(arena_settings(azure(), compat(b.base_url)))
        assert session.provider_error is None
        assert session.provider_reason == "Arena: Azure A (2) vs Compat B (2)"
        assert session.provider_kind == "arena" and session.sampling_params().n == 4
        chat = session.chat
        assert chat is not None
        turn = await chat.send(None, "Name a river.")
        await session.aclose()
        return turn

    turn = run(scenario())
    assert [c.index for c in turn.candidates] == [0, 1, 2, 3]
    repo = Repository.open()
    stored = repo.conversations.get_turn(turn.id or 0)
    repo.close()
    assert stored.provider == "arena" and stored.model == "Azure A vs Compat B"
    assert stored.blind
    origins = [c.origin for c in stored.candidates]
    # The deployment the source left empty is recorded as the one actually used.
    assert origins[:2] == [{"name": "Azure A", "provider": "azure", "model": "gpt-test",
                            "temperature": 0.3, "chat_model_version": 0}] * 2
    assert origins[2:] == [{"name": "Compat B", "provider": "compatible", "model": MODEL,
                            "temperature": 0.8, "chat_model_version": 0}] * 2
    assert all(c.finish_reason == "stop" and c.text.startswith("Reply ")
               for c in stored.candidates)
    # Each server was asked for its own source's replies at its own temperature.
    (body_a,), (body_b,) = chat_requests(a), chat_requests(b)
    assert (body_a["n"], body_a["temperature"]) == (2, 0.3)
    assert (body_b["n"], body_b["temperature"], body_b["model"]) == (2, 0.8, MODEL)


@pytest.mark.timeout(120)
def test_a_source_that_is_down_fails_its_own_cards_naming_it_and_the_other_answers(
        servers: tuple[AzureServer, AzureServer]) -> None:
    assert servers[0].port  # source A: the Azure server in the environment
    down = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there

    async def scenario() -> tuple[Turn, list[tuple[int, str | None]]]:
        session = await started(arena_settings(azure(), compat(down)))
        chat = session.chat
        assert chat is not None
        order: list[tuple[int, str | None]] = []
        turn = await chat.send(None, "hello", on_done=lambda c: order.append(
            (c.index, c.finish_reason)))
        await session.aclose()
        return turn, order

    turn, order = run(scenario())
    good, bad = turn.candidates[:2], turn.candidates[2:]
    assert all(c.finish_reason == "stop" and c.text and not c.error for c in good)
    for cand in bad:
        assert cand.finish_reason == ERROR and cand.error is not None
        assert cand.error.startswith("source 'Compat B': ")
        assert cand.origin is not None and cand.origin["name"] == "Compat B"
    # The failed source's cards end after a good reply finished (the provider rules).
    assert order[0][1] == "stop" and {i for i, _ in order} == {0, 1, 2, 3}


@pytest.mark.timeout(120)
def test_a_source_that_cannot_be_built_fails_its_cards_and_when_every_source_fails_the_turn_fails(
        servers: tuple[AzureServer, AzureServer], monkeypatch: pytest.MonkeyPatch) -> None:
    _, b = servers
    monkeypatch.delenv("AZURE_OPENAI_API_KEY")
    down = f"http://127.0.0.1:{free_port()}/v1"

    async def scenario() -> None:
        session = await started(arena_settings(azure(name="Azure 4o-mini"),
                                               compat(b.base_url)))
        assert session.provider_reason.startswith("Arena: Azure 4o-mini (2) vs Compat B (2)")
        assert "source 'Azure 4o-mini' cannot run" in session.provider_reason
        chat = session.chat
        assert chat is not None
        turn = await chat.send(None, "hello")
        for cand in turn.candidates[:2]:
            assert cand.error is not None and cand.finish_reason == ERROR
            assert cand.error.startswith("source 'Azure 4o-mini': ")
            assert "AZURE_OPENAI_API_KEY" in cand.error
        assert all(c.finish_reason == "stop" for c in turn.candidates[2:])

        # Every source fails: the turn fails, saved with every reply and its origin.
        session.apply_settings(arena_settings(azure(name="Azure 4o-mini"), compat(down)))
        await session.rebuild_provider()
        chat = session.chat
        assert chat is not None
        with pytest.raises(TurnFailed) as info:
            await chat.send(turn.conversation_id, "again")
        message = str(info.value)
        assert "Every candidate source failed" in message
        assert "source 'Azure 4o-mini'" in message and "source 'Compat B'" in message
        failed = info.value.turn
        assert failed.id is not None and failed.blind and len(failed.candidates) == 4
        assert [source(c) for c in failed.candidates] == \
            ["Azure 4o-mini"] * 2 + ["Compat B"] * 2

        # No source can even be built: no provider, and the window says why.
        monkeypatch.delenv("OPENAI_API_KEY")
        session.apply_settings(arena_settings(azure(name="Azure 4o-mini"),
                                              CandidateSource("OpenAI", provider="openai")))
        await session.rebuild_provider()
        assert session.chat is None and session.provider_error is not None
        assert "No candidate source of the arena can run" in session.provider_error
        assert "OPENAI_API_KEY" in session.provider_error
        await session.aclose()

    run(scenario())


@pytest.mark.timeout(120)
def test_an_invalid_arena_becomes_the_provider_error(
        servers: tuple[AzureServer, AzureServer]) -> None:
    _, b = servers

    async def scenario() -> None:
        session = await started(arena_settings(compat(b.base_url)))
        assert session.chat is None
        assert session.provider_error == "the arena needs two or more candidate sources"
        await session.aclose()

    run(scenario())


@pytest.mark.timeout(120)
def test_cancel_stops_every_source_and_a_source_not_started_yet_ends_cancelled(
        servers: tuple[AzureServer, AzureServer]) -> None:
    a, b = servers
    for server in servers:
        server.reply_length, server.chunk_delay_s = 400, 0.02
    # Two sources on the same compatible server share a lane: one after the other.
    sources = (azure(), compat(b.base_url, name="B1", temperature=0.2),
               compat(b.base_url, name="B2", temperature=1.0, count=1))

    async def scenario() -> Turn:
        session = await started(arena_settings(*sources))
        chat = session.chat
        assert chat is not None
        control = TurnControl(range(5))
        seen: set[int] = set()

        def on_delta(index: int, text: str) -> None:
            seen.add(index)
            if {0, 2} <= seen:  # both lanes are streaming
                control.stop_all()

        turn = await chat.send(None, "a long story", on_delta=on_delta, cancel=control)
        await session.aclose()
        return turn

    turn = run(scenario())
    assert [c.finish_reason for c in turn.candidates] == [CANCELLED] * 5
    assert turn.candidates[0].text and turn.candidates[2].text
    assert turn.candidates[4].text == "" and source(turn.candidates[4]) == "B2"
    assert len(chat_requests(b)) == 1  # B2 was never asked
    assert len(chat_requests(a)) == 1


@pytest.mark.timeout(120)
def test_stopping_one_sources_replies_lets_the_other_source_finish(
        servers: tuple[AzureServer, AzureServer]) -> None:
    a, _ = servers
    a.reply_length, a.chunk_delay_s = 400, 0.02
    _, b = servers

    async def scenario() -> Turn:
        session = await started(arena_settings(azure(), compat(b.base_url)))
        chat = session.chat
        assert chat is not None
        control = TurnControl(range(4))

        def on_delta(index: int, text: str) -> None:
            if index in (0, 1):
                control.stop_one(index)

        turn = await chat.send(None, "hi", on_delta=on_delta, cancel=control)
        await session.aclose()
        return turn

    turn = run(scenario())
    assert [c.finish_reason for c in turn.candidates] == [CANCELLED, CANCELLED, "stop", "stop"]


@pytest.mark.timeout(120)
def test_regenerate_asks_the_same_source_again_or_refuses_saying_why(
        servers: tuple[AzureServer, AzureServer]) -> None:
    a, b = servers

    async def scenario() -> None:
        settings = arena_settings(azure(), compat(b.base_url))
        session = await started(settings)
        chat = session.chat
        assert chat is not None
        turn = await chat.send(None, "hello")
        before = [c.text for c in turn.candidates]
        a.requests.clear()
        b.requests.clear()

        result = await chat.regenerate(turn, [2])  # a reply of Compat B
        assert result.replaced == [2]
        assert chat_requests(a) == [] and len(chat_requests(b)) == 1
        assert chat_requests(b)[0].get("n", 1) == 1 and chat_requests(b)[0]["temperature"] == 0.8
        assert source(result.turn.candidates[2]) == "Compat B"

        result = await chat.regenerate(turn, [1, 3])  # one of each source
        assert sorted(result.replaced) == [1, 3]
        assert [r.get("n", 1) for r in chat_requests(a)] == [1]
        assert [r["temperature"] for r in chat_requests(a)] == [0.3]
        assert len(chat_requests(b)) == 2
        repo = Repository.open()
        stored = repo.conversations.get_turn(turn.id or 0)
        repo.close()
        assert [source(c) for c in stored.candidates] == \
            ["Azure A", "Azure A", "Compat B", "Compat B"]
        assert stored.candidates[0].text == before[0]

        # Compat B left the arena: its reply cannot be asked again; nothing changes.
        session.apply_settings(arena_settings(azure(), compat(b.base_url, name="Other")))
        await session.rebuild_provider()
        chat = session.chat
        assert chat is not None
        with pytest.raises(RegenerateRefused, match="source 'Compat B', which is no longer"):
            await chat.regenerate(turn, [3])
        # The arena is off: refused too.
        session.apply_settings(arena_settings(azure(), compat(b.base_url), arena=False,
                                              provider="azure"))
        await session.rebuild_provider()
        chat = session.chat
        assert chat is not None and session.provider_kind == "azure"
        with pytest.raises(RegenerateRefused, match="arena, which is off now"):
            await chat.regenerate(turn, [0])
        # An ordinary turn while the arena is on: refused (no source to ask).
        plain = await chat.send(turn.conversation_id, "plain")
        assert not plain.blind and plain.candidates[0].origin is None
        session.apply_settings(settings)
        await session.rebuild_provider()
        chat = session.chat
        assert chat is not None
        with pytest.raises(RegenerateRefused, match="not an arena turn"):
            await chat.regenerate(plain, [0])
        await session.aclose()

    run(scenario())


@pytest.mark.timeout(60)
def test_remote_sources_stream_concurrently_and_share_a_provider_when_only_temperature_differs(
        servers: tuple[AzureServer, AzureServer]) -> None:
    a, b = servers
    for server in servers:
        server.reply_length, server.chunk_delay_s = 30, 0.02
    settings = arena_settings(azure(), azure(name="Azure hot", temperature=1.2),
                              compat(b.base_url))
    arena = build_arena(settings)
    assert isinstance(arena, ArenaProvider) and arena.n == 6
    assert arena.slots[0].provider is arena.slots[1].provider
    assert arena.slots[0].provider is not arena.slots[2].provider

    async def scenario() -> list[Any]:
        events = [e async for e in arena.stream([Message("user", "hi")], SamplingParams(n=6))]
        await arena.aclose()
        return events

    events = run(scenario())
    dones = {e.index: e.candidate for e in events if isinstance(e, Done)}
    assert sorted(dones) == list(range(6))
    temperatures = [(dones[i].origin or {})["temperature"] for i in range(6)]
    assert temperatures == [0.3, 0.3, 1.2, 1.2, 0.8, 0.8]
    # Lanes run at once: server B streamed before the Azure lane's last reply was done.
    first_b = next(k for k, e in enumerate(events) if isinstance(e, Delta) and e.index >= 4)
    last_a = max(k for k, e in enumerate(events) if isinstance(e, Done) and e.index < 4)
    assert first_b < last_a
    assert sorted(r["temperature"] for r in chat_requests(a)) == [0.3, 1.2]


@pytest.mark.timeout(60)
def test_turning_the_arena_on_and_off_in_the_session_rebuilds_the_provider(
        servers: tuple[AzureServer, AzureServer]) -> None:
    _, b = servers

    async def until(session: AppSession, kind: str) -> None:
        while session.provider_kind != kind:
            await asyncio.sleep(0.01)

    async def scenario() -> None:
        settings = arena_settings(azure(count=1), compat(b.base_url), arena=False,
                                  provider="azure", candidates_per_turn=2)
        session = await started(settings)
        assert session.provider_kind == "azure" and session.sampling_params().n == 2
        session.arena.set_enabled(True)  # saved, applied, provider rebuilt
        await until(session, "arena")
        assert session.sampling_params().n == 3
        assert session.provider_reason == "Arena: Azure A (1) vs Compat B (2)"
        assert config.load_settings().arena
        chat = session.chat
        assert chat is not None
        turn = await chat.send(None, "hi")
        assert [source(c) for c in turn.candidates] == ["Azure A", "Compat B", "Compat B"]
        session.arena.set_enabled(False)
        await until(session, "azure")
        assert session.sampling_params().n == 2 and not config.load_settings().arena
        await session.aclose()

    run(scenario())
