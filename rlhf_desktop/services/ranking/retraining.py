"""Retraining after every N new labels, one run at a time, in the background runner's
``train`` lane (a single worker: runs never overlap).

A request while a run is going is queued once (never stacked). Progress and results come
back on the event loop through the runner's callbacks; nothing here knows about Qt.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rlhf_desktop.domain import ModelVersion
from rlhf_desktop.reward.training import TrainConfig, TrainingCancelled
from rlhf_desktop.services.ranking.rewards import LABELS_RECORDED, RewardService
from rlhf_desktop.services.runner import BackgroundRunner, Handle, Job
from rlhf_desktop.storage.repo import Repository

log = logging.getLogger(__name__)

TRAIN_LANE = "train"
"""The runner's single-worker lane of reward-model training."""


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
    """Schedules :meth:`RewardService.train_now` in the runner's ``train`` lane."""

    def __init__(
        self,
        repo: Repository,
        rewards: RewardService,
        every: int = 5,
        on_status: Callable[[RetrainStatus], None] | None = None,
        on_trained: Callable[[ModelVersion], None] | None = None,
        on_error: Callable[[Exception], None] | None = None,
        use_cut_pairs: bool = False,
        runner: BackgroundRunner | None = None,
    ) -> None:
        """``runner``: the session's (default: one of its own, closed by :meth:`shutdown`)."""
        self.repo = repo
        self.use_cut_pairs = use_cut_pairs
        """Whether training uses pairs against a reply cut at max tokens (Settings)."""
        self.rewards = rewards
        self.every = every
        self.on_status = on_status
        self.on_trained = on_trained
        self.on_error = on_error
        self._own_runner = runner is None
        self.runner = runner if runner is not None else BackgroundRunner()
        self._handle: Handle[ModelVersion] | None = None
        self._running = False
        self._queued = False
        self._progress: float | None = None
        self._stage = ""

    # ------------------------------------------------------------------ status

    def labels_since(self) -> int:
        """Labels recorded since the newest model read its pairs.

        Counted from the labels stored then, not from those it trained on: a label whose
        pairs are all left out (each against a reply cut at max tokens) is never trained on,
        and counting from those made every later pick start a run. A version trained before
        the count was recorded counts from its trained labels."""
        latest = self.repo.versions.latest()
        if latest is None:
            return self.repo.labels.count()
        seen = latest.metrics.get(LABELS_RECORDED, latest.labels)
        return max(0, self.repo.labels.count() - int(seen))

    @property
    def running(self) -> bool:
        """Whether a training run is in progress."""
        return self._running

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
            self._start()
        self._emit()

    def _start(self) -> None:
        config = TrainConfig(use_cut_pairs=self.use_cut_pairs)

        def train(job: Job) -> ModelVersion:  # the train lane's worker
            return self.rewards.train_now(config, lambda fraction, stage: job.report(
                (fraction, stage)), job.cancel_event)

        def progress(value: Any) -> None:
            self._set_progress(*value)

        self._running = True
        self._progress, self._stage = 0.0, "starting"
        self._handle = self.runner.run(train, self._trained, self._failed, progress,
                                       lane=TRAIN_LANE, name="train the reward model")

    def _trained(self, record: ModelVersion) -> None:
        if self.on_trained is not None:
            self.on_trained(record)
        self._next()

    def _failed(self, exc: BaseException) -> None:
        if isinstance(exc, TrainingCancelled):
            log.info("training cancelled")
            self._queued = False
        else:  # TrainingError or a bug: shown in the window, never a crash
            log.error("training failed", exc_info=exc)
            if self.on_error is not None and isinstance(exc, Exception):
                self.on_error(exc)
        self._next()

    def _next(self) -> None:
        if self._queued:
            self._queued = False  # the queued request starts now
            self._start()
            self._emit()
            return
        self._running = False
        self._handle = None
        self._progress = None
        self._stage = ""
        self._emit()

    def _set_progress(self, fraction: float, stage: str) -> None:
        self._progress = fraction
        self._stage = stage
        self._emit()

    async def wait(self) -> None:
        """Until the current run (and a queued one) are finished."""
        while self._handle is not None:
            await self._handle.wait()

    def shutdown(self) -> None:
        """Cancel a run (at exit); closes the runner when it is this retrainer's own."""
        handle, self._handle = self._handle, None
        self._running = self._queued = False
        if handle is not None:
            handle.cancel()
        if self._own_runner:
            self.runner.close()
