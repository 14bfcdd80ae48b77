"""Retraining after every N new labels, one run at a time, in a worker thread.

A request while a run is going is queued once (never stacked). Progress and results come
back on the event loop through callbacks; nothing here knows about Qt.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from rlhf_desktop.domain import ModelVersion
from rlhf_desktop.reward.training import TrainConfig, TrainingCancelled, TrainingError
from rlhf_desktop.services.rewards import RewardService
from rlhf_desktop.storage.repo import Repository

log = logging.getLogger(__name__)


@dataclass
class RetrainStatus:
    """What the status bar shows."""

    labels_since: int
    every: int
    running: bool
    queued: bool
    progress: float | None = None
    stage: str = ""


class Retrainer:
    """Schedules :meth:`RewardService.train_now` on a single worker thread."""

    def __init__(
        self,
        repo: Repository,
        rewards: RewardService,
        every: int = 5,
        on_status: Callable[[RetrainStatus], None] | None = None,
        on_trained: Callable[[ModelVersion], None] | None = None,
        on_error: Callable[[Exception], None] | None = None,
        use_cut_pairs: bool = False,
    ) -> None:
        self.repo = repo
        self.use_cut_pairs = use_cut_pairs
        """Whether training uses pairs against a reply cut at max tokens (Settings)."""
        self.rewards = rewards
        self.every = every
        self.on_status = on_status
        self.on_trained = on_trained
        self.on_error = on_error
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="train")
        self._task: asyncio.Task[None] | None = None
        self._queued = False
        self._cancel = threading.Event()
        self._progress: float | None = None
        self._stage = ""

    # ------------------------------------------------------------------ status

    def labels_since(self) -> int:
        """Labels recorded that the newest model has not seen."""
        latest = self.repo.latest_model_version()
        return max(0, self.repo.count_labels() - (latest.labels if latest else 0))

    @property
    def running(self) -> bool:
        """Whether a training run is in progress."""
        return self._task is not None and not self._task.done()

    def status(self) -> RetrainStatus:
        """The current status."""
        return RetrainStatus(self.labels_since(), self.every, self.running, self._queued,
                             self._progress if self.running else None, self._stage)

    def _emit(self) -> None:
        if self.on_status is not None:
            self.on_status(self.status())

    # ------------------------------------------------------------------ triggers

    def label_recorded(self) -> None:
        """Call after each pick: trains when N new labels have accumulated."""
        if self.labels_since() >= self.every:
            self.request()
        else:
            self._emit()

    def request(self) -> None:
        """Train now, or once more after the current run."""
        if self.running:
            self._queued = True
        else:
            self._task = asyncio.get_running_loop().create_task(self._run())
        self._emit()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()

        def progress(fraction: float, stage: str) -> None:  # worker thread
            loop.call_soon_threadsafe(self._set_progress, fraction, stage)

        while True:
            self._cancel.clear()
            self._set_progress(0.0, "starting")
            try:
                record = await loop.run_in_executor(
                    self._executor,
                    lambda: self.rewards.train_now(TrainConfig(use_cut_pairs=self.use_cut_pairs),
                                                   progress, self._cancel)
                )
            except TrainingCancelled:
                log.info("training cancelled")
                break
            except (TrainingError, Exception) as exc:  # shown in the window, never a crash
                log.exception("training failed")
                if self.on_error is not None:
                    self.on_error(exc)
            else:
                if self.on_trained is not None:
                    self.on_trained(record)
            if not self._queued:
                break
            self._queued = False  # the queued request starts now
        self._progress = None
        self._stage = ""
        self._task = None
        self._emit()

    def _set_progress(self, fraction: float, stage: str) -> None:
        self._progress = fraction
        self._stage = stage
        self._emit()

    async def wait(self) -> None:
        """Until the current run (and a queued one) are finished."""
        while self._task is not None:
            await asyncio.shield(self._task)

    def shutdown(self) -> None:
        """Cancel a run and stop the worker (at exit)."""
        self._cancel.set()
        self._executor.shutdown(wait=False, cancel_futures=True)
