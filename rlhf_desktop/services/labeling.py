"""Thumbs-up picks: one label = N−1 pairs, with undo. Never invents a label."""

from __future__ import annotations

from dataclasses import dataclass

from rlhf_desktop.domain import Turn
from rlhf_desktop.services.chat import ranked
from rlhf_desktop.storage.repo import Repository


@dataclass
class Pick:
    """A recorded pick."""

    label_id: int
    turn_id: int
    candidate_id: int
    pairs: int
    agreed: bool | None


class LabelingService:
    """Records picks and undoes the last one."""

    def __init__(self, repo: Repository) -> None:
        self.repo = repo
        self._undo: list[Pick] = []

    def pick(self, turn: Turn, candidate_id: int, reason: str | None = None) -> Pick:
        """Record the user's pick on ``turn`` (durable when this returns)."""
        assert turn.id is not None
        scored = [c for c in turn.candidates if c.model_version is not None and c.text.strip()]
        top = ranked(scored)[0].id if scored else None
        label = self.repo.record_pick(turn.id, candidate_id, reason=reason,
                                      model_top_candidate_id=top)
        turn.chosen_candidate_id = candidate_id
        pairs = sum(1 for c in turn.candidates if c.id != candidate_id and c.text.strip())
        agreed = None if top is None else top == candidate_id
        pick = Pick(label, turn.id, candidate_id, pairs, agreed)
        self._undo = [p for p in self._undo if p.turn_id != turn.id] + [pick]
        return pick

    def set_reason(self, pick: Pick, reason: str | None) -> None:
        """Attach the optional one-line reason."""
        self.repo.set_label_reason(pick.label_id, reason)

    def undo(self) -> Pick | None:
        """Remove the last pick of this session and its pairs (Ctrl+Z)."""
        if not self._undo:
            return None
        pick = self._undo.pop()
        self.repo.delete_label(pick.label_id)
        return pick

    @property
    def can_undo(self) -> bool:
        """Whether there is a pick to undo."""
        return bool(self._undo)
