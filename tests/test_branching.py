"""Edit and resend a message: the edit is a new branch, the old branch stays browsable and
its labels stay as they were; only the branch shown is history for the next turn.

On a real SQLite file, through the services the window uses, and over the real Azure-protocol
test server where a turn is sent.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path

import pytest

from rlhf_desktop import config
from rlhf_desktop.domain import Candidate, Message, SamplingParams, Turn
from rlhf_desktop.services.chat.branches import (
    ACTIVE,
    EditRefused,
    Parent,
    branch_points,
    newest_end,
    path_to,
)
from rlhf_desktop.services.chat.conversations import ConversationService
from rlhf_desktop.services.chat.service import history
from rlhf_desktop.services.hooks import SessionHooks
from rlhf_desktop.services.labels.labeling import LabelingService
from rlhf_desktop.services.ranking.rewards import RewardService
from rlhf_desktop.storage.db import connect, schema_version
from rlhf_desktop.storage.migrations import MIGRATIONS
from rlhf_desktop.storage.repo import Repository, StorageError
from tests.azure_server import AzureServer
from tests.helpers import chat_service
from tests.providers.conftest import AZURE_KEY, azure_provider


def _turn(repo: Repository, conversation_id: int, messages: list[Message],
          replies: list[str], parent: Parent = ACTIVE) -> Turn:
    turn = Turn(conversation_id=conversation_id, messages=messages, provider="test",
                model="m", params=SamplingParams(n=len(replies)),
                candidates=[Candidate(index=i, text=t, finish_reason="stop")
                            for i, t in enumerate(replies)])
    return repo.conversations.save_turn(turn, parent)


def _chat(repo: Repository) -> tuple[ConversationService, int, list[Turn]]:
    """A chat of three turns, each continuing the previous one's first reply."""
    conversations = ConversationService(repo, SessionHooks())
    conv = conversations.create("chat")
    turns: list[Turn] = []
    for text in ("hi", "what is 2+2?", "and 3+3?"):
        messages = conversations.next_messages(conv.id, text)
        turns.append(_turn(repo, conv.id, messages, [f"{text} / a", f"{text} / b"]))
    return conversations, conv.id, turns


def _ids(turns: list[Turn]) -> list[int | None]:
    return [t.id for t in turns]


def test_the_tree_rules() -> None:
    links = [(1, None), (2, 1), (3, 2), (4, 1), (5, 4), (6, None), (7, 2)]
    assert path_to(links, 5) == [1, 4, 5]
    assert path_to(links, None) == [] and path_to(links, 99) == []
    assert newest_end(links, 2) == 7  # the newest child at each step
    assert newest_end(links, 1) == 5
    points = branch_points(links, [1, 2, 7])
    assert (points[1].position, points[1].count, points[1].previous, points[1].next) \
        == (1, 2, None, 6)
    assert (points[2].position, points[2].count, points[2].next) == (1, 2, 4)
    assert (points[7].position, points[7].count, points[7].previous) == (2, 2, 3)


def test_an_edit_branches_and_the_old_branch_and_its_labels_stay() -> None:
    repo = Repository.open()
    conversations, conv, (t1, t2, t3) = _chat(repo)
    labels = LabelingService(repo)
    assert t2.id is not None and t3.id is not None
    labels.pick(t2, t2.candidates[1].id or 0)  # a label on the branch that is edited away
    pairs_before = [(p.prompt, p.chosen, p.rejected) for p in repo.pairs.stream()]
    assert pairs_before

    plan = conversations.plan_edit(conv, t2.id, "  what is 5+5?  ")
    # The history before the edited message (the shown branch's first turn and its reply),
    # then the edited text; the edit continues the turn before the edited one.
    assert plan.messages == [*history([t1]), Message("user", "what is 5+5?")]
    assert plan.parent == t1.id
    edit = _turn(repo, conv, plan.messages, ["10", "ten"], plan.parent)

    shown = conversations.turns(conv)
    assert _ids(shown) == [t1.id, edit.id]
    points = conversations.branch_points(conv, _ids(shown))  # type: ignore[arg-type]
    assert (points[edit.id].position, points[edit.id].count) == (2, 2)  # type: ignore[index]
    assert points[edit.id].previous == t2.id  # type: ignore[index]
    assert points[t1.id].count == 1  # type: ignore[index]
    # Only the branch shown is sent as history.
    after = conversations.next_messages(conv, "thanks")
    assert [m.content for m in after] == ["hi", "hi / a", "what is 5+5?", "10", "thanks"]
    assert not any("2+2" in m.content or "3+3" in m.content for m in after)

    # The old branch is kept, with its later turns and its label; nothing about pairs moved.
    assert len(repo.conversations.list_turns(conv)) == 4
    assert repo.conversations.get_turn(t2.id).chosen_candidate_id == t2.candidates[1].id
    assert [(p.prompt, p.chosen, p.rejected) for p in repo.pairs.stream()] == pairs_before

    conversations.switch_branch(conv, t2.id)
    assert _ids(conversations.turns(conv)) == [t1.id, t2.id, t3.id]
    points = conversations.branch_points(conv, [t1.id, t2.id, t3.id])  # type: ignore[list-item]
    assert (points[t2.id].position, points[t2.id].count, points[t2.id].next) == (1, 2, edit.id)
    assert conversations.next_messages(conv, "ok")[-3].content == "and 3+3?"

    # A turn sent now continues the branch shown, and the choice survives a restart.
    t4 = _turn(repo, conv, conversations.next_messages(conv, "ok"), ["fine", "good"])
    repo.close()
    repo = Repository.open()
    again = ConversationService(repo, SessionHooks())
    assert _ids(again.turns(conv)) == [t1.id, t2.id, t3.id, t4.id]
    again.switch_branch(conv, edit.id)
    repo.close()
    assert _ids(ConversationService(Repository.open(), SessionHooks()).turns(conv)) \
        == [t1.id, edit.id]


def test_editing_the_first_message_starts_the_chat_again() -> None:
    repo = Repository.open()
    conversations, conv, (t1, t2, _t3) = _chat(repo)
    assert t1.id is not None
    plan = conversations.plan_edit(conv, t1.id, "hello there")
    assert plan.messages == [Message("user", "hello there")] and plan.parent is None
    edit = _turn(repo, conv, plan.messages, ["hey", "hello"], plan.parent)
    assert _ids(conversations.turns(conv)) == [edit.id]
    point = conversations.branch_points(conv, [edit.id])[edit.id]  # type: ignore[list-item,index]
    assert (point.position, point.count, point.previous) == (2, 2, t1.id)
    # Switching back shows the old branch down to its newest turn.
    conversations.switch_branch(conv, t1.id)
    assert conversations.turns(conv)[-1].prompt == "and 3+3?"
    assert conversations.turns(conv)[1].id == t2.id


def test_an_empty_edit_or_a_message_not_shown_is_refused() -> None:
    repo = Repository.open()
    conversations, conv, (t1, t2, t3) = _chat(repo)
    assert t2.id is not None and t3.id is not None
    with pytest.raises(EditRefused, match="empty"):
        conversations.plan_edit(conv, t2.id, "  \n ")
    plan = conversations.plan_edit(conv, t2.id, "other")
    _turn(repo, conv, plan.messages, ["x", "y"], plan.parent)
    with pytest.raises(EditRefused, match="not on the branch shown"):
        conversations.plan_edit(conv, t3.id, "edit of a hidden message")
    other = conversations.create("other chat")
    with pytest.raises(StorageError):
        conversations.switch_branch(other.id, t3.id)
    with pytest.raises(StorageError):  # a parent from another chat
        _turn(repo, other.id, [Message("user", "q")], ["a", "b"], t1.id)
    assert len(repo.conversations.list_turns(conv)) == 4


def test_undo_after_switching_branches_undoes_the_label_on_the_hidden_branch() -> None:
    repo = Repository.open()
    conversations, conv, (_t1, t2, _t3) = _chat(repo)
    assert t2.id is not None
    labels = LabelingService(repo)
    labels.pick(t2, t2.candidates[0].id or 0)
    plan = conversations.plan_edit(conv, t2.id, "edited")
    _turn(repo, conv, plan.messages, ["p", "q"], plan.parent)
    undone = labels.undo()  # the label is on the branch no longer shown
    assert undone is not None and undone.turn_id == t2.id
    assert repo.pairs.count() == 0
    conversations.switch_branch(conv, t2.id)
    assert conversations.turns(conv)[1].chosen_candidate_id is None


def _schema_4_database(path: Path) -> None:
    """A database as the previous release wrote it: migrations 1-4 only, two chats."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY,"
                 " name TEXT NOT NULL, applied_at REAL NOT NULL)")
    for version, name, sql in MIGRATIONS:
        if version > 4:
            continue
        conn.executescript(f"BEGIN;\n{sql}\n;COMMIT;")
        conn.execute("INSERT INTO schema_migrations VALUES (?, ?, ?)", (version, name, 0.0))
    now = time.time()
    params = json.dumps(SamplingParams(n=2).to_dict())
    for conv, prompts in ((1, ["hi", "more", "again"]), (2, ["solo"])):
        conn.execute("INSERT INTO conversations (id, title, created_at, updated_at)"
                     " VALUES (?, ?, ?, ?)", (conv, f"chat {conv}", now, now))
        messages: list[dict[str, str]] = []
        for prompt in prompts:
            messages = [*messages, {"role": "user", "content": prompt}]
            cur = conn.execute(
                "INSERT INTO turns (conversation_id, messages_json, provider, model,"
                " params_json, created_at) VALUES (?, ?, 'test', 'm', ?, ?)",
                (conv, json.dumps(messages), params, now))
            for idx in range(2):
                conn.execute("INSERT INTO candidates (turn_id, idx, text, finish_reason)"
                             " VALUES (?, ?, ?, 'stop')",
                             (cur.lastrowid, idx, f"{prompt} reply {idx}"))
            messages = [*messages, {"role": "assistant", "content": f"{prompt} reply 0"}]
    chosen = conn.execute("SELECT id FROM candidates WHERE turn_id = 2 AND idx = 1").fetchone()
    label = conn.execute("INSERT INTO labels (created_at, source, turn_id, chosen_candidate_id,"
                         " kind) VALUES (?, 'pick', 2, ?, 'pick')", (now, chosen[0])).lastrowid
    conn.execute("INSERT INTO pairs (label_id, prompt_json, chosen, rejected, source,"
                 " created_at) VALUES (?, ?, 'more reply 1', 'more reply 0', 'pick', ?)",
                 (label, json.dumps([{"role": "user", "content": "more"}]), now))
    conn.close()


def test_a_database_of_the_previous_schema_migrates_without_loss() -> None:
    path = config.db_path()
    _schema_4_database(path)
    old = sqlite3.connect(path)
    chosen = old.execute("SELECT id FROM candidates WHERE turn_id = 2 AND idx = 1").fetchone()[0]
    tables = ("conversations", "turns", "candidates", "labels", "pairs")
    before = {t: old.execute(f"SELECT * FROM {t} ORDER BY id").fetchall() for t in tables}
    old.close()

    conn = connect(path)
    assert schema_version(conn) == 5
    for table in tables:  # every old row and value is still there, new columns after them
        rows = conn.execute(f"SELECT * FROM {table} ORDER BY id").fetchall()
        assert [r[:len(before[table][0])] for r in rows] == before[table]
    conn.close()

    repo = Repository.open(path)
    conversations = ConversationService(repo, SessionHooks())
    # The old turns follow each other, and each chat shows (and continues) all of them.
    assert repo.conversations.turn_links(1) == [(1, None), (2, 1), (3, 2)]
    assert repo.conversations.turn_links(2) == [(4, None)]
    assert [t.id for t in conversations.turns(1)] == [1, 2, 3]
    assert conversations.turns(1)[1].chosen_candidate_id == chosen  # its pick reads back
    assert [m.content for m in conversations.next_messages(1, "next")][-3:] \
        == ["again", "again reply 0", "next"]
    nxt = _turn(repo, 1, conversations.next_messages(1, "next"), ["a", "b"])
    assert repo.conversations.turn_links(1)[-1] == (nxt.id, 3)
    plan = conversations.plan_edit(1, 2, "more, edited")
    assert plan.parent == 1


@pytest.fixture
def server():
    with AzureServer(api_key=AZURE_KEY, deployment="gpt-test", reply_length=6,
                     chunk_delay_s=0.001) as srv:
        yield srv


def test_an_edit_sent_over_a_real_server_sends_only_its_branch(server: AzureServer) -> None:
    async def scenario() -> None:
        repo = Repository.open()
        conversations = ConversationService(repo, SessionHooks())
        chat = chat_service(repo, RewardService(), azure_provider(server),
                            conversations=conversations,
                            params=lambda: SamplingParams(n=3))
        first = await chat.send(None, "Name a colour")
        conv = first.conversation_id
        second = await chat.send(conv, "Name a fruit")
        assert second.id is not None
        plan = conversations.plan_edit(conv, second.id, "Name a vegetable")
        server.requests.clear()
        edit = await chat.send_messages(conv, plan.messages, parent=plan.parent)
        sent = [r.body for r in server.requests if r.body and "messages" in r.body]
        assert sent, "the edit was not sent"
        contents = [m["content"] for m in sent[0]["messages"] if m["role"] != "system"]
        assert contents[0] == "Name a colour" and contents[-1] == "Name a vegetable"
        assert "Name a fruit" not in contents
        assert len(edit.candidates) == 3 and all(c.text for c in edit.candidates)
        assert [t.id for t in conversations.turns(conv)] == [first.id, edit.id]
        third = await chat.send(conv, "And a herb?")
        assert [t.id for t in conversations.turns(conv)] == [first.id, edit.id, third.id]
        assert "Name a fruit" not in [m.content for m in third.messages]
        await chat.provider.aclose()

    asyncio.run(scenario())
