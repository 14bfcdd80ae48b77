"""AppSession: the one object a composition root builds (``app.py`` or ``cli/``).

It owns the repository, the reward model, the provider, the background runner
(:mod:`.runner`: ``session.runner``, closed in :meth:`AppSession.aclose`) and the services,
and it is Qt-free asyncio. Pages get narrow services and listen to :class:`SessionHooks`:

* ``session.conversations`` — :class:`~rlhf_desktop.services.chat.conversations.ConversationService`
* ``session.chat`` — sending turns, regenerating, ranking (None until a provider is chosen)
* ``session.datasets`` — :class:`~rlhf_desktop.services.datasets.pairs.DatasetService`
* ``session.models`` — :class:`~rlhf_desktop.services.ranking.models.ModelService`
* ``session.arena`` — :class:`~rlhf_desktop.services.arena.service.ArenaService` (candidate sources)
* ``session.tuning`` — :class:`~rlhf_desktop.services.tuning.service.TuningService` (tune the
  chat model)
* ``session.rankers`` — :class:`~rlhf_desktop.services.ranking.evaluation.RankerEvalService`
* ``session.turns`` — :class:`~rlhf_desktop.services.turns.TurnLifecycle` (a shown turn's
  state, published as ``TurnView`` snapshots; the label intents)
* :meth:`AppSession.pick` / :meth:`AppSession.undo_pick` — labels, which fire
  ``labels_did_change`` and count towards the next retraining.

Nothing here blocks the event loop: the provider is chosen and the reward model loaded in
the runner's ``load`` lane, scoring runs in its ``rank`` lane, training in its ``train``
lane, and the watch on other processes (below) in its ``watch`` lane.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from rlhf_desktop import config
from rlhf_desktop.config import Settings
from rlhf_desktop.domain import ModelVersion, SamplingParams, Turn
from rlhf_desktop.providers import Provider, ProviderError, choose_provider
from rlhf_desktop.providers.arena import choose_arena
from rlhf_desktop.reward.embedder import Embedder
from rlhf_desktop.services.arena.service import ArenaService
from rlhf_desktop.services.chat.conversations import ChatSettings, ConversationService
from rlhf_desktop.services.chat.models import ChatModels
from rlhf_desktop.services.chat.service import ChatService
from rlhf_desktop.services.datasets.pairs import DatasetService
from rlhf_desktop.services.hooks import SessionHooks
from rlhf_desktop.services.labels.labeling import LabelingService, RecordedLabel
from rlhf_desktop.services.ranking.evaluation import RankerEvalService
from rlhf_desktop.services.ranking.models import ModelService
from rlhf_desktop.services.ranking.retraining import Retrainer, RetrainStatus
from rlhf_desktop.services.ranking.rewards import RewardService, pinned_version
from rlhf_desktop.services.runner import BackgroundRunner, Job
from rlhf_desktop.services.tuning.service import TuningService
from rlhf_desktop.services.turns import TurnLifecycle
from rlhf_desktop.services.turns.labels import TurnLabels
from rlhf_desktop.storage.repo import Repository

log = logging.getLogger(__name__)

__all__ = ["AppSession", "Provider"]

LOAD_LANE = "load"
"""The runner's lane for choosing the provider and loading models (one at a time)."""
RANK_LANE = "rank"
"""The runner's lane for scoring replies with the reward model."""
WATCH_LANE = "watch"
"""The runner's lane of the watch on other processes (it lives as long as the session)."""
WATCH_EVERY_S = 3.0


class AppSession(ChatModels):
    """Everything one process needs for one data folder; see the module docstring."""

    def __init__(
        self,
        settings: Settings | None = None,
        provider: Provider | None = None,
        *,
        embedder: Embedder | None = None,
        warm_up: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings or config.load_settings()
        self.hooks = SessionHooks()
        self._repo = Repository.open()
        self._warm_up = warm_up
        self._rewards = RewardService(embedder=embedder)
        self._labeling = LabelingService(self._repo)
        self.runner = BackgroundRunner()
        """The one place background work runs (see :mod:`.runner`); widgets use it too."""
        self._retrainer = Retrainer(
            self._repo, self._rewards, every=self.settings.retrain_every,
            on_status=self._on_retrain_status, on_trained=self._on_trained,
            on_error=self._on_train_error, use_cut_pairs=self.settings.train_on_cut_pairs,
            runner=self.runner,
        )
        self.conversations = ConversationService(
            self._repo, self.hooks,
            lambda: ChatSettings(system_prompt=self.settings.system_prompt))
        self.datasets = DatasetService(self._repo, self.hooks)
        self.models = ModelService(self._repo, self._retrainer, self._rewards, self.hooks,
                                   self._labeling)
        self.labels = TurnLabels(self._labeling, self.hooks, self._label_recorded)
        self.turns = TurnLifecycle(self._labeling, self.labels, self.hooks, self.pick,
                                   self.undo_pick, chats=self)
        """The shown turns from send through their labels (:mod:`.turns`); it runs them
        with this session's chat."""
        self.arena = ArenaService(lambda: self.settings, self._apply_and_rebuild)
        self.tuning = TuningService.for_session(self)
        """Tuning the chat model (a low-priority process; see services/tuning/service.py)."""
        self.rankers = RankerEvalService(self._rewards, lambda: self.settings,
                                         self.apply_settings)
        """Transformers rankers (TRL RewardTrainer) against the tiny model, and the choice."""
        self._follow_ranker(self.settings)
        """Ties, all-bad flags, rewrites, skips, display positions, agreement, position bias."""
        self.provider: Provider | None = None
        self.provider_reason = ""
        """Why this provider was chosen (shown in the status bar)."""
        self.provider_line = ""
        """The provider and why it was chosen, in one line as the chooser said it
        (``azure: gpt-4o — ...``, ``Arena: a (2) vs b (2)``; the command line prints it)."""
        self._provider_wanted = False
        """Whether a provider was given or chosen: only then does a settings change
        rebuild it (a command that only edits the arena chooses none)."""
        self.provider_error: str | None = None
        """Why no provider could be chosen (safe to show)."""
        self.chat: ChatService | None = None
        self._init_chat_models()
        self._provider_ready = asyncio.Event()
        if provider is not None:
            self._use_provider(provider, "given to the window")
        self.reward_is_ready = False
        self._known_labels = 0
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
                log.error("background task %s failed", name or t, exc_info=t.exception())

        task.add_done_callback(done)
        return task

    # ------------------------------------------------------------------ provider

    def _use_provider(self, provider: Provider, why: str, line: str = "") -> None:
        self._provider_wanted = True
        self.provider = provider
        self.provider_reason = why
        self.provider_line = line or provider.describe()
        self.provider_error = None
        self.chat = ChatService(self._repo, self._rewards, provider,
                                self.runner.executor(RANK_LANE),
                                conversations=self.conversations, params=self.sampling_params,
                                provider_for=self.provider_for_model)
        self._provider_ready.set()

    async def start(self) -> None:
        """Choose the provider (unless one was given), then load the reward model."""
        if self.provider is None:
            await self.rebuild_provider()
        await self.load_reward_model()
        models, self._known_labels = self._shared_state(self._repo)
        self._watch_other_processes(models)

    async def rebuild_provider(self) -> None:
        """(Re)choose the provider from the settings, in a worker thread: the arena of the
        candidate sources when ``settings.arena`` is on (``provider_reason`` then reads
        ``Arena: a (2) vs b (2)``; an invalid arena becomes ``provider_error``)."""
        self._provider_wanted = True
        self._provider_ready.clear()
        config.reload_env_files()  # the user may have edited a .env file meanwhile
        old = self.provider
        choose = choose_arena if self.settings.arena else choose_provider
        try:
            provider, reason = await self.runner.call(choose, self.settings, lane=LOAD_LANE)
        except (ProviderError, config.ConfigError) as exc:
            self.provider, self.chat, self.provider_reason, self.provider_line = \
                None, None, "", ""
            self.provider_error = config.redact(str(exc))
            self._provider_ready.set()
        else:
            lead = f"{provider.describe()} — "
            self._use_provider(provider, reason[len(lead):] if reason.startswith(lead)
                               else reason, reason)
        self.hooks.provider_did_change()
        await self._close_model_providers()
        if old is not None and old is not self.provider:
            try:
                await old.aclose()
            except Exception:  # closing a provider must never break the session
                log.exception("closing the previous provider failed")

    async def wait_provider(self) -> ChatService | None:
        """The chat service once a provider is chosen (None when it could not be)."""
        await self._provider_ready.wait()
        return self.chat

    def sampling_params(self) -> SamplingParams:
        """What the next turn asks the provider for."""
        s = self.settings
        n = s.candidates_per_turn
        if s.arena:
            try:
                n = sum(src.count for src in s.arena_sources()) or n
            except config.ConfigError:  # provider_error already says why
                pass
        return SamplingParams(n=n, temperature=s.temperature, top_p=s.top_p,
                              max_tokens=s.max_tokens, system_prompt=s.system_prompt)

    def apply_settings(self, settings: Settings) -> None:
        """Use new settings (already saved); call :meth:`rebuild_provider` if they need it."""
        self.settings = settings
        self._retrainer.every = settings.retrain_every
        cut_changed = self._retrainer.use_cut_pairs != settings.train_on_cut_pairs
        self._retrainer.use_cut_pairs = settings.train_on_cut_pairs
        if cut_changed and self.models.current() is not None:
            self._retrainer.request()  # the status bar's "… left out: Settings" is answered now
        self._follow_ranker(settings)
        self.hooks.retrain_did_update(self._retrainer.status())

    def _follow_ranker(self, settings: Settings) -> None:
        if settings.ranker != self._rewards.ranker.wanted:
            self._rewards.ranker.choose(settings.ranker)

    def _apply_and_rebuild(self, settings: Settings) -> None:
        self.apply_settings(settings)
        if self._provider_wanted:
            self.spawn(self.rebuild_provider(), "rebuild provider")

    # ------------------------------------------------------------------ reward model

    @property
    def reward_version(self) -> int | None:
        """The reward-model version that ranks now (None while untrained)."""
        return self._rewards.version

    async def load_reward_model(self, *, embedder: bool = True) -> None:
        """Load the reward model in use and the embedder without blocking the loop
        (``embedder=False``: the model only, and no warm-up; the first score loads the
        embedder if a trained model needs it: a one-shot command)."""
        load = self._load_reward_sync if embedder else self._load_model_only
        try:
            await self.runner.call(load, lane=LOAD_LANE)
        except Exception as exc:  # the chat still works; ranking waits
            log.exception("loading the reward model failed")
            self.hooks.training_did_fail(
                config.redact(f"The reward model could not be loaded: {exc}"))
            return
        self.reward_is_ready = True
        self.hooks.reward_did_load()
        self.hooks.retrain_did_update(self._retrainer.status())

    def _load_reward_sync(self) -> None:
        self._load_model_only()
        if self._warm_up is not None:
            self._warm_up()
        self._rewards.embedder.load()

    @staticmethod
    def _shared_state(repo: Repository) -> tuple[tuple[int | None, int | None], int]:
        """What another process (the CLI) may change: the newest version and the pinned
        one, and the number of labels."""
        latest = repo.versions.latest()
        return ((latest.version if latest else None, pinned_version()), repo.labels.count())

    def _watch_other_processes(self, models: tuple[int | None, int | None],
                               every_s: float = WATCH_EVERY_S) -> None:
        """The command line may import, train or switch versions beside the window. Another
        process writing the database fires no event here, so this still polls: a job in the
        runner's ``watch`` lane reads the shared state every ``every_s`` on its own
        connection and reports a change; :meth:`_other_process_changed` handles it on the
        loop. It ends when the runner closes (the job waits on its cancel event)."""
        self._seen_models = models

        def watch(job: Job) -> None:
            repo = Repository.open()
            try:
                while not job.cancel_event.wait(every_s):
                    job.report(self._shared_state(repo))
            finally:
                repo.close()

        self.runner.run(watch, progress=self._other_process_changed, lane=WATCH_LANE,
                        name="watch other processes")

    def _other_process_changed(self, state: tuple[tuple[int | None, int | None], int]) -> None:
        """Load the version that should rank now, and refresh the label counts. (This
        session's own picks move ``_known_labels`` themselves.)"""
        now_models, now_labels = state
        if now_models != self._seen_models:
            self._seen_models = now_models
            self._reload_if_another_version()
        if now_labels != self._known_labels:
            grew = now_labels > self._known_labels
            self._known_labels = now_labels
            self.hooks.labels_did_change()
            if grew:  # imported labels count towards the next training too
                self._retrainer.label_recorded()
            else:
                self.hooks.retrain_did_update(self._retrainer.status())

    def _reload_if_another_version(self) -> None:
        before = self._rewards.version

        def loaded(_: None) -> None:
            if self._rewards.version != before and not self.closed:
                version = self.models.current()
                if version is not None:
                    self.hooks.model_did_train(version)

        def failed(exc: BaseException) -> None:  # the model in use stays; the next change
            log.error("loading the reward model another process chose failed",  # tries again
                      exc_info=exc)

        self.runner.run(lambda _job: self._load_model_only(), loaded, failed, lane=LOAD_LANE,
                        name="load the reward model another process chose")

    def _load_model_only(self) -> None:
        repo = Repository.open()
        try:
            self._rewards.load_current(repo)
        finally:
            repo.close()

    # ------------------------------------------------------------------ labels

    def pick(self, turn: Turn, candidate_id: int, reason: str | None = None,
             against: Sequence[int] | None = None) -> RecordedLabel:
        """Record the user's pick on ``turn`` (durable when this returns). ``against`` names
        the rejected replies explicitly (default: every whole reply; failed, empty, cut and
        stopped ones are left out unless named here)."""
        pick = self._labeling.pick(turn, candidate_id, reason, against=against)
        self.hooks.labels_did_change()
        self._label_recorded()
        return pick

    def _label_recorded(self) -> None:
        """After any label of this session: it counts towards the next training."""
        self._known_labels = self._repo.labels.count()
        self._retrainer.label_recorded()

    @property
    def can_undo_pick(self) -> bool:
        """Whether this session recorded a pick that :meth:`undo_pick` would undo."""
        return self._labeling.can_undo

    def set_reason(self, pick: RecordedLabel, reason: str | None) -> None:
        """Attach the optional one-line reason to a pick."""
        self._labeling.set_reason(pick, reason)

    def undo_pick(self) -> RecordedLabel | None:
        """Remove the last pick of this session and its pairs (None: nothing to undo)."""
        pick = self._labeling.undo()
        self._known_labels = self._repo.labels.count()
        if pick is not None:
            self.hooks.labels_did_change()
            self.hooks.retrain_did_update(self._retrainer.status())
        return pick

    # ------------------------------------------------------------------ retraining

    def _on_retrain_status(self, status: RetrainStatus) -> None:
        if not self.closed:
            self.hooks.retrain_did_update(status)

    def _on_trained(self, version: ModelVersion) -> None:
        if self.closed:
            return
        adoption = version.metrics.get("adoption") or {}
        if adoption.get("adopted", True):
            self.hooks.model_did_train(version)
        else:
            self.hooks.model_did_reject(version)
        self.hooks.labels_did_change()

    def _on_train_error(self, exc: Exception) -> None:
        if not self.closed:
            self.hooks.training_did_fail(config.redact(f"Training failed: {exc}"))

    async def wait_training(self) -> None:
        """Until the current training run (and a queued one) are over."""
        await self._retrainer.wait()

    # ------------------------------------------------------------------ shutdown

    async def aclose(self) -> None:
        """Stop training and background tasks, close the provider and the database."""
        if self.closed:
            return
        self.closed = True
        self.tuning.close()
        self._retrainer.shutdown()
        self.runner.close()  # pending jobs cancelled; what ends later calls nothing
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:  # a cancelled turn stores its unfinished replies (as stopped) on its way out
            await asyncio.wait(tasks, timeout=3)
        await self._close_model_providers()
        if self.provider is not None:
            try:
                await asyncio.wait_for(self.provider.aclose(), timeout=5)
            except Exception:  # best effort at exit
                log.warning("closing the provider failed", exc_info=True)
        self._repo.close()
