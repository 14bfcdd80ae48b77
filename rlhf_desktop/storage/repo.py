"""All reads and writes of the database: one repository per aggregate, composed on one
connection. One :class:`Repository` per thread."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rlhf_desktop.storage.arena import Arena
from rlhf_desktop.storage.conversations import Conversations
from rlhf_desktop.storage.database import Database, StorageError
from rlhf_desktop.storage.db import connect
from rlhf_desktop.storage.embeddings import Embeddings
from rlhf_desktop.storage.labels import Labels
from rlhf_desktop.storage.pairs import PairRow, Pairs
from rlhf_desktop.storage.provenance import Provenance
from rlhf_desktop.storage.versions import Versions

__all__ = ["PairRow", "Repository", "StorageError"]


class Repository:
    """The database's repositories, sharing one connection: ``conversations`` (with their
    turns and replies), ``labels``, ``pairs``, ``versions`` (the reward model's),
    ``embeddings`` (the cache), and the reads ``arena`` and ``provenance``. Every write is
    one transaction, committed durably; a write that spans aggregates is one transaction."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self._db = Database(conn)
        self.conversations = Conversations(self._db)
        self.provenance = Provenance(self._db)
        self.pairs = Pairs(self._db, self.provenance)
        self.labels = Labels(self._db, self.conversations, self.pairs)
        self.versions = Versions(self._db)
        self.embeddings = Embeddings(self._db)
        self.arena = Arena(self._db)

    @classmethod
    def open(cls, path: Path | None = None) -> Repository:
        """Open (and migrate) the database in the data folder or at ``path``."""
        return cls(connect(path))

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` … ``COMMIT`` on the shared connection (raw SQL: tests, bulk
        loads); rolled back on any exception."""
        with self._db.transaction() as c:
            yield c

    def stats(self) -> dict[str, Any]:
        """Counts for ``rlhf-desktop stats``."""
        latest = self.versions.latest()
        return {
            "conversations": self.conversations.count(),
            "turns": self.conversations.count_turns(),
            "labels": self.labels.count(),
            "labels_by_kind": self.labels.kinds(),
            "pairs": self.pairs.count(),
            "pairs_by_source": self.pairs.count_by_source(),
            "embeddings_cached": self.embeddings.count(),
            "model_version": None if latest is None else latest.version,
            "model_metrics": None if latest is None else latest.metrics,
        }
