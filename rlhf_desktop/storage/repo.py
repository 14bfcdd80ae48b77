"""All reads and writes of the database. One :class:`Repository` per thread."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from rlhf_desktop.domain import (
    PAIR_SOURCES,
    Candidate,
    Conversation,
    Label,
    Message,
    ModelVersion,
    PreferencePair,
    SamplingParams,
    Turn,
)
from rlhf_desktop.storage.db import connect
from rlhf_desktop.storage.pairs import (
    PairQueries,
    PairRow,
    StorageError,
)
from rlhf_desktop.storage.pairs import (
    messages_from_json as _messages_from_json,
)
from rlhf_desktop.storage.pick_rules import no_rejected_message, rejected_side

__all__ = ["PairRow", "Repository", "StorageError"]


def _messages_json(messages: Sequence[Message]) -> str:
    return json.dumps([m.to_dict() for m in messages], ensure_ascii=False)


class Repository(PairQueries):
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

    def delete_conversation(self, conversation_id: int) -> None:
        """Delete a conversation and its turns. Labels and pairs already recorded stay."""
        with self.transaction() as c:
            c.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))

    # ------------------------------------------------------------------ turns

    def save_turn(self, turn: Turn) -> Turn:
        """Insert a turn and its candidates in one transaction; fills in their ids."""
        now = time.time()
        with self.transaction() as c:
            cur = c.execute(
                "INSERT INTO turns (conversation_id, messages_json, provider, model, params_json,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    turn.conversation_id,
                    _messages_json(turn.messages),
                    turn.provider,
                    turn.model,
                    json.dumps(turn.params.to_dict()),
                    now,
                ),
            )
            turn.id = int(cur.lastrowid or 0)
            turn.created_at = now
            for cand in turn.candidates:
                cand.turn_id = turn.id
                cand.id = self._insert_candidate(c, turn.id, cand)
            c.execute(
                "UPDATE conversations SET updated_at = ? WHERE id = ?", (now, turn.conversation_id)
            )
        return turn

    @staticmethod
    def _insert_candidate(c: sqlite3.Connection, turn_id: int, cand: Candidate) -> int:
        cur = c.execute(
            "INSERT INTO candidates (turn_id, idx, text, finish_reason, latency_s, ttft_s,"
            " prompt_tokens, completion_tokens, score, model_version, error)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
            " completion_tokens, score, model_version, error FROM candidates"
            " WHERE turn_id = ? ORDER BY idx",
            (turn_id,),
        ).fetchall()
        return [
            Candidate(
                id=r[0], index=r[1], text=r[2], finish_reason=r[3], latency_s=r[4], ttft_s=r[5],
                prompt_tokens=r[6], completion_tokens=r[7], score=r[8], model_version=r[9],
                error=r[10], turn_id=turn_id,
            )
            for r in rows
        ]

    def _turn_from_row(self, r: sqlite3.Row | tuple[Any, ...]) -> Turn:
        turn_id = int(r[0])
        chosen = self.conn.execute(
            "SELECT chosen_candidate_id FROM labels WHERE turn_id = ? AND source = 'pick'"
            " ORDER BY id DESC LIMIT 1",
            (turn_id,),
        ).fetchone()
        return Turn(
            id=turn_id,
            conversation_id=int(r[1]),
            messages=_messages_from_json(r[2]),
            provider=str(r[3]),
            model=str(r[4]),
            params=SamplingParams.from_dict(json.loads(r[5])),
            created_at=float(r[6]),
            candidates=self._candidates(turn_id),
            chosen_candidate_id=None if chosen is None else chosen[0],
        )

    def get_turn(self, turn_id: int) -> Turn:
        """One turn with its candidates and its pick, if any."""
        row = self.conn.execute(
            "SELECT id, conversation_id, messages_json, provider, model, params_json, created_at"
            " FROM turns WHERE id = ?",
            (turn_id,),
        ).fetchone()
        if row is None:
            raise StorageError(f"no turn {turn_id}")
        return self._turn_from_row(row)

    def list_turns(self, conversation_id: int) -> list[Turn]:
        """The turns of a conversation, oldest first."""
        rows = self.conn.execute(
            "SELECT id, conversation_id, messages_json, provider, model, params_json, created_at"
            " FROM turns WHERE conversation_id = ? ORDER BY id",
            (conversation_id,),
        ).fetchall()
        return [self._turn_from_row(r) for r in rows]

    # ------------------------------------------------------------------ labels and pairs

    def record_pick(
        self,
        turn_id: int,
        chosen_candidate_id: int,
        reason: str | None = None,
        model_top_candidate_id: int | None = None,
        against: Sequence[int] | None = None,
    ) -> int:
        """Record a thumbs-up: one label and its pairs in one durable transaction.

        The rejected side is every other whole reply: failed, cut, empty, filtered and
        Esc-stopped (cancelled) replies are left out (:mod:`rlhf_desktop.storage.pick_rules`).
        ``against`` names the rejected replies explicitly instead, which may include such a
        reply on purpose. Returns the label id. A previous pick on the same turn is replaced
        (re-picking is changing one's mind, not a second label).
        """
        turn = self.get_turn(turn_id)
        by_id = {c.id: c for c in turn.candidates}
        chosen = by_id.get(chosen_candidate_id)
        if chosen is None:
            raise StorageError(f"candidate {chosen_candidate_id} is not part of turn {turn_id}")
        if not chosen.text.strip():
            raise StorageError("the chosen reply is empty; pick a reply with text")
        others = rejected_side(turn.candidates, chosen.id, against)
        if not others:
            raise StorageError(no_rejected_message(turn.candidates, chosen.id))
        now = time.time()
        prompt = _messages_json(turn.messages)
        with self.transaction() as c:
            c.execute("DELETE FROM labels WHERE turn_id = ? AND source = 'pick'", (turn_id,))
            cur = c.execute(
                "INSERT INTO labels (created_at, source, turn_id, chosen_candidate_id,"
                " model_top_candidate_id, reason) VALUES (?, 'pick', ?, ?, ?, ?)",
                (now, turn_id, chosen.id, model_top_candidate_id, reason),
            )
            label_id = int(cur.lastrowid or 0)
            c.executemany(
                "INSERT INTO pairs (label_id, prompt_json, chosen, rejected, chosen_candidate_id,"
                " rejected_candidate_id, reason, source, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, 'pick', ?)",
                [
                    (label_id, prompt, chosen.text, o.text, chosen.id, o.id, reason, now)
                    for o in others
                ],
            )
        return label_id

    def set_label_reason(self, label_id: int, reason: str | None) -> None:
        """Attach (or clear) the one-line reason of a label and its pairs."""
        reason = (reason or "").strip() or None
        with self.transaction() as c:
            c.execute("UPDATE labels SET reason = ? WHERE id = ?", (reason, label_id))
            c.execute("UPDATE pairs SET reason = ? WHERE label_id = ?", (reason, label_id))

    def delete_label(self, label_id: int) -> int:
        """Undo a label with all its pairs. Returns the number of pairs removed."""
        with self.transaction() as c:
            n = c.execute("SELECT COUNT(*) FROM pairs WHERE label_id = ?", (label_id,)).fetchone()
            c.execute("DELETE FROM labels WHERE id = ?", (label_id,))
        return int(n[0])

    def add_pairs(self, pairs: Sequence[PreferencePair], source: str = "import") -> int:
        """Store pairs that did not come from a pick, each as its own label, all or nothing."""
        if source not in PAIR_SOURCES:
            raise StorageError(f"source must be one of {PAIR_SOURCES}")
        now = time.time()
        with self.transaction() as c:
            for pair in pairs:
                created = pair.created_at or now
                cur = c.execute(
                    "INSERT INTO labels (created_at, source, reason) VALUES (?, ?, ?)",
                    (created, source, pair.reason),
                )
                c.execute(
                    "INSERT INTO pairs (label_id, prompt_json, chosen, rejected, reason, source,"
                    " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        cur.lastrowid,
                        _messages_json(pair.prompt),
                        pair.chosen,
                        pair.rejected,
                        pair.reason,
                        source,
                        created,
                    ),
                )
        return len(pairs)

    def delete_pairs(self, pair_ids: Sequence[int]) -> int:
        """Delete pairs; a label left without pairs goes too."""
        with self.transaction() as c:
            removed = 0
            for start in range(0, len(pair_ids), 500):
                chunk = list(pair_ids[start : start + 500])
                marks = ",".join("?" * len(chunk))
                removed += c.execute(f"DELETE FROM pairs WHERE id IN ({marks})", chunk).rowcount
            c.execute("DELETE FROM labels WHERE id NOT IN (SELECT DISTINCT label_id FROM pairs)")
        return removed

    def count_labels(self) -> int:
        """How many labels (picks and imported preferences)."""
        return int(self.conn.execute("SELECT COUNT(*) FROM labels").fetchone()[0])

    def count_picks_since(self, since: float) -> int:
        """Labels of any source recorded after ``since`` (for "3/5 labels to next training")."""
        row = self.conn.execute("SELECT COUNT(*) FROM labels WHERE created_at > ?", (since,))
        return int(row.fetchone()[0])

    def last_label(self) -> Label | None:
        """The most recent label."""
        labels = self.recent_labels(1)
        return labels[0] if labels else None

    def recent_labels(self, limit: int, source: str | None = None) -> list[Label]:
        """The newest labels first."""
        where = "WHERE l.source = ?" if source else ""
        args: list[Any] = [source] if source else []
        rows = self.conn.execute(
            "SELECT l.id, l.created_at, l.source, l.turn_id, l.chosen_candidate_id, l.reason,"
            " l.model_top_candidate_id, (SELECT COUNT(*) FROM pairs p WHERE p.label_id = l.id)"
            f" FROM labels l {where} ORDER BY l.id DESC LIMIT ?",
            [*args, limit],
        ).fetchall()
        return [Label(*r) for r in rows]

    def agreement_rate(self, last: int = 50) -> tuple[float | None, int]:
        """Share of the last ``last`` picks where the pick was the model's top-ranked reply."""
        picks = [
            lab
            for lab in self.recent_labels(last, source="pick")
            if lab.model_top_candidate_id is not None
        ]
        if not picks:
            return None, 0
        agreed = sum(1 for lab in picks if lab.model_top_candidate_id == lab.chosen_candidate_id)
        return agreed / len(picks), len(picks)

    def label_times(self) -> list[float]:
        """When each label was recorded, oldest first (labels over time)."""
        return [float(r[0]) for r in self.conn.execute("SELECT created_at FROM labels ORDER BY id")]

    # ------------------------------------------------------------------ model versions

    def next_model_version(self) -> int:
        """The number the next trained model gets."""
        row = self.conn.execute("SELECT MAX(version) FROM model_versions").fetchone()
        return int(row[0] or 0) + 1

    def record_model_version(self, version: ModelVersion) -> None:
        """Record a trained model (its file is already saved)."""
        with self.transaction() as c:
            c.execute(
                "INSERT INTO model_versions (version, created_at, path, metrics_json, pairs,"
                " labels) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    version.version,
                    version.created_at,
                    version.path,
                    json.dumps(version.metrics),
                    version.pairs,
                    version.labels,
                ),
            )

    def add_model_version(
        self, path_for: Callable[[int], str], metrics: dict[str, Any], pairs: int, labels: int
    ) -> ModelVersion:
        """Record a trained model under the next free number, allocated atomically.

        Safe when two processes train at once: each gets its own number.
        """
        now = time.time()
        with self.transaction() as c:
            row = c.execute("SELECT COALESCE(MAX(version), 0) + 1 FROM model_versions").fetchone()
            number = int(row[0])
            record = ModelVersion(number, now, path_for(number), metrics, pairs, labels)
            c.execute(
                "INSERT INTO model_versions (version, created_at, path, metrics_json, pairs,"
                " labels) VALUES (?, ?, ?, ?, ?, ?)",
                (number, now, record.path, json.dumps(metrics), pairs, labels),
            )
        return record

    def list_model_versions(self) -> list[ModelVersion]:
        """Oldest first."""
        return self._model_versions("ORDER BY version")

    def latest_model_version(self) -> ModelVersion | None:
        """The newest recorded model."""
        versions = self._model_versions("ORDER BY version DESC LIMIT 1")
        return versions[0] if versions else None

    def _model_versions(self, tail: str) -> list[ModelVersion]:
        rows = self.conn.execute(
            "SELECT version, created_at, path, metrics_json, pairs, labels FROM model_versions "
            + tail
        ).fetchall()
        return [
            ModelVersion(int(r[0]), float(r[1]), str(r[2]), json.loads(r[3]), int(r[4]), int(r[5]))
            for r in rows
        ]

    # ------------------------------------------------------------------ embedding cache

    def get_embeddings(self, embedder_id: str, hashes: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        """Cached vectors by text hash (missing hashes are absent from the result)."""
        found: dict[bytes, np.ndarray] = {}
        for start in range(0, len(hashes), 500):
            chunk = list(hashes[start : start + 500])
            marks = ",".join("?" * len(chunk))
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
            if c.execute("SELECT 1 FROM labels WHERE turn_id = ? AND source = 'pick'",
                         (turn_id,)).fetchone() is not None:
                raise StorageError("this turn has a pick; undo it before replacing a reply")
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
                " model_version = NULL, error = ? WHERE id = ?",
                (cand.text, cand.finish_reason, cand.latency_s, cand.ttft_s, cand.prompt_tokens,
                 cand.completion_tokens, cand.error, row[0]),
            )
            cand.id = int(row[0])
        return cand
