"""The turn lifecycle (``session.turns``) without a window: a blind turn is sent to a real
Azure-protocol server over a loopback socket, streams, is saved in a real SQLite file, and
is picked, undone and tied; every step publishes an immutable ``TurnView`` through
``turn_did_change``, and the labels in the database follow the intents.
"""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from rlhf_desktop import config
from rlhf_desktop.config import Settings
from rlhf_desktop.domain import Message
from rlhf_desktop.services.chat.service import Listener
from rlhf_desktop.services.session import AppSession
from rlhf_desktop.services.turns import Refused, TurnView
from rlhf_desktop.storage.repo import Repository
from tests.azure_server import AzureServer
from tests.fakes import HashEmbedder

pytestmark = pytest.mark.slow  # a real server and session per test

PROMPT = "Which way do the tides turn?"


def _reverse(order: list[int]) -> None:
    order.reverse()  # the "random" order of a blind turn, known to the test


@pytest.mark.timeout(90)
def test_a_blind_turn_goes_from_send_through_pick_undo_and_tie_as_snapshots(
        monkeypatch: pytest.MonkeyPatch) -> None:
    with AzureServer(reply_length=4, chunk_delay_s=0.01) as server:
        for name, value in server.environment().items():
            monkeypatch.setenv(name, value)
        config.save_settings(Settings(candidates_per_turn=3, max_retries=0, blind=True))

        async def scenario() -> tuple[list[TurnView], int]:
            session = AppSession(embedder=HashEmbedder())  # type: ignore[arg-type]
            session.turns._shuffle = _reverse
            seen: list[TurnView] = []
            session.hooks.turn_did_change.append(seen.append)
            await session.rebuild_provider()
            assert session.chat is not None
            conversation = session.conversations.create("tides").id
            messages = [Message("user", PROMPT)]

            # send: three replies stream, in the blind turn's shuffled order
            view = session.turns.begin(messages, 3, blind_mode=True, arena=False)
            key = view.key
            assert (view.streaming, view.hidden, view.order) == (True, True, (2, 1, 0))
            assert [r.state for r in view.replies] == ["streaming"] * 3
            assert not any(r.pickable for r in view.replies)
            turn = await session.chat.send_messages(
                conversation, messages, listener=Listener(
                    on_done=lambda c: session.turns.reply_done(key, c),
                    on_restart=lambda i: session.turns.reply_restarted(key, i)))
            streamed = [v for v in seen if v.key == key and v.streaming]
            assert len(streamed) == 4  # sent, then one snapshot per finished reply
            assert [r.state for r in streamed[-1].replies] == ["whole"] * 3

            # saved: still hidden, in the order it streamed, no scores, every reply pickable
            view = session.turns.settle(key, turn)
            assert view.turn_id == turn.id and not view.streaming
            assert view.hidden and view.blind and view.order == (2, 1, 0)
            assert [r.position for r in view.replies] == [0, 1, 2]
            assert all(r.pickable and r.whole and r.score is None for r in view.replies)
            assert view.undo is None and not view.undoable

            # pick the card shown first (reply 2): revealed, undoable, two pairs
            first = view.at(0)
            assert first is not None and first.candidate_id is not None
            pick = session.turns.pick(key, first.candidate_id)
            assert pick is not None and pick.pairs == 2
            view = seen[-1]
            assert (view.label_kind, view.chosen_candidate_id) == ("pick",
                                                                   first.candidate_id)
            assert not view.hidden and view.undoable
            assert view.undo is not None and (view.undo.kind, view.undo.pairs) == ("pick", 2)
            assert view.order == (2, 1, 0)  # a revealed blind turn keeps the order it was seen

            # undo: no label, hidden again, nothing left to undo
            assert session.turns.undo() is not None
            view = seen[-1]
            assert view.label_kind is None and view.chosen_candidate_id is None
            assert view.hidden and not view.undoable and view.undo is None
            assert session.turns.undo() is None

            # tie of the first two cards: no pairs; the tie is what undo would remove
            ids = [r.candidate_id for r in view.replies[:2] if r.candidate_id is not None]
            tie = session.turns.tie(key, ids)
            view = seen[-1]
            assert tie.pairs == 0 and view.label_kind == "tie"
            assert view.ranked_candidate_ids == tuple(ids) and view.undoable
            assert view.undo is not None and view.undo.kind == "tie"
            with pytest.raises(Refused):
                session.turns.skip(key)  # a labeled turn cannot be skipped
            assert turn.id is not None
            await session.aclose()
            return seen, turn.id

        seen, turn_id = asyncio.run(asyncio.wait_for(scenario(), 60))

    for view in seen:  # snapshots are immutable and hold no lists
        assert dataclasses.is_dataclass(view) and view.__dataclass_params__.frozen  # type: ignore[attr-defined]
        assert isinstance(view.replies, tuple) and isinstance(view.order, tuple)
        with pytest.raises(dataclasses.FrozenInstanceError):
            view.hidden = False  # type: ignore[misc]
    repo = Repository.open()
    try:
        kinds = repo.labels.kinds()
        label = repo.labels.of_turn(turn_id)
        stored = repo.conversations.get_turn(turn_id)
    finally:
        repo.close()
    assert kinds == {"tie": 1}  # the undone pick is gone
    assert label is not None and label[0] == "tie"
    assert stored.blind and sorted(c.position for c in stored.candidates) == [0, 1, 2]


@pytest.mark.timeout(90)
def test_undo_follows_the_last_label_across_turns_and_takes_a_rewrite_with_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    with AzureServer(reply_length=3, chunk_delay_s=0.0) as server:
        for name, value in server.environment().items():
            monkeypatch.setenv(name, value)
        config.save_settings(Settings(candidates_per_turn=2, max_retries=0))

        async def scenario() -> None:
            session = AppSession(embedder=HashEmbedder())  # type: ignore[arg-type]
            seen: list[TurnView] = []
            session.hooks.turn_did_change.append(seen.append)
            await session.rebuild_provider()
            assert session.chat is not None
            keys = []
            for text in ("first question", "second question"):
                turn = await session.chat.send(None, text)
                keys.append(session.turns.show(turn).key)
            one, two = (session.turns.view(k) for k in keys)
            assert not one.hidden and not one.blind  # blind mode is off
            for key, view in zip(keys, (one, two), strict=True):
                reply = view.at(0)
                assert reply is not None and reply.candidate_id is not None
                session.turns.pick(key, reply.candidate_id)
            first_after, second_after = (next(v for v in reversed(seen) if v.key == k)
                                         for k in keys)
            assert not first_after.undoable and first_after.label_kind == "pick"
            assert second_after.undoable
            session.turns.undo()
            assert next(v for v in reversed(seen) if v.key == keys[0]).undoable
            with pytest.raises(Refused, match="Undo the pick first"):
                session.turns.begin_regenerate(keys[0], [0])  # its pairs hold the replies

            # a rewrite is a reply of the turn until its label is undone
            reply = two.at(1)
            assert reply is not None and reply.candidate_id is not None
            _pick, rewrite = session.turns.edit(keys[1], reply.candidate_id, "My own reply.")
            view = session.turns.view(keys[1])
            assert view.label_kind == "edit" and view.chosen_candidate_id == rewrite.id
            mine = view.reply(rewrite.index)
            assert mine is not None and mine.rewrite and not mine.pickable
            assert view.order[-1] == rewrite.index  # the rewrite shows last
            session.turns.undo()
            view = session.turns.view(keys[1])
            assert view.label_kind is None and view.reply(rewrite.index) is None
            assert len(view.replies) == 2

            # a label on a turn the page no longer shows (another chat, another branch) is
            # not undone from here: undo would change what the user cannot see
            assert session.turns.view(keys[1]).at(0) is not None
            reply = session.turns.view(keys[1]).at(0)
            assert reply is not None and reply.candidate_id is not None
            session.turns.pick(keys[1], reply.candidate_id)
            session.turns.drop(keys[1])
            assert session.turns.undo_hidden and session.turns.can_undo
            assert session.turns.undo() is None
            assert session.turns.can_undo  # still there, undoable once its turn is shown
            await session.aclose()

        asyncio.run(asyncio.wait_for(scenario(), 60))
