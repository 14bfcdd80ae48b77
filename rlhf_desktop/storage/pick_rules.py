"""Which replies of a turn a pick turns into preference pairs (the rejected side).

A pair says "the chosen reply is better than the rejected one". A reply that failed (the
server sent it empty, cut it short, or an error ended it), one the content filter stopped,
and one the user stopped with Esc (a cancelled partial) are not whole replies: a pair of a
complete reply against a cut one teaches the reward model "longer wins", not "better
wins". So by default they are left out of the rejected side, as are empty replies. A UI
may still put one there deliberately by naming it in ``against``.
"""

from __future__ import annotations

from collections.abc import Sequence

from rlhf_desktop.domain import Candidate
from rlhf_desktop.storage.pairs import StorageError

NOT_WHOLE = frozenset({"error", "cancelled", "content_filter"})
"""Finish reasons of replies that did not end as the model meant them to."""


def is_whole_reply(candidate: Candidate) -> bool:
    """True for a reply with text that finished normally (no error, not stopped)."""
    return (bool(candidate.text.strip()) and not candidate.error
            and candidate.finish_reason not in NOT_WHOLE)


def why_left_out(candidate: Candidate) -> str:
    """A few words on why a reply is not used as a rejected reply by default."""
    if not candidate.text.strip():
        return "empty"
    if candidate.finish_reason == "cancelled":
        return "stopped before it finished"
    if candidate.finish_reason == "content_filter":
        return "stopped by the content filter"
    return "failed"


def rejected_side(
    candidates: Sequence[Candidate], chosen_id: int | None,
    against: Sequence[int] | None = None,
) -> list[Candidate]:
    """The replies that become the rejected side of a pick of ``chosen_id``.

    ``against=None``: every other whole reply (:func:`is_whole_reply`). Otherwise exactly
    the replies with those ids, whole or not (each must be another reply of the turn, with
    text): the explicit way to prefer a reply over a failed or stopped one.
    """
    others = [c for c in candidates if c.id != chosen_id]
    if against is None:
        return [c for c in others if is_whole_reply(c)]
    by_id = {c.id: c for c in others}
    picked: list[Candidate] = []
    for cid in dict.fromkeys(against):
        cand = by_id.get(cid)
        if cand is None:
            raise StorageError(f"candidate {cid} is not another reply of this turn")
        if not cand.text.strip():
            raise StorageError(f"reply {cand.index + 1} is empty; an empty reply cannot be "
                               "the rejected side of a pair")
        picked.append(cand)
    return picked


def no_rejected_message(candidates: Sequence[Candidate], chosen_id: int | None) -> str:
    """Why a pick has nothing to compare against, and what to do."""
    others = [c for c in candidates if c.id != chosen_id]
    if not others:
        return "a pick needs at least one other reply to compare; this turn has only one"
    reasons = ", ".join(f"reply {c.index + 1} {why_left_out(c)}" for c in others)
    return (f"a pick needs at least one other whole reply to compare against ({reasons}); "
            "failed, stopped and empty replies are not stored as pairs. Regenerate the turn "
            "to get whole replies.")
