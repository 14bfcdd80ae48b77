"""Read queries on preference pairs (a mixin of :class:`~rlhf_desktop.storage.repo.Repository`)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from typing import Any

from rlhf_desktop.domain import Message, PreferencePair, last_user_text

PairRow = tuple[int, str, str, str, str | None, str, float]
"""(id, last user message, chosen, rejected, reason, source, created_at)"""


class StorageError(Exception):
    """A request the database cannot satisfy (unknown id, bad value); the message says why."""


def messages_from_json(text: str) -> list[Message]:
    """Messages stored as JSON."""
    return [Message.from_dict(item) for item in json.loads(text)]


class PairQueries:
    """Reads of the ``pairs`` table."""

    conn: sqlite3.Connection

    _PAIR_COLUMNS = (
        "id, label_id, prompt_json, chosen, rejected, reason, source, created_at,"
        " chosen_candidate_id, rejected_candidate_id"
    )

    @staticmethod
    def _pair(r: tuple[Any, ...]) -> PreferencePair:
        return PreferencePair(
            id=r[0], label_id=r[1], prompt=tuple(messages_from_json(r[2])), chosen=r[3],
            rejected=r[4], reason=r[5], source=r[6], created_at=r[7], chosen_candidate_id=r[8],
            rejected_candidate_id=r[9],
        )

    def iter_pairs(self, text_filter: str = "") -> Iterator[PreferencePair]:
        """Every pair, oldest first, streamed."""
        sql, args = self._pair_query(text_filter)
        for row in self.conn.execute(sql + " ORDER BY id", args):
            yield self._pair(row)

    def all_pairs(self) -> list[PreferencePair]:
        """Every pair, oldest first."""
        return list(self.iter_pairs())

    def _pair_query(self, text_filter: str) -> tuple[str, list[Any]]:
        sql = f"SELECT {self._PAIR_COLUMNS} FROM pairs"
        if not text_filter:
            return sql, []
        like = f"%{text_filter}%"
        where = " WHERE (prompt_json LIKE ? OR chosen LIKE ? OR rejected LIKE ? OR reason LIKE ?)"
        return sql + where, [like, like, like, like]

    def pairs_page(self, offset: int, limit: int, text_filter: str = "") -> list[PreferencePair]:
        """A page of pairs, newest first (for the lazily loaded dataset view)."""
        sql, args = self._pair_query(text_filter)
        rows = self.conn.execute(sql + " ORDER BY id DESC LIMIT ? OFFSET ?", [*args, limit, offset])
        return [self._pair(r) for r in rows]

    def pair_rows(self, before_id: int | None, limit: int, text_filter: str = ""
                  ) -> list[PairRow]:
        """A page of light rows, newest first, after ``before_id`` (keyset paging: every
        page costs the same, however deep). Rows are tuples of text and numbers only, so a
        view holding 100k of them gives the garbage collector nothing to walk."""
        sql, args = self._pair_query(text_filter)
        sql = sql.replace(self._PAIR_COLUMNS, "id, prompt_json, chosen, rejected, reason,"
                          " source, created_at")
        if before_id is not None:
            sql += (" AND" if args else " WHERE") + " id < ?"
            args = [*args, before_id]
        rows = self.conn.execute(sql + " ORDER BY id DESC LIMIT ?", [*args, limit])
        return [
            (r[0], last_user_text(messages_from_json(r[1])), r[2], r[3], r[4], r[5], r[6])
            for r in rows
        ]

    def get_pair(self, pair_id: int) -> PreferencePair:
        """One pair by id."""
        row = self.conn.execute(
            f"SELECT {self._PAIR_COLUMNS} FROM pairs WHERE id = ?", (pair_id,)
        ).fetchone()
        if row is None:
            raise StorageError(f"no pair {pair_id}")
        return self._pair(row)

    def count_pairs(self, text_filter: str = "") -> int:
        """How many pairs (matching the filter)."""
        sql, args = self._pair_query(text_filter)
        return int(self.conn.execute(f"SELECT COUNT(*) FROM ({sql})", args).fetchone()[0])

