"""All reads and writes of the database. One :class:`Repository` per thread."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from rlhf_desktop.domain import (
    PAIR_SOURCES,
    Candidate,
    Conversation,
    Message,
    PreferencePair,
    SamplingParams,
    Turn,
)
from rlhf_desktop.storage.arena import ArenaQueries
from rlhf_desktop.storage.branches import ACTIVE, BranchQueries, Parent
from rlhf_desktop.storage.db import connect
from rlhf_desktop.storage.labels import LabelQueries
from rlhf_desktop.storage.pairs import (
    PairQueries,
    PairRow,
    StorageError,
    in_chunks,
)
from rlhf_desktop.storage.pairs import (
    messages_from_json as _messages_from_json,
)
from rlhf_desktop.storage.versions import VersionQueries

__all__ = ["PairRow", "Repository", "StorageError"]


def _messages_json(messages: Sequence[Message]) -> str:
    return json.dumps([m.to_dict() for m in messages], ensure_ascii=False)


class Repository(ArenaQueries, BranchQueries, LabelQueries, VersionQueries, PairQueries):
    """Typed access to the tables. Every write is one transaction, committed durably."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    @classmethod
    def open(cls, path: Path | None = None) -> Repository:
        """Open (and migrate) the database in the data folder or at ``path``."""
        return cls(connect(path))

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` … ``COMMIT``; rolled back on any exception."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    # ------------------------------------------------------------------ conversations

    def create_conversation(self, title: str = "New chat") -> Conversation:
        """A new, empty conversation."""
        now = time.time()
        with self.transaction() as c:
            cur = c.execute(
                "INSERT INTO conversations (title, created_at, updated_at) VALUES (?, ?, ?)",
                (title, now, now),
            )
        return Conversation(id=int(cur.lastrowid or 0), title=title, created_at=now, updated_at=now)

    def list_conversations(self, search: str = "") -> list[Conversation]:
        """Newest first; ``search`` matches titles and any message or candidate text."""
        if search:
            like = f"%{search}%"
            rows = self.conn.execute(
                "SELECT DISTINCT c.id, c.title, c.created_at, c.updated_at FROM conversations c"
                " LEFT JOIN turns t ON t.conversation_id = c.id"
                " LEFT JOIN candidates k ON k.turn_id = t.id"
                " WHERE c.title LIKE ? OR t.messages_json LIKE ? OR k.text LIKE ?"
                " ORDER BY c.updated_at DESC, c.id DESC",
                (like, like, like),
            ).fetchall()
        else:
            rows = self.conn.execute(
                "SELECT id, title, created_at, updated_at FROM conversations"
                " ORDER BY updated_at DESC, id DESC"
            ).fetchall()
        return [Conversation(int(r[0]), str(r[1]), float(r[2]), float(r[3])) for r in rows]

    def get_conversation(self, conversation_id: int) -> Conversation | None:
        """One conversation, or None when there is no such id."""
        r = self.conn.execute("SELECT id, title, created_at, updated_at FROM conversations"
                              " WHERE id = ?", (conversation_id,)).fetchone()
        return None if r is None else Conversation(int(r[0]), str(r[1]), float(r[2]),
                                                   float(r[3]))

    def rename_conversation(self, conversation_id: int, title: str) -> None:
        """Set a conversation's title."""
        with self.transaction() as c:
            cur = c.execute(
                "UPDATE conversations SET title = ?, updated_at = ? WHERE id = ?",
                (title.strip() or "New chat", time.time(), conversation_id),
            )
        if cur.rowcount == 0:
            raise StorageError(f"no conversation {conversation_id}")

    def chat_settings(self, conversation_ids: Sequence[int]
                      ) -> dict[int, tuple[str | None, str | None]]:
        """``{id: (system_prompt, model)}`` of each conversation (None: the default)."""
        found: dict[int, tuple[str | None, str | None]] = {}
        for chunk, marks in in_chunks(list(conversation_ids)):
            for r in self.conn.execute(
                    f"SELECT id, system_prompt, model FROM conversations WHERE id IN ({marks})",
                    chunk):
                found[int(r[0])] = (r[1], r[2])
        return found

    def set_chat_settings(self, conversation_id: int, system_prompt: str | None,
                          model: str | None) -> None:
        """Set a conversation's system prompt and model (None: the default)."""
        with self.transaction() as c:
            cur = c.execute(
                "UPDATE conversations SET system_prompt = ?, model = ? WHERE id = ?",
                (system_prompt, model or None, conversation_id))
        if cur.rowcount == 0:
            raise StorageError(f"no conversation {conversation_id}")

    def delete_conversation(self, conversation_id: int) -> None:
        """Delete a conversation and its turns. Labels and pairs already recorded stay."""
        with self.transaction() as c:
            c.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))

    # ------------------------------------------------------------------ turns

    def save_turn(self, turn: Turn, parent: Parent = ACTIVE) -> Turn:
        """Insert a turn and its candidates in one transaction; fills in their ids.

        The turn continues ``parent`` (:data:`~rlhf_desktop.storage.branches.ACTIVE`: the
        end of the conversation's active branch; None: it starts the chat) and becomes the
        end of the active branch."""
        now = time.time()
        with self.transaction() as c:
            parent_id = self._parent_of_new_turn(c, turn.conversation_id, parent)
            cur = c.execute(
                "INSERT INTO turns (conversation_id, messages_json, provider, model, params_json,"
                " created_at, blind, parent_turn_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    turn.conversation_id,
                    _messages_json(turn.messages),
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
                cand.id = self._insert_candidate(c, turn.id, cand)
            c.execute(
                "UPDATE conversations SET updated_at = ?, active_turn_id = ? WHERE id = ?",
                (now, turn.id, turn.conversation_id),
            )
        return turn

    @staticmethod
    def _insert_candidate(c: sqlite3.Connection, turn_id: int, cand: Candidate) -> int:
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
                None if cand.origin is None else json.dumps(cand.origin, ensure_ascii=False),
            ),
        )
        return int(cur.lastrowid or 0)

    def set_scores(self, scored: Sequence[tuple[int, float | None, int | None]]) -> None:
        """Record ``(candidate_id, score, model_version)`` for candidates that were ranked."""
        with self.transaction() as c:
            c.executemany(
                "UPDATE candidates SET score = ?, model_version = ? WHERE id = ?",
                [(score, version, cid) for cid, score, version in scored],
            )

    def _candidates(self, turn_id: int) -> list[Candidate]:
        rows = self.conn.execute(
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

    def _turn_from_row(self, r: sqlite3.Row | tuple[Any, ...]) -> Turn:
        turn_id = int(r[0])
        label = self.chat_label_of(turn_id)
        kind, chosen, tied = label if label is not None else (None, None, ())
        return Turn(
            id=turn_id,
            conversation_id=int(r[1]),
            messages=_messages_from_json(r[2]),
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

    def get_turn(self, turn_id: int) -> Turn:
        """One turn with its candidates and its pick, if any."""
        row = self.conn.execute(
            "SELECT id, conversation_id, messages_json, provider, model, params_json, created_at,"
            " blind, skipped_at"
            " FROM turns WHERE id = ?",
            (turn_id,),
        ).fetchone()
        if row is None:
            raise StorageError(f"no turn {turn_id}")
        return self._turn_from_row(row)

    def list_turns(self, conversation_id: int) -> list[Turn]:
        """The turns of a conversation, oldest first, of every branch (the active branch:
        :func:`rlhf_desktop.services.branches.active_turns`)."""
        rows = self.conn.execute(
            "SELECT id, conversation_id, messages_json, provider, model, params_json, created_at,"
            " blind, skipped_at"
            " FROM turns WHERE conversation_id = ? ORDER BY id",
            (conversation_id,),
        ).fetchall()
        return [self._turn_from_row(r) for r in rows]

    # ------------------------------------------------------------------ labels and pairs

    def add_pairs(self, pairs: Sequence[PreferencePair], source: str = "import") -> int:
        """Store pairs that did not come from a pick, each as its own label, all or nothing."""
        if source not in PAIR_SOURCES:
            raise StorageError(f"source must be one of {PAIR_SOURCES}")
        now = time.time()
        with self.transaction() as c:
            for pair in pairs:
                created = pair.created_at or now
                cur = c.execute(
                    "INSERT INTO labels (created_at, source, reason, kind) VALUES (?, ?, ?, ?)",
                    (created, source, pair.reason, source),
                )
                c.execute(
                    "INSERT INTO pairs (label_id, prompt_json, chosen, rejected, reason, source,"
                    " created_at, weight) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        cur.lastrowid,
                        _messages_json(pair.prompt),
                        pair.chosen,
                        pair.rejected,
                        pair.reason,
                        source,
                        created,
                        pair.weight,
                    ),
                )
        return len(pairs)

    def delete_pairs(self, pair_ids: Sequence[int]) -> int:
        """Delete pairs; a label left without pairs goes too (a tie or all-bad label, which
        never had pairs, stays)."""
        with self.transaction() as c:
            removed = 0
            for chunk, marks in in_chunks(pair_ids):
                labels = [r[0] for r in c.execute(
                    f"SELECT DISTINCT label_id FROM pairs WHERE id IN ({marks})", chunk)]
                removed += c.execute(f"DELETE FROM pairs WHERE id IN ({marks})", chunk).rowcount
                c.executemany("DELETE FROM labels WHERE id = ? AND NOT EXISTS"
                              " (SELECT 1 FROM pairs WHERE label_id = ?)",
                              [(lab, lab) for lab in labels])
        return removed

    def get_embeddings(self, embedder_id: str, hashes: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        """Cached vectors by text hash (missing hashes are absent from the result)."""
        found: dict[bytes, np.ndarray] = {}
        for chunk, marks in in_chunks(hashes):
            rows = self.conn.execute(
                f"SELECT text_hash, dim, vector FROM embeddings WHERE embedder_id = ?"
                f" AND text_hash IN ({marks})",
                [embedder_id, *chunk],
            )
            for h, dim, blob in rows:
                vec = np.frombuffer(blob, dtype=np.float32)
                if vec.shape[0] == dim:
                    found[bytes(h)] = vec
        return found

    def put_embeddings(self, embedder_id: str, items: dict[bytes, np.ndarray]) -> None:
        """Store vectors (float32) by text hash."""
        if not items:
            return
        rows = [
            (embedder_id, h, int(v.shape[0]), np.asarray(v, dtype=np.float32).tobytes())
            for h, v in items.items()
        ]
        with self.transaction() as c:
            c.executemany(
                "INSERT OR REPLACE INTO embeddings (embedder_id, text_hash, dim, vector)"
                " VALUES (?, ?, ?, ?)",
                rows,
            )

    def _count(self, table: str) -> int:
        return int(self.conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])

    def stats(self) -> dict[str, Any]:
        """Counts for ``rlhf-desktop stats``."""
        by_source = dict(
            self.conn.execute("SELECT source, COUNT(*) FROM pairs GROUP BY source").fetchall()
        )
        latest = self.latest_model_version()
        return {
            "conversations": self._count("conversations"),
            "turns": self._count("turns"),
            "labels": self.count_labels(),
            "labels_by_kind": self.label_kinds(),
            "pairs": self.count_pairs(),
            "pairs_by_source": by_source,
            "embeddings_cached": self._count("embeddings"),
            "model_version": None if latest is None else latest.version,
            "model_metrics": None if latest is None else latest.metrics,
        }

    def put_candidate(self, turn_id: int, cand: Candidate) -> Candidate:
        """Replace the candidate at ``cand.index`` of a turn (or add it when the turn has
        none there), keeping its id; score and model version are cleared with the text.

        Refused while the turn has a pick: its pairs hold the old text. Fills in
        ``cand.id`` and ``cand.turn_id``.
        """
        with self.transaction() as c:
            if c.execute("SELECT 1 FROM labels WHERE turn_id = ? AND source IN ('pick', 'edit')",
                         (turn_id,)).fetchone() is not None:
                raise StorageError("this turn has a label; undo it before replacing a reply")
            row = c.execute("SELECT id FROM candidates WHERE turn_id = ? AND idx = ?",
                            (turn_id, cand.index)).fetchone()
            cand.turn_id = turn_id
            cand.score = cand.model_version = None
            if row is None:
                cand.id = self._insert_candidate(c, turn_id, cand)
                return cand
            c.execute(
                "UPDATE candidates SET text = ?, finish_reason = ?, latency_s = ?, ttft_s = ?,"
                " prompt_tokens = ?, completion_tokens = ?, score = NULL,"
                " model_version = NULL, error = ?, origin_json = ? WHERE id = ?",
                (cand.text, cand.finish_reason, cand.latency_s, cand.ttft_s, cand.prompt_tokens,
                 cand.completion_tokens, cand.error,
                 None if cand.origin is None else json.dumps(cand.origin, ensure_ascii=False),
                 row[0]),
            )
            cand.id = int(row[0])
        return cand
