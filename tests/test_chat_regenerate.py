"""ChatService: regenerate some replies of a saved turn, stop one reply of a running turn,
and a failed turn saved with all N replies — over the real Azure-protocol server."""

from __future__ import annotations

import asyncio

import pytest

from rlhf_desktop.core.pick_rules import failed_indices
from rlhf_desktop.domain import Message, SamplingParams
from rlhf_desktop.services.chat.service import (
    ChatService,
    Listener,
    TurnControl,
    TurnFailed,
)
from rlhf_desktop.services.ranking.rewards import RewardService
from rlhf_desktop.storage.repo import Repository, StorageError
from tests.azure_server import AzureServer
from tests.helpers import chat_service
from tests.providers.conftest import AZURE_KEY, azure_provider, fast_settings


@pytest.fixture
def server():
    with AzureServer(api_key=AZURE_KEY, deployment="gpt-test", reply_length=10) as srv:
        yield srv


def services(server: AzureServer, retries: int = 2) -> tuple[Repository, ChatService]:
    repo = Repository.open()
    provider = azure_provider(server, settings=fast_settings(max_retries=retries))
    return repo, chat_service(repo, RewardService(), provider)


@pytest.mark.timeout(60)
def test_regenerate_replaces_only_the_asked_replies_and_keeps_a_good_one_on_failure(
        server: AzureServer) -> None:
    async def scenario() -> None:
        repo, chat = services(server, retries=0)
        conv = repo.conversations.create("t")
        params = SamplingParams(n=3, max_tokens=50)
        turn = await chat.send_messages(conv.id, [Message("user", "hi")], params=params)
        before = [(c.id, c.text) for c in turn.candidates]

        result = await chat.regenerate(turn, [2], params=params)
        assert result.replaced == [2] and not result.kept
        after = [(c.id, c.text) for c in repo.conversations.get_turn(turn.id or 0).candidates]
        assert after[:2] == before[:2]
        assert after[2][0] == before[2][0] and after[2][1] != before[2][1]

        # A failed attempt never replaces a good reply; it is reported instead.
        server.inject("server_error", times=1)
        result = await chat.regenerate(turn, [0], params=params)
        assert result.replaced == [] and 0 in result.kept and result.kept[0]
        assert repo.conversations.get_turn(turn.id or 0).candidates[0].text == before[0][1]

        # After a pick, replies are not replaced (the pick's pairs hold their text).
        repo.labels.pick(turn.id or 0, before[1][0] or 0)
        with pytest.raises(StorageError):
            await chat.regenerate(turn, [2], params=params)
        await chat.provider.aclose()
        repo.close()

    asyncio.run(scenario())


@pytest.mark.timeout(60)
def test_stop_one_reply_keeps_its_text_and_lets_the_others_finish(server: AzureServer) -> None:
    server.reply_length = 40
    server.chunk_delay_s = 0.02

    async def scenario() -> None:
        repo, chat = services(server)
        conv = repo.conversations.create("t")
        control = TurnControl(range(3))
        seen: dict[int, str] = {}

        def on_delta(index: int, text: str) -> None:
            seen[index] = seen.get(index, "") + text
            if index == 1 and len(seen[1].split()) >= 5:
                control.stop_one(1)

        turn = await chat.send_messages(conv.id, [Message("user", "story")], control,
                                        Listener(on_delta=on_delta),
                                        SamplingParams(n=3, max_tokens=100))
        stopped = turn.candidates[1]
        assert stopped.finish_reason == "cancelled" and stopped.text == seen[1]
        assert len(stopped.text.split()) < 10
        assert [c.finish_reason for c in turn.candidates[::2]] == ["stop", "stop"]
        assert failed_indices(turn) == []
        await chat.provider.aclose()
        repo.close()

    asyncio.run(scenario())


@pytest.mark.timeout(60)
def test_a_failed_turn_is_saved_with_every_reply_marked_failed(server: AzureServer) -> None:
    async def scenario() -> None:
        repo, chat = services(server, retries=0)
        conv = repo.conversations.create("t")
        server.inject("server_error", times=1)
        with pytest.raises(TurnFailed) as info:
            await chat.send_messages(conv.id, [Message("user", "hi")], params=SamplingParams(n=4))
        turn = info.value.turn
        assert [c.index for c in turn.candidates] == [0, 1, 2, 3]
        assert failed_indices(turn) == [0, 1, 2, 3]
        assert all(c.error for c in repo.conversations.get_turn(turn.id or 0).candidates)
        await chat.provider.aclose()
        repo.close()

    asyncio.run(scenario())
