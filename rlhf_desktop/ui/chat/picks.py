"""What the user does with the replies of a turn: pick, give a reason, undo the pick, copy,
regenerate one reply, retry the failed ones (:class:`PickActions`, composed by
:class:`~.chat_view.ChatView`).

Keys: Alt+1…9 picks anywhere in the chat view (while a tie or a ranking is being chosen,
it marks or places that reply instead); plain 1…9 only while the focus is on the
turns (never in the message box or another text field). Alt+Z undoes the last pick; Ctrl+Z
in the message box only undoes typing.

A turn that has a pick cannot have a reply regenerated: the pick's preference pairs hold the
replies' texts, so the pick has to be undone first (the Regenerate buttons say so).
"""

from __future__ import annotations

import logging

from rlhf_desktop.core.pick_rules import failed_indices, is_whole_reply, same_replies
from rlhf_desktop.domain import Candidate
from rlhf_desktop.services.chat.service import Listener, StorageError, TurnControl
from rlhf_desktop.services.turns import Refused
from rlhf_desktop.ui.chat.context import ChatContext
from rlhf_desktop.ui.chat.labels import LabelActions
from rlhf_desktop.ui.chat.turn_widget import TurnWidget

log = logging.getLogger(__name__)


def short(text: str, limit: int = 40) -> str:
    """The start of a prompt, on one line, for a status message."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[:limit - 1].rstrip() + "…"


class PickActions:
    """Picks, undo, reasons and one reply's actions of the chat's turns."""

    def __init__(self, context: ChatContext, labels: LabelActions) -> None:
        self._ctx = context
        self._labels = labels

    def pick_key(self, key: int) -> None:
        """Alt+1…9 (or 1…9 on the turns): pick the card shown at that position in the last
        turn (or mark / place it in the turn whose tie or ranking is being chosen)."""
        widgets = self._ctx.widgets()
        widget = self._labels.choosing() or (widgets[-1] if widgets else None)
        if widget is None or widget is self._ctx.current():
            return
        card = widget.card_at(key - 1)
        if card is not None:
            self.pick(widget, card.index)

    def pick(self, widget: TurnWidget, index: int) -> None:
        """Record a thumbs-up on candidate ``index`` of ``widget``'s turn (while a tie is
        being chosen there: mark or unmark it as tied; while ranking: place it next)."""
        if self._labels.toggle(widget, index):
            return
        turn = widget.turn
        card = widget.cards.get(index)
        if turn is None or card is None or card.candidate is None or card.candidate.id is None \
                or widget.key is None:
            return
        try:
            pick = self._ctx.turns.pick(widget.key, card.candidate.id)
        except (Refused, StorageError) as exc:
            if str(exc):
                self._ctx.say(str(exc))
            return
        if pick is None:
            return  # the pick already, or the user's rewrite (the chosen reply already)
        self._labels.labeled(widget, pick)
        if pick.kind == "tie":  # every other whole reply is the same reply as this one
            self._ctx.say("Saved as a tie: the other replies are the same reply as this one, so "
                      "there is no preference to store · Alt+Z undoes it")
            return
        widget.ask_reason(pick.pairs)
        self._ctx.reveal(widget.reason_row)
        agreed = "" if pick.agreed is None else (
            " · the model agreed" if pick.agreed else " · the model ranked another reply first")
        if turn.blind and pick.model_rank is not None:
            agreed = f" · blind: the model ranked your pick #{pick.model_rank}"
        pairs = f"{pick.pairs} preference pair{'s' if pick.pairs != 1 else ''}"
        left_out = sum(1 for c in turn.candidates  # the rule the pairs were made by
                       if c.id != pick.candidate_id and not is_whole_reply(c))
        kept_out = (f" ({left_out} stopped, filtered or failed "
                    f"repl{'y' if left_out == 1 else 'ies'} left out)") if left_out else ""
        same = len(same_replies(turn).get(card.candidate.index, []))
        kept_out += (f" ({same} identical repl{'y' if same == 1 else 'ies'}: a tie, no pair)"
                     if same else "")
        self._ctx.say(f"Saved your pick: {pairs}{kept_out}{agreed} · Alt+Z undoes it")

    def reason_done(self, widget: TurnWidget, reason: object) -> None:
        """The reason field was saved (a text) or skipped (None)."""
        if widget.key is not None and isinstance(reason, str) \
                and self._ctx.turns.set_reason(widget.key, reason):
            self._ctx.say("Reason saved")
        self._ctx.focus_composer()

    def undo_pick(self) -> None:
        """Alt+Z (or Undo pick): undo the last label of this session and its pairs, when it
        is on a turn shown here."""
        if self._ctx.turns.undo_hidden:
            self._ctx.say("Your last label is on a turn not shown here (another chat or "
                          "branch) · open it to undo it")
            return
        pick = self._ctx.turns.undo()
        if pick is None:
            self._ctx.say("No pick to undo")
            return
        prompt = ""
        for widget in self._ctx.widgets():
            if widget.turn is not None and widget.turn.id == pick.turn_id:
                self._labels.unlabeled(widget, pick)
                prompt = widget.turn.prompt
        focus = self._ctx.focused()
        if focus is None or not focus.isVisible():  # it was in the reason field, now hidden
            self._ctx.focus_composer()
        where = f"“{short(prompt)}”" if prompt else "an earlier turn"
        what = {"tie": "tie", "all_bad": "all-bad flag", "edit": "edit",
                "ranking": "ranking"}.get(pick.kind, "pick")
        self._ctx.say(f"Undid the {what} on {where} and its {pick.pairs} pairs")

    def undo_empty_composer(self) -> None:
        """Ctrl+Z in the message box with no typing to undo: say what Alt+Z does."""
        if self._ctx.turns.can_undo:
            self._ctx.say("Nothing to undo in the message box — Alt+Z undoes the last pick")
        else:
            self._ctx.say("Nothing to undo in the message box")

    def undo_button(self, widget: TurnWidget) -> None:
        """A turn's Undo button."""
        if widget.undoable:
            self.undo_pick()

    # ------------------------------------------------------------------ one reply

    def copied(self, widget: TurnWidget, index: int) -> None:
        """A reply was copied."""
        card = widget.cards.get(index)
        chars = len(card.candidate.text) if card is not None and card.candidate else 0
        self._ctx.say(f"Copied the reply ({chars:,} characters) as Markdown")

    def stop_one(self, widget: TurnWidget, index: int) -> None:
        """A card's Stop: stop that reply only."""
        control = self._ctx.control()
        if control is not None and widget is self._ctx.current():
            control.stop_one(index)
            card = widget.cards.get(index)
            if card is not None:
                card.stop_button.setEnabled(False)
                card.footer.setText("stopping…")

    def regenerate_reply(self, widget: TurnWidget, index: int) -> None:
        """Ask again for reply ``index`` only (refused after a pick or while busy)."""
        self._regenerate(widget, [index])

    def retry_failed(self, widget: TurnWidget) -> None:
        """Ask again for the failed replies of ``widget``'s turn, keeping the good ones."""
        if widget.turn is not None:
            self._regenerate(widget, failed_indices(widget.turn))

    def _regenerate(self, widget: TurnWidget, indices: list[int]) -> None:
        if not indices or widget.key is None or widget.turn is None:
            return
        if self._ctx.generating():
            self._ctx.say("Wait until the replies have finished (Esc stops them)")
            return
        try:
            self._ctx.turns.begin_regenerate(widget.key, indices)
        except Refused as exc:
            if str(exc):
                self._ctx.say(str(exc))
            return
        widget.clear_error()
        for index in indices:
            widget.on_restart(index)
        widget.update_status()
        control = TurnControl(indices)
        self._ctx.start_task(self._run_regenerate(widget, indices, control), widget, control)

    async def _run_regenerate(self, widget: TurnWidget, indices: list[int],
                              control: TurnControl) -> None:
        backend = self._ctx.backend
        chat = await backend.wait_provider()
        turn = widget.turn
        key = widget.key
        assert key is not None
        if chat is None or turn is None:
            if turn is not None:
                self._ctx.turns.end_regenerate(key, turn)
                widget.set_turn(turn)
            widget.show_error(backend.provider_error or "No provider is configured.",
                              action="retry_failed", button="")
            return

        def on_done(candidate: Candidate) -> None:
            widget.on_done(candidate.index, candidate)

        try:
            result = await chat.regenerate(turn, indices, control,
                                           Listener(widget.on_delta, on_done, widget.on_restart))
        except (StorageError, OSError, RuntimeError) as exc:
            log.exception("regenerating failed")
            self._ctx.turns.end_regenerate(key, turn)
            widget.set_turn(turn)
            widget.show_error(f"The reply could not be regenerated: {exc}", button="")
            return
        self._ctx.turns.end_regenerate(key, result.turn)  # its new order, recorded
        widget.set_turn(result.turn)
        self._labels.displayed(widget)
        shown = {c.index: c.position for c in result.turn.candidates if c.position is not None}
        notes = [f"Reply {shown.get(i, i) + 1} kept: its new attempt failed ({why})"
                 for i, why in result.kept.items()]
        if notes:
            self._ctx.say("; ".join(notes))
        elif result.replaced:
            done = len(result.replaced)
            self._ctx.say(f"Regenerated {done} repl{'y' if done == 1 else 'ies'}")
        if widget.error_row.isVisible():
            self._ctx.reveal(widget.error_row)
