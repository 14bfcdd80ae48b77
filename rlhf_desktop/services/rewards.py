"""The current reward model: versions on disk, loading with fallback, training runs.

Qt-free. ``train_now`` is a plain blocking call meant for a worker thread; it opens its own
database connection, so it never shares one with the caller's thread.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlhf_desktop import config
from rlhf_desktop.domain import ModelVersion
from rlhf_desktop.reward.embedder import Embedder
from rlhf_desktop.reward.model import ModelFileError, TinyRewardModel
from rlhf_desktop.reward.training import CancelFlag, ProgressFn, TrainConfig, train
from rlhf_desktop.storage.embcache import SqliteEmbeddingCache
from rlhf_desktop.storage.repo import Repository

log = logging.getLogger(__name__)


def version_dir(version: int) -> Path:
    """The folder of a model version."""
    return config.models_dir() / f"v{version:04d}"


@dataclass
class Ranked:
    """Scores of a turn's replies and the model version that gave them (None: untrained)."""

    scores: list[float]
    version: int | None


class RewardService:
    """Owns the embedder and the current :class:`TinyRewardModel`."""

    def __init__(self, db_path: Path | None = None, embedder: Embedder | None = None) -> None:
        self.db_path = db_path
        settings = config.load_settings()
        self.embedder = embedder or Embedder(
            settings.embedder_path or None, cache=SqliteEmbeddingCache(db_path)
        )
        self.model = TinyRewardModel(embedder=self.embedder)
        self.load_warnings: list[str] = []
        self._train_lock = threading.Lock()

    # ------------------------------------------------------------------ loading

    def load_current(self, repo: Repository) -> TinyRewardModel:
        """The newest version that loads; a refused file falls back to the one before it."""
        self.load_warnings = []
        clean_pending()
        for version in reversed(repo.list_model_versions()):
            try:
                model = TinyRewardModel.load(version.path, embedder=self.embedder)
            except (ModelFileError, OSError, ValueError, EOFError) as exc:
                message = f"model v{version.version} was not loaded: {exc}"
                log.warning(message)
                self.load_warnings.append(message)
                continue
            model.version = version.version
            self.model = model
            return model
        self.model = TinyRewardModel(embedder=self.embedder)
        return self.model

    @property
    def version(self) -> int | None:
        """The version of the model in use (None while untrained)."""
        return self.model.version if self.model.trained else None

    # ------------------------------------------------------------------ scoring

    def rank(self, prompt: str, replies: Sequence[str]) -> Ranked:
        """Score replies with the current model (embeds them; call from a worker thread)."""
        model = self.model
        scores = model.score(prompt, list(replies))
        return Ranked(scores=scores, version=model.version if model.trained else None)

    # ------------------------------------------------------------------ training

    def train_now(
        self,
        cfg: TrainConfig | None = None,
        progress: ProgressFn | None = None,
        cancel: CancelFlag | None = None,
    ) -> ModelVersion:
        """Train on every stored pair, save a new version atomically, record it, use it.

        Blocking; one at a time (a second call waits for the first).
        """
        with self._train_lock:
            repo = Repository.open(self.db_path)
            try:
                pairs = repo.all_pairs()
                result = train(pairs, cfg, self.embedder, progress, cancel)
                record = store_version(repo, result.model, result.metrics)
            finally:
                repo.close()
            result.model.version = record.version
            self.model = result.model
            log.info("trained model v%d: %s", record.version, _summary(result.metrics))
            return record


def store_version(repo: Repository, model: TinyRewardModel, metrics: dict[str, Any]
                  ) -> ModelVersion:
    """Save a trained model and record it as the next version.

    Order: save into a hidden pending folder (fsynced), record the version (which allocates
    its number atomically), rename the folder into place. A crash at any point leaves the
    previous versions loadable; a recorded version whose folder never arrived is skipped
    by :meth:`RewardService.load_current`.
    """
    pending = save_pending(model)
    record = repo.add_model_version(
        lambda n: str(version_dir(n)), metrics, int(metrics["pairs"]), int(metrics["labels"])
    )
    publish(pending, Path(record.path))
    return record


def save_pending(model: TinyRewardModel) -> Path:
    """Save a trained model into a fresh hidden folder under models/ (not yet a version)."""
    pending = config.models_dir() / f".pending-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    model.save(pending)
    return pending


def publish(pending: Path, final: Path) -> None:
    """Move a saved model into its version folder (a rename: all or nothing)."""
    if final.exists():  # left by an interrupted run; the database row is authoritative
        shutil.rmtree(final)
    os.replace(pending, final)
    config.fsync_dir(final.parent)


def clean_pending() -> int:
    """Remove folders left by training runs that were killed mid-save."""
    removed = 0
    for folder in config.models_dir().glob(".pending-*"):
        pid = folder.name.split("-")[1]
        if pid.isdigit() and _alive(int(pid)) and int(pid) != os.getpid():
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed += 1
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _summary(metrics: dict[str, object]) -> str:
    acc = metrics.get("cv_accuracy")
    acc_text = "n/a" if acc is None else f"{float(str(acc)) * 100:.1f} %"
    return f"CV accuracy {acc_text} on {metrics.get('pairs')} pairs"
