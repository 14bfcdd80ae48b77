"""The chat's labels beyond the pick: tie, all bad, ranking, edit-as-chosen, skip, and the
display positions of every card; each fires the session's hooks like
:meth:`AppSession.pick`.

A page gets it as ``session.labels`` (:class:`~rlhf_desktop.services.session.AppSession`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rlhf_desktop.domain import Candidate, Turn
from rlhf_desktop.services.hooks import SessionHooks
from rlhf_desktop.services.labels.labeling import (
    Agreement,
    LabelingService,
    PositionBias,
    RecordedLabel,
)

__all__ = ["TurnLabels"]


class TurnLabels:
    """Ties, all-bad flags, rankings, rewrites, skips and display positions of the chat's
    turns.

    Labels go on the same undo stack as picks (Alt+Z undoes the last label of any kind).
    """

    def __init__(self, labeling: LabelingService, hooks: SessionHooks,
                 label_recorded: Callable[[], None]) -> None:
        self._labeling = labeling
        self._hooks = hooks
        self._label_recorded = label_recorded

    def tie(self, turn: Turn, candidate_ids: Sequence[int]) -> RecordedLabel:
        """Two or more replies equally good: a tie label (no pairs)."""
        pick = self._labeling.tie(turn, candidate_ids)
        self._hooks.labels_did_change()
        return pick

    def all_bad(self, turn: Turn) -> RecordedLabel:
        """Every reply is bad: a flag on the turn (no pairs)."""
        pick = self._labeling.all_bad(turn)
        self._hooks.labels_did_change()
        return pick

    def rank(self, turn: Turn, order: Sequence[int]) -> RecordedLabel:
        """The user's order of the turn's replies (candidate ids best first): one label
        whose weighted pairs count as one label towards retraining."""
        pick = self._labeling.rank(turn, order)
        self._hooks.labels_did_change()
        self._label_recorded()
        return pick

    def edit(self, turn: Turn, candidate_id: int, text: str) -> tuple[RecordedLabel, Candidate]:
        """The user's rewrite of a reply, chosen over every original reply."""
        pick, cand = self._labeling.edit(turn, candidate_id, text)
        self._hooks.labels_did_change()
        self._label_recorded()
        return pick, cand

    def skip(self, turn: Turn) -> None:
        """No label for this turn."""
        self._labeling.skip(turn)

    def record_display(self, turn: Turn) -> None:
        """Store the cards' display positions and whether the turn is blind."""
        self._labeling.record_display(turn)

    def agreement(self, blind_only: bool = True, last: int = 50) -> Agreement:
        """"The model agreed with you" on the last ``last`` picks (blind turns only by
        default: see :attr:`Agreement.note`)."""
        return self._labeling.agreement(blind_only, last)

    def position_bias(self, last: int = 200) -> PositionBias:
        """How often the card shown first was picked, against chance."""
        return self._labeling.position_bias(last)
