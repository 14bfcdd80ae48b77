"""Run folders: ``<data>/tune-runs/<time>/`` with the exported pairs, ``tune-config.json``,
``progress.jsonl``, ``tune.log``, ``checkpoints/`` and, once done, ``version.json``.

Shared by ``rlhf-desktop tune`` (``cli.py``) and the window's tuning service
(:mod:`rlhf_desktop.services.tuning.service`); cheap to import (no torch).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from rlhf_desktop.tune.options import TuneConfig, TuneConfigError, load_config
from rlhf_desktop.tune.pipeline import VERSION_MARKER
from rlhf_desktop.tune.process import CONFIG_FILE

RUNS_DIR = "tune-runs"
PAIRS_FILE = "pairs.jsonl"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def runs_dir(data_dir: Path) -> Path:
    """``tune-runs/`` of a data folder (not created)."""
    return data_dir / RUNS_DIR


def new_run_dir(runs: Path) -> Path:
    """A new, empty run folder named after the time."""
    run_dir = runs / time.strftime("%Y%m%d-%H%M%S")
    while run_dir.exists():
        run_dir = run_dir.with_name(run_dir.name + "-1")
    run_dir.mkdir(parents=True)
    return run_dir


def export_pairs(run_dir: Path) -> int:
    """The data folder's pairs as ``trl-conversational`` lines in ``run_dir``; the count.

    Opens its own database connection, so it may run in any thread; writes the file
    atomically (a failed export never leaves half a file)."""
    from rlhf_desktop.config import atomic_write_bytes
    from rlhf_desktop.core.formats import export_lines
    from rlhf_desktop.storage.repo import Repository

    repo = Repository.open()
    try:
        pairs = list(repo.pairs.stream())
    finally:
        repo.close()
    text = "".join(export_lines(pairs, "trl-conversational"))
    atomic_write_bytes(run_dir / PAIRS_FILE, text.encode("utf-8"))
    return len(pairs)


def new_config(runs: Path, overrides: dict[str, Any], config_file: str | None = None,
               system_prompt: str = "") -> TuneConfig:
    """Export the pairs into a new run folder and build its settings (``overrides`` win over
    ``config_file``; without a file the chat's ``system_prompt`` is used). Raises
    TuneConfigError when there is nothing to tune on."""
    run_dir = new_run_dir(runs)
    if export_pairs(run_dir) == 0:
        raise TuneConfigError("there are no preference pairs to tune on yet: pick replies in "
                              "the chat, or `rlhf-desktop import FILE`")
    values = {**overrides, "data": str(run_dir / PAIRS_FILE), "output_dir": str(run_dir)}
    if config_file:
        return load_config(config_file, values)
    return TuneConfig.from_mapping({"system_prompt": system_prompt, **values})


def latest_run(runs: Path) -> Path | None:
    """The newest run folder that has its settings written."""
    found = sorted(runs.glob(f"*/{CONFIG_FILE}")) if runs.is_dir() else []
    return found[-1].parent if found else None


def resume_config(runs: Path, overrides: dict[str, Any] | None = None) -> TuneConfig:
    """The newest run's settings (same pairs file); ``max_steps``/``epochs`` may extend it."""
    run = latest_run(runs)
    if run is None:
        raise TuneConfigError(f"there is no run to resume in {runs}")
    return load_config(run / CONFIG_FILE, overrides or {})


def checkpoint_steps(run_dir: Path) -> list[int]:
    """The steps of the run's checkpoints, oldest first (cheap: no transformers)."""
    folder = run_dir / "checkpoints"
    if not folder.is_dir():
        return []
    return sorted(int(m.group(1)) for c in folder.iterdir()
                  if c.is_dir() and (m := _CHECKPOINT.match(c.name)))


def version_made(run_dir: Path) -> int | None:
    """The chat-model version this run produced, if it did."""
    try:
        made = json.loads((run_dir / VERSION_MARKER).read_text(encoding="utf-8"))
        return int(made["version"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
