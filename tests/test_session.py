"""AppSession and its narrow services, fast: a scripted FakeProvider and hash embeddings.

Real SQLite file, real reward-model training (on 64-dimensional hash vectors: milliseconds),
real hooks; no HTTP, no torch, no llama.cpp. Part of ``make check``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from rlhf_desktop.config import Settings
from rlhf_desktop.domain import Message
from rlhf_desktop.providers.errors import ServerError
from rlhf_desktop.services.chat.service import TurnFailed
from rlhf_desktop.services.session import AppSession
from tests.fakes import FakeProvider, HashEmbedder, Reply


def session_with(provider: FakeProvider, **settings: Any) -> tuple[AppSession, dict[str, list]]:
    session = AppSession(Settings(**settings), provider, embedder=HashEmbedder())  # type: ignore[arg-type]
    fired: dict[str, list] = {}
    for name in ("labels_did_change", "conversations_did_change", "model_did_train",
                 "retrain_did_update", "training_did_fail"):
        hook = getattr(session.hooks, name)
        hook.append(_recorder(fired.setdefault(name, [])))
    return session, fired


def _recorder(into: list) -> Callable[..., None]:
    return lambda *args: into.append(args)


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 60))


def test_send_creates_the_conversation_and_builds_the_history_from_the_database() -> None:
    provider = FakeProvider(turns=[[Reply("Paris is the capital."), Reply("Lyon."),
                                    Reply("I think Paris.")]])

    async def scenario() -> None:
        session, fired = session_with(provider, candidates_per_turn=3)
        chat = session.chat
        assert chat is not None
        deltas: list[tuple[int, str]] = []
        done: list[int] = []
        created: list[int] = []
        turn = await chat.send(None, "Capital of France?", lambda i, t: deltas.append((i, t)),
                               lambda c: done.append(c.index), on_conversation=created.append)
        assert created == [turn.conversation_id] and fired["conversations_did_change"]
        assert sorted(done) == [0, 1, 2] and len(deltas) > 3  # streamed word by word
        assert turn.candidates[0].text == "Paris is the capital."
        assert session.conversations.get(turn.conversation_id).title == "Capital of France?"
        # The pick continues the conversation: the next request carries it.
        session.pick(turn, turn.candidates[2].id)
        await chat.send(turn.conversation_id, "And of Italy?")
        sent = provider.calls[-1][0]
        assert [m.role for m in sent] == ["user", "assistant", "user"]
        assert sent[1] == Message("assistant", "I think Paris.")
        assert len(session.conversations.turns(turn.conversation_id)) == 2
        await session.aclose()
        assert provider.closed

    run(scenario())


def test_picks_fire_hooks_retrain_after_n_labels_and_undo_removes_pairs() -> None:
    replies = [[Reply(f"A detailed, helpful answer number {k}."), Reply("No.")]
               for k in range(4)]

    async def scenario() -> None:
        session, fired = session_with(FakeProvider(turns=replies), candidates_per_turn=2,
                                      retrain_every=2)
        chat = session.chat
        assert chat is not None
        conv = None
        for k in range(3):
            turn = await chat.send(conv, f"question {k}")
            conv = turn.conversation_id
            pick = session.pick(turn, turn.candidates[0].id)
            assert pick.pairs == 1
        await session.wait_training()
        assert len(fired["labels_did_change"]) >= 3
        trained = [v.version for (v,) in fired["model_did_train"]]
        assert trained[0] == 1 and trained == sorted(trained)  # 2 labels, then a queued run
        assert session.reward_version == trained[-1]
        overview = session.models.overview()
        assert overview.labels == 3 and overview.pairs == 3 and overview.latest is not None
        # A turn sent after training is ranked by the newest model.
        turn = await chat.send(conv, "question 3")
        assert all(c.model_version == trained[-1] for c in turn.candidates)
        assert session.can_undo_pick
        undone = session.undo_pick()
        assert undone is not None and session.models.overview().pairs == 2
        await session.aclose()

    run(scenario())


def test_a_provider_fault_saves_the_turn_and_the_failed_reply_is_never_a_pair() -> None:
    failing = FakeProvider(turns=[[Reply("partial one two"), Reply("partial three")]],
                           fail_with={0: ServerError("The server failed (HTTP 500).")})

    async def scenario() -> None:
        session, _ = session_with(failing, candidates_per_turn=2)
        chat = session.chat
        assert chat is not None
        with pytest.raises(TurnFailed) as info:
            await chat.send(None, "tell me")
        turn = info.value.turn
        assert turn.id is not None and all(c.error for c in turn.candidates)
        stored = session.conversations.turns(turn.conversation_id)
        assert [c.text for c in stored[0].candidates] == ["partial one two", "partial three"]
        with pytest.raises(Exception, match="other whole reply"):
            session.pick(turn, turn.candidates[0].id)
        assert session.models.overview().pairs == 0
        await session.aclose()

    run(scenario())


def test_dataset_delete_and_restore_and_conversation_changes_fire_hooks() -> None:
    async def scenario() -> None:
        session, fired = session_with(FakeProvider(), candidates_per_turn=3)
        chat = session.chat
        assert chat is not None
        turn = await chat.send(None, "hello")
        session.pick(turn, turn.candidates[1].id)
        assert session.datasets.count() == 2
        rows = session.datasets.page(None, 10)
        before = len(fired["labels_did_change"])
        removed, token = session.datasets.delete([rows[0][0]])
        assert removed == 1 and session.datasets.count() == 1
        assert session.datasets.restore(token) == 1 and session.datasets.count() == 2
        assert len(fired["labels_did_change"]) == before + 2
        conv = turn.conversation_id
        session.conversations.rename(conv, "Greetings")
        assert session.conversations.recent()[0].title == "Greetings"
        session.conversations.delete(conv)
        assert session.conversations.get(conv) is None
        assert session.datasets.count() == 2  # labels outlive their chat
        assert len(fired["conversations_did_change"]) == 3
        await session.aclose()

    run(scenario())


def test_a_version_that_was_not_adopted_is_reported_as_such_not_as_the_new_model() -> None:
    from rlhf_desktop.domain import ModelVersion

    async def scenario() -> None:
        session, fired = session_with(FakeProvider())
        rejected: list = []
        session.hooks.model_did_reject.append(rejected.append)
        kept_back = ModelVersion(2, 1.0, "/x", {"adoption": {"adopted": False,
                                                             "reason": "worse"}}, 10, 5)
        session._on_trained(kept_back)  # what the retrainer reports after such a run
        assert rejected == [kept_back] and not fired["model_did_train"]
        adopted = ModelVersion(3, 2.0, "/y", {"adoption": {"adopted": True}}, 12, 6)
        session._on_trained(adopted)
        assert fired["model_did_train"] == [(adopted,)] and rejected == [kept_back]
        await session.aclose()

    run(scenario())


def test_the_window_follows_a_version_trained_by_another_process() -> None:
    """The CLI trains beside the open window: the session loads that version and says so."""
    from rlhf_desktop.domain import PreferencePair
    from rlhf_desktop.services.ranking.rewards import RewardService
    from rlhf_desktop.storage.repo import Repository

    async def scenario() -> None:
        session, fired = session_with(FakeProvider(turns=[[Reply("A long and careful answer."),
                                                            Reply("No.")]]),
                                      candidates_per_turn=2)
        await session.start()
        assert session.reward_version is None
        other = Repository.open()  # another process's connection and reward service
        other.pairs.add([PreferencePair(prompt=(Message("user", f"question {k}"),),
                                        chosen=f"A long and careful answer {k}.",
                                        rejected="No.") for k in range(6)])
        await asyncio.get_running_loop().run_in_executor(
            None, RewardService(embedder=HashEmbedder()).train_now)  # type: ignore[arg-type]
        other.close()
        await asyncio.wait_for(_until(lambda: session.reward_version == 1), 20)
        assert [v.version for (v,) in fired["model_did_train"]] == [1]
        assert fired["labels_did_change"]  # the imported labels are counted too
        turn = await session.chat.send(None, "new question")  # type: ignore[union-attr]
        assert all(c.model_version == 1 for c in turn.candidates)
        await session.aclose()

    run(scenario())


async def _until(predicate: Callable[[], bool]) -> None:
    while not predicate():
        await asyncio.sleep(0.05)


def test_agreement_comes_from_blind_turns_and_the_first_card_habit_is_reported() -> None:
    async def scenario() -> None:
        session, _ = session_with(FakeProvider(), candidates_per_turn=4, retrain_every=1)
        chat = session.chat
        assert chat is not None
        for k in range(4):  # the user always takes the card shown first
            await session.wait_training()  # turns 1-3 are ranked by a model
            turn = await chat.send(None, f"question {k}")
            turn.blind = k >= 2
            for position, cand in enumerate(reversed(turn.candidates)):
                cand.position = position
            session.labels.record_display(turn)
            session.pick(turn, turn.candidates[-1].id)  # shown first
        overview = session.models.overview()
        assert overview.agreement.blind_only and overview.agreement.picks == 2
        assert overview.position_bias.first_share == 1.0
        assert overview.position_bias.chance == 0.25
        assert "first card 100% of the time (chance 25%" in overview.position_bias.words
        await session.aclose()

    run(scenario())


def test_labeling_habits_say_how_often_the_longest_and_the_first_card_were_picked() -> None:
    replies = [[Reply("Yes."), Reply("A long and careful answer with several words in it."),
                Reply("No.")] for _ in range(3)]

    async def scenario() -> None:
        session, _ = session_with(FakeProvider(turns=replies), candidates_per_turn=3)
        chat = session.chat
        assert chat is not None
        for k in range(3):  # always the longest reply, which is shown first twice
            turn = await chat.send(None, f"question {k}")
            order = [1, 0, 2] if k < 2 else [0, 2, 1]
            for position, index in enumerate(order):
                turn.candidates[index].position = position
            session.labels.record_display(turn)
            session.pick(turn, turn.candidates[1].id)
        habits = session.models.overview().habits
        assert habits.length.longest_share == 1.0 and habits.length.picks == 3
        assert abs(habits.length.chance - 1 / 3) < 1e-9
        assert abs(habits.position.first_share - 2 / 3) < 1e-9
        lines = habits.lines
        assert lines[0].startswith("You picked the first card 67%")
        assert lines[1].startswith("You picked the longest reply 100% of the time (chance 33%")
        assert any(line.startswith("You take") for line in lines)  # time to pick, recorded
        await session.aclose()

    run(scenario())


def test_switching_training_on_cut_pairs_retrains_at_once() -> None:
    """The status bar says "N against cut replies left out: Settings"; ticking the switch
    retrains then, not after the next N labels."""
    from dataclasses import replace

    replies = [[Reply("A whole answer."), Reply("Another answer.")]]

    async def scenario() -> None:
        session, fired = session_with(FakeProvider(turns=replies), candidates_per_turn=2,
                                      retrain_every=1)
        chat = session.chat
        assert chat is not None
        turn = await chat.send(None, "question")
        session.pick(turn, turn.candidates[0].id)
        await session.wait_training()
        before = len(fired["model_did_train"])
        session.apply_settings(replace(session.settings, train_on_cut_pairs=True))
        await session.wait_training()
        assert len(fired["model_did_train"]) == before + 1
        session.apply_settings(replace(session.settings, retrain_every=3))  # no switch: no run
        await session.wait_training()
        assert len(fired["model_did_train"]) == before + 1
        await session.aclose()

    run(scenario())
