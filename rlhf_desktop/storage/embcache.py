"""A thread-safe embedding cache on its own SQLite connection (used from worker threads)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rlhf_desktop.storage.repo import Repository


class SqliteEmbeddingCache:
    """Implements ``reward.embedder.EmbeddingCache`` on the ``embeddings`` table."""

    def __init__(self, path: Path | None = None) -> None:
        self._repo = Repository.open(path)
        self._lock = threading.Lock()

    def get_embeddings(self, embedder_id: str, hashes: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        """Cached vectors for the hashes that are present."""
        with self._lock:
            return self._repo.embeddings.get(embedder_id, hashes)

    def put_embeddings(self, embedder_id: str, items: dict[bytes, np.ndarray]) -> None:
        """Store vectors."""
        with self._lock:
            self._repo.embeddings.put(embedder_id, items)

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._repo.close()
