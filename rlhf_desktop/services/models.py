"""The model page's service: what the reward model learned, its versions, train now."""

from __future__ import annotations

from dataclasses import dataclass

from rlhf_desktop.domain import ModelVersion
from rlhf_desktop.services.hooks import SessionHooks
from rlhf_desktop.services.retraining import Retrainer, RetrainStatus
from rlhf_desktop.services.rewards import RewardService
from rlhf_desktop.storage.repo import Repository


@dataclass(frozen=True)
class ModelOverview:
    """One snapshot of everything the model page shows."""

    versions: list[ModelVersion]
    """Oldest first."""
    agreement: float | None
    """Share of the last picks where the model's top reply was the pick (None: no picks)."""
    agreement_picks: int
    labels: int
    pairs: int
    label_times: list[float]
    status: RetrainStatus

    @property
    def latest(self) -> ModelVersion | None:
        """The newest version, if any."""
        return self.versions[-1] if self.versions else None


class ModelService:
    """Reads for the model page and the "Train now" action."""

    AGREEMENT_WINDOW = 50

    def __init__(self, repo: Repository, retrainer: Retrainer, rewards: RewardService,
                 hooks: SessionHooks) -> None:
        self._repo = repo
        self._retrainer = retrainer
        self._rewards = rewards
        self._hooks = hooks

    def overview(self) -> ModelOverview:
        """The model page's data in one call."""
        rate, picks = self._repo.agreement_rate(self.AGREEMENT_WINDOW)
        return ModelOverview(
            versions=self._repo.list_model_versions(), agreement=rate, agreement_picks=picks,
            labels=self._repo.count_labels(), pairs=self._repo.count_pairs(),
            label_times=self._repo.label_times(), status=self._retrainer.status(),
        )

    def versions(self) -> list[ModelVersion]:
        """Every recorded version, oldest first."""
        return self._repo.list_model_versions()

    def latest(self) -> ModelVersion | None:
        """The newest recorded version."""
        return self._repo.latest_model_version()

    def status(self) -> RetrainStatus:
        """Labels to the next run, and the progress of a run."""
        return self._retrainer.status()

    def train_now(self) -> None:
        """Train now (or once more after the current run); progress comes as hooks."""
        self._retrainer.request()
