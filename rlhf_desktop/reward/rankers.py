"""Transformers rankers in the data folder: ``<data folder>/rankers/rNNNN/``.

Each is a plain transformers folder (``AutoModelForSequenceClassification``, one output) with
``ranker.json`` (base, pairs, steps, held-out accuracy) and ``train-keys.json`` beside the
weights, registered by ``python -m rlhf_desktop.tune`` with ``method: reward``. Nothing here
imports torch.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlhf_desktop.config.files import publish_numbered
from rlhf_desktop.reward.hf_ranker import META_FILE, read_meta

_NAME = re.compile(r"^r(\d{4,})$")


@dataclass(frozen=True)
class RankerFolder:
    """One registered ranker."""

    number: int
    folder: Path
    meta: dict[str, Any]

    @property
    def name(self) -> str:
        """``r0003``."""
        return self.folder.name

    @property
    def held_out_accuracy(self) -> float | None:
        """Accuracy on the pairs held out of its training (None when there were none)."""
        value = (self.meta.get("held_out") or {}).get("accuracy")
        return None if value is None else float(value)


def rankers_dir() -> Path:
    """``rankers/`` in the data folder (made on first use)."""
    from rlhf_desktop import config

    path = config.data_dir() / "rankers"
    path.mkdir(parents=True, exist_ok=True)
    return path


def list_rankers() -> list[RankerFolder]:
    """Every complete ranker, oldest first (half-copied folders are ignored)."""
    out = []
    for child in rankers_dir().iterdir():
        match = _NAME.match(child.name)
        if not match or not (child / META_FILE).is_file() or not (child / "config.json").is_file():
            continue
        out.append(RankerFolder(int(match.group(1)), child, read_meta(child)))
    return sorted(out, key=lambda r: r.number)


def register(model_dir: Path, move: bool = False) -> RankerFolder:
    """Copy (or move) a finished ranker folder into the next free ``rNNNN`` (atomic)."""
    root = rankers_dir()
    staging = root / f".new-{os.getpid()}-{time.monotonic_ns()}"
    try:
        if move:
            shutil.move(str(model_dir), str(staging))
        else:
            shutil.copytree(model_dir, staging)
        number, target = publish_numbered(root, staging, "r")
        return RankerFolder(number, target, read_meta(target))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
