"""Ranking a turn's replies: the ranking being chosen (:class:`RankChooser`, composed by
:class:`~.chat_labels.LabelActions`).

Alt+R (or "Rank…" under a turn) starts ranking the last turn. The Best buttons and
Alt+1…9 then place the replies from best to worst; each card shows its place ("1st",
"2nd", …), and pressing a placed card again takes it out (the later ones move up). When
every whole reply is placed, the ranking is saved; Enter, Alt+R or "Save ranking" saves the
top ones placed so far (two or more; the rest count as tied below them). Esc or Cancel
leaves it. A blind turn reveals the model's ranking once saved, as after a pick.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from PySide6.QtCore import Qt
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import QApplication, QWidget

from rlhf_desktop.core.pick_rules import rankable
from rlhf_desktop.services.labels.labeling import RecordedLabel, StorageError
from rlhf_desktop.services.turns import Refused
from rlhf_desktop.ui.chat.context import ChatContext
from rlhf_desktop.ui.chat.label_view import ordinal
from rlhf_desktop.ui.chat.label_widgets import RANK_KEY, LabelBar, RankKeys
from rlhf_desktop.ui.chat.turn_widget import TurnWidget

log = logging.getLogger(__name__)


class RankChooser:
    """The ranking being chosen on one turn (at most one at a time)."""

    def __init__(self, context: ChatContext, view: QWidget, *,
                 leave_choosing: Callable[[], None],
                 labeled: Callable[[TurnWidget, RecordedLabel], None],
                 refresh_bar: Callable[[TurnWidget], None]) -> None:
        """``leave_choosing`` leaves any tie or ranking being chosen; ``labeled`` shows a
        saved label on its turn; ``refresh_bar`` shows a turn's label bar as it should be."""
        self._ctx = context
        self._leave_choosing = leave_choosing
        self._labeled = labeled
        self._refresh_bar = refresh_bar
        self._rank: tuple[TurnWidget, list[int]] | None = None
        self._rank_keys = RankKeys(view, self._save_key, self._escape)
        shortcut = QShortcut(QKeySequence(RANK_KEY), view)
        shortcut.setContext(Qt.ShortcutContext.WindowShortcut)
        shortcut.activated.connect(self.rank_key)

    @property
    def widget(self) -> TurnWidget | None:
        """The turn being ranked, if any."""
        return None if self._rank is None else self._rank[0]

    @property
    def ranking(self) -> list[int] | None:
        """Candidate ids placed so far, best first (None: no ranking being chosen)."""
        return None if self._rank is None else list(self._rank[1])

    def rank_key(self) -> None:
        """Alt+R: start ranking the last turn, or save the ranking being chosen."""
        widget = self._rank[0] if self._rank is not None else self._ctx.last()
        if widget is not None:
            self.rank(widget)

    def rank(self, widget: TurnWidget) -> None:
        """Start ranking ``widget``'s turn, or save the ranking being chosen there."""
        if self._rank is not None and self._rank[0] is widget:
            self._save_rank_or_say()
            return
        self._leave_choosing()
        turn = widget.turn
        if turn is None or turn.id is None:
            return
        if widget.regenerating:
            self._ctx.say("Wait for the reply being regenerated (or stop it)")
            return
        if len(rankable(turn)) < 2:
            self._ctx.say("A ranking needs two or more whole replies; failed, stopped and empty "
                      "ones cannot be ranked")
            return
        self._rank = (widget, [])
        if self._rank_keys is not None:
            app = QApplication.instance()
            if app is not None:
                app.installEventFilter(self._rank_keys)
        self._show_rank()
        self._ctx.say("Ranking: Alt+1…9 (or Best) on the replies, best first · Enter saves the "
                  "top ones · Esc cancels")  # short: the bar on the turn says the rest

    def toggle(self, widget: TurnWidget, index: int) -> bool:
        """While ``widget``'s turn is being ranked: place reply ``index`` next (or take it
        out when placed). Returns False when no ranking is being chosen there."""
        if self._rank is None or self._rank[0] is not widget:
            return False
        card = widget.cards.get(index)
        turn = widget.turn
        if card is None or card.candidate is None or turn is None:
            return True
        placed = self._rank[1]
        cid = card.candidate.id
        allowed = {c.id for c in rankable(turn)}
        if cid in placed:
            placed.remove(cid)
        elif cid not in allowed:
            self._ctx.say("That reply failed, was stopped or is empty: it cannot be ranked")
            return True
        else:
            placed.append(cid or 0)
        if len(placed) == len(allowed):
            self._save_rank(widget, placed)
            return True
        self._show_rank()
        return True

    def _show_rank(self) -> None:
        if self._rank is None:
            return
        widget, placed = self._rank
        for card in widget.cards.values():
            cid = card.candidate.id if card.candidate is not None else None
            card.set_chosen(True if cid in placed else None)
            if cid in placed:
                card.state_badge.setText(ordinal(placed.index(cid) + 1))
        bar: LabelBar | None = getattr(widget, "label_bar", None)
        if bar is not None and widget.turn is not None:
            bar.ranking(len(placed), len(rankable(widget.turn)))
            bar.show()

    def _save_key(self) -> None:
        """Enter while ranking."""
        self._save_rank_or_say()

    def _escape(self) -> None:
        """Esc while ranking: stop the replies still streaming, if any, else cancel."""
        if self._ctx.generating():
            self._ctx.stop()
        else:
            self.cancel()

    def _save_rank_or_say(self) -> None:
        if self._rank is None:
            return
        widget, placed = self._rank
        if len(placed) < 2:
            self._ctx.say("Place two or more replies first (Alt+1…9 or Best), best first; Esc "
                      "cancels")
            return
        self._save_rank(widget, placed)

    def cancel(self) -> None:
        """Leave the ranking being chosen (nothing is saved)."""
        if self._rank is None:
            return
        widget = self._rank[0]
        self._rank = None
        app = QApplication.instance()
        if app is not None and self._rank_keys is not None:
            app.removeEventFilter(self._rank_keys)
        bar: LabelBar | None = getattr(widget, "label_bar", None)
        if bar is not None:
            bar.ranking(None)
        if widget.turn is not None:
            widget.mark_pick(widget.turn.chosen_candidate_id)
        self._refresh_bar(widget)

    def _save_rank(self, widget: TurnWidget, placed: list[int]) -> None:
        turn = widget.turn
        assert turn is not None and widget.key is not None
        order = list(placed)
        try:
            pick = self._ctx.turns.rank(widget.key, order)
        except (Refused, StorageError) as exc:
            self._ctx.say(str(exc))
            return
        self.cancel()
        self._labeled(widget, pick)
        rest = len(rankable(turn)) - len(order)
        left = f", the other {rest} tied below" if rest else ""
        blind = (f" · blind: the model ranked your first #{pick.model_rank}"
                 if turn.blind and pick.model_rank is not None else "")
        self._ctx.say(f"Saved your ranking of {len(order)} replies{left}: {pick.pairs} weighted "
                  f"preference pairs{blind} · Alt+Z undoes it")
