"""Where a turn's cards are shown, and whether the turn is blind: one home for each rule.

Blind: a turn sent in blind mode, or drawn from the arena's candidate sources, is shown in
a random order without scores, ranks or source names until the user labels (or skips) it
(:attr:`~rlhf_desktop.domain.Turn.hidden`). Once labeled, a blind turn keeps the order and
the numbers its cards had when the user labeled it, unless the user sorts it by score.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from rlhf_desktop.core.pick_rules import ranked
from rlhf_desktop.domain import Turn
from rlhf_desktop.services.arena.turns import is_arena_turn

__all__ = ["blind_turn", "display_order", "is_ranked", "keeps_seen_order", "settle_blind"]


def blind_turn(blind_mode: bool, arena: bool) -> bool:
    """Whether a turn is blind: sent in blind mode, or an arena turn (always blind until
    labeled, whatever blind mode says)."""
    return blind_mode or arena


def settle_blind(turn: Turn, blind_mode: bool, streamed: Sequence[int]) -> None:
    """A saved turn's blindness (:func:`blind_turn`, blind mode as it was when the turn was
    sent); a hidden turn whose cards streamed in a random order (``streamed``: candidate
    indices in display order) keeps that order rather than being shuffled again."""
    turn.blind = turn.blind or blind_turn(blind_mode, is_arena_turn(turn))
    if streamed and turn.hidden and all(c.position is None for c in turn.candidates):
        where = {index: pos for pos, index in enumerate(streamed)}
        for cand in turn.candidates:
            cand.position = where.get(cand.index)


def is_ranked(turn: Turn) -> bool:
    """Whether a reward model scored the replies and the ranking may show (never in a blind
    turn before its label)."""
    return not turn.hidden and any(c.model_version is not None for c in turn.candidates)


def keeps_seen_order(turn: Turn, sort_by_score: bool = False) -> bool:
    """Whether the cards stay in the order the user labeled them in: a blind turn once
    labeled or skipped, whose display positions are known, unless sorted by score."""
    return (turn.blind and not turn.hidden and not sort_by_score
            and all(c.position is not None for c in turn.candidates if c.source != "edit"))


def display_order(turn: Turn, sort_by_score: bool = False) -> list[int]:
    """Candidate indices in the order the cards are shown; each candidate of a turn not yet
    labeled gets its ``position`` (what :meth:`LabelingService.record_display` stores).

    Blind and not yet labeled: a random order fixed per turn (stored positions first). A
    revealed blind turn: the order it was labeled in (:func:`keeps_seen_order`). Otherwise
    the model's ranking when scored, else the provider's order. The user's rewrite is
    always last."""
    generated = [c for c in turn.candidates if c.source != "edit"]
    edits = [c.index for c in turn.candidates if c.source == "edit"]
    if keeps_seen_order(turn, sort_by_score):
        order = [c.index for c in sorted(generated, key=lambda c: (c.position or 0, c.index))]
        return order + edits
    if turn.hidden:
        if all(c.position is not None for c in generated):
            order = [c.index for c in sorted(generated, key=lambda c: (c.position, c.index))]
        else:
            order = sorted(c.index for c in generated)
            random.Random(turn.id or 0).shuffle(order)
    elif is_ranked(turn):
        order = [c.index for c in ranked(generated)]
    else:
        order = sorted(c.index for c in generated)
    if not turn.labeled and not turn.skipped:
        where = {index: pos for pos, index in enumerate(order)}
        for cand in generated:
            cand.position = where.get(cand.index, cand.position)
    return order + edits
