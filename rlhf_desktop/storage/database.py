"""The connection every repository of a :class:`~rlhf_desktop.storage.repo.Repository`
shares, its one transaction helper, and the small helpers their SQL uses."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from rlhf_desktop.domain import Message

__all__ = ["IN_CHUNK", "Database", "StorageError", "in_chunks", "messages_from_json",
           "messages_json", "restore_row"]


class StorageError(Exception):
    """A request the database cannot satisfy (unknown id, bad value); the message says why."""


class Database:
    """One SQLite connection (one per thread) and its transactions.

    Every repository writes through :meth:`transaction`. A write that spans two aggregates
    (a pick writes a label, its pairs and the turn's display) opens one transaction and hands
    its connection to the other aggregate's in-transaction method (whose name says so), so
    the whole write commits or rolls back together."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

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

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()


IN_CHUNK = 500  # SQLite's default limit is 999 bound parameters


def in_chunks(values: Sequence[Any]) -> Iterator[tuple[list[Any], str]]:
    """``values`` in chunks small enough for one ``IN (...)``, each with its ``?`` marks."""
    for start in range(0, len(values), IN_CHUNK):
        chunk = list(values[start:start + IN_CHUNK])
        yield chunk, ",".join("?" * len(chunk))


def messages_json(messages: Sequence[Message]) -> str:
    """Messages as the JSON stored in ``turns.messages_json`` and ``pairs.prompt_json``."""
    return json.dumps([m.to_dict() for m in messages], ensure_ascii=False)


def messages_from_json(text: str) -> list[Message]:
    """Messages stored as JSON."""
    return [Message.from_dict(item) for item in json.loads(text)]


# Which column of a restored row points at another row that may be gone by then.
_REFERENCES = {
    "turn_id": "turns", "chosen_candidate_id": "candidates",
    "model_top_candidate_id": "candidates", "rejected_candidate_id": "candidates",
}


def restore_row(c: sqlite3.Connection, table: str, row: dict[str, Any]) -> int:
    """Insert a deleted row of ``table`` back as it was stored, inside the transaction of
    ``c``; its id. An id taken in the meantime gets a new one, and a reference to a turn or
    reply deleted since becomes NULL (as the delete would have made it). Each repository
    calls it for its own table only."""
    values = dict(row)
    for column, target in _REFERENCES.items():
        ref = values.get(column)
        if ref is not None and c.execute(f"SELECT 1 FROM {target} WHERE id = ?",
                                         (ref,)).fetchone() is None:
            values[column] = None
    taken = c.execute(f"SELECT 1 FROM {table} WHERE id = ?", (values["id"],)).fetchone()
    if taken is not None:
        del values["id"]
    names = list(values)
    cur = c.execute(f"INSERT INTO {table} ({', '.join(names)}) VALUES"
                    f" ({', '.join('?' * len(names))})", [values[n] for n in names])
    return int(cur.lastrowid or 0)
