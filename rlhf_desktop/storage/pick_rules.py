"""Which replies of a turn a pick turns into preference pairs (the rejected side), and
the pairs and weights of a ranking (:func:`ranking_pairs`).

A pair says "the chosen reply is better than the rejected one". A reply that failed (the
server sent it empty, cut it short, or an error ended it), one the content filter stopped,
and one the user stopped with Esc (a cancelled partial) are not whole replies: a pair of a
complete reply against a cut one teaches the reward model "longer wins", not "better
wins". So by default they are left out of the rejected side, as are empty replies. A UI
may still put one there deliberately by naming it in ``against``. Such replies cannot be
ranked at all.
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


def ranking_pairs(
    candidates: Sequence[Candidate], order: Sequence[int],
) -> list[tuple[Candidate, Candidate, float]]:
    """The (better, worse, weight) pairs of a ranking of ``order`` (candidate ids, best
    first) among ``candidates`` (the turn's generated replies).

    Only whole replies (:func:`is_whole_reply`) can be ranked. A full ranking of N replies
    gives every one of the N(N−1)/2 (better, worse) combinations. A partial ranking (the
    top k of N whole replies, k ≥ 2) ranks the rest tied below the last ranked one: each
    ranked reply beats the ones after it and every unranked whole reply, and the unranked
    ones make no pairs among themselves (k(k−1)/2 + k(N−k) pairs). Failed, stopped and
    empty replies left unranked are left out, as from a pick's rejected side.

    Weights: the pairs of one ranking share N−1 between them (each weighs (N−1)/pairs; 2/N
    for a full ranking), so a ranked turn counts in training as much as a pick of the same N
    replies (N−1 pairs of weight 1), however much of it was ranked. Raises StorageError,
    with what to do, on an unknown, repeated, failed or empty reply, or fewer than two.
    """
    by_id = {c.id: c for c in candidates if c.id is not None}
    seen: set[int] = set()
    ranked: list[Candidate] = []
    for cid in order:
        cand = by_id.get(cid)
        if cand is None:
            raise StorageError(f"candidate {cid} is not a reply of this turn; rank the "
                               "turn's own replies")
        if cid in seen:
            raise StorageError(f"reply {cand.index + 1} is ranked twice; give each reply "
                               "one place")
        if not is_whole_reply(cand):
            raise StorageError(f"reply {cand.index + 1} is {why_left_out(cand)} and cannot "
                               "be ranked; rank the whole replies (or regenerate it first)")
        seen.add(cid)
        ranked.append(cand)
    if len(ranked) < 2:
        raise StorageError("a ranking needs two or more replies in order; to choose just one "
                           "reply, pick it with Best")
    rest = [c for c in candidates if c.id not in seen and is_whole_reply(c)]
    combos = [(better, worse) for i, better in enumerate(ranked)
              for worse in [*ranked[i + 1:], *rest]]
    weight = (len(ranked) + len(rest) - 1) / len(combos)
    return [(better, worse, weight) for better, worse in combos]
