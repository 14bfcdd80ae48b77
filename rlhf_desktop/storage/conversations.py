"""Conversations with their turns and each turn's replies (the ``conversations``, ``turns``
and ``candidates`` tables): ``repo.conversations``.

Branches: each turn names the turn it continues (``turns.parent_turn_id``; NULL: it starts
the chat), so a conversation is a tree of turns: editing a message saves a new turn beside
the old one (the same parent), and the old branch stays. Each conversation remembers the
last turn of the branch it shows and continues (``conversations.active_turn_id``; NULL: its
newest turn). A turn saved without a parent named continues that branch and becomes its end
(:data:`ACTIVE`). Which turns make up a branch, and which branch a switch shows, are rules
of :mod:`rlhf_desktop.services.chat.branches`.

Labels and pairs never depend on a branch: a turn keeps the messages it sent
(``turns.messages_json``) and a pair its own prompt (``pairs.prompt_json``).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from enum import Enum
from typing import Any

from rlhf_desktop.domain import Candidate, Conversation, SamplingParams, Turn, last_user_text
from rlhf_desktop.storage.database import (
    Database,
    StorageError,
    in_chunks,
    messages_from_json,
    messages_json,
)
from rlhf_desktop.storage.labels import chat_label_of

__all__ = ["ACTIVE", "Conversations", "Follow", "Parent"]


class Follow(Enum):
    """Where a turn saved without an explicit parent goes."""

    ACTIVE = "active"
    """After the last turn of the conversation's active branch (the usual next turn)."""


ACTIVE = Follow.ACTIVE

Parent = int | None | Follow
"""A new turn's parent: a turn id of the same conversation, None (it starts the chat: an
edit of the first message), or :data:`ACTIVE`."""

_TURN_COLUMNS = ("id, conversation_id, messages_json, provider, model, params_json, created_at,"
                 " blind, skipped_at")


def _origin_json(cand: Candidate) -> str | None:
    return None if cand.origin is None else json.dumps(cand.origin, ensure_ascii=False)


class Conversations:
    """Reads and writes of conversations, their turns (the turn tree and its active branch)
    and the turns' replies. The ``*_in`` methods write inside a transaction another
    repository holds (a label's write), on the connection it passes."""

    def __init__(self, db: Database) -> None:
        self._db = db

    # ------------------------------------------------------------------ conversations

    def create(self, title: str = "New chat") -> Conversation:
        """A new, empty conversation."""
        now = time.time()
        with self._db.transaction() as c:
            cur = c.execute(
                "INSERT INTO conversations (title, created_at, updated_at) VALUES (?, ?, ?)",
                (title, now, now),
            )
        return Conversation(id=int(cur.lastrowid or 0), title=title, created_at=now, updated_at=now)

    def list_all(self, search: str = "") -> list[Conversation]:
        """Newest first; ``search`` matches titles and any message or candidate text."""
        if search:
            like = f"%{search}%"
            rows = self._db.conn.execute(
                "SELECT DISTINCT c.id, c.title, c.created_at, c.updated_at FROM conversations c"
                " LEFT JOIN turns t ON t.conversation_id = c.id"
                " LEFT JOIN candidates k ON k.turn_id = t.id"
                " WHERE c.title LIKE ? OR t.messages_json LIKE ? OR k.text LIKE ?"
                " ORDER BY c.updated_at DESC, c.id DESC",
                (like, like, like),
            ).fetchall()
        else:
            rows = self._db.conn.execute(
                "SELECT id, title, created_at, updated_at FROM conversations"
                " ORDER BY updated_at DESC, id DESC"
            ).fetchall()
        return [Conversation(int(r[0]), str(r[1]), float(r[2]), float(r[3])) for r in rows]

    def get(self, conversation_id: int) -> Conversation | None:
        """One conversation, or None when there is no such id."""
        r = self._db.conn.execute("SELECT id, title, created_at, updated_at FROM conversations"
                                  " WHERE id = ?", (conversation_id,)).fetchone()
        return None if r is None else Conversation(int(r[0]), str(r[1]), float(r[2]),
                                                   float(r[3]))

    def rename(self, conversation_id: int, title: str) -> None:
        """Set a conversation's title."""
        with self._db.transaction() as c:
            cur = c.execute(
                "UPDATE conversations SET title = ?, updated_at = ? WHERE id = ?",
                (title.strip() or "New chat", time.time(), conversation_id),
            )
        if cur.rowcount == 0:
            raise StorageError(f"no conversation {conversation_id}")

    def settings(self, conversation_ids: Sequence[int]
                 ) -> dict[int, tuple[str | None, str | None]]:
        """``{id: (system_prompt, model)}`` of each conversation (None: the default)."""
        found: dict[int, tuple[str | None, str | None]] = {}
        for chunk, marks in in_chunks(list(conversation_ids)):
            for r in self._db.conn.execute(
                    f"SELECT id, system_prompt, model FROM conversations WHERE id IN ({marks})",
                    chunk):
                found[int(r[0])] = (r[1], r[2])
        return found

    def set_settings(self, conversation_id: int, system_prompt: str | None,
                     model: str | None) -> None:
        """Set a conversation's system prompt and model (None: the default)."""
        with self._db.transaction() as c:
            cur = c.execute(
                "UPDATE conversations SET system_prompt = ?, model = ? WHERE id = ?",
                (system_prompt, model or None, conversation_id))
        if cur.rowcount == 0:
            raise StorageError(f"no conversation {conversation_id}")

    def delete(self, conversation_id: int) -> None:
        """Delete a conversation and its turns (the schema cascades to them and their
        replies). Labels and pairs already recorded stay."""
        with self._db.transaction() as c:
            c.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))

    def count(self) -> int:
        """How many conversations."""
        return int(self._db.conn.execute("SELECT COUNT(*) FROM conversations").fetchone()[0])

    def count_turns(self) -> int:
        """How many turns, of every conversation."""
        return int(self._db.conn.execute("SELECT COUNT(*) FROM turns").fetchone()[0])

    def first_prompts(self, conversation_ids: Sequence[int]) -> dict[int, str]:
        """Each conversation's first user message (what its automatic title was cut from)."""
        found: dict[int, str] = {}
        for chunk, marks in in_chunks(conversation_ids):
            rows = self._db.conn.execute(
                "SELECT conversation_id, messages_json FROM turns WHERE id IN (SELECT MIN(id)"
                f" FROM turns WHERE conversation_id IN ({marks}) GROUP BY conversation_id)",
                chunk)
            for cid, text in rows:
                found[int(cid)] = last_user_text(messages_from_json(text))
        return found

    # ------------------------------------------------------------------ turns

    def save_turn(self, turn: Turn, parent: Parent = ACTIVE) -> Turn:
        """Insert a turn and its candidates in one transaction; fills in their ids.

        The turn continues ``parent`` (:data:`ACTIVE`: the end of the conversation's active
        branch; None: it starts the chat) and becomes the end of the active branch."""
        now = time.time()
        with self._db.transaction() as c:
            parent_id = self._parent_of_new_turn(c, turn.conversation_id, parent)
            cur = c.execute(
                "INSERT INTO turns (conversation_id, messages_json, provider, model, params_json,"
                " created_at, blind, parent_turn_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    turn.conversation_id,
                    messages_json(turn.messages),
                    turn.provider,
                    turn.model,
                    json.dumps(turn.params.to_dict()),
                    now,
                    int(turn.blind),
                    parent_id,
                ),
            )
            turn.id = int(cur.lastrowid or 0)
            turn.created_at = now
            for cand in turn.candidates:
                cand.turn_id = turn.id
                cand.id = self.insert_candidate_in(c, turn.id, cand)
            c.execute(
                "UPDATE conversations SET updated_at = ?, active_turn_id = ? WHERE id = ?",
                (now, turn.id, turn.conversation_id),
            )
        return turn

    def get_turn(self, turn_id: int) -> Turn:
        """One turn with its candidates and its pick, if any."""
        row = self._db.conn.execute(f"SELECT {_TURN_COLUMNS} FROM turns WHERE id = ?",
                                    (turn_id,)).fetchone()
        if row is None:
            raise StorageError(f"no turn {turn_id}")
        return self._turn_from_row(row)

    def list_turns(self, conversation_id: int) -> list[Turn]:
        """The turns of a conversation, oldest first, of every branch (the active branch:
        :func:`rlhf_desktop.services.chat.branches.active_turns`)."""
        rows = self._db.conn.execute(
            f"SELECT {_TURN_COLUMNS} FROM turns WHERE conversation_id = ? ORDER BY id",
            (conversation_id,),
        ).fetchall()
        return [self._turn_from_row(r) for r in rows]

    def _turn_from_row(self, r: sqlite3.Row | tuple[Any, ...]) -> Turn:
        turn_id = int(r[0])
        label = chat_label_of(self._db.conn, turn_id)
        kind, chosen, tied = label if label is not None else (None, None, ())
        return Turn(
            id=turn_id,
            conversation_id=int(r[1]),
            messages=messages_from_json(r[2]),
            provider=str(r[3]),
            model=str(r[4]),
            params=SamplingParams.from_dict(json.loads(r[5])),
            created_at=float(r[6]),
            candidates=self._candidates(turn_id),
            chosen_candidate_id=chosen,
            blind=bool(r[7]),
            label_kind=kind,
            ranked_candidate_ids=tied,
            skipped=r[8] is not None,
        )

    def _candidates(self, turn_id: int) -> list[Candidate]:
        rows = self._db.conn.execute(
            "SELECT id, idx, text, finish_reason, latency_s, ttft_s, prompt_tokens,"
            " completion_tokens, score, model_version, error, position, source, edited_from,"
            " origin_json FROM candidates"
            " WHERE turn_id = ? ORDER BY idx",
            (turn_id,),
        ).fetchall()
        return [
            Candidate(
                id=r[0], index=r[1], text=r[2], finish_reason=r[3], latency_s=r[4], ttft_s=r[5],
                prompt_tokens=r[6], completion_tokens=r[7], score=r[8], model_version=r[9],
                error=r[10], turn_id=turn_id, position=r[11], source=r[12], edited_from=r[13],
                origin=json.loads(r[14]) if r[14] else None,
            )
            for r in rows
        ]

    def set_scores(self, scored: Sequence[tuple[int, float | None, int | None]]) -> None:
        """Record ``(candidate_id, score, model_version)`` for candidates that were ranked."""
        with self._db.transaction() as c:
            c.executemany(
                "UPDATE candidates SET score = ?, model_version = ? WHERE id = ?",
                [(score, version, cid) for cid, score, version in scored],
            )

    def put_candidate(self, turn_id: int, cand: Candidate) -> Candidate:
        """Replace the candidate at ``cand.index`` of a turn (or add it when the turn has
        none there), keeping its id; score and model version are cleared with the text.

        Refused while the turn has a pick: its pairs hold the old text. Fills in
        ``cand.id`` and ``cand.turn_id``.
        """
        with self._db.transaction() as c:
            if chat_label_of(c, turn_id) is not None:
                raise StorageError("this turn has a label; undo it before replacing a reply")
            row = c.execute("SELECT id FROM candidates WHERE turn_id = ? AND idx = ?",
                            (turn_id, cand.index)).fetchone()
            cand.turn_id = turn_id
            cand.score = cand.model_version = None
            if row is None:
                cand.id = self.insert_candidate_in(c, turn_id, cand)
                return cand
            c.execute(
                "UPDATE candidates SET text = ?, finish_reason = ?, latency_s = ?, ttft_s = ?,"
                " prompt_tokens = ?, completion_tokens = ?, score = NULL,"
                " model_version = NULL, error = ?, origin_json = ? WHERE id = ?",
                (cand.text, cand.finish_reason, cand.latency_s, cand.ttft_s, cand.prompt_tokens,
                 cand.completion_tokens, cand.error, _origin_json(cand), row[0]),
            )
            cand.id = int(row[0])
        return cand

    def record_display(self, turn_id: int, blind: bool, positions: dict[int, int]) -> None:
        """Where each card of a turn is shown, and whether the turn is blind."""
        with self._db.transaction() as c:
            c.execute("UPDATE turns SET blind = ? WHERE id = ?", (int(blind), turn_id))
            self._write_positions(c, positions)

    def set_skipped(self, turn_id: int, skipped: bool = True) -> None:
        """Mark a turn as skipped (no label, no pairs) or not."""
        with self._db.transaction() as c:
            c.execute("UPDATE turns SET skipped_at = ? WHERE id = ?",
                      (time.time() if skipped else None, turn_id))

    # ------------------------------------------------------------------ inside a label's write

    @staticmethod
    def insert_candidate_in(c: sqlite3.Connection, turn_id: int, cand: Candidate) -> int:
        """Insert one reply of a turn, inside the transaction of ``c``; its id."""
        cur = c.execute(
            "INSERT INTO candidates (turn_id, idx, text, finish_reason, latency_s, ttft_s,"
            " prompt_tokens, completion_tokens, score, model_version, error, position, source,"
            " edited_from, origin_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                turn_id,
                cand.index,
                cand.text,
                cand.finish_reason,
                cand.latency_s,
                cand.ttft_s,
                cand.prompt_tokens,
                cand.completion_tokens,
                cand.score,
                cand.model_version,
                cand.error,
                cand.position,
                cand.source,
                cand.edited_from,
                _origin_json(cand),
            ),
        )
        return int(cur.lastrowid or 0)

    @staticmethod
    def drop_rewrites_in(c: sqlite3.Connection, turn_id: int) -> None:
        """Delete the user's rewrites of a turn's replies (before its label is replaced)."""
        c.execute("DELETE FROM candidates WHERE turn_id = ? AND source = 'edit'", (turn_id,))

    @staticmethod
    def drop_rewrite_in(c: sqlite3.Connection, candidate_id: int) -> None:
        """Delete one reply if it is a rewrite (its edit label was undone)."""
        c.execute("DELETE FROM candidates WHERE id = ? AND source = 'edit'", (candidate_id,))

    @classmethod
    def mark_labeled_in(cls, c: sqlite3.Connection, turn_id: int, blind: bool,
                        positions: dict[int, int]) -> None:
        """A turn just labeled: not skipped, blind as it was shown, its cards' positions."""
        cls._write_positions(c, positions)
        c.execute("UPDATE turns SET skipped_at = NULL, blind = ? WHERE id = ?",
                  (int(blind), turn_id))

    @staticmethod
    def _write_positions(c: sqlite3.Connection, positions: dict[int, int]) -> None:
        c.executemany("UPDATE candidates SET position = ? WHERE id = ?",
                      [(pos, cid) for cid, pos in positions.items()])

    # ------------------------------------------------------------------ branches

    def turn_links(self, conversation_id: int) -> list[tuple[int, int | None]]:
        """``(turn id, parent turn id)`` of every turn of the conversation, oldest first."""
        rows = self._db.conn.execute(
            "SELECT id, parent_turn_id FROM turns WHERE conversation_id = ? ORDER BY id",
            (conversation_id,)).fetchall()
        return [(int(r[0]), None if r[1] is None else int(r[1])) for r in rows]

    @staticmethod
    def _active_end(c: sqlite3.Connection, conversation_id: int) -> int | None:
        row = c.execute(
            "SELECT COALESCE(c.active_turn_id, (SELECT MAX(t.id) FROM turns t"
            " WHERE t.conversation_id = c.id)) FROM conversations c WHERE c.id = ?",
            (conversation_id,)).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def active_turn_id(self, conversation_id: int) -> int | None:
        """The last turn of the branch the conversation shows (None: it has no turns)."""
        return self._active_end(self._db.conn, conversation_id)

    @staticmethod
    def _check_turn_of(c: sqlite3.Connection, conversation_id: int, turn_id: int) -> None:
        row = c.execute("SELECT conversation_id FROM turns WHERE id = ?",
                        (turn_id,)).fetchone()
        if row is None or int(row[0]) != conversation_id:
            raise StorageError(f"turn {turn_id} is not a turn of conversation "
                               f"{conversation_id}")

    def set_active_turn(self, conversation_id: int, turn_id: int) -> None:
        """Show (and continue) the branch that ends with ``turn_id``."""
        with self._db.transaction() as c:
            self._check_turn_of(c, conversation_id, turn_id)
            c.execute("UPDATE conversations SET active_turn_id = ? WHERE id = ?",
                      (turn_id, conversation_id))

    def _parent_of_new_turn(self, c: sqlite3.Connection, conversation_id: int,
                            parent: Parent) -> int | None:
        """The parent a new turn of the conversation is saved with (inside its write)."""
        if parent is Follow.ACTIVE:
            return self._active_end(c, conversation_id)
        if parent is not None:
            self._check_turn_of(c, conversation_id, parent)
        return parent
