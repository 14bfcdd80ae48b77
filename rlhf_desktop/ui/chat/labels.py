"""Labels beyond the pick (:class:`LabelActions`, composed by :class:`~.chat_view.ChatView`):
Tie, Rank, All bad, Skip (buttons under each turn, and Alt+T, Alt+R, Alt+B, Alt+S on the last
turn), Edit on a card (the rewrite is chosen over every reply), the Blind toggle, and each
turn's label bar. The labels are intents to ``session.turns``.

Tie: on a turn of two whole replies (a blind comparison's), Alt+T or "Tie" saves them as a
tie at once. With more, Alt+T (or "Tie…") starts choosing; the Best buttons and Alt+1…9 then
mark the tied replies; Alt+T again (or "Save tie") saves it, Cancel leaves it. Ranking:
:mod:`~rlhf_desktop.ui.chat.ranking`.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from PySide6.QtCore import Qt
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import QPushButton, QVBoxLayout, QWidget

from rlhf_desktop import config
from rlhf_desktop.core.pick_rules import rankable
from rlhf_desktop.services.labels.labeling import RecordedLabel, StorageError
from rlhf_desktop.services.turns import Refused
from rlhf_desktop.ui.chat.cards import CandidateCard
from rlhf_desktop.ui.chat.context import ChatContext
from rlhf_desktop.ui.chat.label_widgets import (
    ALL_BAD_KEY,
    SKIP_KEY,
    TIE_KEY,
    EditDialog,
    LabelBar,
    add_edit_button,
)
from rlhf_desktop.ui.chat.ranking import RankChooser
from rlhf_desktop.ui.chat.turn_widget import TurnWidget

log = logging.getLogger(__name__)


class LabelActions:
    """Tie, ranking, all bad, skip, edit and the Blind toggle of the chat's turns; the tie
    or ranking being chosen; each turn's label bar."""

    def __init__(self, context: ChatContext, view: QWidget) -> None:
        self._ctx = context
        self.backend = context.backend
        self.ranks = RankChooser(context, view, leave_choosing=self.cancel_tie,
                                 labeled=self.labeled, refresh_bar=self.refresh_bar)
        self._tie: tuple[TurnWidget, list[int]] | None = None
        self.edit_dialog: EditDialog | None = None
        self.blind_button = QPushButton()
        self.blind_button.setObjectName("blindButton")
        self.blind_button.setCheckable(True)
        self.blind_button.setChecked(self.backend.settings.blind)
        self._blind_text()
        self.blind_button.setToolTip(
            "Blind labeling: the next turns show their replies in a random order without "
            "scores or ranks until you pick; then the model's ranking is revealed. The "
            "model page's agreement rate counts blind turns only.")
        self.blind_button.toggled.connect(self.set_blind)
        self.backend.provider_changed.connect(self._blind_text)
        for keys, slot in ((TIE_KEY, self.tie_key), (ALL_BAD_KEY, self.all_bad_key),
                           (SKIP_KEY, self.skip_key)):
            shortcut = QShortcut(QKeySequence(keys), view)
            shortcut.setContext(Qt.ShortcutContext.WindowShortcut)
            shortcut.activated.connect(slot)

    def attach(self, widget: TurnWidget) -> None:
        """Give a new turn its label bar."""
        bar = LabelBar(widget)
        widget.label_bar = bar  # type: ignore[attr-defined]
        bar.tie_clicked.connect(lambda: self.tie(widget))
        bar.rank_clicked.connect(lambda: self.rank(widget))
        bar.all_bad_clicked.connect(lambda: self.all_bad(widget))
        bar.skip_clicked.connect(lambda: self.skip(widget))
        bar.cancel_clicked.connect(lambda: self.cancel_tie())
        layout = widget.layout()
        if isinstance(layout, QVBoxLayout):
            layout.insertWidget(layout.indexOf(widget.reason_row), bar)
        self.refresh_bar(widget)

    def refresh_bar(self, widget: TurnWidget) -> None:
        """The bar shows on a saved turn with two or more replies to compare, and each
        card offers Edit while it has text."""
        bar: LabelBar | None = getattr(widget, "label_bar", None)
        turn = widget.turn
        if bar is None:
            return
        usable = [] if turn is None else [c for c in turn.candidates
                                          if c.text.strip() and c.source == "model"]
        bar.setVisible(turn is not None and turn.id is not None and len(usable) >= 2
                       and not turn.labeled)  # to change a label: Best, Edit, or Alt+Z
        if self._tie is None or self._tie[0] is not widget:
            bar.set_pair(turn is not None and not turn.labeled and len(rankable(turn)) == 2)
        for card in widget.cards.values():
            button: QPushButton | None = getattr(card, "edit_button", None)
            if button is None:
                button = add_edit_button(card, lambda _=False, c=card: self.edit(widget, c))
                card.edit_button = button  # type: ignore[attr-defined]
            cand = card.candidate
            button.setVisible(cand is not None and bool(cand.text.strip())
                              and cand.source == "model" and cand.id is not None)

    def displayed(self, widget: TurnWidget) -> None:
        """A saved turn is on screen (``session.turns`` recorded its cards' positions):
        its label bar and Edit buttons."""
        self.refresh_bar(widget)

    # ------------------------------------------------------------------ blind

    def _blind_text(self) -> None:
        arena = self.backend.settings.arena
        self.blind_button.setEnabled(not arena)
        if arena:  # arena turns are always blind until labeled
            self.blind_button.setText("Blind: always (arena)")
            return
        self.blind_button.setText("Blind: on" if self.blind_button.isChecked()
                                  else "Blind: off")

    def set_blind(self, on: bool) -> None:
        """Blind labeling for the next turns (saved in the settings)."""
        self._blind_text()
        settings = replace(self.backend.settings, blind=on)
        try:
            config.save_settings(settings)
        except (OSError, config.ConfigError) as exc:
            self._ctx.say(f"Blind mode could not be saved: {exc}")
        self.backend.apply_settings(settings)
        self._ctx.say("Blind labeling on: the next turns hide scores and ranks until you pick"
                  if on else "Blind labeling off: replies are shown best-first with scores")

    # ------------------------------------------------------------------ keys

    def choosing(self) -> TurnWidget | None:
        """The turn whose tie or ranking is being chosen (Alt+1…9 go there), if any."""
        if self._tie is not None:
            return self._tie[0]
        return self.ranks.widget

    def toggle(self, widget: TurnWidget, index: int) -> bool:
        """While a tie or a ranking is being chosen on ``widget``: mark or place reply
        ``index`` (True), else False (a Best click is a pick)."""
        return self.tie_toggle(widget, index) or self.ranks.toggle(widget, index)

    def rank(self, widget: TurnWidget) -> None:
        """Start ranking ``widget``'s turn, or save the ranking being chosen there."""
        self.ranks.rank(widget)

    def tie_key(self) -> None:
        """Alt+T: start choosing a tie on the last turn, or save it."""
        widget = self._tie[0] if self._tie is not None else self._ctx.last()
        if widget is not None:
            self.tie(widget)

    def all_bad_key(self) -> None:
        """Alt+B: every reply of the last turn is bad."""
        widget = self._ctx.last()
        if widget is not None:
            self.all_bad(widget)

    def skip_key(self) -> None:
        """Alt+S: no label for the last turn."""
        widget = self._ctx.last()
        if widget is not None:
            self.skip(widget)

    # ------------------------------------------------------------------ tie

    def tie(self, widget: TurnWidget) -> None:
        """Start choosing a tie on ``widget``'s turn, or save the one being chosen."""
        if self._tie is not None and self._tie[0] is widget:
            chosen = self._tie[1]
            if len(chosen) < 2:
                self._ctx.say("A tie needs two or more replies: mark them with Best or Alt+1…9")
                return
            self._save_tie(widget, chosen)
            return
        self.cancel_tie()
        if widget.turn is None or widget.turn.id is None:
            return
        if widget.regenerating:
            self._ctx.say("Wait for the reply being regenerated (or stop it)")
            return
        whole = rankable(widget.turn)
        if len(whole) == 2 and not widget.turn.labeled:  # nothing to choose: one click
            # (a labeled turn keeps the choose-then-save flow: one key must not replace a
            # pick or a rewrite)
            self._save_tie(widget, [c.id for c in whole if c.id is not None])
            return
        self._tie = (widget, [])
        self._show_tie()
        self._ctx.say("Choosing a tie: mark the equally good replies with Best or Alt+1…9, then "
                  f"Save tie ({TIE_KEY})")

    def tie_toggle(self, widget: TurnWidget, index: int) -> bool:
        """While a tie is being chosen on ``widget``: mark or unmark reply ``index``.
        Returns False when no tie is being chosen there."""
        if self._tie is None or self._tie[0] is not widget:
            return False
        card = widget.cards.get(index)
        if card is None or card.candidate is None or card.candidate.id is None \
                or not card.candidate.text.strip():
            return True
        chosen = self._tie[1]
        cid = card.candidate.id
        if cid in chosen:
            chosen.remove(cid)
        else:
            chosen.append(cid)
        self._show_tie()
        return True

    def _show_tie(self) -> None:
        if self._tie is None:
            return
        widget, chosen = self._tie
        for card in widget.cards.values():
            marked = card.candidate is not None and card.candidate.id in chosen
            card.set_chosen(True if marked else None)
            if marked:
                card.state_badge.setText("= Tie")
        bar: LabelBar | None = getattr(widget, "label_bar", None)
        if bar is not None:
            bar.choosing(len(chosen))
            bar.show()

    def cancel_tie(self) -> None:
        """Leave the tie (or the ranking) being chosen: nothing is saved."""
        self.ranks.cancel()
        if self._tie is None:
            return
        widget = self._tie[0]
        self._tie = None
        bar: LabelBar | None = getattr(widget, "label_bar", None)
        if bar is not None:
            bar.choosing(None)
        if widget.turn is not None:
            widget.mark_pick(widget.turn.chosen_candidate_id)
        self.refresh_bar(widget)

    def _save_tie(self, widget: TurnWidget, chosen: list[int]) -> None:
        if widget.key is None:
            return
        try:
            pick = self._ctx.turns.tie(widget.key, chosen)
        except (Refused, StorageError) as exc:
            self._ctx.say(str(exc))
            return
        self.cancel_tie()
        self.labeled(widget, pick)
        self._ctx.say(f"Saved a tie of {len(chosen)} replies (no preference pairs) · Alt+Z "
                  "undoes it")

    # ------------------------------------------------------------------ all bad, skip, edit

    def all_bad(self, widget: TurnWidget) -> None:
        """Every reply of ``widget``'s turn is bad."""
        if widget.key is None or widget.turn is None or widget.regenerating:
            return
        self.cancel_tie()
        try:
            pick = self._ctx.turns.all_bad(widget.key)
        except (Refused, StorageError) as exc:
            self._ctx.say(str(exc))
            return
        self.labeled(widget, pick)
        widget.ask_reason(0, tone="bad")
        widget.reason_label.setText("Marked every reply as bad (no pairs). What was wrong?")
        self._ctx.say("Marked every reply as bad · Alt+Z undoes it")

    def skip(self, widget: TurnWidget) -> None:
        """No label for ``widget``'s turn (a blind turn shows its ranking)."""
        turn = widget.turn
        if turn is None or turn.id is None or widget.key is None:
            return
        if not turn.labeled:
            self.cancel_tie()
        try:
            self._ctx.turns.skip(widget.key)
        except (Refused, StorageError) as exc:
            if str(exc):
                self._ctx.say(str(exc))
            return
        widget.set_turn(turn)
        self.refresh_bar(widget)
        self._ctx.say("Skipped: no label for this turn")

    def edit(self, widget: TurnWidget, card: CandidateCard) -> EditDialog | None:
        """Open the reply's text for editing; Save stores the rewrite as the chosen reply."""
        cand = card.candidate
        if widget.turn is None or cand is None or cand.id is None or widget.regenerating:
            return None
        self.cancel_tie()
        dialog = EditDialog(cand.text, widget.window())
        dialog.buttons.accepted.connect(lambda: self._save_edit(widget, cand.id or 0, dialog))
        dialog.finished.connect(lambda _r: setattr(self, "edit_dialog", None))
        self.edit_dialog = dialog
        dialog.open()
        dialog.editor.setFocus(Qt.FocusReason.OtherFocusReason)
        return dialog

    def _save_edit(self, widget: TurnWidget, candidate_id: int, dialog: EditDialog) -> None:
        if widget.turn is None or widget.key is None:
            dialog.reject()
            return
        try:
            pick, _cand = self._ctx.turns.edit(widget.key, candidate_id,
                                          dialog.editor.toPlainText())
        except (Refused, StorageError) as exc:
            dialog.show_error(str(exc))
            return
        dialog.accept()
        self.labeled(widget, pick)
        self._ctx.say(f"Saved your edit: chosen over {pick.pairs} replies; the conversation "
                  "continues with it · Alt+Z undoes it")

    # ------------------------------------------------------------------ after a label

    def labeled(self, widget: TurnWidget, pick: RecordedLabel) -> None:
        """Show a new label of any kind on its turn (a blind turn reveals its ranking)."""
        turn = widget.turn
        assert turn is not None and pick.turn_id == turn.id
        widget.set_turn(turn)  # its snapshot (turn_did_change) said Alt+Z undoes it
        self.refresh_bar(widget)

    def unlabeled(self, widget: TurnWidget, pick: RecordedLabel) -> None:
        """The label ``pick`` of ``widget``'s turn was undone (``session.turns`` took it off
        the turn)."""
        turn = widget.turn
        assert turn is not None and pick.turn_id == turn.id
        widget.mark_pick(None, undoable=False)
        widget.set_turn(turn)
        self.refresh_bar(widget)
