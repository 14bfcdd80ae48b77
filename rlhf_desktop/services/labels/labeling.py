"""Labels of a turn: a pick (one label = one pair per other whole reply), a tie, an
all-bad flag, a ranking (one label = a weighted pair per (better, worse) combination), the
user's rewrite chosen over every reply, or a skip; with undo.

Never invents a label, and never a pair against a reply that failed, came back empty or
was stopped with Esc, unless the caller names it in ``against``; never a pair of two replies
that are the same reply (a tie) (:mod:`rlhf_desktop.core.pick_rules`). Ties and all-bad
flags make no pairs.

Every label keeps what the user saw (:class:`~rlhf_desktop.domain.Shown`): blind or not,
the display positions, the reward model's version and scores, and the time to pick,
measured from ``turn.shown_at``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rlhf_desktop.core.pick_rules import (
    RuleError,
    is_whole_reply,
    model_rank,
    model_top,
    ranking_pairs,
    rejected_side,
    same_as,
)
from rlhf_desktop.domain import Candidate, Shown, Turn
from rlhf_desktop.storage.repo import Repository, StorageError

__all__ = ["Agreement", "LabelingService", "PositionBias", "RecordedLabel", "StorageError"]


@dataclass
class RecordedLabel:
    """A recorded label (of any kind; ``candidate_id`` is None for an all-bad flag)."""

    label_id: int
    turn_id: int
    candidate_id: int | None
    pairs: int
    agreed: bool | None
    kind: str = "pick"
    model_rank: int | None = None
    """Where the model ranked the chosen reply (1 = its top), when the turn was scored."""


@dataclass(frozen=True)
class Agreement:
    """How often the user's pick was the model's top reply, over ``picks`` picks."""

    rate: float | None
    picks: int
    blind_only: bool

    @property
    def note(self) -> str:
        """What the rate is computed from, in plain words (shown beside it)."""
        if self.blind_only:
            return ("from blind turns only (replies shown in a random order without scores), "
                    "so a habit of picking the top card cannot inflate it")
        return ("from every pick; the cards were shown best-first, so a habit of picking the "
                "top card inflates it")


@dataclass(frozen=True)
class PositionBias:
    """How often the user picked the card shown first, against chance (1/N per turn)."""

    first_share: float | None
    chance: float | None
    picks: int

    @property
    def words(self) -> str:
        """In plain words, e.g. "you picked the first card 41 % of the time (chance 25 %)"."""
        if self.first_share is None or self.chance is None:
            return "no picks with recorded card positions yet"
        return (f"you picked the first card {self.first_share:.0%} of the time "
                f"(chance {self.chance:.0%}, {self.picks} pick{'s' if self.picks != 1 else ''})")


class LabelingService:
    """Records labels and undoes the last one."""

    def __init__(self, repo: Repository, clock: Callable[[], float] = time.time) -> None:
        self.repo = repo
        self._clock = clock
        self._undo: list[RecordedLabel] = []

    def _remember(self, pick: RecordedLabel) -> RecordedLabel:
        self._undo = [p for p in self._undo if p.turn_id != pick.turn_id] + [pick]
        return pick

    def pick(self, turn: Turn, candidate_id: int, reason: str | None = None,
             against: Sequence[int] | None = None) -> RecordedLabel:
        """Record the user's pick on ``turn`` (durable when this returns).

        The other whole replies become the rejected side; ``against`` names the rejected
        replies explicitly instead (it may include a failed or stopped one on purpose).
        When every other whole reply is the same reply as the picked one (the built-in
        model's "Canberra" four times), the pick is a tie of those replies: no pairs
        (``RecordedLabel.kind`` is ``tie``); the conversation continues with the picked reply.
        """
        assert turn.id is not None
        generated = [c for c in turn.candidates if c.source != "edit"]
        chosen = next((c for c in generated if c.id == candidate_id), None)
        if against is None and chosen is not None and is_whole_reply(chosen) \
                and not rejected_side(generated, candidate_id):
            same = [c.id for c in same_as(generated, chosen)
                    if is_whole_reply(c) and c.id is not None]
            if same:
                return self.tie(turn, [candidate_id, *same])
        top = model_top(turn)
        label = self.repo.labels.pick(turn.id, candidate_id, reason=reason,
                                      model_top_candidate_id=top, against=against,
                                      shown=Shown.of(turn, self._clock()))
        self._forget_edits(turn)
        turn.chosen_candidate_id = candidate_id
        turn.label_kind, turn.ranked_candidate_ids, turn.skipped = "pick", (), False
        pairs = len(rejected_side(generated, candidate_id, against))
        agreed = None if top is None else top == candidate_id
        return self._remember(RecordedLabel(label, turn.id, candidate_id, pairs, agreed, "pick",
                                   model_rank(turn, candidate_id)))

    def tie(self, turn: Turn, candidate_ids: Sequence[int]) -> RecordedLabel:
        """Two or more replies equally good: a tie label, no pairs."""
        assert turn.id is not None
        label = self.repo.labels.tie(turn.id, candidate_ids, model_top_candidate_id=model_top(turn),
                                     shown=Shown.of(turn, self._clock()))
        self._forget_edits(turn)
        tied = tuple(dict.fromkeys(candidate_ids))
        turn.chosen_candidate_id = tied[0]  # the conversation continues with the first
        turn.label_kind, turn.ranked_candidate_ids, turn.skipped = "tie", tied, False
        return self._remember(RecordedLabel(label, turn.id, tied[0], 0, None, "tie"))

    def rank(self, turn: Turn, order: Sequence[int]) -> RecordedLabel:
        """Record the user's ranking of ``turn``'s replies, ``order`` = candidate ids best
        first (all of them, or the top k ≥ 2 with the rest tied below:
        :func:`~rlhf_desktop.core.pick_rules.ranking_pairs`). The conversation continues
        with the first. ``RecordedLabel.pairs`` is the number of pairs; ``model_rank`` where
        the model ranked the user's first."""
        assert turn.id is not None
        top = model_top(turn)
        generated = [c for c in turn.candidates if c.source != "edit"]
        try:  # refuses a bad order before writing
            pairs = len(ranking_pairs(generated, order))
        except RuleError as exc:
            raise StorageError(str(exc)) from exc
        label = self.repo.labels.rank(turn.id, order, model_top_candidate_id=top,
                                      shown=Shown.of(turn, self._clock()))
        self._forget_edits(turn)
        members = tuple(order)
        turn.chosen_candidate_id = members[0]
        # a ranking's order travels in ranked_candidate_ids, as storage reads it back
        turn.label_kind, turn.ranked_candidate_ids, turn.skipped = "ranking", members, False
        agreed = None if top is None else top == members[0]
        return self._remember(RecordedLabel(label, turn.id, members[0], pairs, agreed, "ranking",
                                   model_rank(turn, members[0])))

    def all_bad(self, turn: Turn) -> RecordedLabel:
        """Every reply is bad: a flag on the turn (exported), never pairs."""
        assert turn.id is not None
        label = self.repo.labels.all_bad(turn.id, model_top_candidate_id=model_top(turn),
                                         shown=Shown.of(turn, self._clock()))
        self._forget_edits(turn)
        turn.chosen_candidate_id = None
        turn.label_kind, turn.ranked_candidate_ids, turn.skipped = "all_bad", (), False
        return self._remember(RecordedLabel(label, turn.id, None, 0, None, "all_bad"))

    def edit(self, turn: Turn, candidate_id: int, text: str) -> tuple[RecordedLabel, Candidate]:
        """The user's rewrite of reply ``candidate_id``, chosen over every original reply;
        the conversation continues with it. Returns the label and the new candidate."""
        assert turn.id is not None
        label, cand = self.repo.labels.edit(turn.id, candidate_id, text,
                                            model_top_candidate_id=model_top(turn),
                                            shown=Shown.of(turn, self._clock()))
        self._forget_edits(turn)
        turn.candidates.append(cand)
        turn.chosen_candidate_id = cand.id
        turn.label_kind, turn.ranked_candidate_ids, turn.skipped = "edit", (), False
        pairs = self.repo.pairs.count_of_label(label)
        return self._remember(RecordedLabel(label, turn.id, cand.id, pairs, None, "edit")), cand

    def skip(self, turn: Turn) -> None:
        """No label for this turn (nothing is stored but the skip; a pick can follow)."""
        assert turn.id is not None
        self.repo.conversations.set_skipped(turn.id)
        turn.skipped = True

    def record_display(self, turn: Turn) -> None:
        """Store where each card of ``turn`` is shown (``candidate.position``) and whether
        the turn is blind; starts the time-to-pick clock the first time."""
        if turn.id is None or turn.labeled:
            return
        if turn.shown_at is None:
            turn.shown_at = self._clock()
        positions = {c.id: c.position for c in turn.candidates
                     if c.id is not None and c.position is not None}
        self.repo.conversations.record_display(turn.id, turn.blind, positions)

    @staticmethod
    def _forget_edits(turn: Turn) -> None:
        """A new label replaced any earlier rewrite of the turn (storage deleted it)."""
        turn.candidates[:] = [c for c in turn.candidates if c.source != "edit"]

    def set_reason(self, pick: RecordedLabel, reason: str | None) -> None:
        """Attach the optional one-line reason."""
        self.repo.labels.set_reason(pick.label_id, reason)

    def undo(self) -> RecordedLabel | None:
        """Remove the last label of this session and its pairs (Alt+Z); an edit's rewrite
        goes with it."""
        if not self._undo:
            return None
        pick = self._undo.pop()
        self.repo.labels.delete(pick.label_id)
        return pick

    @property
    def can_undo(self) -> bool:
        """Whether there is a label to undo."""
        return bool(self._undo)

    @property
    def last(self) -> RecordedLabel | None:
        """The label :meth:`undo` would remove (None: nothing to undo)."""
        return self._undo[-1] if self._undo else None

    def label_of(self, turn_id: int) -> RecordedLabel | None:
        """The label of this session on turn ``turn_id`` that undo can still remove."""
        return next((p for p in reversed(self._undo) if p.turn_id == turn_id), None)

    @staticmethod
    def unlabel(turn: Turn, pick: RecordedLabel) -> None:
        """What undoing ``pick`` leaves of ``turn`` (the turn object a page shows): no
        label, and an edit's rewrite gone with it (storage deleted both)."""
        if pick.kind == "edit":
            turn.candidates[:] = [c for c in turn.candidates if c.id != pick.candidate_id]
        turn.chosen_candidate_id = None
        turn.label_kind, turn.ranked_candidate_ids = None, ()

    def position_bias(self, last: int = 200) -> PositionBias:
        """Share of the last ``last`` picks that went to the card shown first, against the
        share a random pick would give (the mean of 1/N)."""
        picks = self.repo.labels.pick_positions(last)
        if not picks:
            return PositionBias(None, None, 0)
        first = sum(1 for where, _n in picks if where == 0) / len(picks)
        chance = sum(1 / n for _where, n in picks) / len(picks)
        return PositionBias(first, chance, len(picks))

    def agreement(self, blind_only: bool = True, last: int = 50) -> Agreement:
        """How often the last ``last`` picks were the model's top reply: on blind turns
        only (the honest measure, the default), or on every pick."""
        rate, n = self.repo.labels.agreement_rate(last, blind=True if blind_only else None)
        return Agreement(rate, n, blind_only)
