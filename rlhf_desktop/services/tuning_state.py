"""What the window shows of a local tuning run: :class:`TunePlan` before it starts,
:class:`TuneSnapshot` while it goes, and how each progress event moves the snapshot
(:func:`apply_event`; the events are described in :mod:`rlhf_desktop.tune.progress`)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rlhf_desktop.domain import CandidateSource
from rlhf_desktop.tune.options import TuneConfig

__all__ = ["ACTIVE", "STATES", "TunePlan", "TuneSnapshot", "ab_notice", "apply_event",
           "make_plan", "pid_runs_tune"]

STATES = ("idle", "preparing", "running", "cancelling", "done", "failed", "cancelled")
ACTIVE = ("preparing", "running", "cancelling")
WALL_S_PER_PAIR = 9.2
"""Measured with the defaults (1 torch thread, max_length 256, LoRA r16 on q/v) on 2 busy
cores: docs/benchmarks.md, "Tuning the chat model"."""
OVERHEAD_S = 90.0
"""Loading torch and the model, then converting the adapter (the first run also dequantises
the base once, about a minute more)."""


@dataclass(frozen=True)
class TunePlan:
    """What a new run would take, before it starts."""

    pairs: int
    steps: int
    estimate_s: float | None
    basis: str
    """Where the estimate comes from (the last run here, or the benchmark)."""
    blocker: str | None = None
    """Why it cannot start now (no pairs, the extra missing, a run going), or None."""

    def text(self) -> str:
        """One line for the Tune button's neighbour."""
        if self.blocker:
            return self.blocker
        pairs = f"{self.pairs} preference pair{'s' if self.pairs != 1 else ''}"
        steps = f"{self.steps} step{'s' if self.steps != 1 else ''}"
        if self.estimate_s is None:
            return f"{pairs}, {steps}"
        return (f"{pairs}, {steps}, about {duration(self.estimate_s)} "
                f"({self.basis})")


@dataclass(frozen=True)
class TuneSnapshot:
    """Where the local run is, for the window."""

    state: str = "idle"
    stage: str = ""
    step: int | None = None
    max_steps: int | None = None
    loss: float | None = None
    accuracy: float | None = None
    margin: float | None = None
    elapsed_s: float | None = None
    eta_s: float | None = None
    pairs_total: int | None = None
    pairs_used: int | None = None
    left_out: list[dict[str, Any]] = field(default_factory=list)
    """Pairs whose prompt alone does not fit (line, preview, prompt_tokens)."""
    truncated: int = 0
    data_summary: str = ""
    checkpoint_step: int | None = None
    version: int | None = None
    """The chat-model version this run made."""
    message: str = ""
    error: str = ""
    """The run's own error message, if it reported one."""
    run_dir: str = ""
    pid: int | None = None
    """The tuning process (from its start event)."""
    outcome: str = ""
    """``completed`` or ``cancelled`` from the run's done event."""

    @property
    def active(self) -> bool:
        """Preparing, running or cancelling."""
        return self.state in ACTIVE

    @property
    def fraction(self) -> float | None:
        """Steps done over max steps (None before the first step is known)."""
        if not self.max_steps or self.step is None:
            return None
        return min(1.0, self.step / self.max_steps)

    @property
    def can_resume(self) -> bool:
        """Stopped with a checkpoint to continue from."""
        return self.state in ("cancelled", "failed") and self.checkpoint_step is not None


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    minutes = round(seconds / 60)
    if minutes < 90:
        return f"{minutes} min"
    return f"{minutes / 60:.1f} h"


def pid_runs_tune(pid: int, module: str) -> bool:
    """Whether ``pid`` is alive and is a tuning child (not a reused pid)."""
    try:
        os.kill(pid, 0)
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return False
    return module.encode() in cmdline



def apply_event(snap: TuneSnapshot, event: dict[str, Any], live: bool) -> TuneSnapshot:
    """The snapshot after one progress event (see :mod:`rlhf_desktop.tune.progress`).
    While the process is ``live`` its exit status decides how it ended, not the events."""
    kind = event.get("event")
    if kind == "start":
        pid = event.get("pid")
        # a new process of the run (a resume appends to the same file): it starts afresh
        return replace(snap, state="cancelling" if snap.state == "cancelling" else "preparing",
                       stage="starting", pid=pid if isinstance(pid, int) else None,
                       outcome="", error="", version=None)
    if kind == "stage":
        stage = str(event.get("stage") or "")
        state = snap.state
        if stage == "training" and state in ("idle", "preparing"):
            state = "running"
        text = {"base model": "Preparing the base model (the first run takes a minute more)…",
                "data": "Measuring your pairs against the length limit…",
                "loading model": "Loading the model…",
                "training": "Training…",
                "converting to GGUF": "Converting the adapter for the chat…"}.get(stage, stage)
        if stage == "training" and event.get("resume_from"):
            text = f"Training, resumed from {Path(str(event['resume_from'])).name}…"
        return replace(snap, state=state, stage=stage,
                       message=snap.message if state == "cancelling" else text)
    if kind == "data":
        return replace(snap, pairs_total=event.get("pairs"), pairs_used=event.get("used"),
                       left_out=[{k: p.get(k) for k in ("line", "preview", "prompt_tokens")}
                                 for p in event.get("dropped_prompt_too_long") or []],
                       truncated=len(event.get("truncated") or []),
                       data_summary=str(event.get("summary") or ""))
    if kind == "step":
        return replace(snap, step=event.get("step"), max_steps=event.get("max_steps"),
                       loss=event.get("loss"), accuracy=event.get("accuracy"),
                       margin=event.get("margin"), eta_s=event.get("eta_s"))
    if kind == "checkpoint":
        return replace(snap, checkpoint_step=event.get("step"))
    if kind == "version":
        return replace(snap, version=event.get("version"))
    if kind == "done":
        status = event.get("status")
        version = event.get("version", snap.version)
        state = snap.state if live else "done" if status == "completed" else "cancelled"
        return replace(snap, version=version, step=event.get("steps", snap.step), state=state,
                       outcome=str(status or ""))
    if kind == "error":
        error = str(event.get("message") or "failed")
        return replace(snap, error=error, state=snap.state if live else "failed",
                       message=snap.message if live else error)
    return snap


def seconds_per_pair() -> tuple[float, str]:
    """Wall seconds a pair: from the last version made here (when it saw 16 or more
    pairs), else the benchmark's figure; and where the figure comes from."""
    from rlhf_desktop.tune.versions import list_versions

    for version in reversed(list_versions()):
        m = version.manifest
        settings = m.get("settings") or {}
        seen = (m.get("steps") or 0) * settings.get("batch_size", 0) * settings.get(
            "grad_accum", 0)
        if seen >= 16 and m.get("seconds"):
            rate = max(0.1, (float(m["seconds"]) - OVERHEAD_S) / seen)
            shown = f"{rate:.0f}" if rate >= 10 else f"{rate:.1f}"
            return rate, f"{shown} s a pair in your run v{version.version}"
    return WALL_S_PER_PAIR, f"{WALL_S_PER_PAIR:.0f} s a pair measured on 2 busy cores"


def make_plan(pairs: int, overrides: dict[str, Any], max_steps: int | None,
              blocker: str | None) -> TunePlan:
    """Steps and estimate of a run on ``pairs`` with the defaults and ``overrides``."""
    cfg = TuneConfig(**{k: v for k, v in overrides.items()
                        if k in TuneConfig.__dataclass_fields__})
    per_step = cfg.batch_size * cfg.grad_accum
    steps = max_steps or cfg.max_steps or max(1, math.ceil(pairs * cfg.epochs / per_step))
    rate, basis = seconds_per_pair()
    estimate = OVERHEAD_S + steps * per_step * rate if pairs else None
    return TunePlan(pairs, steps, estimate, basis, blocker)


def ab_notice(offered: list[CandidateSource], arena: list[CandidateSource]) -> str:
    """What "Try it blind" says: the two sources now compared head to head, and the other
    sources it turned off (they stay in the list)."""
    names = {s.name for s in offered}
    others = [s.name for s in arena if s.name not in names]
    off = (f" ({', '.join(others)} turned off for now: Settings → Candidate sources turns "
           "them back on)" if others else "")
    return ("Blind comparison on: the next turns show " + " and ".join(s.name for s in offered)
            + " in random order, names hidden until you pick" + off + ".")
