"""The window's adapter to the Qt-free :class:`~rlhf_desktop.services.session.AppSession`.

The session owns the repository, the services, the provider and the executors, and fires
``noun_did_verb`` hooks (:mod:`rlhf_desktop.services.hooks`) after it changes state; this
adapter forwards each hook to a Qt signal, and holds the status-bar wording. Widgets call
the session's narrow services (``backend.session.conversations``, ``.datasets``, ``.models``,
``.chat``) and render what they return.
"""

from __future__ import annotations

import logging
from collections.abc import Coroutine
from typing import Any

from PySide6.QtCore import QObject, Signal

from rlhf_desktop.config import Settings
from rlhf_desktop.domain import ModelVersion, SamplingParams
from rlhf_desktop.runtime import warmup
from rlhf_desktop.services.chat.service import ChatService
from rlhf_desktop.services.ranking.retraining import RetrainStatus
from rlhf_desktop.services.session import AppSession, Provider
from rlhf_desktop.ui import markdown_render

log = logging.getLogger(__name__)

KIND_NAMES = {
    "azure": "Azure OpenAI",
    "openai": "OpenAI",
    "compatible": "OpenAI-compatible server",
    "local": "Built-in model",
    "arena": "Arena",
}


EARLY_LABELS = 20


def is_early(labels: int) -> bool:
    """Whether an accuracy cross-validated on ``labels`` labels is only an early estimate
    (the one rule the status bar, the model page's headline and its versions table follow)."""
    return labels < EARLY_LABELS


def accuracy_text(version: ModelVersion) -> str:
    """Its cross-validated accuracy, marked as an early estimate while labels are few.

    With 5 labels the folds hold three pairs each, so the figure swings far either side
    of 50 % (a new user saw 27 % after 5 picks and took the model for broken)."""
    acc = version.cv_accuracy
    if acc is None:
        return "n/a"
    early = f" (early estimate, {version.labels} labels)" if is_early(version.labels) else ""
    return f"{acc * 100:.0f} %{early}"


def trained_text(version: ModelVersion, use_cut: bool = False) -> str:
    """"trained on 6 pairs", and how many stored pairs it left out because their rejected
    reply was cut at max tokens (with a small model at 256 tokens most are: a new user saw
    "trained on 6 pairs" after 29 and could not tell why). While ``use_cut`` is off it points
    to the Settings switch; once on, the version in use still left them out (a version
    trained with them was not adopted, or none was trained yet): it says so instead of
    sending the user back to a switch already on."""
    cut = int(version.metrics.get("cut_pairs_left_out") or 0)
    if not cut:
        return f"trained on {version.pairs} pairs"
    if not use_cut:
        return f"trained on {version.pairs} pairs ({cut} against cut replies left out: Settings)"
    return (f"trained on {version.pairs} pairs ({cut} against cut replies left out; a version "
            "with them was not better on pairs it never saw, see the model page)")


def retrain_text(status: RetrainStatus, latest: ModelVersion | None,
                 early_accuracy: bool = False, use_cut: bool = False) -> str:
    """The status-bar text: training progress, or the model and labels to the next run.

    The model's pairs are the pairs it was *trained on* (the page's top card counts the pairs
    stored now, more after every pick; a bare "13 pairs" beside "23" read as a contradiction).

    Under :data:`EARLY_LABELS` labels the accuracy is left out (a figure from a handful of
    pairs reads as a verdict); ``early_accuracy`` shows it marked as an early estimate,
    as the model page does."""
    if status.running:
        pct = "" if status.progress is None else f" {status.progress * 100:.0f} %"
        stage = f" · {status.stage}" if status.stage else ""
        queued = " · one more queued" if status.queued else ""
        return f"Training the reward model…{pct}{stage}{queued}"
    parts = []
    trained = "" if latest is None else trained_text(latest, use_cut)
    if latest is not None and (early_accuracy or not is_early(latest.labels)):
        parts.append(f"reward model v{latest.version} · CV accuracy {accuracy_text(latest)} · "
                     f"{trained}")
    elif latest is not None:
        parts.append(f"reward model v{latest.version} · {trained} · "
                     f"accuracy shown after {EARLY_LABELS} labels")
    else:
        parts.append("reward model untrained")
    parts.append(f"{min(status.labels_since, status.every)}/{status.every} labels to next "
                 "training")
    return "   |   ".join(parts)


class Backend(QObject):
    """Forwards the session's hooks to Qt signals; see the module docstring."""

    provider_changed = Signal()
    reward_ready = Signal()
    retrain_status = Signal(object)  # RetrainStatus
    model_trained = Signal(object)  # ModelVersion
    model_rejected = Signal(object)  # ModelVersion (trained, not adopted)
    training_failed = Signal(str)
    labels_changed = Signal()
    conversations_changed = Signal()

    def __init__(self, settings: Settings | None = None, provider: Provider | None = None,
                 session: AppSession | None = None) -> None:
        super().__init__()
        warmup.tune_gil_for_ui()
        self.session = session or AppSession(settings, provider, warm_up=self.warm_up)
        self.latest: ModelVersion | None = self.session.models.current()
        hooks = self.session.hooks
        hooks.provider_did_change.append(self.provider_changed.emit)
        hooks.reward_did_load.append(self._reward_loaded)
        hooks.retrain_did_update.append(self.retrain_status.emit)
        hooks.model_did_train.append(self._model_trained)
        hooks.model_did_reject.append(self.model_rejected.emit)
        hooks.training_did_fail.append(self.training_failed.emit)
        hooks.labels_did_change.append(self._labels_changed)
        hooks.conversations_did_change.append(self.conversations_changed.emit)

    @staticmethod
    def warm_up() -> None:
        """In the session's loading worker: what the window will need soon."""
        markdown_render.warm_up()

    # ------------------------------------------------------------------ session state

    @property
    def settings(self) -> Settings:
        """The settings in use."""
        return self.session.settings

    @property
    def provider_kind(self) -> str:
        """``azure``, ``openai``, ``compatible``, ``local`` or "" while none is chosen."""
        return self.session.provider_kind

    @property
    def provider_model(self) -> str:
        """The deployment, model name or GGUF file stem ("" while none is chosen)."""
        return "" if self.session.provider is None else self.session.provider.model

    @property
    def provider_reason(self) -> str:
        """The provider and why it was chosen, in one line (the status bar's tooltip)."""
        provider = self.session.provider
        if provider is None:
            return ""
        why = self.session.provider_reason
        return f"{provider.describe()} — {why}" if why else provider.describe()

    @property
    def provider_why(self) -> str:
        """Only why the provider was chosen ("" for one handed to the window)."""
        why = self.session.provider_reason
        return "" if why == "given to the window" else why

    @property
    def provider_error(self) -> str | None:
        """Why no provider could be chosen."""
        return self.session.provider_error

    @property
    def chat(self) -> ChatService | None:
        """The chat service (None until a provider is chosen)."""
        return self.session.chat

    @property
    def reward_is_ready(self) -> bool:
        """Whether ranking works yet."""
        return self.session.reward_is_ready

    @property
    def closed(self) -> bool:
        """Whether the session was closed."""
        return self.session.closed

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str = "") -> Any:
        """Run a coroutine on the loop (the session keeps the reference)."""
        return self.session.spawn(coro, name)

    async def start(self) -> None:
        """Choose the provider, then load the reward model and warm the embedder."""
        await self.session.start()

    async def rebuild_provider(self) -> None:
        """(Re)choose the provider from the settings."""
        await self.session.rebuild_provider()

    async def wait_provider(self) -> ChatService | None:
        """The chat service once a provider is chosen (None when it could not be)."""
        return await self.session.wait_provider()

    def sampling_params(self) -> SamplingParams:
        """What the next turn asks the provider for."""
        return self.session.sampling_params()

    def apply_settings(self, settings: Settings) -> None:
        """Use new settings (already saved); the caller rebuilds the provider if needed."""
        self.session.apply_settings(settings)

    # ------------------------------------------------------------------ training

    def train_now(self) -> None:
        """Train now (or once more after the current run)."""
        self.session.models.train_now()

    def refresh_status(self) -> None:
        """Emit the current retraining status."""
        self.retrain_status.emit(self.session.models.status())

    def status_text(self, status: RetrainStatus | None = None,
                    early_accuracy: bool = False) -> str:
        """Status-bar text for ``status`` (default: now); see :func:`retrain_text`."""
        return retrain_text(status or self.session.models.status(), self.latest,
                            early_accuracy, self.settings.train_on_cut_pairs)

    def _reward_loaded(self) -> None:
        log.debug("froze %d start-up objects", warmup.freeze_startup_objects())
        warmup.release_free_heap()
        self.reward_ready.emit()

    def _model_trained(self, version: ModelVersion) -> None:
        self.latest = version
        self.model_trained.emit(version)

    def _labels_changed(self) -> None:
        self.latest = self.session.models.current()
        self.labels_changed.emit()

    # ------------------------------------------------------------------ shutdown

    async def aclose(self) -> None:
        """Stop training, close the provider and the database."""
        await self.session.aclose()
