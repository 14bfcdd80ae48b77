"""Reward-model versions recorded in the database (the ``model_versions`` table):
``repo.versions``. (The chat model's tuned versions are folders, not rows:
:mod:`rlhf_desktop.tune.versions`.)"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from rlhf_desktop.domain import ModelVersion
from rlhf_desktop.storage.database import Database

__all__ = ["Versions"]


class Versions:
    """Reads and writes of the reward model's recorded versions."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def add(
        self, path_for: Callable[[int], str], metrics: dict[str, Any], pairs: int, labels: int
    ) -> ModelVersion:
        """Record a trained model under the next free number, allocated atomically.

        Safe when two processes train at once: each gets its own number.
        """
        now = time.time()
        with self._db.transaction() as c:
            row = c.execute("SELECT COALESCE(MAX(version), 0) + 1 FROM model_versions").fetchone()
            number = int(row[0])
            record = ModelVersion(number, now, path_for(number), metrics, pairs, labels)
            c.execute(
                "INSERT INTO model_versions (version, created_at, path, metrics_json, pairs,"
                " labels) VALUES (?, ?, ?, ?, ?, ?)",
                (number, now, record.path, json.dumps(metrics), pairs, labels),
            )
        return record

    def list_all(self) -> list[ModelVersion]:
        """Oldest first."""
        return self._model_versions("ORDER BY version")

    def latest(self) -> ModelVersion | None:
        """The newest recorded model."""
        versions = self._model_versions("ORDER BY version DESC LIMIT 1")
        return versions[0] if versions else None

    def _model_versions(self, tail: str) -> list[ModelVersion]:
        rows = self._db.conn.execute(
            "SELECT version, created_at, path, metrics_json, pairs, labels FROM model_versions "
            + tail
        ).fetchall()
        return [
            ModelVersion(int(r[0]), float(r[1]), str(r[2]), json.loads(r[3]), int(r[4]), int(r[5]))
            for r in rows
        ]

