"""A tuning run in its own process at low priority, so the window's process never stalls.

The child is ``python -m rlhf_desktop.tune --config <run>/tune-config.json --nice 19``: it
lowers its own priority before importing torch (no ``preexec_fn``, which is unsafe in a
threaded parent). Progress comes back through ``<run>/progress.jsonl`` (read with
``events()``, never blocking), the child's stderr goes to ``<run>/tune.log``.

``cancel()`` sends SIGTERM: the child finishes the step it is in, saves a checkpoint and exits
with status 3; ``kill()`` ends it at once (the previous checkpoint stays). Starting again on
the same run folder resumes from the last checkpoint.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO, Any

from rlhf_desktop.tune.options import TuneConfig
from rlhf_desktop.tune.progress import read_events

CONFIG_FILE = "tune-config.json"
PROGRESS_FILE = "progress.jsonl"
LOG_FILE = "tune.log"
EXIT_MEANING = {0: "completed", 1: "failed", 2: "bad input", 3: "cancelled"}


class TuneProcess:
    """Start, follow and cancel one run."""

    def __init__(self, cfg: TuneConfig, *, nice: int = 19, data_dir: str | None = None,
                 python: str = sys.executable, env: dict[str, str] | None = None,
                 module: str = "rlhf_desktop.tune") -> None:
        self.run_dir = Path(cfg.output_dir).expanduser().resolve()
        self.progress_path = Path(cfg.progress_file or self.run_dir / PROGRESS_FILE)
        self.log_path = self.run_dir / LOG_FILE
        self.config_path = self.run_dir / CONFIG_FILE
        self.cfg = cfg
        self.nice = nice
        self.data_dir = data_dir
        self.python = python
        self.env = env
        self.module = module
        """The child's entry point (``python -m MODULE --config ...``; tests script one)."""
        self._proc: subprocess.Popen[bytes] | None = None
        self._offset = 0
        self._log: IO[bytes] | None = None
        self.last_events: dict[str, dict[str, Any]] = {}

    def command(self) -> list[str]:
        """The child's command line."""
        command = [self.python, "-m", self.module, "--config", str(self.config_path),
                   "--nice", str(self.nice)]
        if self.data_dir:
            command += ["--data-dir", self.data_dir]
        return command

    def start(self) -> None:
        """Write the config into the run folder and start the child."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        data = self.cfg.to_dict()
        data["progress_file"] = str(self.progress_path)
        self.config_path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        self._offset = self.progress_path.stat().st_size if self.progress_path.exists() else 0
        self._log = self.log_path.open("ab")
        env = dict(self.env if self.env is not None else os.environ)
        env.setdefault("HF_HUB_OFFLINE", "1")
        env.setdefault("TOKENIZERS_PARALLELISM", "false")
        self._proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                      stdout=self._log, stderr=self._log, env=env,
                                      start_new_session=True)

    @property
    def offset(self) -> int:
        """The byte offset in the progress file that :meth:`events` reads from next (right
        after :meth:`start`: where this start's lines begin)."""
        return self._offset

    @property
    def pid(self) -> int | None:
        """The child's process id once started."""
        return None if self._proc is None else self._proc.pid

    def events(self) -> list[dict[str, Any]]:
        """Events written since the last call (never blocks)."""
        events, self._offset = read_events(self.progress_path, self._offset)
        for event in events:
            self.last_events[str(event.get("event"))] = event
        return events

    def poll(self) -> int | None:
        """The exit status, or None while running."""
        return None if self._proc is None else self._proc.poll()

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the child; raises subprocess.TimeoutExpired after ``timeout``."""
        if self._proc is None:
            raise RuntimeError("the run was not started")
        code = self._proc.wait(timeout)
        self._close_log()
        return code

    def cancel(self) -> None:
        """Ask the child to stop after its current step (it saves a checkpoint)."""
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        """Stop the child and anything it started now."""
        if self._proc is not None and self._proc.poll() is None:
            try:
                os.killpg(self._proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def _signal(self, signum: int) -> None:
        if self._proc is not None and self._proc.poll() is None:
            try:
                os.killpg(self._proc.pid, signum)
            except ProcessLookupError:
                pass

    def running(self) -> bool:
        """Whether the child was started and has not exited."""
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the child's stderr (for an error message)."""
        if not self.log_path.exists():
            return ""
        text = self.log_path.read_bytes()[-20000:].decode("utf-8", "replace")
        return "\n".join(text.splitlines()[-lines:])

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
