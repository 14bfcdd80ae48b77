"""One turn in the chat: the user's message, N reply cards, the pick's reason, errors
(an arena turn's sources: :mod:`~.arena_turn`).

A blind (or arena) turn keeps, once labeled or skipped, the order and the numbers its cards
had when the user labeled it ("Reply 4 ✓ Your pick" stays Reply 4); each scored card then
names the reward model's rank beside its number ("Reply 4 · scored #2": "model #2" read as a
model's name beside "from chat model v1 (tuned)", and "ranked #2" as the user's own rank),
and "Sort by score" orders them by the model on request."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from PySide6.QtCore import QEvent, Qt, Signal
from PySide6.QtGui import QKeyEvent, QResizeEvent, QShowEvent
from PySide6.QtWidgets import (
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from rlhf_desktop.core.chat_models import tuned_version, version_name
from rlhf_desktop.core.pick_rules import failed_indices, model_rank, stopped_before_text
from rlhf_desktop.domain import Candidate, Message, Turn
from rlhf_desktop.services.chat.branches import ACTIVE, Parent
from rlhf_desktop.services.turns import ERROR, STOPPED, UNSENT, TurnView, display_order, is_ranked
from rlhf_desktop.services.turns.order import keeps_seen_order
from rlhf_desktop.ui.chat.arena_turn import arena_status
from rlhf_desktop.ui.chat.card_columns import ColumnFitter
from rlhf_desktop.ui.chat.cards import CandidateCard
from rlhf_desktop.ui.chat.label_view import decorate, shown, undo_text
from rlhf_desktop.ui.chat.turn_why import TurnWhy
from rlhf_desktop.ui.chat.user_bubble import UserBubble
from rlhf_desktop.ui.markdown_render import MarkdownRenderer
from rlhf_desktop.ui.widgets import claims_escape

NOT_READY = "ranking when the reward model is ready…"
"""The status while a finished turn waits for the reward model to load."""


class ReasonEdit(QLineEdit):
    """The one-line reason: Enter saves, Esc skips (Esc is not the window's Stop here)."""

    skipped = Signal()

    def event(self, event: QEvent) -> bool:
        """Claim Esc before the window's shortcut sees it."""
        return claims_escape(event) or super().event(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        """Esc skips."""
        if event.key() == Qt.Key.Key_Escape:
            self.skipped.emit()
            return
        super().keyPressEvent(event)


class TurnCard(CandidateCard):
    """A reply card that, while its revealed blind turn keeps the order it was labeled in,
    keeps its number and names the reward model's rank beside it ("Reply 4 · scored #2")."""

    model_rank: int | None = None
    """The model's 1-based rank of the reply while the cards keep the order they were
    labeled in; None while they are in the model's order (the rank is the position)."""

    def refresh_badges(self) -> None:
        """As a card's, but "Reply N · scored #k" while :attr:`model_rank` is set."""
        super().refresh_badges()
        c = self.candidate
        if self.model_rank is None or c is None or c.score is None or c.model_version is None:
            self.rank_badge.setToolTip("")
            return
        number = self.position + 1
        self.rank_badge.setText(f"Reply {number} · scored #{self.model_rank}")
        self.rank_badge.setProperty("badge", "neutral")
        self.rank_badge.setToolTip(
            f"Shown as Reply {number} when you labeled the turn; the reward model ranks it "
            f"#{self.model_rank} (Sort by score orders the cards by the model)")
        style = self.rank_badge.style()
        style.unpolish(self.rank_badge)
        style.polish(self.rank_badge)


class TurnWidget(QFrame):
    """Signals carry the widget itself so the chat view knows which turn.

    In the chat it renders the snapshots of its turn (:meth:`show_view`, a
    :class:`~rlhf_desktop.services.turns.TurnView` from ``session.turns``): what was sent,
    whether Alt+Z undoes its label, which replies stream again. It reads the saved turn
    (:meth:`set_turn`) and never writes it."""

    pick_requested = Signal(object, int)  # (TurnWidget, candidate index)
    retry_requested = Signal(object)
    reason_done = Signal(object, object)  # (TurnWidget, str | None); None: skipped
    stop_requested = Signal(object, int)  # stop one reply
    regenerate_requested = Signal(object, int)  # regenerate one reply
    copied = Signal(object, int)
    undo_requested = Signal(object)
    edit_requested = Signal(object, str)  # (TurnWidget, the edited message) to resend
    branch_requested = Signal(object, int)  # (TurnWidget, turn id of the branch to show)

    def __init__(self, prompt: str, n: int, renderer: MarkdownRenderer,
                 parent: QWidget | None = None, order: Sequence[int] = ()) -> None:
        super().__init__(parent)
        self.streamed = list(order)
        """The order the cards stream in (the lifecycle's: random in a blind turn)."""
        self.setObjectName("turn")
        self.renderer = renderer
        self.turn: Turn | None = None
        self.view: TurnView | None = None
        """The latest snapshot of the turn (None outside the chat)."""
        self.cards: dict[int, TurnCard] = {}
        self.context_max_tokens: int | None = None
        """The built-in model's max tokens for this turn, so a card tells a reply the full
        context cut from one cut at max tokens (None: another provider)."""
        self.max_tokens_now: Callable[[], int] | None = None
        """The chat's max tokens now (a regenerated reply is asked with today's setting, not
        the turn's): a card claims a full context only below both."""
        self.order: list[int] = []
        self.rerank_count = 0
        self.retry_action = "retry"
        self.undoable = False  # this turn holds the pick that Alt+Z undoes
        self.parent_turn: Parent = ACTIVE  # what the turn continues (an edit: set)
        self.sort_by_score = False  # a revealed blind turn: the model's order, on request
        self.columns = 2
        self.fitter = ColumnFitter(self)
        self.why = TurnWhy(self)
        """Why the cards rank as they do, and the turn's confidence (see turn_why.py)."""

        self.bubble = UserBubble(prompt, renderer)
        self.bubble.edit_submitted.connect(lambda text: self.edit_requested.emit(self, text))
        self.bubble.branch_requested.connect(
            lambda turn_id: self.branch_requested.emit(self, turn_id))
        self.prompt_view = self.bubble.view
        user_row = QHBoxLayout()
        user_row.addStretch(1)
        user_row.addWidget(self.bubble, 4)

        self.status = QLabel("")
        self.status.setObjectName("turnStatus")
        self.status.setWordWrap(True)
        self.undo_button = QPushButton("Undo pick")
        self.undo_button.setToolTip("Undo this label and its preference pairs (Alt+Z)")
        self.undo_button.clicked.connect(lambda: self.undo_requested.emit(self))
        self.undo_button.hide()
        self.confidence = self.why.label
        self.sort_button = QPushButton("Sort by score")
        self.sort_button.setObjectName("sortByScore")
        self.sort_button.setCheckable(True)
        self.sort_button.setToolTip(
            "Order the cards by the model's score, or back in the order (and with the "
            "numbers) you labeled them in")
        self.sort_button.toggled.connect(self._sort_toggled)
        self.sort_button.hide()
        status_row = QHBoxLayout()
        status_row.addWidget(self.status, 1)
        status_row.addWidget(self.confidence, 0, Qt.AlignmentFlag.AlignTop)
        status_row.addWidget(self.sort_button, 0, Qt.AlignmentFlag.AlignTop)
        status_row.addWidget(self.undo_button, 0, Qt.AlignmentFlag.AlignTop)

        self.grid = QGridLayout()
        self.grid.setHorizontalSpacing(12)
        self.grid.setVerticalSpacing(12)

        self.reason_row = QFrame()
        self.reason_row.setObjectName("reasonRow")
        reason_layout = QGridLayout(self.reason_row)
        reason_layout.setContentsMargins(10, 6, 10, 6)
        self.reason_label = QLabel("Why this one?")
        self.reason_label.setWordWrap(True)
        self.reason_edit = ReasonEdit()
        self.reason_edit.setPlaceholderText("optional one-line reason — Enter saves, Esc skips")
        self.reason_edit.returnPressed.connect(self._save_reason)
        self.reason_edit.skipped.connect(self._skip_reason)
        save = QPushButton("Save")
        save.clicked.connect(self._save_reason)
        skip = QPushButton("Skip")
        skip.setFlat(True)
        skip.clicked.connect(self._skip_reason)
        reason_layout.addWidget(self.reason_label, 0, 0, 1, 3)
        for col, w in enumerate((self.reason_edit, save, skip)):
            reason_layout.addWidget(w, 1, col)
        reason_layout.setColumnStretch(0, 1)
        self.reason_row.hide()

        self.error_row = QFrame()
        self.error_row.setObjectName("errorRow")
        error_layout = QHBoxLayout(self.error_row)
        error_layout.setContentsMargins(12, 8, 12, 8)
        self.error_label = QLabel("")
        self.error_label.setWordWrap(True)
        self.error_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.retry_button = QPushButton("Retry")
        self.retry_button.clicked.connect(lambda: self.retry_requested.emit(self))
        error_layout.addWidget(self.error_label, 1)
        error_layout.addWidget(self.retry_button)
        self.error_row.hide()

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 8, 0, 8)
        layout.setSpacing(8)
        layout.addLayout(user_row)
        layout.addLayout(status_row)
        layout.addLayout(self.grid)
        layout.addWidget(self.reason_row)
        layout.addWidget(self.error_row)
        self._ensure_cards(range(n))

    # ------------------------------------------------------------------ cards

    def _ensure_cards(self, indices: range | list[int]) -> None:
        wanted = list(indices)
        for index in list(self.cards):
            if index not in wanted:
                card = self.cards.pop(index)
                self.grid.removeWidget(card)
                card.deleteLater()
        for index in wanted:
            if index not in self.cards:
                card = TurnCard(index, self.renderer)
                card.pick_clicked.connect(lambda i: self.pick_requested.emit(self, i))
                card.stop_clicked.connect(lambda i: self.stop_requested.emit(self, i))
                card.regenerate_clicked.connect(
                    lambda i: self.regenerate_requested.emit(self, i))
                card.copied.connect(lambda i: self.copied.emit(self, i))
                card.why_clicked.connect(lambda _i: self.why.request())
                self.cards[index] = card
        self.order = sorted(self.cards)
        if self.turn is None and sorted(self.streamed) == self.order:
            self.order = list(self.streamed)
        self._layout_cards()

    def _layout_cards(self) -> None:
        for card in self.cards.values():
            self.grid.removeWidget(card)
        columns = 1 if len(self.cards) < 2 else self.columns
        for position, index in enumerate(self.order):
            card = self.cards[index]
            card.set_position(position)
            self.grid.addWidget(card, position // columns, position % columns)
        for col in range(2):
            self.grid.setColumnStretch(col, 1 if col < columns else 0)

    def resizeEvent(self, event: QResizeEvent) -> None:
        """Cards side by side when there is room, else one under the other."""
        super().resizeEvent(event)
        self.fitter.fit()

    def showEvent(self, event: QShowEvent) -> None:
        """Follow the width of the scroll area that shows the turn."""
        super().showEvent(event)
        self.fitter.watch()

    def relayout_cards(self) -> None:
        """Place the cards again (after :attr:`columns` changed)."""
        self._layout_cards()

    def ordered_cards(self) -> list[TurnCard]:
        """Cards in display order (the key that picks a card is its position + 1)."""
        return [self.cards[i] for i in self.order]

    def card_at(self, position: int) -> TurnCard | None:
        """The card shown at ``position`` (0-based)."""
        return self.cards[self.order[position]] if 0 <= position < len(self.order) else None

    # ------------------------------------------------------------------ snapshots

    @property
    def key(self) -> int | None:
        """The turn's key in ``session.turns`` (None outside the chat)."""
        return None if self.view is None else self.view.key

    @property
    def messages(self) -> list[Message]:
        """What the turn sent (or will send): what Regenerate and Retry send again."""
        return [] if self.view is None else list(self.view.messages)

    @property
    def regenerating(self) -> set[int]:
        """Replies streaming again (no label meanwhile)."""
        return set() if self.view is None else set(self.view.regenerating)

    def show_view(self, view: TurnView) -> None:
        """Show the turn's latest snapshot: a reply the provider asks for again starts over,
        "ranking…" once every reply is over, then how the send ended (a settled turn's
        saved turn came through :meth:`set_turn` just before)."""
        before, self.view = self.view, view
        if before is not None:
            for reply in view.replies:
                old = before.reply(reply.index)
                if old is not None and reply.restarts > old.restarts:
                    self.on_restart(reply.index)
        if self.turn is not None:
            self.mark_pick(view.chosen_candidate_id, undoable=view.undoable)
        else:
            self.undoable = view.undoable
        if view.ranking and not (before is not None and before.ranking):
            self.set_status("ranking…" if view.ranker_ready else NOT_READY)
        if view.outcome is not None and before is not None and before.outcome is None:
            self._show_outcome(view)

    def _show_outcome(self, view: TurnView) -> None:
        """How the send ended, once: not sent (every card says so, Retry sends the same
        messages), broken off (the error, with Retry), or stopped (a note on the status)."""
        if view.outcome == UNSENT:
            self.fail_unsent(view.error or "")
        elif view.outcome == ERROR:
            self.show_error(view.error or "")
        elif view.outcome == STOPPED:
            self.update_status("Stopped")

    # ------------------------------------------------------------------ streaming

    def on_delta(self, index: int, text: str) -> None:
        """Streamed text for candidate ``index``."""
        card = self.cards.get(index)
        if card is not None:
            card.append(text)

    def on_done(self, index: int, candidate: Candidate) -> None:
        """Candidate ``index`` finished."""
        card = self.cards.get(index)
        if card is not None:
            card.set_streaming(False)
            limit = self.context_max_tokens  # the built-in model's turn
            if limit is None and (candidate.origin or {}).get("provider") == "local" \
                    and self.max_tokens_now is not None:  # an arena's built-in source
                limit = self.max_tokens_now()
            card.max_tokens = self._limit(limit)
            card.set_candidate(candidate)

    def _limit(self, max_tokens: int | None) -> int | None:
        """The max tokens a reply of this turn may have been asked with: the smaller of the
        turn's and today's (None: not known)."""
        if max_tokens is None:
            return None
        now = self.max_tokens_now() if self.max_tokens_now is not None else max_tokens
        return min(max_tokens, now)

    def on_restart(self, index: int) -> None:
        """Candidate ``index`` streams again from nothing."""
        card = self.cards.get(index)
        if card is not None:
            card.restart()

    def set_status(self, text: str) -> None:
        """The line above the cards."""
        self.status.setText(text)

    # ------------------------------------------------------------------ saved turn

    def set_turn(self, turn: Turn) -> None:
        """The saved (and maybe ranked) turn: final texts, ids, order by score, the pick."""
        self.turn = turn
        self._ensure_cards([c.index for c in turn.candidates])
        local = turn.provider == "local"
        self.context_max_tokens = turn.params.max_tokens if local else None
        for cand in turn.candidates:
            card = self.cards[cand.index]
            if cand.index not in self.regenerating:
                card.set_streaming(False)
            by_llama = local or (cand.origin or {}).get("provider") == "local"
            card.max_tokens = self._limit(turn.params.max_tokens) if by_llama else None
            card.set_candidate(shown(turn, cand))
        self.apply_order()
        self.mark_pick(turn.chosen_candidate_id)
        self.show_failures()
        self.fitter.fit()  # finished cards may need more width than streaming ones

    def is_ranked(self) -> bool:
        """Whether a trained reward model scored the candidates and the ranking may show
        (not in a blind turn before its label)."""
        return self.turn is not None and is_ranked(self.turn)

    def version(self) -> int | None:
        """The model version that scored the turn."""
        if self.turn is None:
            return None
        versions = [c.model_version for c in self.turn.candidates if c.model_version is not None]
        return versions[0] if versions else None

    def keeps_seen_order(self) -> bool:
        """Whether the cards stay in the order the user labeled them in: a blind (or arena)
        turn once labeled or skipped, whose display positions are known, unless "Sort by
        score" is on."""
        return self.turn is not None and keeps_seen_order(self.turn, self.sort_by_score)

    def numbers_are_ranks(self) -> bool:
        """Whether a card's number is the model's rank ("#2"), not just where it is shown."""
        return self.is_ranked() and not self.keeps_seen_order()

    def place(self, card: TurnCard) -> int:
        """``card``'s 0-based place in the model's order (its position when so ordered)."""
        return card.position if card.model_rank is None else card.model_rank - 1

    def apply_order(self) -> None:
        """Order the cards by score when ranked, else by the provider's order; a revealed
        blind turn keeps the order it was labeled in (:meth:`keeps_seen_order`)."""
        if self.turn is None:
            return
        turn = self.turn
        if turn.hidden and self.sort_by_score:  # its label was undone: blind again
            self.sort_button.setChecked(False)
            return
        self.order = display_order(turn, self.sort_by_score)
        kept = self.keeps_seen_order()
        ranked_here = kept and self.is_ranked()
        self.sort_button.setVisible(ranked_here or self.sort_by_score)
        self._layout_cards()
        for card in self.cards.values():
            cand = card.candidate
            card.model_rank = model_rank(turn, cand.id) if ranked_here and cand else None
            card.refresh_badges()
        self.update_status()
        self.why.stale()

    def _sort_toggled(self, on: bool) -> None:
        self.sort_by_score = on
        self.sort_button.setText("Order as shown" if on else "Sort by score")
        self.apply_order()

    def update_status(self, note: str = "") -> None:
        """The line above the cards, from the turn's state."""
        if self.turn is None:
            return
        n = len(self.cards)
        keys = f"Alt+1–{min(n, 9)}" if n > 1 else "Alt+1"
        bad = len(failed_indices(self.turn))
        if self.turn.chosen_candidate_id is not None:
            text = "You picked a reply · it continues the conversation"
            if self.undoable:
                text += " · Alt+Z undoes the pick"
        elif self.regenerating:
            text = "Regenerating… (Esc stops)"
        elif n and bad >= n and all(stopped_before_text(c) for c in self.turn.candidates):
            text = (f"All {n} replies were stopped before any text arrived · Retry asks again"
                    if n > 1 else "The reply was stopped before any text arrived · Retry "
                    "asks again")
        elif n and bad >= n:
            text = (f"All {n} replies failed · nothing to pick (the reason is below)" if n > 1
                    else "The reply failed · nothing to pick (the reason is below)")
        elif bad and n - bad < 2:
            text = "Only one reply came back · a pick needs two · Retry failed asks again below"
        elif self.is_ranked():
            text = (f"{n} replies ranked by reward model v{self.version()} · pick the best "
                    f"(click Best or press {keys})")
        else:
            text = (f"{n} replies in the provider's order (the reward model has not been "
                    f"trained yet) · pick the best (click Best or press {keys})")
        text = decorate(self, keys) or text  # blind turns, ties, all bad, edits, skips
        text = arena_status(self, text, keys)
        tuned = tuned_version(self.turn.model) if self.turn.provider == "local" else 0
        if tuned:  # which model wrote these replies stays with the turn, whatever comes next
            text = f"From {version_name(tuned)} · {text}"
        self.set_status(f"{note} · {text}" if note else text)
        self.refresh_actions()

    def refresh_actions(self, busy: bool = False) -> None:
        """Enable Regenerate on the cards and the Undo button from the turn's state."""
        picked = self.turn is not None and self.turn.labeled
        saved = self.turn is not None and self.turn.id is not None
        why = ("Undo the pick first (Alt+Z): its preference pairs hold this reply" if picked
               else "Wait until the replies have finished" if busy or not saved else "")
        for card in self.cards.values():
            card.set_regenerate(not why and card.candidate is not None, why)
        self.bubble.set_editable(saved, "Wait until the replies have finished (Esc stops "
                                        "them), then edit" if busy else "")
        self.undo_button.setText(undo_text(self.turn))
        self.undo_button.setVisible(picked and self.undoable)

    # ------------------------------------------------------------------ picks

    def mark_pick(self, candidate_id: int | None, undoable: bool | None = None) -> None:
        """Highlight the picked card (None: no pick); ``undoable``: Alt+Z undoes it."""
        if undoable is not None:
            self.undoable = undoable
        self.undoable = self.undoable and (candidate_id is not None or (
            self.turn is not None and self.turn.label_kind is not None))
        for card in self.cards.values():
            if candidate_id is None or card.candidate is None:
                card.set_chosen(None)
            else:
                card.set_chosen(card.candidate.id == candidate_id)
        if candidate_id is None:
            self.reason_row.hide()
        self.update_status()

    def ask_reason(self, pairs: int, tone: str = "good") -> None:
        """Show the inline reason field after a label and focus it: green after a pick
        (``tone`` "good"), the error colours after "all bad" ("bad")."""
        self.reason_label.setText(f"Saved {pairs} preference pair{'s' if pairs != 1 else ''}. "
                                  "Why this one?")
        if self.reason_row.property("tone") != tone:
            self.reason_row.setProperty("tone", tone)
            self.reason_row.style().unpolish(self.reason_row)
            self.reason_row.style().polish(self.reason_row)
        self.reason_edit.clear()
        self.reason_row.show()
        self.reason_edit.setFocus(Qt.FocusReason.OtherFocusReason)

    def _save_reason(self) -> None:
        text = self.reason_edit.text().strip()
        self.reason_row.hide()
        self.reason_done.emit(self, text or None)

    def _skip_reason(self) -> None:
        self.reason_row.hide()
        self.reason_done.emit(self, None)

    # ------------------------------------------------------------------ errors

    def show_error(self, message: str, action: str = "retry", button: str = "Retry") -> None:
        """A non-modal error inside the turn with a Retry button."""
        self.retry_action = action
        self.error_label.setText(message)
        self.retry_button.setText(button)
        self.retry_button.setVisible(bool(button))
        self.error_row.show()

    def show_failures(self) -> None:
        """Failed replies: the reason once (here when all failed, else on each failed card)
        and "Retry failed", which asks again for those replies only."""
        if self.turn is None:
            return
        bad = failed_indices(self.turn)
        all_failed = bool(bad) and len(bad) == len(self.turn.candidates)
        for card in self.cards.values():
            card.set_reason_on_card(not all_failed)
        if not bad:
            if self.retry_action in ("retry", "retry_failed"):
                self.clear_error()
            return
        picked = self.turn.chosen_candidate_id is not None
        button = "" if picked else "Retry failed" if not all_failed else "Retry"
        if all_failed:
            reasons = list(dict.fromkeys(
                c.error or ("stopped before any text arrived (Esc, or the window was closed)"
                            if stopped_before_text(c) else "the reply came back empty")
                for c in self.turn.candidates))
            message = "\n".join(reasons)
        else:
            n = len(self.turn.candidates)
            stopped = sum(stopped_before_text(c) for c in self.turn.candidates
                          if c.index in bad)
            failed = len(bad) - stopped
            said = [f"{failed} of {n} replies failed (the reason is on each)"] if failed else []
            if stopped:  # Esc, the window closed, or another chat opened mid-stream
                said.append(f"{stopped} of {n} {'was' if stopped == 1 else 'were'} stopped "
                            "before any text arrived")
            message = ("; ".join(said) + ". " + ("Undo the pick to retry them." if picked
                                                 else "Retry failed asks again for those only."))
        # All failed: Retry sends the turn again as a new one (the failed one stays, with
        # any partial text); some failed: Retry failed replaces only those, in place.
        self.show_error(message, action="retry" if all_failed else "retry_failed",
                        button=button)

    def fail_unsent(self, message: str) -> None:
        """The turn could not be sent at all (no provider): every card stops waiting and
        says so; the reason shows once, with Retry (the same messages, once fixed)."""
        for index, card in self.cards.items():
            card.set_streaming(False)
            card.set_candidate(Candidate(index=index, finish_reason="error", error=message))
            card.set_reason_on_card(False)
        self.set_status("Not sent · nothing to pick (the reason is below)")
        self.show_error(message, button="Retry")

    def clear_error(self) -> None:
        """Hide the error row."""
        self.error_row.hide()
