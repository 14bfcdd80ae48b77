"""Reward-model versions on disk: the folder of each version, saving a trained model as the
next version (crash-safe: a hidden pending folder, then a rename), the pinned version
(``rlhf-desktop use``), the order versions are tried in, and the cleanup of pending folders
left by killed runs. Re-exported by :mod:`rlhf_desktop.services.ranking.rewards`."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rlhf_desktop import config
from rlhf_desktop.domain import ModelVersion
from rlhf_desktop.reward.model import TinyRewardModel
from rlhf_desktop.storage.repo import Repository

__all__ = ["PIN_FILENAME", "candidate_order", "clean_pending", "pin_version", "pinned_version",
           "publish", "save_pending", "store_version", "version_dir"]

PIN_FILENAME = "in-use.json"


def version_dir(version: int) -> Path:
    """The folder of a model version."""
    return config.models_dir() / f"v{version:04d}"


def candidate_order(versions: Sequence[ModelVersion], pinned: int | None
                    ) -> list[ModelVersion]:
    """Which versions to try loading, in order: pinned, adopted newest first, the rest."""
    newest_first = list(reversed(versions))
    first = [v for v in newest_first if v.version == pinned]
    adopted = [v for v in newest_first
               if v.version != pinned and (v.metrics.get("adoption") or {}).get("adopted", True)]
    rest = [v for v in newest_first if v not in first and v not in adopted]
    return first + adopted + rest


def pinned_version() -> int | None:
    """The version chosen with ``rlhf-desktop use`` (None: the newest adopted one)."""
    path = config.models_dir() / PIN_FILENAME
    try:
        value = json.loads(path.read_text(encoding="utf-8")).get("version")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, int) else None


def pin_version(version: int | None) -> None:
    """Use ``version`` from now on (None: back to the newest adopted one)."""
    path = config.models_dir() / PIN_FILENAME
    if version is None:
        path.unlink(missing_ok=True)
        return
    config.atomic_write_bytes(path, json.dumps({"version": version}).encode())


def store_version(repo: Repository, model: TinyRewardModel, metrics: dict[str, Any]
                  ) -> ModelVersion:
    """Save a trained model and record it as the next version.

    Order: save into a hidden pending folder (fsynced), record the version (which allocates
    its number atomically), rename the folder into place. A crash at any point leaves the
    previous versions loadable; a recorded version whose folder never arrived is skipped
    by :meth:`RewardService.load_current`.
    """
    pending = save_pending(model)
    record = repo.versions.add(
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
