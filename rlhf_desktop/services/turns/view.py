"""The immutable snapshot of a turn that a page renders (:class:`TurnView`).

Published by :class:`~.lifecycle.TurnLifecycle` through ``turn_did_change`` after every
change; frozen dataclasses of tuples, so a widget can keep one without sharing state.
"""

from __future__ import annotations

from dataclasses import dataclass

from rlhf_desktop.core.pick_rules import CUT, is_whole_reply
from rlhf_desktop.domain import Candidate, Message

__all__ = ["COMPLETE", "ERROR", "FAILED", "OUTCOMES", "REPLY_STATES", "STOPPED", "UNSENT",
           "ReplyView", "TurnView", "UndoView", "reply_state"]

REPLY_STATES = ("streaming", "whole", "cut", "stopped", "filtered", "failed", "empty")
"""A reply's state: still streaming; whole (:func:`~rlhf_desktop.core.pick_rules.
is_whole_reply`), or whole but cut at max tokens; stopped with Esc; stopped by the content
filter; failed (an error); empty."""


COMPLETE, STOPPED, FAILED, UNSENT, ERROR = "complete", "stopped", "failed", "unsent", "error"
OUTCOMES = (COMPLETE, STOPPED, FAILED, UNSENT, ERROR)
"""How a send ended (:attr:`TurnView.outcome`): saved with every reply over; saved after
the user stopped it (Esc, or every reply's own Stop); saved with the provider's fault and
the partial replies; nothing sent (no provider); broken off by a storage or system error
before it was saved. The first three settle the turn (it has a ``turn_id``)."""


def reply_state(candidate: Candidate | None) -> str:
    """The :data:`REPLY_STATES` word for a finished reply (None: still streaming)."""
    if candidate is None:
        return "streaming"
    if is_whole_reply(candidate):
        return "cut" if candidate.finish_reason == CUT else "whole"
    if candidate.error:
        return "failed"
    if candidate.finish_reason == "cancelled":
        return "stopped" if candidate.text.strip() else "empty"
    if candidate.finish_reason == "content_filter":
        return "filtered"
    return "empty" if not candidate.text.strip() else "failed"


@dataclass(frozen=True)
class ReplyView:
    """One reply of a :class:`TurnView`."""

    index: int
    """The provider's index (the card's identity)."""
    candidate_id: int | None
    """None until the reply is saved."""
    position: int
    """Where the card is shown, 0-based (Alt+``position + 1`` picks it)."""
    state: str
    """One of :data:`REPLY_STATES`."""
    whole: bool
    """The whole-reply rule: may be ranked and be the rejected side of a pick."""
    pickable: bool
    """May be chosen now: saved, with text, not the user's rewrite, not being regenerated."""
    rewrite: bool
    """The user's rewrite of another reply (an edit label)."""
    score: float | None
    """The reward model's score; None while the turn is hidden or unscored."""
    source: str | None
    """In an arena turn, once revealed: the candidate source's name; else None."""
    restarts: int = 0
    """How often the provider asked for the reply again from nothing (its card drops the
    text streamed so far when this grows)."""


@dataclass(frozen=True)
class UndoView:
    """What undo would do now: remove this label (on any turn of the session)."""

    turn_id: int
    kind: str
    """The label kind (``pick``, ``tie``, ``all_bad``, ``ranking``, ``edit``)."""
    pairs: int


@dataclass(frozen=True)
class TurnView:
    """Everything a page shows of one turn, at one moment."""

    key: int
    """The lifecycle's handle of the turn, the same from send through its label."""
    turn_id: int | None
    """None while streaming (and for a turn that could not be sent)."""
    prompt: str
    messages: tuple[Message, ...]
    """Exactly what was (or will be) sent: what Regenerate and Retry send again."""
    streaming: bool
    regenerating: tuple[int, ...]
    """Indices of replies streaming again (no label meanwhile)."""
    blind: bool
    hidden: bool
    """Blind and not labeled or skipped: no scores, ranks or sources are shown."""
    order: tuple[int, ...]
    """Reply indices in display order."""
    replies: tuple[ReplyView, ...]
    """In display order."""
    label_kind: str | None
    chosen_candidate_id: int | None
    ranked_candidate_ids: tuple[int, ...]
    """A ranking's order (best first) or a tie's replies."""
    skipped: bool
    undoable: bool
    """Undo would remove this turn's label."""
    undo: UndoView | None
    """What undo would do now (None: nothing to undo)."""
    conversation_id: int | None = None
    """The chat the turn is sent in (None until a new chat is created for it)."""
    outcome: str | None = None
    """How the send ended, one of :data:`OUTCOMES`; None while it streams (and for a turn
    opened from storage)."""
    error: str | None = None
    """Why it did not complete (``failed``, ``unsent``, ``error``), safe to show."""
    ranker_ready: bool = False
    """Whether the reward model is loaded: a turn being :attr:`ranking` is scored now, else
    once it is."""

    @property
    def ranking(self) -> bool:
        """Every reply is over and the turn is being saved and scored (not settled yet)."""
        return (self.streaming and self.turn_id is None and bool(self.replies)
                and all(r.state != "streaming" for r in self.replies))

    @property
    def labeled(self) -> bool:
        """Whether the turn holds a label of any kind (a skip is none)."""
        return self.chosen_candidate_id is not None or self.label_kind is not None

    def reply(self, index: int) -> ReplyView | None:
        """The reply with provider index ``index``."""
        return next((r for r in self.replies if r.index == index), None)

    def at(self, position: int) -> ReplyView | None:
        """The reply shown at ``position`` (0-based)."""
        return self.replies[position] if 0 <= position < len(self.replies) else None
