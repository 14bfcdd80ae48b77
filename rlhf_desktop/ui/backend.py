"""The window's link to the services: one object that owns them and reports in Qt signals.

Nothing here blocks the event loop: the provider is chosen in a worker thread (keyring and
the ``openai`` import can be slow), the reward model and the embedder load in a worker
thread, scoring runs in ChatService's worker, training in the Retrainer's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from PySide6.QtCore import QObject, Signal

from rlhf_desktop import config
from rlhf_desktop.config import Settings
from rlhf_desktop.domain import ModelVersion, SamplingParams
from rlhf_desktop.providers import Provider, ProviderError, choose_provider
from rlhf_desktop.services.chat import ChatService
from rlhf_desktop.services.labeling import LabelingService
from rlhf_desktop.services.retraining import Retrainer, RetrainStatus
from rlhf_desktop.services.rewards import RewardService
from rlhf_desktop.storage.repo import Repository
from rlhf_desktop.ui import warmup

log = logging.getLogger(__name__)

KIND_NAMES = {
    "azure": "Azure OpenAI",
    "openai": "OpenAI",
    "compatible": "OpenAI-compatible server",
    "local": "Built-in model",
}


EARLY_LABELS = 20


def accuracy_text(version: ModelVersion) -> str:
    """Its cross-validated accuracy, marked as an early estimate while labels are few.

    With 5 labels the folds hold three pairs each, so the figure swings far either side
    of 50 % (a new user saw 27 % after 5 picks and took the model for broken)."""
    acc = version.cv_accuracy
    if acc is None:
        return "n/a"
    early = f" (early estimate, {version.labels} labels)" if version.labels < EARLY_LABELS else ""
    return f"{acc * 100:.0f} %{early}"


def retrain_text(status: RetrainStatus, latest: ModelVersion | None,
                 early_accuracy: bool = False) -> str:
    """The status-bar text: training progress, or the model and labels to the next run.

    Under :data:`EARLY_LABELS` labels the accuracy is left out (a figure from a handful of
    pairs reads as a verdict); ``early_accuracy`` shows it marked as an early estimate,
    as the model page does."""
    if status.running:
        pct = "" if status.progress is None else f" {status.progress * 100:.0f} %"
        stage = f" · {status.stage}" if status.stage else ""
        queued = " · one more queued" if status.queued else ""
        return f"Training the reward model…{pct}{stage}{queued}"
    parts = []
    if latest is not None and (early_accuracy or latest.labels >= EARLY_LABELS):
        parts.append(f"model v{latest.version} · CV accuracy {accuracy_text(latest)} · "
                     f"{latest.pairs} pairs")
    elif latest is not None:
        parts.append(f"model v{latest.version} · {latest.pairs} pairs · accuracy shown from "
                     f"{EARLY_LABELS} labels")
    else:
        parts.append("reward model untrained")
    parts.append(f"{min(status.labels_since, status.every)}/{status.every} labels to next "
                 "training")
    return "   |   ".join(parts)


class Backend(QObject):
    """Owns the repository and the services; emits what the widgets show."""

    provider_changed = Signal()
    reward_ready = Signal()
    retrain_status = Signal(object)  # RetrainStatus
    model_trained = Signal(object)  # ModelVersion
    training_failed = Signal(str)
    labels_changed = Signal()

    def __init__(self, settings: Settings | None = None,
                 provider: Provider | None = None) -> None:
        super().__init__()
        warmup.tune_gil_for_ui()
        self.settings = settings or config.load_settings()
        self.repo = Repository.open()
        self.rewards = RewardService()
        self.labeling = LabelingService(self.repo)
        self.rank_executor = ThreadPoolExecutor(1, thread_name_prefix="rank")
        self._load_executor = ThreadPoolExecutor(1, thread_name_prefix="load")
        self.retrainer = Retrainer(
            self.repo, self.rewards, every=self.settings.retrain_every,
            on_status=self._on_retrain_status, on_trained=self._on_trained,
            on_error=self._on_train_error,
        )
        self.provider: Provider | None = provider
        self.provider_kind = "" if provider is None else provider.name
        self.provider_reason = "" if provider is None else provider.describe()
        self.provider_why = ""  # a provider handed in (tests) was not chosen
        self.provider_error: str | None = None
        self.chat: ChatService | None = None
        if provider is not None:
            self.chat = ChatService(self.repo, self.rewards, provider, self.rank_executor)
        self.latest: ModelVersion | None = self.repo.latest_model_version()
        self.reward_is_ready = False
        self._provider_ready = asyncio.Event()
        if provider is not None:
            self._provider_ready.set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.closed = False

    # ------------------------------------------------------------------ tasks

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str = "") -> asyncio.Task[Any]:
        """Run a coroutine on the loop, keep a reference, log what it raises."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)

        def done(t: asyncio.Task[Any]) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                exc = t.exception()
                log.error("background task %s failed", name or t, exc_info=exc)

        task.add_done_callback(done)
        return task

    # ------------------------------------------------------------------ start-up

    async def start(self) -> None:
        """Choose the provider, then load the reward model and warm the embedder."""
        if self.provider is None:
            await self.rebuild_provider()
        await self.load_reward_model()

    async def rebuild_provider(self) -> None:
        """(Re)choose the provider from the settings, in a worker thread."""
        loop = asyncio.get_running_loop()
        self._provider_ready.clear()
        old = self.provider
        try:
            provider, reason = await loop.run_in_executor(
                self._load_executor, choose_provider, self.settings)
        except (ProviderError, config.ConfigError) as exc:
            self.provider, self.chat = None, None
            self.provider_kind, self.provider_reason, self.provider_why = "", "", ""
            self.provider_error = config.redact(str(exc))
        else:
            self.provider = provider
            self.provider_kind = provider.name
            self.provider_reason = reason
            lead = f"{provider.describe()} — "
            self.provider_why = reason[len(lead):] if reason.startswith(lead) else reason
            self.provider_error = None
            self.chat = ChatService(self.repo, self.rewards, provider, self.rank_executor)
        self._provider_ready.set()
        self.provider_changed.emit()
        if old is not None and old is not self.provider:
            try:
                await old.aclose()
            except Exception:  # closing a provider must never break the window
                log.exception("closing the previous provider failed")

    async def wait_provider(self) -> ChatService | None:
        """The chat service once a provider is chosen (None when it could not be)."""
        await self._provider_ready.wait()
        return self.chat

    async def load_reward_model(self) -> None:
        """Load the newest reward model and the embedder without blocking the loop."""
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._load_executor, self._load_reward_sync)
        except Exception as exc:  # the chat still works; ranking waits
            log.exception("loading the reward model failed")
            self.training_failed.emit(f"The reward model could not be loaded: {exc}")
            return
        self.reward_is_ready = True
        log.debug("froze %d start-up objects", warmup.freeze_startup_objects())
        self.reward_ready.emit()
        self.refresh_status()

    def _load_reward_sync(self) -> None:
        repo = Repository.open()
        try:
            self.rewards.load_current(repo)
        finally:
            repo.close()
        warmup.warm_renderer()
        warmup.preload_torch_libraries()
        self.rewards.embedder.load()

    # ------------------------------------------------------------------ labels & training

    def sampling_params(self) -> SamplingParams:
        """What the next turn asks the provider for."""
        s = self.settings
        return SamplingParams(n=s.candidates_per_turn, temperature=s.temperature, top_p=s.top_p,
                              max_tokens=s.max_tokens, system_prompt=s.system_prompt)

    def label_recorded(self) -> None:
        """After a pick: count it towards the next training."""
        self.labels_changed.emit()
        self.retrainer.label_recorded()

    def labels_removed(self) -> None:
        """After an undo or a delete in the dataset view."""
        self.latest = self.repo.latest_model_version()
        self.labels_changed.emit()
        self.refresh_status()

    def train_now(self) -> None:
        """Train now (or once more after the current run)."""
        self.retrainer.request()

    def refresh_status(self) -> None:
        """Emit the current retraining status."""
        self.retrain_status.emit(self.retrainer.status())

    def status_text(self, status: RetrainStatus | None = None,
                    early_accuracy: bool = False) -> str:
        """Status-bar text for ``status`` (default: now); see :func:`retrain_text`."""
        return retrain_text(status or self.retrainer.status(), self.latest, early_accuracy)

    def _on_retrain_status(self, status: RetrainStatus) -> None:
        if not self.closed:
            self.retrain_status.emit(status)

    def _on_trained(self, version: ModelVersion) -> None:
        self.latest = version
        if not self.closed:
            self.model_trained.emit(version)
            self.labels_changed.emit()

    def _on_train_error(self, exc: Exception) -> None:
        if not self.closed:
            self.training_failed.emit(config.redact(f"Training failed: {exc}"))

    def apply_settings(self, settings: Settings) -> None:
        """Use new settings (already saved); the caller rebuilds the provider if needed."""
        self.settings = settings
        self.retrainer.every = settings.retrain_every
        self.refresh_status()

    # ------------------------------------------------------------------ shutdown

    async def aclose(self) -> None:
        """Stop training, close the provider and the database."""
        if self.closed:
            return
        self.closed = True
        self.retrainer.shutdown()
        for task in list(self._tasks):
            task.cancel()
        if self.provider is not None:
            try:
                await asyncio.wait_for(self.provider.aclose(), timeout=5)
            except Exception:  # best effort at exit
                log.warning("closing the provider failed", exc_info=True)
        self.rank_executor.shutdown(wait=False, cancel_futures=True)
        self._load_executor.shutdown(wait=False, cancel_futures=True)
        self.repo.close()
