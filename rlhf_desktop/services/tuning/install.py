"""Whether the ``tune`` extra is installed, and installing it from the window (Qt-free).

:func:`check` looks for torch, trl, peft, transformers, accelerate and datasets with
``importlib.util.find_spec`` (nothing is imported) and says: available, missing (which), or
cannot be installed here (a PyInstaller bundle has no pip). :class:`TuneInstall` runs
``python -m pip install <the tune extra's requirements>`` in a child process at the lowest
priority, the way :class:`~rlhf_desktop.services.tuning.service.TuningService` runs its children: a
``subprocess.Popen`` followed by a daemon thread that reads its output and calls
``on_change``; the window polls :meth:`TuneInstall.snapshot`. The requirement strings come
from the installed package's metadata (the ones marked ``extra == "tune"``), so the pins stay
in pyproject.toml only. pip's lines ("Collecting …", "Downloading …", "Installing collected
packages …") become the steps of a progress bar (:class:`PipProgress`).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import re
import signal
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from rlhf_desktop import config
from rlhf_desktop.services.runner import BackgroundRunner

log = logging.getLogger(__name__)

DIST = "rlhf-desktop"
EXTRA = "tune"
MODULES = ("torch", "trl", "peft", "transformers", "accelerate", "datasets")
"""What a run imports; the extra's smaller packages come with these or are checked by it."""
COMMAND = 'pip install "rlhf-desktop[tune]"'
FROZEN_MESSAGE = ("The desktop bundle chats, ranks and exports, but tunes only from a Python "
                  f"install: {COMMAND} (or make setup from a checkout).")
ERROR_LINES = 6

find_spec: Callable[[str], Any] = importlib.util.find_spec
"""Looked up at each check (tests and screenshots replace it to fake a missing extra)."""

_EXTRA_MARKER = re.compile(r"""extra\s*==\s*["']""" + EXTRA + r"""["']""")
_NICE_PIP = ("import os, runpy, sys; n = int(sys.argv.pop(1)); "
             "n and hasattr(os, 'nice') and os.nice(n); "
             "runpy.run_module('pip', run_name='__main__', alter_sys=True)")
"""``python -c _NICE_PIP <nice> install …``: pip at low priority without a ``preexec_fn``
(unsafe in a threaded parent); builds that pip starts inherit the priority."""


@dataclass(frozen=True)
class InstallSnapshot:
    """Where the tune extra stands: ``state`` is available, missing, frozen (a bundle: no pip),
    unavailable (no package metadata to read the requirements from), installing, failed or
    cancelled; ``step`` of ``total`` and ``line`` (pip's current line) while installing;
    ``errors``: pip's last error lines after a failure."""

    state: str = "available"
    missing: tuple[str, ...] = ()
    message: str = ""
    step: int = 0
    total: int = 0
    line: str = ""
    errors: tuple[str, ...] = ()
    requirements: tuple[str, ...] = field(default=(), repr=False)

    @property
    def available(self) -> bool:
        """A run can start (every module was found)."""
        return self.state == "available"

    @property
    def active(self) -> bool:
        """pip is running."""
        return self.state == "installing"

    @property
    def can_install(self) -> bool:
        """The panel may offer the install (pip is here and the requirements are known)."""
        return self.state in ("missing", "failed", "cancelled") and bool(self.requirements)


def missing_modules() -> list[str]:
    """The modules a run imports that this Python cannot find (none is imported)."""
    importlib.invalidate_caches()  # an install in this session shows at once
    out = []
    for name in MODULES:
        try:
            found = find_spec(name)
        except (ImportError, ValueError):
            found = None
        if found is None:
            out.append(name)
    return out


def tune_requirements(dist: str = DIST) -> list[str]:
    """The extra's requirement strings from the installed package's metadata, the extra's
    marker taken off (other markers kept: pip evaluates them)."""
    import importlib.metadata  # only when asked: its import costs the window's start ~20 ms

    out = []
    for req in importlib.metadata.requires(dist) or []:
        spec, _, marker = req.partition(";")
        if not _EXTRA_MARKER.search(marker):
            continue
        rest = _EXTRA_MARKER.sub("", marker).strip()
        rest = re.sub(r"^and\s+|\s+and$", "", rest).strip()
        rest = "" if rest in ("", "()") else rest
        out.append(f"{spec.strip()}; {rest}" if rest else spec.strip())
    return out


def check(requirements: Sequence[str] | None = None, frozen: bool | None = None
          ) -> InstallSnapshot:
    """Available, missing (which, and whether pip can install them here), or frozen."""
    missing = tuple(missing_modules())
    if not missing:
        return InstallSnapshot()
    if config.is_frozen() if frozen is None else frozen:
        return InstallSnapshot(state="frozen", missing=missing, message=FROZEN_MESSAGE)
    if requirements is None:
        try:
            requirements = tune_requirements()
        except ModuleNotFoundError:  # importlib.metadata's PackageNotFoundError
            requirements = []
    if importlib.util.find_spec("pip") is None:
        return InstallSnapshot(state="unavailable", missing=missing, message=(
            f"Tuning needs the 'tune' extra ({', '.join(missing)} missing) and this Python "
            f"has no pip: {COMMAND} from a Python that has it, or make setup from a checkout."))
    if not requirements:
        return InstallSnapshot(state="unavailable", missing=missing, message=(
            f"Tuning needs the 'tune' extra ({', '.join(missing)} missing) and this copy of "
            f"rlhf-desktop is not an installed package: {COMMAND}, or make setup from a "
            "checkout."))
    return InstallSnapshot(state="missing", missing=missing, requirements=tuple(requirements),
                           message=(f"Tuning needs the 'tune' extra ({', '.join(missing)} "
                                    "missing): PyTorch, TRL and friends, about 1 GB on disk "
                                    "(CPU PyTorch), installed into this Python by pip at low "
                                    "priority while the window stays usable."))


class PipProgress:
    """pip's output lines as steps: each package is collected (1) and fetched (1: downloaded,
    cached or already there), then one step installs them all; the total grows as pip finds
    dependencies."""

    def __init__(self) -> None:
        self.packages: list[str] = []
        self.fetched = 0
        self.installing = False
        self.done = False
        self.line = ""
        self.tail: deque[str] = deque(maxlen=40)

    @property
    def total(self) -> int:
        """Steps known so far."""
        return 2 * len(self.packages) + 2

    @property
    def step(self) -> int:
        """Steps done."""
        if self.done:
            return self.total
        return len(self.packages) + min(self.fetched, len(self.packages)) + self.installing

    def feed(self, raw: str) -> bool:
        """Take one line of pip's output; True when it was a step."""
        line = raw.strip()
        if not line:
            return False
        self.tail.append(line)
        words = line.split()
        step = True
        if words[0] in ("Collecting", "Processing") and len(words) > 1:
            self.packages.append(words[1])
        elif words[0] == "Requirement" and line.startswith("Requirement already satisfied:"):
            self.packages.append(words[3] if len(words) > 3 else line)
            self.fetched += 1
        elif words[0] == "Downloading" or line.startswith("Using cached"):
            self.fetched += 1
        elif line.startswith("Installing collected packages"):
            self.installing = True
        elif line.startswith("Successfully installed"):
            self.done = True
        else:
            step = False
        if step or not self.line:
            self.line = line
        return step

    def errors(self, n: int = ERROR_LINES) -> tuple[str, ...]:
        """pip's last error lines (else its last lines)."""
        lines = list(self.tail)
        errors = [ln for ln in lines if ln.startswith(("ERROR", "error:", "×", "╰─>"))]
        return tuple((errors or lines)[-n:])


class TuneInstall:
    """Check for the tune extra and install it in a low-priority child (module docstring)."""

    def __init__(self, on_change: Callable[[], None] | None = None, *,
                 python: str = sys.executable, nice: int = 19,
                 requirements: Sequence[str] | None = None, pip_args: Sequence[str] = (),
                 frozen: bool | None = None, runner: BackgroundRunner | None = None) -> None:
        """``requirements`` (default: the metadata's) and ``pip_args`` (extra options for
        ``pip install``) are for tests; ``frozen`` overrides :func:`config.is_frozen`;
        ``runner`` follows pip's output (default: a runner of its own, closed by
        :meth:`close`)."""
        self._on_change = on_change
        self.python = python
        self.nice = nice
        self.requirements = list(requirements) if requirements is not None else None
        self.pip_args = list(pip_args)
        self.frozen = frozen
        self._lock = threading.RLock()
        self._proc: subprocess.Popen[str] | None = None
        self._cancelled = False
        self._snap: InstallSnapshot | None = None
        self._own_runner = runner is None
        self._runner = runner if runner is not None else BackgroundRunner()

    def check(self) -> InstallSnapshot:
        """Look again (cheap: no import), unless pip is running."""
        with self._lock:
            if self._snap is not None and self._snap.active:
                return self._snap
            fresh = check(self.requirements, self.frozen)
            if self._snap is not None and self._snap.state in ("failed", "cancelled") \
                    and fresh.state == "missing":
                fresh = replace(self._snap, missing=fresh.missing,
                                requirements=fresh.requirements)
            self._snap = fresh
            return fresh

    def snapshot(self) -> InstallSnapshot:
        """The state now (checks once; then what the install says)."""
        with self._lock:
            return self._snap if self._snap is not None else self.check()

    def command(self, requirements: Sequence[str]) -> list[str]:
        """The child's command line."""
        return [self.python, "-c", _NICE_PIP, str(self.nice), "install",
                "--disable-pip-version-check", "--no-input", "--progress-bar", "off",
                *self.pip_args, *requirements]

    def start(self) -> InstallSnapshot:
        """Start pip (returns at once; ``on_change`` follows it). Raises RuntimeError when
        it cannot be installed here or pip is running already."""
        with self._lock:
            snap = self.check()
            if snap.active:
                raise RuntimeError("the tuning packages are being installed already")
            if not snap.can_install:
                raise RuntimeError(snap.message or "the tune extra is installed")
            env = dict(os.environ, PYTHONUNBUFFERED="1", PIP_NO_INPUT="1")
            kwargs: dict[str, Any] = (
                {"start_new_session": True} if os.name == "posix"
                else {"creationflags": getattr(subprocess, "IDLE_PRIORITY_CLASS", 0)})
            try:
                proc = subprocess.Popen(self.command(snap.requirements), stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        text=True, errors="replace", env=env, **kwargs)
            except OSError as exc:
                self._snap = replace(snap, state="failed", errors=(str(exc),),
                                     message=f"pip did not start: {exc}")
                return self._snap
            self._proc, self._cancelled = proc, False
            self._snap = replace(snap, state="installing", step=0, total=2, errors=(),
                                 line="Starting pip…",
                                 message="Installing the tuning packages at low priority…")
        # reading pip's output as it comes is the job: each progress line is an event
        self._runner.run(lambda _job: self._follow(proc), lane="tune-install",
                         name="follow pip")
        self._changed()
        return self.snapshot()

    def _follow(self, proc: subprocess.Popen[str]) -> None:
        progress = PipProgress()
        assert proc.stdout is not None
        for line in proc.stdout:
            if progress.feed(line):
                with self._lock:
                    if self._snap is not None and self._snap.active:
                        self._snap = replace(self._snap, step=progress.step,
                                             total=progress.total, line=progress.line)
                self._changed()
        code = proc.wait()
        with self._lock:
            self._proc = None
            before = self._snap or InstallSnapshot()
            if self._cancelled:
                self._snap = replace(before, state="cancelled", line="", message=(
                    "Install cancelled (packages pip had finished stay installed)."))
            elif code != 0:
                errors = progress.errors()
                log.warning("installing the tune extra failed (exit %s): %s", code,
                            config.redact(" | ".join(errors)))
                self._snap = replace(before, state="failed", line="", errors=tuple(
                    config.redact(e) for e in errors), message=f"pip failed (exit {code}).")
            else:
                self._snap = None
                fresh = self.check()
                if not fresh.available:
                    self._snap = replace(fresh, state="failed", message=(
                        "pip finished, but this Python still cannot find "
                        f"{', '.join(fresh.missing)}; restart the app, or {COMMAND}."))
        self._changed()

    def cancel(self) -> None:
        """Kill pip (and whatever it started)."""
        with self._lock:
            proc = self._proc
            if proc is None or proc.poll() is not None:
                return
            self._cancelled = True
            try:
                if os.name == "posix":
                    os.killpg(proc.pid, signal.SIGKILL)
                else:
                    proc.kill()
            except OSError:
                pass

    def close(self) -> None:
        """At the window's close: an install still going is stopped."""
        self.cancel()
        if self._own_runner:
            self._runner.close()

    def _changed(self) -> None:
        if self._on_change is not None:
            try:
                self._on_change()
            except Exception:
                log.exception("a tune-install listener failed")
