"""What the window shows of a local tuning run: :class:`TunePlan` before it starts,
:class:`TuneSnapshot` while it goes, and how each progress event moves the snapshot
(:func:`apply_event`; the events are described in :mod:`rlhf_desktop.tune.progress`)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rlhf_desktop.core.chat_models import version_name
from rlhf_desktop.domain import CandidateSource
from rlhf_desktop.tune.options import TuneConfig

__all__ = ["ACTIVE", "STATES", "TunePlan", "TuneSnapshot", "ab_notice", "apply_event",
           "make_plan", "pid_runs_tune", "tuned_versions"]

STATES = ("idle", "preparing", "running", "cancelling", "done", "failed", "cancelled")
ACTIVE = ("preparing", "running", "cancelling")
WALL_S_PER_PAIR = 5.65
"""Measured with the defaults (every core, 1 × 8 pairs a step, max_length 256, LoRA r16 on all
7 layers) on an idle 2-core machine: ``benchmarks/tune.py``, "recipe, 2 threads, 1 × 8 pairs"
(docs/scale-out.md). Used until the user's own run has measured their machine."""
OVERHEAD_S = 90.0
"""Loading torch and the model, then converting the adapter (the first run also dequantises
the base once, about a minute more)."""


def cut_pairs_words(n: int, used: bool) -> str:
    """What the plan says of the pairs against a reply cut at max tokens, and why."""
    pairs = f"{n} pair{'s' if n != 1 else ''} against a reply cut at max tokens"
    if used:
        return (f"{pairs} included (you preferred a whole reply over one that stops "
                "mid-sentence: a real preference, and it teaches the model to finish its "
                "replies)")
    return f"{pairs} left out, as chosen"


@dataclass(frozen=True)
class TunePlan:
    """What a new run would take, before it starts."""

    pairs: int
    """The pairs the run will train on (all stored pairs until they were measured)."""
    steps: int
    estimate_s: float | None
    basis: str
    """Where the estimate comes from (the last run here, or the benchmark)."""
    blocker: str | None = None
    """Why it cannot start now (no pairs, the extra missing, a run going), or None."""
    stored: int | None = None
    """Every stored pair, when the pairs were measured against the length limit."""
    left_out: int = 0
    """Pairs that cannot be used: the system prompt and the last message alone fill it."""
    context_cut: int = 0
    """Pairs used with the earliest turns of their chat cut to fit."""
    max_length: int = 0
    checking: bool = False
    """The pairs are being measured against the length limit now."""
    cut_pairs: int = 0
    """Stored pairs whose rejected reply was cut at max tokens."""
    use_cut_pairs: bool = True
    """Whether the run tunes on those too."""
    seen: int = 0
    """Pairs the steps go through, repeats counted (epochs × pairs, or the budget's cap);
    0: not known (taken as ``pairs``)."""
    cap: str = "a run's budget"
    """What caps the pairs seen below one pass: the pair budget, or the steps set."""

    def text(self) -> str:
        """One line (or two) for the Tune button's neighbour."""
        if self.blocker:
            return self.blocker
        if self.stored is not None and self.stored != self.pairs:
            pairs = f"{self.pairs} of your {self.stored} preference pairs"
        else:
            pairs = f"{self.pairs} preference pair{'s' if self.pairs != 1 else ''}"
        steps = f"{self.steps} step{'s' if self.steps != 1 else ''}"
        if self.seen and self.pairs and self.seen != self.pairs:
            # the estimate is seconds a pair × pairs seen: say how many are seen
            times = self.seen / self.pairs
            how = (self.cap if times < 1 else "each pair twice" if round(times, 1) == 2
                   else f"each pair about {times:.1f} times")
            steps += f" ({self.seen} pairs in all: {how})"
        text = f"{pairs}, {steps}"
        if self.estimate_s is not None:
            text += f", about {duration(self.estimate_s)} ({self.basis})"
        notes = []
        if self.left_out:
            notes.append(f"{self.left_out} pair{'s' if self.left_out != 1 else ''} cannot be "
                         f"used: the system prompt and the last message alone are longer than "
                         f"the length limit ({self.max_length} tokens)")
        if self.context_cut:
            notes.append(f"{self.context_cut} from later turns of a chat are used with their "
                         "earliest turns cut to fit the length limit")
        if self.cut_pairs:
            notes.append(cut_pairs_words(self.cut_pairs, self.use_cut_pairs))
        if self.checking:
            notes.append("measuring which pairs fit the length limit…")
        if not notes:
            return text
        body = "; ".join(notes)
        body = body[:1].upper() + body[1:]  # a new sentence
        # A note that trails off with "…" already ends the sentence: no "…." after it.
        return f"{text}. {body}" + ("" if body.endswith("…") else ".")


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
    context_cut: int = 0
    """Pairs used with the earliest turns of their chat cut to fit the length limit."""
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
                       context_cut=len(event.get("context_cut") or []),
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
        steps = event.get("steps", snap.step)
        # read back after the fact (a restart): the last stage's words ("Converting the
        # adapter…") must not outlive the run; while live, the exit status words it
        message = snap.message if live else finished_message(
            str(status or ""), version if isinstance(version, int) else None,
            steps if isinstance(steps, int) else None)
        return replace(snap, version=version, step=steps, state=state,
                       outcome=str(status or ""), message=message)
    if kind == "error":
        error = str(event.get("message") or "failed")
        return replace(snap, error=error, state=snap.state if live else "failed",
                       message=snap.message if live else error)
    return snap


def finished_message(status: str, version: int | None, steps: int | None) -> str:
    """How a finished run reads afterwards (from its done event)."""
    if status == "completed":
        return (f"Chat model v{version} is ready" if version is not None
                else "Training finished (no chat-model version was made)")
    return (f"Cancelled at step {steps}; Resume continues from the checkpoint" if steps
            else "Cancelled before the first checkpoint")


def stopped_message(stage: str, checkpoint: int | None) -> str:
    """How a run that ended without its done event reads after a restart (its process was
    killed, or the computer stopped): where it stopped and what Resume does."""
    if stage == "converting to GGUF":
        return ("The last run was stopped while converting the adapter for the chat (training "
                "had finished): Resume converts it again, without training again"
                if checkpoint else "The last run was stopped while converting the adapter")
    return (f"The last run stopped at step {checkpoint} without finishing; Resume continues "
            "from its checkpoint" if checkpoint else
            "The last run stopped before its first checkpoint")


def run_rate(run_dir: Path) -> float | None:
    """Wall seconds a pair in a run, from its own progress file: the steps' measured
    durations (a step redone after a resume counted once, every process of a cancelled and
    resumed run included) over the pairs those steps trained on (the epoch reached times the
    pairs the trainer kept); None without measured steps."""
    from rlhf_desktop.tune.progress import read_events

    events, _ = read_events(run_dir / "progress.jsonl")
    seconds: dict[int, float] = {}
    trainer_pairs: int | None = None
    per_step: int | None = None
    last_step, epoch = 0, None
    for event in events:
        kind = event.get("event")
        if kind == "start":
            cfg = event.get("config") or {}
            if isinstance(cfg.get("batch_size"), int) and isinstance(cfg.get("grad_accum"), int):
                per_step = cfg["batch_size"] * cfg["grad_accum"]
        elif kind == "stage" and isinstance(event.get("trainer_pairs"), int):
            trainer_pairs = event["trainer_pairs"]
        elif kind == "step" and isinstance(event.get("step"), int):
            if isinstance(event.get("seconds"), int | float) and event["seconds"] > 0:
                seconds[event["step"]] = float(event["seconds"])
            if event["step"] >= last_step:
                last_step = event["step"]
                epoch = event.get("epoch") if isinstance(event.get("epoch"),
                                                         int | float) else None
    if not seconds or not last_step:
        return None
    if epoch and trainer_pairs:
        pairs_per_step = epoch * trainer_pairs / last_step
    elif per_step:
        pairs_per_step = float(per_step)
    else:
        return None
    mean_step = sum(seconds.values()) / len(seconds)
    return mean_step / pairs_per_step if pairs_per_step > 0 else None


def tuned_versions() -> list[tuple[int, str]]:
    """The tuned chat-model versions in this data folder, as (number, label), base first."""
    found: list[tuple[int, str]] = [(0, "the base model (v0)")]
    try:
        from rlhf_desktop.tune.versions import list_versions

        versions = list_versions()
    except OSError:
        return found
    for v in versions:
        when = str(v.manifest.get("created_at", ""))[:10]
        pairs = v.manifest.get("pairs") or v.manifest.get("pairs_used")
        extra = ", ".join(x for x in (f"tuned {when}" if when else "",
                                      f"{pairs} pairs" if isinstance(pairs, int) else "") if x)
        found.append((v.version, f"chat model v{v.version}" + (f" ({extra})" if extra else "")))
    return found


def seconds_per_pair() -> tuple[float, str]:
    """Wall seconds a pair: measured in the newest version made here whose run folder still
    holds its progress (:func:`run_rate`), else the benchmark's figure; and where the figure
    comes from."""
    from rlhf_desktop import config
    from rlhf_desktop.tune.runs import runs_dir, version_made
    from rlhf_desktop.tune.versions import list_versions

    versions = list_versions()
    made: dict[int, Path] = {}  # version -> run folder, for manifests without run_dir
    runs = runs_dir(config.data_dir())
    if versions and runs.is_dir():
        for run in runs.iterdir():
            number = version_made(run)
            if number is not None:
                made[number] = run
    for version in reversed(versions):
        named = version.manifest.get("run_dir")
        run_dir = Path(named) if isinstance(named, str) and named else made.get(
            version.version)
        rate = run_rate(run_dir) if run_dir is not None else None
        if rate is not None:
            shown = f"{rate:.0f}" if rate >= 10 else f"{rate:.1f}"
            return rate, f"{shown} s a pair in your run v{version.version}"
    return WALL_S_PER_PAIR, f"{WALL_S_PER_PAIR:.0f} s a pair measured on 2 idle cores"


def make_plan(pairs: int, overrides: dict[str, Any], max_steps: int | None,
              blocker: str | None, fit: dict[str, Any] | None = None,
              checking: bool = False) -> TunePlan:
    """Steps and estimate of a run with the defaults and ``overrides`` on ``pairs`` stored
    pairs, or, when ``fit`` (the data report of :func:`rlhf_desktop.tune.data.fit_report`)
    is given, on the pairs it will use."""
    cfg = TuneConfig(**{k: v for k, v in overrides.items()
                        if k in TuneConfig.__dataclass_fields__})
    stored, used = pairs, pairs
    left_out = cut = 0
    if fit is not None:
        used = int(fit.get("used") or 0)
        left_out = len(fit.get("dropped_prompt_too_long") or [])
        cut = len(fit.get("context_cut") or [])
    per_step = cfg.batch_size * cfg.grad_accum
    budget = int(getattr(cfg, "pair_budget", 0) or 0)  # a cap on pairs × epochs, if set
    passes = used * cfg.epochs if not budget else min(used * cfg.epochs, budget)
    steps = max_steps or cfg.max_steps or max(1, math.ceil(passes / per_step))
    rate, basis = seconds_per_pair()
    # the pairs the steps go through: every used pair once an epoch, or max_steps batches
    seen = steps * per_step if (max_steps or cfg.max_steps) else passes
    estimate = OVERHEAD_S + seen * rate if used else None
    if fit is not None and not used and blocker is None:
        blocker = (f"None of your {stored} pairs fits the length limit ({cfg.max_length} "
                   "tokens): the system prompt and the last message alone are longer")
    return TunePlan(used, steps, estimate, basis, blocker,
                    stored=stored if fit is not None else None, left_out=left_out,
                    context_cut=cut, max_length=cfg.max_length, checking=checking,
                    seen=round(seen) if used else 0,
                    cap="the steps set" if (max_steps or cfg.max_steps) else "a run's budget")


def chat_model_line(version: int, arena: bool, provider_kind: str, provider_name: str) -> str:
    """The line beside "Chat with": which model the chat uses now. It follows the settings
    (a one-off "now chats with v1" stayed after a switch back in Settings), and says when
    the chosen version is not what the chat uses: a blind comparison runs, or another
    provider answers."""
    name = version_name(version)
    if arena:
        return ("Your chat compares candidate sources blind (the arena); choosing a version "
                "here ends the comparison and chats with it.")
    if provider_kind == "local":
        return f"Your chat uses {name}."
    if not provider_kind:
        return f"The built-in model chats with {name}."
    return (f"The built-in model chats with {name} when you choose it above the chat "
            f"(\"from\"); your chat uses {provider_name} now.")


def ab_notice(offered: list[CandidateSource], arena: list[CandidateSource]) -> str:
    """What "Try it blind" says: the two sources now compared head to head, and the other
    sources it turned off (they stay in the list)."""
    names = {s.name for s in offered}
    others = [s.name for s in arena if s.name not in names]
    off = (f" ({', '.join(others)} turned off for now: Settings → Candidate sources turns "
           "them back on)" if others else "")
    return ("Blind comparison on: your next turns in the Chat tab show "
            + " and ".join(s.name for s in offered)
            + " in random order, names hidden until you pick" + off + ".")
