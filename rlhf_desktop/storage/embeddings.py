"""Cached sentence embeddings by text hash (the ``embeddings`` table):
``repo.embeddings``."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rlhf_desktop.storage.database import Database, in_chunks

__all__ = ["Embeddings"]


class Embeddings:
    """Reads and writes of cached vectors (float32), per embedder."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def get(self, embedder_id: str, hashes: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        """Cached vectors by text hash (missing hashes are absent from the result)."""
        found: dict[bytes, np.ndarray] = {}
        for chunk, marks in in_chunks(hashes):
            rows = self._db.conn.execute(
                f"SELECT text_hash, dim, vector FROM embeddings WHERE embedder_id = ?"
                f" AND text_hash IN ({marks})",
                [embedder_id, *chunk],
            )
            for h, dim, blob in rows:
                vec = np.frombuffer(blob, dtype=np.float32)
                if vec.shape[0] == dim:
                    found[bytes(h)] = vec
        return found

    def put(self, embedder_id: str, items: dict[bytes, np.ndarray]) -> None:
        """Store vectors (float32) by text hash."""
        if not items:
            return
        rows = [
            (embedder_id, h, int(v.shape[0]), np.asarray(v, dtype=np.float32).tobytes())
            for h, v in items.items()
        ]
        with self._db.transaction() as c:
            c.executemany(
                "INSERT OR REPLACE INTO embeddings (embedder_id, text_hash, dim, vector)"
                " VALUES (?, ?, ?, ?)",
                rows,
            )

    def count(self) -> int:
        """How many vectors are cached, of every embedder."""
        return int(self._db.conn.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0])
