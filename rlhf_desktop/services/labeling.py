"""Thumbs-up picks: one label = one pair per other whole reply, with undo.

Never invents a label, and never a pair against a reply that failed, came back empty or
cut, or was stopped with Esc, unless the caller names it in ``against``
(:mod:`rlhf_desktop.storage.pick_rules`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rlhf_desktop.domain import Turn
from rlhf_desktop.services.chat import ranked
from rlhf_desktop.storage.pick_rules import rejected_side
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

    def pick(self, turn: Turn, candidate_id: int, reason: str | None = None,
             against: Sequence[int] | None = None) -> Pick:
        """Record the user's pick on ``turn`` (durable when this returns).

        The other whole replies become the rejected side; ``against`` names the rejected
        replies explicitly instead (it may include a failed or stopped one on purpose).
        """
        assert turn.id is not None
        scored = [c for c in turn.candidates if c.model_version is not None and c.text.strip()]
        top = ranked(scored)[0].id if scored else None
        label = self.repo.record_pick(turn.id, candidate_id, reason=reason,
                                      model_top_candidate_id=top, against=against)
        turn.chosen_candidate_id = candidate_id
        pairs = len(rejected_side(turn.candidates, candidate_id, against))
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
