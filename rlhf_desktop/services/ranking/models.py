"""The model page's service: what the reward model learned, its versions, train now, and
switching to another version (rollback)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from rlhf_desktop.core.leaderboard import ROUNDS, Leaderboard, compute
from rlhf_desktop.domain import ModelVersion
from rlhf_desktop.services.hooks import SessionHooks
from rlhf_desktop.services.labels.habits import Habits, habits
from rlhf_desktop.services.labels.labeling import Agreement, LabelingService, PositionBias
from rlhf_desktop.services.ranking.retraining import Retrainer, RetrainStatus
from rlhf_desktop.services.ranking.rewards import (
    RewardService,
    candidate_order,
    pin_version,
    pinned_version,
)
from rlhf_desktop.services.ranking.words import StylePreference, preferences
from rlhf_desktop.services.runner import Handle
from rlhf_desktop.storage.repo import Repository

log = logging.getLogger(__name__)

__all__ = ["Leaderboard", "Learned", "ModelOverview", "ModelService", "StylePreference",
           "VersionError", "VersionRow"]


class VersionError(Exception):
    """A version that cannot be used; the message is safe to show."""


@dataclass(frozen=True)
class Learned:
    """What one version learned about style, in plain words."""

    version: int | None
    """The version described (None: no trained model)."""
    labels: int
    preferences: list[StylePreference]
    """Found effects first, largest first; empty for a version without a style block."""


@dataclass(frozen=True)
class VersionRow:
    """One version as the model page lists it."""

    version: int
    created_at: float
    labels: int
    pairs: int
    cv_accuracy: float | None
    adopted: bool
    reason: str
    """Why it was (not) adopted, e.g. the accuracies the gate compared."""
    in_use: bool


@dataclass(frozen=True)
class ModelOverview:
    """One snapshot of everything the model page shows."""

    versions: list[ModelVersion]
    """Oldest first."""
    agreement: Agreement
    """How often the model's top reply was the pick: from blind turns when there are any
    (a habit of picking the first card cannot inflate it), else from every pick (said so)."""
    position_bias: PositionBias
    """How often the card shown first was picked, against chance."""
    habits: Habits
    """The user's labeling habits in plain words (position, length, blind vs shown, time)."""
    labels: int
    pairs: int
    label_times: list[float]
    status: RetrainStatus

    @property
    def latest(self) -> ModelVersion | None:
        """The newest version, if any."""
        return self.versions[-1] if self.versions else None


def rejection_words(version: int, labels: int, adoption: dict[str, object],
                    in_use: int | None) -> str:
    """E.g. "v3 was trained on 20 labels and not adopted: held-out accuracy fell from 67 % (v2)
    to 50 % on the 12 pairs v2 never saw (v3's figure is cross-validated). v2 still ranks
    your replies, …" """
    cur, new = adoption.get("current_accuracy"), adoption.get("new_accuracy")
    compared = adoption.get("compared_pairs")
    than = f"v{adoption.get('current_version') or in_use}"
    if isinstance(cur, int | float) and isinstance(new, int | float):
        why = (f"held-out accuracy fell from {cur * 100:.0f} % ({than}) to {new * 100:.0f} % "
               f"on the {compared} pairs {than} never saw (v{version}'s figure is "
               "cross-validated)")
    else:
        why = str(adoption.get("reason") or "the version in use was not worse")
    if in_use is None:
        still = "No version ranks your replies yet."
    else:
        still = (f"v{in_use} still ranks your replies, and the figures below are v{in_use}'s; "
                 "a new version is trained after the next labels, or with Train now.")
    return (f"v{version} was trained on {labels:,} label{'s' if labels != 1 else ''} and not "
            f"adopted: {why}. {still}")


class ModelService:
    """Reads for the model page and the "Train now" action."""

    AGREEMENT_WINDOW = 50

    def __init__(self, repo: Repository, retrainer: Retrainer, rewards: RewardService,
                 hooks: SessionHooks, labeling: LabelingService) -> None:
        self._repo = repo
        self._labeling = labeling
        self._retrainer = retrainer
        self._rewards = rewards
        self._hooks = hooks
        self._board: tuple[tuple[int, ...], Leaderboard] | None = None

    def overview(self) -> ModelOverview:
        """The model page's data in one call."""
        agreement = self._labeling.agreement(blind_only=True, last=self.AGREEMENT_WINDOW)
        if not agreement.picks:
            agreement = self._labeling.agreement(blind_only=False, last=self.AGREEMENT_WINDOW)
        return ModelOverview(
            versions=self._repo.versions.list_all(), agreement=agreement,
            position_bias=self._labeling.position_bias(),
            habits=habits(self._repo, self._labeling),
            labels=self._repo.labels.count(), pairs=self._repo.pairs.count(),
            label_times=self._repo.labels.times(), status=self._retrainer.status(),
        )

    def versions(self) -> list[ModelVersion]:
        """Every recorded version, oldest first."""
        return self._repo.versions.list_all()

    def latest(self) -> ModelVersion | None:
        """The newest recorded version."""
        return self._repo.versions.latest()

    def current(self) -> ModelVersion | None:
        """The version that ranks now; before the reward model is loaded, the one that
        will (the pinned one, else the newest adopted one)."""
        versions = self._repo.versions.list_all()
        wanted = self.in_use
        if wanted is not None:
            return next((v for v in versions if v.version == wanted), None)
        order = candidate_order(versions, pinned_version())
        return order[0] if order else None

    def status(self) -> RetrainStatus:
        """Labels to the next run, and the progress of a run."""
        return self._retrainer.status()

    def train_now(self) -> None:
        """Train now (or once more after the current run); progress comes as hooks."""
        self._retrainer.request()

    # ------------------------------------------------------------------ arena leaderboard

    def load_leaderboard(self, on_success: Callable[[Leaderboard], None] | None = None,
                         on_failure: Callable[[BaseException], None] | None = None,
                         rounds: int = ROUNDS) -> Handle[Leaderboard]:
        """The leaderboard of candidate sources from the labeled arena turns: read here (the
        repository's thread), computed in the background runner (a bootstrap of a thousand
        fits), and kept until the arena labels change. ``on_success(board)`` runs on the
        loop, unless the handle is cancelled or the session closed first."""
        turns = self._repo.arena.turns()
        key = (rounds, *(t.label_id for t in turns))
        cached = self._board[1] if self._board is not None and self._board[0] == key else None

        def job(_job: object) -> Leaderboard:
            return cached if cached is not None else compute(turns, rounds)

        def done(board: Leaderboard) -> None:
            self._board = (key, board)
            if on_success is not None:
                on_success(board)

        return self._retrainer.runner.run(job, done, on_failure, name="arena leaderboard")

    async def leaderboard(self, rounds: int = ROUNDS) -> Leaderboard:
        """:meth:`load_leaderboard`, awaited."""
        return await self.load_leaderboard(rounds=rounds)

    # ------------------------------------------------------------------ what it learned

    @property
    def in_use(self) -> int | None:
        """The version that ranks now (None: untrained, or not loaded yet)."""
        return self._rewards.version

    @property
    def pinned(self) -> int | None:
        """The version chosen with :meth:`use` (None: the newest adopted one is used)."""
        return pinned_version()

    def learned(self, version: int | None = None) -> Learned:
        """The style preferences of ``version`` (default: the one in use, else the newest)."""
        versions = self._repo.versions.list_all()
        wanted = version if version is not None else self.in_use
        chosen = next((v for v in versions if v.version == wanted), None)
        if chosen is None and version is None and versions:
            chosen = versions[-1]
        if chosen is None:
            return Learned(version=None, labels=0, preferences=[])
        style = chosen.metrics.get("style") or {}
        return Learned(version=chosen.version, labels=chosen.labels,
                       preferences=preferences(style) if isinstance(style, dict) else [])

    def rejection(self) -> str | None:
        """When the newest version was trained but not adopted (and another one ranks), the
        page's one notice of it, in words: which version, from how many labels, why (the
        held-out accuracies the gate compared) and which version still ranks; else None."""
        versions = self._repo.versions.list_all()
        if not versions:
            return None
        newest = versions[-1]
        adoption = newest.metrics.get("adoption") or {}
        current = self.current()
        in_use = current.version if current is not None else None
        if adoption.get("adopted", True) or in_use == newest.version:
            return None
        return rejection_words(newest.version, newest.labels, adoption, in_use)

    def version_rows(self) -> list[VersionRow]:
        """Every version, newest first, with its adoption verdict and whether it is in use."""
        in_use = self.in_use
        rows = []
        for v in reversed(self._repo.versions.list_all()):
            adoption = v.metrics.get("adoption") or {}
            rows.append(VersionRow(
                version=v.version, created_at=v.created_at, labels=v.labels, pairs=v.pairs,
                cv_accuracy=v.cv_accuracy, adopted=bool(adoption.get("adopted", True)),
                reason=str(adoption.get("reason") or "trained before versions were compared"),
                in_use=v.version == in_use))
        return rows

    async def use(self, version: int | None) -> ModelVersion | None:
        """Rank with ``version`` from now on (None: back to the newest adopted one).

        Pins it, loads it in the runner's ``load`` lane, and fires ``model_did_train`` with
        the version now in use, so the window re-ranks the visible turn. Raises
        :class:`VersionError` (nothing changed) for an unknown version or a file that does
        not load.
        """
        known = {v.version: v for v in self._repo.versions.list_all()}
        if version is not None and version not in known:
            listed = ", ".join(f"v{n}" for n in sorted(known)) or "none"
            raise VersionError(f"There is no model version v{version} (versions: {listed}).")
        before = pinned_version()
        pin_version(version)
        runner = self._retrainer.runner
        await runner.call(self._reload, lane="load")
        now = self.in_use
        if version is not None and now != version:
            pin_version(before)
            await runner.call(self._reload, lane="load")
            warnings = "; ".join(self._rewards.load_warnings) or "its file is missing"
            raise VersionError(f"Model v{version} could not be used ({warnings}). Still "
                               f"using {'v' + str(self.in_use) if self.in_use else 'none'}.")
        record = known.get(now) if now is not None else None
        log.info("reward model in use: v%s (pinned: %s)", now, version)
        if record is not None:
            self._hooks.model_did_train(record)
        return record

    def _reload(self) -> None:
        repo = Repository.open(self._rewards.db_path)
        try:
            self._rewards.load_current(repo)
        finally:
            repo.close()
