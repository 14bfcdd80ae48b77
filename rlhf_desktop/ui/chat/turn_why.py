"""A turn's "why it ranked here": fetched from the chat service, shown on each card and,
as the turn's confidence ("unsure" when the top two are close), in the turn header."""

from __future__ import annotations

from typing import TYPE_CHECKING

import shiboken6
from PySide6.QtWidgets import QLabel

from rlhf_desktop.core.pick_rules import is_whole_reply, ranked, same_reply
from rlhf_desktop.domain import Candidate
from rlhf_desktop.services.ranking.rewards import TurnExplanation
from rlhf_desktop.ui.backend import Backend
from rlhf_desktop.ui.chat.score_why import UNSURE_COLOR, card_why, confidence_text

if TYPE_CHECKING:
    from rlhf_desktop.ui.chat.turn_widget import TurnWidget


class TurnWhy:
    """Owned by one :class:`TurnWidget`; ``label`` is the confidence badge of its header."""

    def __init__(self, turn_widget: TurnWidget) -> None:
        self.widget = turn_widget
        self.backend: Backend | None = None
        """Where explanations come from (None: the nearest ancestor's ``backend``)."""
        self.explanation: TurnExplanation | None = None
        self._token = 0
        self.label = QLabel("")
        self.label.setProperty("badge", "version")
        self.label.hide()

    def stale(self) -> None:
        """The order changed: drop the old explanation; fetch a new one for a turn that
        still waits for its pick (a picked turn explains when a card's Why? is opened)."""
        w = self.widget
        self._token += 1
        self.explanation = None
        self.label.hide()
        for card in w.cards.values():
            card.set_why("")
        waiting = w.turn is not None and w.turn.chosen_candidate_id is None
        if w.is_ranked() and (waiting or any(c.why_button.isChecked()
                                             for c in w.cards.values())):
            self.request()

    def find_backend(self) -> Backend | None:
        """:attr:`backend`, else the nearest ancestor widget's ``backend`` (the chat page)."""
        if self.backend is not None:
            return self.backend
        parent = self.widget.parentWidget()
        while parent is not None:
            found = getattr(parent, "backend", None)
            if isinstance(found, Backend):
                return found
            parent = parent.parentWidget()
        return None

    def request(self) -> None:
        """Ask the chat service why the cards rank as they do (it runs in the rank worker)."""
        backend = self.find_backend()
        if backend is None or backend.chat is None or not self.widget.is_ranked():
            return
        backend.spawn(self._explain(backend, self._token), "explain a turn")

    async def _explain(self, backend: Backend, token: int) -> None:
        chat, turn = backend.chat, self.widget.turn
        if chat is None or turn is None:
            return
        why = await chat.explain(turn)
        if shiboken6.isValid(self.widget) and token == self._token:
            self.show(why)

    def show(self, why: TurnExplanation) -> None:
        """Each card's explanation, and the turn's confidence in its header."""
        w = self.widget
        if w.turn is None or len(why.parts) != len(w.turn.candidates):
            return
        self.explanation = why
        for cand, part in zip(w.turn.candidates, why.parts, strict=True):
            card = w.cards.get(cand.index)
            if card is not None:
                card.set_why(card_why(part, w.place(card), len(w.cards), why.version,
                                      w.version()))
        text, tip = confidence_text(why, *self.compared())
        self.label.setText(text)
        self.label.setToolTip(tip)
        self.label.setStyleSheet(
            f"color: {UNSURE_COLOR}; border: 1px solid {UNSURE_COLOR};"
            if why.unsure and why.p_top is not None else "")
        self.label.setVisible(bool(text))

    def compared(self) -> tuple[int, int | None, tuple[int, ...]]:
        """The 1-based places of the top whole reply and of the best one different from it
        (None: none is), and of the top one's copies (:func:`same_reply`), which the
        confidence never compares: they are a tie by design."""
        w = self.widget
        whole = ranked([c for c in w.turn.candidates if is_whole_reply(c)]) \
            if w.turn is not None else []
        if not whole or whole[0].index not in w.cards:
            return 1, 2, ()

        def place(cand: Candidate) -> int:
            return w.place(w.cards[cand.index]) + 1

        top = whole[0]
        copies = [c for c in whole[1:] if same_reply(c.text, top.text)]
        runner = next((c for c in whole[1:] if not same_reply(c.text, top.text)), None)
        return (place(top), place(runner) if runner is not None else None,
                tuple(sorted(place(c) for c in copies)))
