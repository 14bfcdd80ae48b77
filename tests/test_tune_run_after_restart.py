"""How the tune panel's service reads a run back after the window restarts: a finished run
reads as finished (never as its last stage), and a run killed while converting its adapter
says so and offers Resume (real run folders, written as the tuning process writes them)."""

from __future__ import annotations

import json
from pathlib import Path

from rlhf_desktop.config import Settings
from rlhf_desktop.services.tuning.service import TuningService
from rlhf_desktop.tune.process import CONFIG_FILE
from rlhf_desktop.tune.progress import Progress
from rlhf_desktop.tune.runs import runs_dir

DEAD_PID = 2**22 + 12345  # above pid_max's default: no process has it


def _run_folder(data_home: Path, finished: bool) -> Path:
    run = runs_dir(data_home) / "20261206-090000"
    (run / "checkpoints" / "checkpoint-2").mkdir(parents=True)
    (run / CONFIG_FILE).write_text(json.dumps({"data": "pairs.jsonl"}), encoding="utf-8")
    progress = Progress(run / "progress.jsonl")
    progress.emit("start", pid=DEAD_PID, processes=1)
    progress.emit("stage", stage="data")
    progress.emit("data", pairs=3, used=3, dropped_prompt_too_long=[], truncated=[])
    progress.emit("stage", stage="training")
    for step in (1, 2):
        progress.emit("step", step=step, max_steps=2, loss=0.69, accuracy=0.5, margin=0.0)
        progress.emit("checkpoint", step=step)
    progress.emit("stage", stage="converting to GGUF")
    if finished:
        progress.emit("version", version=1)
        progress.emit("done", status="completed", steps=2, max_steps=2, version=1)
    progress.close()
    return run


def test_a_finished_run_reads_as_finished_after_a_restart(data_home: Path) -> None:
    _run_folder(data_home, finished=True)
    snap = TuningService(data_home, Settings).snapshot()
    assert snap.state == "done" and snap.version == 1
    assert snap.message == "Chat model v1 is ready", snap.message
    assert "Converting" not in snap.message


def test_a_run_killed_while_converting_says_so_and_offers_resume(data_home: Path) -> None:
    _run_folder(data_home, finished=False)
    snap = TuningService(data_home, Settings).snapshot()
    assert snap.state == "cancelled" and snap.can_resume
    assert "while converting the adapter" in snap.message, snap.message
    assert "Resume converts it again" in snap.message
