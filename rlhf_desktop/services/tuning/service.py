"""Tuning the chat model from the window (Qt-free): a local DPO LoRA run on the user's pairs.

:class:`TuningService` wraps the command line's machinery (:mod:`rlhf_desktop.tune`):
``start()`` exports the stored pairs into a new run folder (a background-runner job) and starts
``python -m rlhf_desktop.tune`` in its own process at nice 19 — never in the window's
process. The run trains, converts the adapter to GGUF and registers chat-model version N.
:meth:`TuningService.snapshot` reads the run's progress file (never blocking) and says where
it is: state, step of max steps, loss, reward accuracy and margin, elapsed time, the
estimate, the pairs that did not fit, and a message. ``cancel()`` stops after the current
step and keeps the checkpoint; ``resume()`` continues from it. When a run made version N,
:meth:`TuningService.offer_ab` adds the base and vN as candidate sources and turns the arena
on: the next turns compare them blind. Remote DPO jobs are in :mod:`.tuning_remote`
(``service.remote``).

The service publishes: :attr:`TuningService.did_progress` (the session's
``tune_did_progress`` hook) fires on the session's event loop with the run's snapshot whenever
anything the tune panel shows changed (a progress line of the run, its state, the pairs' or
the effect's measurement, the tune extra's install, the remote job); the window renders that
and polls nothing. :meth:`snapshot` still answers on demand (the command line, tests), and
``on_change`` is also called, from any thread, when the state changes. Work off the loop runs
as jobs of the session's :class:`~rlhf_desktop.services.runner.BackgroundRunner` (no threads
of its own): exporting before a run (lane ``tune-prepare``), measuring the pairs
(``tune-fit``), reading the effect measurement's output as it comes (``tune-effect``: its
progress lines are the events) and following the run for the hook (``tune-follow``).

The one poll left is in that follower: while a run goes, it reads the run's progress file
every :data:`FOLLOW_FILE_S`. The file is the run's only channel, and it must stay one: it is
read back after a restart and by a window that attaches to a run another process started (or
the command line's ``tune``), and an append to a file fires nothing a process can wait on
without a platform watcher (inotify and the like; none in the standard library). Everything
else the follower publishes is an event (``_changed`` rings it and gives the job when none
is going); while no run goes the job ends after publishing, so nothing waits or polls.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from rlhf_desktop import config
from rlhf_desktop.config import Settings
from rlhf_desktop.core.chat_models import version_name
from rlhf_desktop.domain import CandidateSource
from rlhf_desktop.services.arena.service import ArenaService
from rlhf_desktop.services.hooks import Hook
from rlhf_desktop.services.runner import BackgroundRunner, Handle, Job
from rlhf_desktop.services.tuning.effect import PROMPTS as EFFECT_PROMPTS
from rlhf_desktop.services.tuning.effect import Effect, load_effect
from rlhf_desktop.services.tuning.install import InstallSnapshot, TuneInstall
from rlhf_desktop.services.tuning.remote import RemoteTuning
from rlhf_desktop.services.tuning.state import (
    ACTIVE,
    STATES,
    TunePlan,
    TuneSnapshot,
    apply_event,
    chat_model_line,
    make_plan,
    pid_runs_tune,
    stopped_message,
)
from rlhf_desktop.tune.options import TuneConfig, TuneConfigError
from rlhf_desktop.tune.process import EXIT_MEANING, TuneProcess
from rlhf_desktop.tune.progress import read_events
from rlhf_desktop.tune.runs import (
    PAIRS_FILE,
    checkpoint_steps,
    export_pairs,
    latest_run,
    new_config,
    new_run_dir,
    resume_config,
    runs_dir,
    version_made,
)

log = logging.getLogger(__name__)

__all__ = ["STATES", "InstallSnapshot", "TunePlan", "TuneSnapshot", "TuningService"]

BASE_NAME = "base"
FIT_CHECK_DIR = ".fit-check"
"""Where the plan's measurement of the pairs exports them (in ``tune-runs/``)."""
FOLLOW_FILE_S = 0.5
"""How often the follower reads a going run's progress file (see the module docstring)."""
FOLLOW_LANE = "tune-follow"


class _Bell(threading.Event):
    """The follower's cancel event: setting it (the handle's cancel, the runner's close) also
    rings ``wake``, so a follower waiting for the next change ends at once."""

    def __init__(self, wake: threading.Event) -> None:
        super().__init__()
        self._wake = wake

    def set(self) -> None:
        super().set()
        self._wake.set()


class _Pending:
    """A measurement whose process has not started yet (it is exporting the pairs)."""

    returncode = None

    def poll(self) -> int | None:
        return None

    def kill(self) -> None:
        return None


class TuningService:
    """Start, follow, cancel and resume local tuning runs; see the module docstring."""

    def __init__(self, data_dir: Path, settings: Callable[[], Settings],
                 arena: ArenaService | None = None, *,
                 apply: Callable[[Settings], None] | None = None,
                 on_change: Callable[[], None] | None = None,
                 overrides: dict[str, Any] | None = None, nice: int = 19,
                 module: str = "rlhf_desktop.tune", python: str = sys.executable,
                 runner: BackgroundRunner | None = None,
                 did_progress: Hook[[TuneSnapshot]] | None = None) -> None:
        """``settings`` returns the settings in use; ``apply`` saves-and-uses new ones (for
        :meth:`use_version`); ``overrides`` are TuneConfig values every run gets (tests,
        benchmarks); ``module`` is the child's entry point; ``runner`` the session's (default:
        one of its own, closed by :meth:`close`); ``did_progress`` the hook to publish on
        (the session's ``tune_did_progress``; default: one of its own)."""
        self.data_dir = Path(data_dir)
        self.did_progress: Hook[[TuneSnapshot]] = (
            did_progress if did_progress is not None else Hook("tune_did_progress"))
        """Fired on the runner's event loop with the run's snapshot after anything this
        service shows changed (see the module docstring)."""
        self._wake = threading.Event()
        """Rung by :meth:`_changed`: the follower publishes the snapshot."""
        self._follower: Handle[None] | None = None
        self._follower_alive = False
        """Whether a follower job is given and has not decided to end (under the lock)."""
        self._own_runner = runner is None
        self._runner = runner if runner is not None else BackgroundRunner()
        self._settings = settings
        self._arena = arena
        self._apply = apply
        self._on_change = on_change
        self.overrides = dict(overrides or {})
        self.nice = nice
        self.module = module
        self.python = python
        self.remote = RemoteTuning(on_change=self._changed, runner=self._runner)
        self.install = TuneInstall(on_change=self._changed, python=python, runner=self._runner)
        """The tune extra: whether it is installed, and installing it with pip (a child
        process followed like the runs; see :mod:`.tune_install`)."""
        self._lock = threading.RLock()
        self._process: TuneProcess | None = None
        self._attached_pid: int | None = None
        self._offset = 0
        self._progress: Path | None = None
        self._snap = TuneSnapshot()
        self._started: float | None = None
        self._cancel_requested = False
        self.use_cut_pairs = True
        """Tune on the pairs whose rejected reply was cut at max tokens too (the default:
        a whole reply preferred over one that stops mid-sentence is a real preference, and
        it teaches the model to finish its replies); False leaves them out."""
        self.amplify = False
        """Before a run, let the user's reward model label extra pairs among fresh replies
        to the user's past prompts (:mod:`.amplify`: only while it is accurate enough). Off
        by default until the loop benchmark's amplified arm beats the picks alone
        (docs/benchmarks.md, "The on-policy loop")."""
        self.fit_check = module == "rlhf_desktop.tune"
        """Whether :meth:`check_fit` measures the pairs (the real tuning module only)."""
        self._fit: tuple[tuple[Any, ...], dict[str, Any]] | None = None
        self._fit_proc: Any = None
        self._closed = False
        self.measure_after_run = module == "rlhf_desktop.tune"
        """Whether a run that made a version starts measuring its effect (the real tuning
        module only: a scripted run's adapter is no GGUF)."""
        self._effect_proc: Any = None
        self._effect_version: int | None = None
        self._effect_note = ""
        self._recover()
        if self._attached_pid is not None:  # a run of another process: follow it
            self._ensure_follower()

    @classmethod
    def for_session(cls, session: Any, **kwargs: Any) -> TuningService:
        """The service for an :class:`~rlhf_desktop.services.session.AppSession`."""
        def apply(settings: Settings) -> None:
            session.apply_settings(settings)
            session.spawn(session.rebuild_provider(), "rebuild provider")

        kwargs.setdefault("runner", session.runner)
        kwargs.setdefault("did_progress", session.hooks.tune_did_progress)
        return cls(config.data_dir(), lambda: session.settings, session.arena, apply=apply,
                   **kwargs)

    # ------------------------------------------------------------------ plan

    def plan(self, max_steps: int | None = None) -> TunePlan:
        """Pairs, steps and the estimated time of a new run (cheap: one count query)."""
        from rlhf_desktop.storage.repo import Repository

        repo = Repository.open()
        try:
            pairs = repo.pairs.count()
            cut = len(repo.pairs.cut_ids())
        finally:
            repo.close()
        if not self.use_cut_pairs:
            pairs -= cut
        blocker = None
        extra = self.install.check() if self.module == "rlhf_desktop.tune" else None
        if self.snapshot().active:
            blocker = "A tuning run is going"
        elif not pairs:
            blocker = ("No preference pairs to tune on yet: pick replies in the chat, or "
                       "import a file on the dataset page")
        elif extra is not None and extra.active:
            blocker = "Installing the tuning packages…"
        elif extra is not None and not extra.available:
            blocker = (f"Tuning needs the 'tune' extra ({', '.join(extra.missing)} missing)"
                       + (": install it above" if extra.can_install else ""))
        fit, checking = self._fit_for(pairs)
        return replace(make_plan(pairs, self.overrides, max_steps, blocker, fit, checking),
                       cut_pairs=cut, use_cut_pairs=self.use_cut_pairs)

    # ------------------------------------------------------------------ which pairs fit

    def _fit_key(self, pairs: int) -> tuple[Any, ...]:
        cfg = TuneConfig(**{k: v for k, v in self.overrides.items()
                            if k in TuneConfig.__dataclass_fields__})
        return (pairs, self._settings().system_prompt, cfg.max_length, cfg.model,
                self.use_cut_pairs)

    def _fit_for(self, pairs: int) -> tuple[dict[str, Any] | None, bool]:
        """The data report of the stored pairs, when measured for these settings, and
        whether a measurement is going."""
        with self._lock:
            key = self._fit_key(pairs) if pairs else None
            fit = self._fit[1] if self._fit is not None and self._fit[0] == key else None
            checking = self._fit_proc is not None and self._fit_proc.poll() is None
            return fit, checking

    def check_fit(self) -> bool:
        """Measure the stored pairs against the length limit (the chat template's tokens)
        in a low-priority child process, unless this is known for the pairs and settings or
        a measurement is going; the plan counts only the pairs a run will use once this
        is done (``on_change`` is called then). Returns whether a measurement started."""
        from rlhf_desktop.storage.repo import Repository

        if not self.fit_check:
            return False
        repo = Repository.open()
        try:
            pairs = repo.pairs.count()
        finally:
            repo.close()
        if not self.use_cut_pairs:
            pairs -= len(repo_cut_ids())
        with self._lock:
            key = self._fit_key(pairs)
            busy = self._fit_proc is not None and self._fit_proc.poll() is None
            if not pairs or busy or (self._fit is not None and self._fit[0] == key):
                return False
            self._fit_proc = _Pending()
            self._runner.run(lambda _job: self._measure(key), lane="tune-fit",
                             name="measure the pairs")
        return True

    def _measure(self, key: tuple[Any, ...]) -> None:
        import json
        import subprocess

        _pairs, system_prompt, max_length, model, use_cut = key
        folder = runs_dir(self.data_dir) / FIT_CHECK_DIR
        report: dict[str, Any] | None = None
        try:
            folder.mkdir(parents=True, exist_ok=True)
            export_for_tuning(folder, use_cut)
            cmd = [self.python, "-m", "rlhf_desktop.tune.data", "--data",
                   str(folder / "pairs.jsonl"), "--max-length", str(max_length),
                   "--system-prompt", system_prompt, "--model", model, "--nice", str(self.nice)]
            with self._lock:
                if self._closed:
                    return
                proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True)
                self._fit_proc = proc
            out, err = proc.communicate()
            if proc.returncode == 0:
                report = json.loads(out)
            else:
                log.warning("measuring the pairs failed (exit %s): %s", proc.returncode,
                            config.redact(err[-500:]))
        except (OSError, ValueError, config.ConfigError) as exc:
            log.warning("measuring the pairs failed: %s", exc)
        finally:
            with self._lock:
                if report is not None:
                    self._fit = (key, report)
                self._fit_proc = None
        self._changed()

    # ------------------------------------------------------------------ start, cancel, resume

    def start(self, max_steps: int | None = None) -> TuneSnapshot:
        """Export the pairs (in a worker thread) and start a new run; returns at once."""
        overrides = dict(self.overrides)
        if max_steps:
            overrides["max_steps"] = max_steps
        settings = self._settings()
        system_prompt = settings.system_prompt
        use_cut = self.use_cut_pairs
        amplify = self.amplify

        def prepare() -> TuneConfig:
            if use_cut:
                cfg = new_config(runs_dir(self.data_dir), overrides, None, system_prompt)
            else:
                run_dir = new_run_dir(runs_dir(self.data_dir))
                if export_for_tuning(run_dir, use_cut_pairs=False) == 0:
                    raise TuneConfigError("there are no preference pairs to tune on without "
                                          "the pairs against a cut reply")
                cfg = TuneConfig.from_mapping({"system_prompt": system_prompt, **overrides,
                                               "data": str(run_dir / PAIRS_FILE),
                                               "output_dir": str(run_dir)})
            if amplify:
                self._amplify(cfg, settings)
            return cfg

        return self._launch(prepare, "Exporting your pairs…")

    def _amplify(self, cfg: TuneConfig, settings: Settings) -> None:
        """RM amplification before a run (:func:`.amplify.amplify`): the reward model labels
        best-vs-worst among fresh replies of the chat model in use to the user's past
        prompts, and those lines join the run's pairs file (never the database). The run's
        ``amplification.json`` and the snapshot's message say what was done."""
        from rlhf_desktop.domain import SamplingParams
        from rlhf_desktop.services.ranking.rewards import RewardService
        from rlhf_desktop.services.tuning import amplify
        from rlhf_desktop.services.tuning.effect import past_prompts
        from rlhf_desktop.storage.repo import Repository

        with self._lock:
            self._snap = replace(self._snap, message=(
                "Your reward model is labelling extra pairs: the chat model answers your past "
                "prompts again (a few minutes)…"))
        self._changed()
        repo = Repository.open()
        try:
            pairs = repo.pairs.list_all()
            versions = {v.version: v for v in repo.versions.list_all()}
            rewards = RewardService()
            rewards.load_current(repo)
        finally:
            repo.close()
        version = rewards.model.version if rewards.model.trained else None
        record = versions.get(version) if version is not None else None
        params = SamplingParams(n=amplify.N, temperature=settings.temperature,
                                top_p=settings.top_p, max_tokens=settings.max_tokens,
                                system_prompt=settings.system_prompt)
        run_dir = Path(cfg.output_dir)
        report = amplify.amplify(
            run_dir, past_prompts(pairs, amplify.PROMPTS), params, settings.chat_model_version,
            record.cv_accuracy if record is not None else None, version,
            lambda prompt, texts: rewards.rank(prompt, texts).scores, rewards.model.temperature)
        if report.used:
            lines = (run_dir / amplify.FILE).read_text(encoding="utf-8")
            with Path(cfg.data).open("a", encoding="utf-8") as out:
                out.write(lines)
        with self._lock:
            self._snap = replace(self._snap, message=report.words())
        self._changed()

    def resume(self, max_steps: int | None = None) -> TuneSnapshot:
        """Continue the newest run from its last checkpoint (same pairs and settings)."""
        extra = {"max_steps": max_steps} if max_steps else {}

        def prepare() -> TuneConfig:
            return resume_config(runs_dir(self.data_dir), extra)

        return self._launch(prepare, "Resuming from the last checkpoint…")

    def _launch(self, prepare: Callable[[], TuneConfig], message: str) -> TuneSnapshot:
        with self._lock:
            if self._snap.active:
                raise RuntimeError("a tuning run is already going")
            self._process, self._attached_pid = None, None
            self._cancel_requested = False
            self._started = time.monotonic()
            self._snap = TuneSnapshot(state="preparing", message=message, elapsed_s=0.0)
            self._runner.run(lambda _job: self._prepare_and_start(prepare),
                             lane="tune-prepare", name="prepare a tuning run")
        self._changed()
        return self.snapshot()

    def _prepare_and_start(self, prepare: Callable[[], TuneConfig]) -> None:
        try:
            cfg = prepare()
        except (TuneConfigError, OSError, config.ConfigError) as exc:
            self._finish("failed", str(exc))
            return
        except Exception as exc:  # never leave the window waiting on a dead worker
            log.exception("preparing a tuning run failed")
            self._finish("failed", f"Preparing the run failed: {exc}")
            return
        process = TuneProcess(cfg, nice=self.nice, data_dir=str(self.data_dir),
                              python=self.python, module=self.module)
        with self._lock:
            if self._cancel_requested:
                self._snap = replace(self._snap, state="cancelled", run_dir=str(process.run_dir),
                                     message="Cancelled before training started")
            else:
                self._progress = process.progress_path
                try:
                    process.start()
                except OSError as exc:
                    self._snap = replace(self._snap, state="failed",
                                         message=f"The tuning process did not start: {exc}")
                    self._progress = None
                    self._changed()
                    return
                self._offset = process.offset
                self._process = process
                self._snap = replace(self._snap, run_dir=str(process.run_dir),
                                     checkpoint_step=_last(checkpoint_steps(process.run_dir)),
                                     message="Starting the tuning process (loading the model)…")
        self._changed()

    def cancel(self) -> None:
        """Stop after the current step; the checkpoint is kept (a second call stops now)."""
        with self._lock:
            if not self._snap.active:
                return
            if self._snap.state == "cancelling":
                self._kill()
                return
            self._cancel_requested = True
            self._signal_child()
            self._snap = replace(self._snap, state="cancelling",
                                 message="Stopping after the current step (the checkpoint is "
                                         "kept)…")
        self._changed()

    def _signal_child(self) -> None:
        if self._process is not None:
            self._process.cancel()
        elif self._attached_pid is not None:
            import signal

            try:
                os.killpg(self._attached_pid, signal.SIGTERM)
            except OSError:
                pass

    def _kill(self) -> None:
        if self._process is not None:
            self._process.kill()

    def close(self) -> None:
        """At the window's close: a run of this window stops after its step (resumable)."""
        with self._lock:
            self._closed = True
            if self._process is not None and self._process.running():
                self._process.cancel()
            if self._fit_proc is not None and self._fit_proc.poll() is None:
                self._fit_proc.kill()
            if self._effect_proc is not None and self._effect_proc.poll() is None:
                self._effect_proc.kill()  # a measurement is cheap to start again
        if self._follower is not None:
            self._follower.cancel()
        self.install.close()
        self.remote.close()
        if self._own_runner:
            self._runner.close()

    # ------------------------------------------------------------------ snapshot

    def snapshot(self) -> TuneSnapshot:
        """The run's state now (reads new progress lines; never blocks)."""
        changed = False
        with self._lock:
            before = self._snap
            self._read_events()
            self._check_exit()
            if self._snap.active and self._started is not None:
                self._snap = replace(self._snap, elapsed_s=time.monotonic() - self._started)
            changed = _milestone(before) != _milestone(self._snap)
            snap = self._snap
        if changed:
            self._changed()
        return snap

    def _read_events(self) -> None:
        if self._progress is None:
            return
        events, self._offset = read_events(self._progress, self._offset)
        live = self._process is not None or self._attached_pid is not None
        for event in events:
            self._snap = apply_event(self._snap, event, live)

    def _check_exit(self) -> None:
        code: int | None = None
        if self._process is not None:
            code = self._process.poll()
            if code is None:
                return
            self._process.wait()
        elif self._attached_pid is not None:
            if pid_runs_tune(self._attached_pid, self.module):
                return
            self._read_events()
            code = {"completed": 0, "cancelled": 3}.get(self._snap.outcome, 1)
        else:
            return
        self._read_events()  # the last lines written before the exit
        process, self._process, self._attached_pid = self._process, None, None
        if code == 0:
            version = self._snap.version
            late = (" (the cancel came during the last step, so the run finished)"
                    if self._cancel_requested else "")
            self._snap = replace(self._snap, state="done", eta_s=0.0, message=(
                f"Chat model v{version} is ready" if version is not None
                else "Training finished (no chat-model version was made)") + late)
            if version is not None and self.measure_after_run and not self._closed:
                self._runner.run(lambda _job: self.measure_effect(version),
                                 name="start measuring the effect")
        elif code == 3 or (code < 0 and self._cancel_requested):  # < 0: ended by a signal
            step = self._snap.checkpoint_step
            self._snap = replace(self._snap, state="cancelled", message=(
                f"Cancelled; the checkpoint at step {step} is kept: Resume continues from it"
                if step else "Cancelled before the first checkpoint"))
        else:
            error = self._snap.error
            tail = process.log_tail(6) if process is not None else ""
            self._snap = replace(self._snap, state="failed", message=error or (
                f"Tuning {EXIT_MEANING.get(code, 'failed')} (exit {code}). "
                f"{config.redact(tail)}".strip()))

    def _finish(self, state: str, message: str) -> None:
        with self._lock:
            self._snap = replace(self._snap, state=state, message=message)
        self._changed()

    def _changed(self) -> None:
        self._wake.set()
        self._ensure_follower()
        self._notify()

    def _notify(self) -> None:
        if self._on_change is not None:
            try:
                self._on_change()
            except Exception:
                log.exception("a tuning listener failed")

    # ------------------------------------------------------------------ publishing

    def _ensure_follower(self) -> None:
        """Give the job that publishes :attr:`did_progress` unless one is going (lane
        ``tune-follow``; the runner's progress callback brings each snapshot to the loop,
        the latest of a burst only). It ends once it has published a change and no run
        goes, so no thread waits while nothing happens."""
        with self._lock:
            if self._closed or self._follower_alive:
                return
            self._follower_alive = True
            self._follower = self._runner.run(self._follow, progress=self.did_progress,
                                              cancel=_Bell(self._wake), lane=FOLLOW_LANE,
                                              name="follow the tuning")
            if self._follower.cancelled:  # the runner is closed: nothing runs
                self._follower_alive = False

    def _follow(self, job: Job) -> None:
        """In the worker: publish each change; while a run goes, read its progress file
        every :data:`FOLLOW_FILE_S` too (the poll the module docstring explains)."""
        try:
            self._follow_changes(job)
        except BaseException:
            with self._lock:
                self._follower_alive = False  # the next change gives a new job
            raise

    def _follow_changes(self, job: Job) -> None:
        while not job.cancelled:
            with self._lock:
                following = self._process is not None or self._attached_pid is not None
                if not following and not self._wake.is_set():
                    self._follower_alive = False  # a change from now on gives a new job
                    return
            rung = self._wake.wait(FOLLOW_FILE_S)
            self._wake.clear()
            if job.cancelled:
                break
            with self._lock:
                before = self._snap
                self._read_events()
                self._check_exit()
                after = self._snap
            if _milestone(before) != _milestone(after):
                self._notify()  # what snapshot() would have said had it read these lines
            if rung or after is not before:
                job.report(self.snapshot())
        with self._lock:  # cancelled: the service or the runner closed
            self._follower_alive = False

    def _recover(self) -> None:
        """The newest run's state as its files tell it (after a restart)."""
        run = latest_run(runs_dir(self.data_dir))
        if run is None:
            return
        progress = run / "progress.jsonl"
        self._progress = progress
        self._offset = 0
        self._read_events()
        checkpoint = _last(checkpoint_steps(run))
        self._snap = replace(self._snap, run_dir=str(run), checkpoint_step=checkpoint)
        pid = self._snap.pid
        if self._snap.state in ("preparing", "running") and pid and pid_runs_tune(
                pid, self.module):
            self._attached_pid = pid
            self._started = time.monotonic() - (self._snap.elapsed_s or 0.0)
            self._snap = replace(self._snap, message="Tuning in another process "
                                                     f"(pid {pid})")
        elif self._snap.state in ACTIVE:
            self._snap = replace(self._snap, state="cancelled",
                                 message=stopped_message(self._snap.stage, checkpoint))
        elif self._snap.state == "idle":
            version = version_made(run)
            if version is not None:
                self._snap = replace(self._snap, state="done", version=version)

    # ------------------------------------------------------------------ measured effect

    def effect(self, version: int | None = None) -> Effect | None:
        """The stored measurement of ``version`` (default: the newest), if any."""
        from rlhf_desktop.tune.versions import VersionError, get_version, list_versions

        try:
            found = get_version(version) if version else next(iter(list_versions()[::-1]),
                                                               None)
        except VersionError:
            return None
        return load_effect(found.folder) if found is not None else None

    def effect_status(self) -> tuple[int | None, str]:
        """(the version being measured or None, a line about the measurement: its progress,
        or why the last one failed; "" when there is nothing to say)."""
        with self._lock:
            running = self._effect_proc is not None and self._effect_proc.poll() is None
            return (self._effect_version if running else None), self._effect_note

    def measure_effect(self, version: int, prompts: int = EFFECT_PROMPTS) -> bool:
        """Start measuring ``version`` against the base on the user's past prompts in a
        low-priority child process (:mod:`.tuning_effect`); ``on_change`` is called as it
        goes and when it ends. Returns False when one is going already."""
        import subprocess

        with self._lock:
            if self._effect_proc is not None and self._effect_proc.poll() is None:
                return False
            cmd = [self.python, "-m", "rlhf_desktop.services.tuning.effect", "--version",
                   str(version), "--prompts", str(prompts), "--data-dir", str(self.data_dir),
                   "--nice", str(self.nice)]
            try:
                proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True)
            except OSError as exc:
                self._effect_note = f"The measurement did not start: {exc}"
                return False
            self._effect_proc, self._effect_version = proc, version
            self._effect_note = (f"Measuring {version_name(version)} against the base on up to "
                                 f"{prompts} of your past prompts (one reply each, low "
                                 "priority)…")
        self._runner.run(lambda _job: self._follow_effect(proc, version), lane="tune-effect",
                         name="follow the effect measurement")
        self._changed()
        return True

    def _follow_effect(self, proc: Any, version: int) -> None:
        import json

        assert proc.stdout is not None
        error = ""
        for line in proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == "reply":
                with self._lock:
                    self._effect_note = (f"Measuring {version_name(version)} against the base: "
                                         f"{event.get('done')} of {event.get('total')} "
                                         "replies…")
                self._changed()
            elif event.get("event") == "error":
                error = str(event.get("message") or "")
        code = proc.wait()
        tail = proc.stderr.read()[-400:] if proc.stderr is not None else ""
        with self._lock:
            if code == 0:
                self._effect_note = ""
            else:
                self._effect_note = (f"Measuring {version_name(version)} failed: "
                                     f"{error or config.redact(tail.strip()) or f'exit {code}'}")
                if code != 0 and not error:
                    log.warning("effect measurement failed (exit %s): %s", code,
                                config.redact(tail))
        self._changed()

    # ------------------------------------------------------------------ versions and A/B

    def versions(self) -> list[int]:
        """The chat-model versions in the data folder (0, the base, not included)."""
        from rlhf_desktop.tune.versions import list_versions

        return [v.version for v in list_versions()]

    def chosen_version(self) -> int:
        """The version the built-in provider chats with (0: the base)."""
        return self._settings().chat_model_version

    def use_version(self, version: int) -> bool:
        """Chat with ``version`` (0: the base) in the built-in provider. A blind comparison
        (the arena) ends: the chat would go on drawing its replies from the sources, not
        from the chosen version. Returns whether one ended."""
        if self._apply is None:
            raise RuntimeError("this service cannot change the settings")
        current = self._settings()
        settings = replace(current, chat_model_version=version, arena=False)
        settings.validate()
        config.save_settings(settings)
        self._apply(settings)
        return current.arena

    @property
    def comparing(self) -> bool:
        """Whether a blind comparison (the arena) draws the chat's replies now."""
        return self._settings().arena

    def chat_line(self, provider_kind: str, provider_name: str) -> str:
        """Which model the chat uses now, in words (see :func:`chat_model_line`)."""
        settings = self._settings()
        return chat_model_line(settings.chat_model_version, settings.arena, provider_kind,
                               provider_name)

    def offer_ab(self, version: int | None = None) -> list[CandidateSource]:
        """Add the built-in base and ``version`` (default: the run's) as candidate sources,
        one reply each, and turn the arena on; returns the sources as they are now named.
        A source that is already there (same provider and version) is reused, not doubled.
        Raises ConfigError (a message for the user) when the arena cannot take them."""
        if self._arena is None:
            raise RuntimeError("this service has no arena")
        version = version if version is not None else self.snapshot().version
        if not version:
            raise config.ConfigError("There is no tuned chat-model version to compare yet")
        wanted = [CandidateSource(name=BASE_NAME, provider="local", count=1,
                                  chat_model_version=0),
                  CandidateSource(name=version_name(version), provider="local", count=1,
                                  chat_model_version=version)]
        return self._add_and_enable(wanted)

    def _add_and_enable(self, wanted: list[CandidateSource]) -> list[CandidateSource]:
        assert self._arena is not None
        out = []
        for source in wanted:
            same = next((s for s in self._arena.sources() if _same_source(s, source)), None)
            out.append(same or self._arena.add_source(source))
        # a head-to-head: only these two give replies; other sources stay in the list, off
        self._arena.use_only([s.name for s in out])
        return out

    def offer_remote_ab(self) -> list[CandidateSource]:
        """After a remote job succeeded: its base and its fine-tuned model as candidate
        sources, arena on (see :meth:`RemoteTuning.sources`)."""
        return self._add_and_enable(self.remote.sources())


def repo_cut_ids() -> set[int]:
    """The ids of the stored pairs whose rejected reply was cut at max tokens."""
    from rlhf_desktop.storage.repo import Repository

    repo = Repository.open()
    try:
        return repo.pairs.cut_ids()
    finally:
        repo.close()


def export_for_tuning(run_dir: Path, use_cut_pairs: bool = True) -> int:
    """The stored pairs as ``trl-conversational`` lines in ``run_dir``, without the pairs
    whose rejected reply was cut at max tokens unless ``use_cut_pairs``; the count."""
    if use_cut_pairs:
        return export_pairs(run_dir)
    from rlhf_desktop.core.formats import export_lines
    from rlhf_desktop.storage.repo import Repository

    repo = Repository.open()
    try:
        cut = repo.pairs.cut_ids()
        pairs = [p for p in repo.pairs.stream(metadata=False) if p.id not in cut]
    finally:
        repo.close()
    text = "".join(export_lines(pairs, "trl-conversational"))
    config.atomic_write_bytes(run_dir / PAIRS_FILE, text.encode("utf-8"))
    return len(pairs)


def _same_source(a: CandidateSource, b: CandidateSource) -> bool:
    return (a.provider, a.model, a.chat_model_version, a.base_url, a.temperature) == (
        b.provider, b.model, b.chat_model_version, b.base_url, b.temperature)


def _milestone(snap: TuneSnapshot) -> tuple[str, int | None, int | None]:
    """What ``on_change`` is called for: the state, the step, the version made."""
    return snap.state, snap.step, snap.version


def _last(values: list[int]) -> int | None:
    return values[-1] if values else None
