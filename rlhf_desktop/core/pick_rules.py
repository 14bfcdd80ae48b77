"""Which replies of a turn a pick turns into preference pairs (the rejected side), the
pairs and weights of a ranking (:func:`ranking_pairs`), and the rules every reader of pairs
shares: which replies are whole, which are the same reply, which were cut at max tokens,
the order replies rank in, and which reply continues the conversation.

A pair says "the chosen reply is better than the rejected one". A reply that failed (the
server sent it empty, cut it short, or an error ended it), one the content filter stopped,
and one the user stopped with Esc (a cancelled partial) are not whole replies: a pair of a
complete reply against a cut one teaches the reward model "longer wins", not "better
wins". So by default they are left out of the rejected side, as are empty replies. A UI
may still put one there deliberately by naming it in ``against``. Such replies cannot be
ranked or scored at all, and they sort after the whole ones (:func:`rank_key`).

Two replies that are the same reply (:func:`same_reply`: equal after Unicode NFKC,
casefolding, collapsing whitespace and dropping trailing full stops) are a tie, never a
win: no pair holds them on both sides, none is exported, and the leaderboard counts their
battle as a tie. No fuzzy threshold: replies that differ in a word differ.

A reply the server cut at max tokens (finish reason ``length``) is whole text the user may
rightly prefer another reply over, so a pair against it is kept, flagged ``rejected_cut``
in the pair's metadata (:func:`is_cut`): with a low max-token limit the cut replies are
the longest ones, and such pairs push a ranker toward "shorter wins". Reward training
leaves them out by default (``TrainConfig.use_cut_pairs``). In rank order a cut reply
comes after every reply that finished, whatever its score (:func:`rank_key`).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from rlhf_desktop.domain import Candidate, Turn

__all__ = ["CUT", "NOT_WHOLE", "RuleError", "context_reply", "cut_by_context", "failed_indices",
           "is_cut", "is_whole_reply",
           "model_rank", "model_scored", "model_top", "no_rejected_message", "rank_key",
           "rankable", "ranked", "ranking_pairs", "rejected_side", "reply_key", "same_as",
           "same_replies", "same_reply", "why_left_out"]

NOT_WHOLE = frozenset({"error", "cancelled", "content_filter"})
"""Finish reasons of replies that did not end as the model meant them to."""
CUT = "length"
"""The finish reason of a reply cut at max tokens (:func:`is_cut`)."""


class RuleError(ValueError):
    """A label the rules refuse (an unknown, failed, empty or identical reply; too few
    ranked); the message says why and what to do. Storage and the services raise it on as
    their StorageError."""


def is_whole_reply(candidate: Candidate) -> bool:
    """True for a reply with text that finished normally (no error, not stopped)."""
    return (bool(candidate.text.strip()) and not candidate.error
            and candidate.finish_reason not in NOT_WHOLE)


_SPACE = re.compile(r"\s+")
_FULL_STOPS = ".。…"


def reply_key(text: str) -> str:
    """What two replies must share to be the same reply: the text after Unicode NFKC,
    casefolding, whitespace collapsed to single spaces, and trailing full stops dropped.

    Sampling at a temperature often returns one answer four times, spaced or cased a little
    differently ("Canberra." and "canberra"); a preference between those says nothing
    about which reply is better, only which one the user clicked."""
    flat = _SPACE.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()
    return flat.rstrip(_FULL_STOPS + " ")


def same_reply(a: str, b: str) -> bool:
    """Whether two reply texts are the same reply (:func:`reply_key`); a tie, never a win."""
    return reply_key(a) == reply_key(b)


def same_as(candidates: Sequence[Candidate], candidate: Candidate) -> list[Candidate]:
    """The other replies of ``candidates`` that are the same reply as ``candidate``
    (:func:`same_reply`), in their order; none for a reply without text."""
    if not candidate.text.strip():
        return []
    key = reply_key(candidate.text)
    return [c for c in candidates
            if c is not candidate and (c.id is None or c.id != candidate.id)
            and c.text.strip() and reply_key(c.text) == key]


def failed_indices(turn: Turn) -> list[int]:
    """Replies of ``turn`` that failed or came back empty (what "Retry failed" asks again);
    a reply stopped with Esc that kept text is not among them."""
    return [c.index for c in turn.candidates if c.error or not c.text.strip()]


def stopped_before_text(candidate: Candidate) -> bool:
    """A reply stopped (Esc, or the window closed mid-stream) before any text arrived: among
    :func:`failed_indices` (Retry asks again) but not a failure of the provider."""
    return (candidate.finish_reason == "cancelled" and not candidate.error
            and not candidate.text.strip())


def is_cut(candidate: Candidate) -> bool:
    """A reply the server cut at max tokens (kept as a rejected reply, flagged)."""
    return candidate.finish_reason == CUT


def cut_by_context(candidate: Candidate, max_tokens: int | None) -> bool:
    """A cut reply (:func:`is_cut`) that stopped before ``max_tokens``: the model's context
    filled up (llama.cpp says ``length`` for both). Only for a server that counts each
    reply's tokens exactly (the built-in model); ``max_tokens`` None: not known."""
    return (is_cut(candidate) and bool(max_tokens) and candidate.completion_tokens is not None
            and candidate.completion_tokens < (max_tokens or 0))


def rank_key(candidate: Candidate) -> tuple[bool, bool, float, int]:
    """Sort key of a turn's replies: whole replies that ended as the model meant first,
    best score first; then replies cut at max tokens (:func:`is_cut`), best score first;
    failed, stopped and empty replies last, unscored, in the provider's order.

    A cut reply ranks below every finished one whatever its score: it stops mid-sentence,
    and the reward model cannot see that (it scores text, and reward training leaves pairs
    against cut replies out, ``TrainConfig.use_cut_pairs``), so on its score alone the
    longest, cut reply often came first. The amplifier never lets a cut reply compete for
    the same reason (``services/tuning/amplify.py``)."""
    whole = is_whole_reply(candidate)
    score = candidate.score if whole and candidate.score is not None else 0.0
    return (not whole, is_cut(candidate), -score, candidate.index)


def ranked(candidates: Sequence[Candidate]) -> list[Candidate]:
    """``candidates`` in rank order (:func:`rank_key`)."""
    return sorted(candidates, key=rank_key)


def rankable(turn: Turn) -> list[Candidate]:
    """The replies of ``turn`` a ranking may order: saved, generated, whole replies (not
    failed, stopped or empty; not the user's rewrite)."""
    return [c for c in turn.candidates
            if c.id is not None and c.source != "edit" and is_whole_reply(c)]


def same_replies(turn: Turn) -> dict[int, list[int]]:
    """For each whole generated reply of ``turn`` that is the same reply as others
    (:func:`same_reply`), their candidate indices: what a card says as "same as Reply 2"
    (a pick never stores a pair between them)."""
    whole = [c for c in turn.candidates if c.source != "edit" and is_whole_reply(c)]
    found: dict[int, list[int]] = {}
    for cand in whole:
        same = [c.index for c in same_as(whole, cand)]
        if same:
            found[cand.index] = same
    return found


def model_scored(turn: Turn) -> list[Candidate]:
    """The replies the model ranked: scored, whole (failed ones are never ranked), not a
    rewrite."""
    return [c for c in turn.candidates if c.model_version is not None and c.score is not None
            and is_whole_reply(c) and c.source != "edit"]


def model_top(turn: Turn) -> int | None:
    """The id of the reply the model ranked first (None when the turn was not scored)."""
    scored = model_scored(turn)
    return ranked(scored)[0].id if scored else None


def model_rank(turn: Turn, candidate_id: int | None) -> int | None:
    """1-based rank of a reply in the model's order (None when unscored or not a reply)."""
    for rank, cand in enumerate(ranked(model_scored(turn)), start=1):
        if cand.id == candidate_id:
            return rank
    return None


def context_reply(turn: Turn) -> Candidate | None:
    """The reply that continues the conversation after ``turn``: the one the user picked
    (a tie's first, a ranking's first, a rewrite); none after "all bad" (a bad reply never
    becomes context unless the user picks it, which replaces the flag); else the top-ranked
    reply with text, whole replies first."""
    usable = [c for c in turn.candidates if c.text.strip()]
    if turn.label_kind == "all_bad" or not usable:
        return None
    if turn.chosen_candidate_id is not None:
        for cand in usable:
            if cand.id == turn.chosen_candidate_id:
                return cand
    return ranked(usable)[0]


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
    against: Sequence[int] | None = None, chosen_text: str | None = None,
) -> list[Candidate]:
    """The replies that become the rejected side of a pick of ``chosen_id`` (or of
    ``chosen_text``, a rewrite that is not among ``candidates``).

    ``against=None``: every other whole reply (:func:`is_whole_reply`) that is not the same
    reply as the chosen one (:func:`same_reply`: a tie, no pair). Otherwise exactly the
    replies with those ids, whole or not (each must be another reply of the turn, with text,
    and differ from the chosen one): the explicit way to prefer a reply over a failed or
    stopped one.
    """
    chosen = next((c for c in candidates if c.id == chosen_id), None) \
        if chosen_id is not None else None
    if chosen_text is None and chosen is not None:
        chosen_text = chosen.text
    others = [c for c in candidates if chosen_id is None or c.id != chosen_id]
    if against is None:
        return [c for c in others if is_whole_reply(c)
                and (chosen_text is None or not same_reply(chosen_text, c.text))]
    by_id = {c.id: c for c in others}
    picked: list[Candidate] = []
    for cid in dict.fromkeys(against):
        cand = by_id.get(cid)
        if cand is None:
            raise RuleError(f"candidate {cid} is not another reply of this turn")
        if not cand.text.strip():
            raise RuleError(f"reply {cand.index + 1} is empty; an empty reply cannot be "
                               "the rejected side of a pair")
        if chosen_text is not None and same_reply(chosen_text, cand.text):
            raise RuleError(f"reply {cand.index + 1} is the same reply as the chosen one; "
                               "the same reply is a tie, never the rejected side of a pair")
        picked.append(cand)
    return picked


def no_rejected_message(candidates: Sequence[Candidate], chosen_id: int | None) -> str:
    """Why a pick has nothing to compare against, and what to do."""
    others = [c for c in candidates if c.id != chosen_id]
    if not others:
        return "a pick needs at least one other reply to compare; this turn has only one"
    chosen = next((c for c in candidates if c.id == chosen_id), None)
    same = {c.id for c in same_as(candidates, chosen)} if chosen is not None else set()
    reasons = ", ".join(
        f"reply {c.index + 1} " + ("is the same reply" if c.id in same else why_left_out(c))
        for c in others)
    return (f"a pick needs at least one other whole reply, a different one, to compare against "
            f"({reasons}); failed, stopped, empty and identical replies are not stored as "
            "pairs. Regenerate the turn to get other replies (identical replies are a "
            "tie).")


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
    empty replies left unranked are left out, as from a pick's rejected side, and so is
    every combination of two replies that are the same reply (:func:`same_reply`: a tie).

    Weights: the pairs of one ranking share N−1 between them (each weighs (N−1)/pairs; 2/N
    for a full ranking), so a ranked turn counts in training as much as a pick of the same N
    replies (N−1 pairs of weight 1), however much of it was ranked; a combination left out
    as a tie takes its share with it, as a pick's identical reply does. Raises
    RuleError, with what to do, on an unknown, repeated, failed or empty reply, fewer
    than two, or replies that are all the same reply.
    """
    by_id = {c.id: c for c in candidates if c.id is not None}
    seen: set[int] = set()
    placed: list[Candidate] = []
    for cid in order:
        cand = by_id.get(cid)
        if cand is None:
            raise RuleError(f"candidate {cid} is not a reply of this turn; rank the "
                               "turn's own replies")
        if cid in seen:
            raise RuleError(f"reply {cand.index + 1} is ranked twice; give each reply "
                               "one place")
        if not is_whole_reply(cand):
            raise RuleError(f"reply {cand.index + 1} is {why_left_out(cand)} and cannot "
                               "be ranked; rank the whole replies (or regenerate it first)")
        seen.add(cid)
        placed.append(cand)
    if len(placed) < 2:
        raise RuleError("a ranking needs two or more replies in order; to choose just one "
                           "reply, pick it with Best")
    rest = [c for c in candidates if c.id not in seen and is_whole_reply(c)]
    combos = [(better, worse) for i, better in enumerate(placed)
              for worse in [*placed[i + 1:], *rest]]
    weight = (len(placed) + len(rest) - 1) / len(combos)
    kept = [(better, worse, weight) for better, worse in combos
            if not same_reply(better.text, worse.text)]
    if not kept:
        raise RuleError("the ranked replies are all the same reply: a tie, not an order; "
                           "mark them as a tie")
    return kept
