"""How a turn's label shows on its cards: blind order and hidden scores, the reveal after the
pick, tied cards, rankings, all-bad flags, rewrites, skips (used by
:class:`~.turn_widget.TurnWidget`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from rlhf_desktop.core.pick_rules import failed_indices, model_rank, same_replies
from rlhf_desktop.domain import Candidate, Turn

if TYPE_CHECKING:
    from rlhf_desktop.ui.chat.turn_widget import TurnWidget

LABEL_KEYS = "Alt+T tie · Alt+R rank · Alt+B all bad · Alt+S skip"


def ordinal(place: int) -> str:
    """1 → "1st", 2 → "2nd", 3 → "3rd", 4 → "4th", 11 → "11th", 22 → "22nd"."""
    suffix = "th" if 10 <= place % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(
        place % 10, "th")
    return f"{place}{suffix}"


UNDO_TEXTS = {"pick": "Undo pick", "tie": "Undo tie", "all_bad": "Undo all bad",
              "ranking": "Undo ranking", "edit": "Undo edit"}


def undo_text(turn: Turn | None) -> str:
    """The turn's Undo button: it names the label it undoes ("Undo tie", "Undo ranking")."""
    kind = turn.label_kind if turn is not None else None
    return UNDO_TEXTS.get(kind or "pick", "Undo label")


def shown(turn: Turn, cand: Candidate) -> Candidate:
    """What a card may show: in a blind turn, before the pick, no score and no version."""
    if turn.hidden:
        return replace(cand, score=None, model_version=None)
    return cand


def _reply_numbers(widget: TurnWidget, ids: tuple[int, ...]) -> str:
    positions = sorted(card.position + 1 for card in widget.cards.values()
                       if card.candidate is not None and card.candidate.id in ids)
    words = [f"#{p}" if widget.numbers_are_ranks() else str(p) for p in positions]
    return ", ".join(words[:-1]) + f" and {words[-1]}" if len(words) > 1 else "".join(words)


def mark_same(widget: TurnWidget) -> None:
    """Note on each card whose reply is the same reply as other cards' which ones
    ("= same as Reply 2"): a pick never makes a pair between them."""
    turn = widget.turn
    same = same_replies(turn) if turn is not None and not widget.regenerating else {}
    by_index = {card.index: card for card in widget.cards.values()}
    for card in widget.cards.values():
        others = [by_index[i] for i in same.get(card.index, []) if i in by_index]
        card.set_same_as([f"#{o.position + 1}" if widget.numbers_are_ranks() else
                          f"Reply {o.position + 1}"
                          for o in sorted(others, key=lambda o: o.position)])


def decorate(widget: TurnWidget, keys: str) -> str | None:
    """Mark the cards for the turn's label and say it in the status line (None: the usual
    text). Called whenever the turn's status is refreshed."""
    turn = widget.turn
    mark_same(widget)
    if turn is None or widget.regenerating:
        return None
    n = len([c for c in turn.candidates if c.source != "edit"])
    if n and len(failed_indices(turn)) >= n:
        return None
    undo = " · Alt+Z undoes it" if widget.undoable else ""
    if turn.label_kind == "tie":
        for card in widget.cards.values():
            tied = card.candidate is not None and card.candidate.id in turn.ranked_candidate_ids
            card.set_chosen(tied)
            if tied:
                card.state_badge.setText("= Tie")
        return (f"You marked replies {_reply_numbers(widget, turn.ranked_candidate_ids)} as "
                f"equally good (a tie: no preference pairs){undo}")
    if turn.label_kind == "ranking":
        return _decorate_ranking(widget, turn, n, undo)
    if turn.label_kind == "all_bad":
        for card in widget.cards.values():
            card.set_chosen(False)
            card.state_badge.setText("✗ Bad")
            card.state_badge.setVisible(True)
        return ("You marked every reply as bad (a flag in the export, no pairs) · your "
                "question stays in the conversation with no reply (a next message may refer "
                "to it; Edit the question or start a new chat to leave it out) · pick a reply "
                f"to keep it{undo}")
    if turn.label_kind == "edit":
        edit = next((c for c in turn.candidates if c.id == turn.chosen_candidate_id), None)
        edit_card = widget.cards.get(edit.index) if edit is not None else None
        if edit is not None and edit_card is not None:
            edit_card.state_badge.setText("✎ Your edit")
            edit_card.state_badge.setVisible(True)
            edit_card.pick_button.hide()  # already the chosen reply
            edit_card.regen_button.hide()
            source = next((c for c in widget.cards.values() if c.candidate is not None
                           and c.candidate.id == edit.edited_from), None)
            if source is not None:
                edit_card.footer.setText(f"your rewrite of the reply shown at "
                                         f"{source.position + 1}")
        return ("Your edited reply is chosen over every original reply and continues the "
                f"conversation{undo}")
    if turn.blind and turn.label_kind == "pick":
        rank = model_rank(turn, turn.chosen_candidate_id)
        said = (f"the model ranked your pick #{rank} of {n} · the cards now show its "
                "ranking" if rank is not None else "the model had not ranked these replies")
        return f"Blind turn: {said}{undo}"
    if turn.hidden:
        return (f"Blind: {n} replies in a random order, the model's ranking stays hidden "
                f"until you pick · click Best or press {keys} · {LABEL_KEYS}")
    if turn.skipped and not turn.labeled:
        return "Skipped: no label · you can still pick a reply"
    return None


def _decorate_ranking(widget: TurnWidget, turn: Turn, n: int, undo: str) -> str:
    """A saved ranking: each ranked card shows its place ("1st", "2nd", …), the first as
    the chosen one; unranked cards (a partial ranking) are tied below."""
    order = list(turn.ranked_candidate_ids)  # a ranking's order, best first
    for card in widget.cards.values():
        cid = card.candidate.id if card.candidate is not None else None
        if cid in order:
            place = order.index(cid) + 1
            card.set_chosen(True if place == 1 else None)
            card.state_badge.setText(ordinal(place))
            card.state_badge.setVisible(True)
        else:
            card.set_chosen(False)
    rest = n - len(order)
    said = f"You ranked {len(order)} replies" + (f" (the other {rest} tied below)"
                                                  if rest > 0 else "")
    if turn.blind:
        rank = model_rank(turn, turn.chosen_candidate_id)
        said += (f" · blind: the model ranked your first #{rank} of {n}, the cards now show "
                 "its ranking" if rank is not None else
                 " · blind: the model had not ranked these replies")
    return f"{said} · your first continues the conversation{undo}"
