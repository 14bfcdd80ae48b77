"""Chat, labeling, retraining and model versions, end to end over a real local server."""

from __future__ import annotations

import asyncio

import pytest

from rlhf_desktop.core.pick_rules import ranked
from rlhf_desktop.domain import Candidate, Message, PreferencePair, SamplingParams, Turn
from rlhf_desktop.reward.model import MODEL_FILENAME
from rlhf_desktop.services.chat.service import TurnFailed, history
from rlhf_desktop.services.labels.labeling import LabelingService
from rlhf_desktop.services.ranking.retraining import Retrainer
from rlhf_desktop.services.ranking.rewards import RewardService
from rlhf_desktop.storage.repo import Repository
from tests.azure_server import AzureServer
from tests.helpers import chat_service, hh_rows
from tests.providers.conftest import AZURE_KEY, azure_provider

SEED_PAIRS = [
    ("How do I boil an egg?", "Put the egg in boiling water for about nine minutes.", "No."),
    ("What is the capital of France?", "The capital of France is Paris.", "Dunno."),
    ("How far is the moon?", "About 384,000 km from Earth on average.", "Far."),
    ("Give me a synonym for happy", "Joyful, cheerful or content all work.", "Sad."),
]


def seed_pairs(repo: Repository) -> None:
    repo.pairs.add([PreferencePair(prompt=(Message("user", p),), chosen=c, rejected=r)
                    for p, c, r in SEED_PAIRS])


@pytest.fixture
def server():
    with AzureServer(api_key=AZURE_KEY, deployment="gpt-test", model="gpt-test-model",
                     ) as srv:
        yield srv


@pytest.fixture(scope="module")
def shared_embedder():
    from rlhf_desktop.reward.embedder import Embedder

    emb = Embedder()
    emb.load()
    return emb


def make_services(server, embedder):
    repo = Repository.open()
    rewards = RewardService(embedder=embedder)
    rewards.load_current(repo)
    chat = chat_service(repo, rewards, azure_provider(server))
    return repo, rewards, chat


def test_turn_streams_saves_and_ranks(server, shared_embedder):
    async def scenario():
        repo, rewards, chat = make_services(server, shared_embedder)
        seed_pairs(repo)
        await asyncio.get_running_loop().run_in_executor(None, rewards.train_now)
        conv = repo.conversations.create("t")
        deltas, dones = [], []
        turn = await chat.send(conv.id, "hello", lambda i, t: deltas.append(i), dones.append)
        assert len(dones) == 4 and all(isinstance(c, Candidate) for c in dones)
        assert len(deltas) > 4  # really streamed
        stored = repo.conversations.list_turns(conv.id)[0]
        assert [c.text for c in stored.candidates] == [c.text for c in turn.candidates]
        assert all(c.model_version == 1 and c.score is not None for c in stored.candidates)
        assert stored.provider == "azure" and stored.params.n == 4
        await chat.provider.aclose()

    asyncio.run(scenario())


def test_untrained_ranking_keeps_provider_order(server):
    async def scenario():
        repo = Repository.open()
        rewards = RewardService()
        chat = chat_service(repo, rewards, azure_provider(server))
        conv = repo.conversations.create("t")
        turn = await chat.send_messages(conv.id, [Message("user", "hi")],
                                        params=SamplingParams(n=3))
        assert [c.index for c in ranked(turn.candidates)] == [0, 1, 2]
        assert all(c.score is None for c in turn.candidates)
        assert not rewards.embedder.loaded  # nothing to rank with, nothing loaded
        await chat.provider.aclose()

    asyncio.run(scenario())


def test_fault_keeps_prompt_and_partial_replies(server):
    async def scenario():
        repo = Repository.open()
        chat = chat_service(repo, RewardService(), azure_provider(server))
        conv = repo.conversations.create("t")
        server.inject("drop_mid", times=10, after=2)
        with pytest.raises(TurnFailed) as info:
            await chat.send_messages(conv.id, [Message("user", "tell me")],
                                     params=SamplingParams(n=2))
        turn = repo.conversations.list_turns(conv.id)[0]
        assert turn.messages == [Message("user", "tell me")]
        assert info.value.turn.id == turn.id
        assert any(c.text for c in turn.candidates)
        assert all(c.error for c in turn.candidates)
        await chat.provider.aclose()

    asyncio.run(scenario())


def test_pick_undo_and_context(server):
    async def scenario():
        repo = Repository.open()
        chat = chat_service(repo, RewardService(), azure_provider(server))
        labels = LabelingService(repo)
        conv = repo.conversations.create("t")
        turn = await chat.send_messages(conv.id, [Message("user", "hi")],
                                        params=SamplingParams(n=4))
        # Unlabeled: the top-ranked (here: first) reply continues the conversation.
        assert history([turn])[-1].content == turn.candidates[0].text
        pick = labels.pick(turn, turn.candidates[2].id, reason=None)
        assert pick.pairs == 3 and repo.pairs.count() == 3
        labels.set_reason(pick, "more direct")
        turns = repo.conversations.list_turns(conv.id)
        assert history(turns)[-1].content == turn.candidates[2].text
        assert labels.undo() is not None
        assert repo.pairs.count() == 0 and repo.labels.count() == 0
        await chat.provider.aclose()

    asyncio.run(scenario())


def test_retrainer_runs_after_n_labels_and_queues_once(shared_embedder):
    async def scenario():
        repo = Repository.open()
        rewards = RewardService(embedder=shared_embedder)
        trained = []
        statuses = []
        retrainer = Retrainer(repo, rewards, every=2, on_trained=trained.append,
                              on_status=statuses.append)
        seed_pairs(repo)  # 4 labels ≥ 2: the next label triggers a run
        retrainer.label_recorded()
        assert retrainer.running
        retrainer.request()
        retrainer.request()  # queued once, not stacked
        await retrainer.wait()
        assert [m.version for m in trained] == [1, 2]
        assert rewards.version == 2
        assert any(s.progress is not None and s.running for s in statuses)
        assert retrainer.labels_since() == 0
        retrainer.label_recorded()
        assert not retrainer.running  # 0 new labels: nothing to do
        retrainer.shutdown()

    asyncio.run(scenario())


def test_a_label_left_out_of_training_does_not_start_a_run_on_every_pick(shared_embedder):
    """A pick whose only pair is against a reply cut at max tokens is stored but not trained
    on: the next run still waits for N new labels (it used to start after every pick)."""
    async def scenario():
        repo = Repository.open()
        rewards = RewardService(embedder=shared_embedder)
        retrainer = Retrainer(repo, rewards, every=2)
        seed_pairs(repo)  # 4 labels
        conv = repo.conversations.create("cut")
        turn = repo.conversations.save_turn(Turn(
            conversation_id=conv.id, messages=[Message("user", "Explain gravity")],
            provider="azure", model="gpt-test", params=SamplingParams(n=2), candidates=[
                Candidate(0, "Gravity pulls masses together.", finish_reason="stop"),
                Candidate(1, "Gravity is the force by which a planet draws objects toward",
                          finish_reason="length")]))
        LabelingService(repo).pick(turn, turn.candidates[0].id or 0)
        assert repo.labels.count() == 5 and len(repo.pairs.cut_ids()) == 1
        retrainer.request()
        await retrainer.wait()
        assert repo.versions.latest().labels == 4  # the cut pair's label is not trained on
        assert retrainer.labels_since() == 0
        seed = PreferencePair(prompt=(Message("user", "Name a fruit"),), chosen="An apple.",
                              rejected="Rock.")
        repo.pairs.add([seed])
        retrainer.label_recorded()
        assert not retrainer.running  # 1 of 2 new labels
        assert retrainer.status().labels_since == 1
        retrainer.shutdown()

    asyncio.run(scenario())


def test_labels_recorded_during_training_are_in_the_next_model(shared_embedder, hh_data):
    async def scenario():
        from rlhf_desktop.core.formats import parse_record

        repo = Repository.open()
        repo.pairs.add([parse_record(r) for r in hh_rows(hh_data, 0, 60)])
        rewards = RewardService(embedder=shared_embedder)
        retrainer = Retrainer(repo, rewards, every=1)
        retrainer.request()
        # Wait until the worker has read the pairs and is embedding, then label more.
        while not (retrainer.status().progress or 0) > 0:
            await asyncio.sleep(0.005)
        repo.pairs.add([parse_record(r) for r in hh_rows(hh_data, 60, 5)])
        await retrainer.wait()
        first = repo.versions.latest()
        assert first.pairs == 60
        assert retrainer.labels_since() == 5
        retrainer.request()
        await retrainer.wait()
        assert repo.versions.latest().pairs == 65
        retrainer.shutdown()

    asyncio.run(scenario())


def test_altered_latest_model_falls_back_to_previous(shared_embedder):
    repo = Repository.open()
    seed_pairs(repo)
    rewards = RewardService(embedder=shared_embedder)
    v1 = rewards.train_now()
    v2 = rewards.train_now()
    path = f"{v2.path}/{MODEL_FILENAME}"
    data = bytearray(open(path, "rb").read())
    data[-5] ^= 0xFF
    open(path, "wb").write(bytes(data))
    fresh = RewardService(embedder=shared_embedder)
    model = fresh.load_current(repo)
    assert model.version == v1.version
    assert fresh.load_warnings and "v2" in fresh.load_warnings[0]
