"""One turn in the chat: the user's message, N reply cards, the pick's reason, errors."""

from __future__ import annotations

from PySide6.QtCore import QEvent, Qt, Signal
from PySide6.QtGui import QKeyEvent
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

from rlhf_desktop.domain import Candidate, Message, Turn
from rlhf_desktop.services.chat import ranked
from rlhf_desktop.ui.cards import CandidateCard, MarkdownView
from rlhf_desktop.ui.markdown_render import MarkdownRenderer


class ReasonEdit(QLineEdit):
    """The one-line reason: Enter saves, Esc skips (Esc is not the window's Stop here)."""

    skipped = Signal()

    def event(self, event: QEvent) -> bool:
        """Claim Esc before the window's shortcut sees it."""
        if event.type() == QEvent.Type.ShortcutOverride and isinstance(event, QKeyEvent) \
                and event.key() == Qt.Key.Key_Escape:
            event.accept()
            return True
        return super().event(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        """Esc skips."""
        if event.key() == Qt.Key.Key_Escape:
            self.skipped.emit()
            return
        super().keyPressEvent(event)


class TurnWidget(QFrame):
    """Signals carry the widget itself so the chat view knows which turn."""

    pick_requested = Signal(object, int)  # (TurnWidget, candidate index)
    retry_requested = Signal(object)
    reason_done = Signal(object, object)  # (TurnWidget, str | None); None: skipped

    def __init__(self, prompt: str, n: int, renderer: MarkdownRenderer,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("turn")
        self.renderer = renderer
        self.turn: Turn | None = None
        self.cards: dict[int, CandidateCard] = {}
        self.order: list[int] = []
        self.rerank_count = 0
        self.messages: list[Message] = []
        self.retry_action = "retry"

        bubble = QFrame()
        bubble.setObjectName("userBubble")
        bubble_layout = QVBoxLayout(bubble)
        bubble_layout.setContentsMargins(14, 8, 14, 8)
        who = QLabel("You")
        who.setObjectName("who")
        self.prompt_view = MarkdownView(renderer)
        self.prompt_view.set_markdown_text(prompt)
        bubble_layout.addWidget(who)
        bubble_layout.addWidget(self.prompt_view)
        user_row = QHBoxLayout()
        user_row.addStretch(1)
        user_row.addWidget(bubble, 4)

        self.status = QLabel("")
        self.status.setObjectName("turnStatus")
        self.status.setWordWrap(True)

        self.grid = QGridLayout()
        self.grid.setHorizontalSpacing(12)
        self.grid.setVerticalSpacing(12)

        self.reason_row = QFrame()
        self.reason_row.setObjectName("reasonRow")
        reason_layout = QHBoxLayout(self.reason_row)
        reason_layout.setContentsMargins(10, 6, 10, 6)
        self.reason_label = QLabel("Why this one?")
        self.reason_edit = ReasonEdit()
        self.reason_edit.setPlaceholderText("optional one-line reason — Enter saves, Esc skips")
        self.reason_edit.returnPressed.connect(self._save_reason)
        self.reason_edit.skipped.connect(self._skip_reason)
        save = QPushButton("Save")
        save.clicked.connect(self._save_reason)
        skip = QPushButton("Skip")
        skip.setFlat(True)
        skip.clicked.connect(self._skip_reason)
        for w in (self.reason_label, self.reason_edit, save, skip):
            reason_layout.addWidget(w)
        reason_layout.setStretch(1, 1)
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
        layout.addWidget(self.status)
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
                card = CandidateCard(index, self.renderer)
                card.pick_clicked.connect(lambda i: self.pick_requested.emit(self, i))
                self.cards[index] = card
        self.order = sorted(self.cards)
        self._layout_cards()

    def _layout_cards(self) -> None:
        for card in self.cards.values():
            self.grid.removeWidget(card)
        columns = 1 if len(self.cards) < 2 else 2
        for position, index in enumerate(self.order):
            card = self.cards[index]
            card.set_position(position)
            self.grid.addWidget(card, position // columns, position % columns)
        for col in range(2):
            self.grid.setColumnStretch(col, 1 if col < columns else 0)

    def ordered_cards(self) -> list[CandidateCard]:
        """Cards in display order (the key that picks a card is its position + 1)."""
        return [self.cards[i] for i in self.order]

    def card_at(self, position: int) -> CandidateCard | None:
        """The card shown at ``position`` (0-based)."""
        return self.cards[self.order[position]] if 0 <= position < len(self.order) else None

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
            card.set_candidate(candidate)
            card.set_streaming(False)

    def set_status(self, text: str) -> None:
        """The line above the cards."""
        self.status.setText(text)

    # ------------------------------------------------------------------ saved turn

    def set_turn(self, turn: Turn) -> None:
        """The saved (and maybe ranked) turn: final texts, ids, order by score, the pick."""
        self.turn = turn
        self._ensure_cards([c.index for c in turn.candidates])
        for cand in turn.candidates:
            self.cards[cand.index].set_candidate(cand)
        self.apply_order()
        self.mark_pick(turn.chosen_candidate_id)

    def is_ranked(self) -> bool:
        """Whether a trained reward model scored the candidates."""
        return self.turn is not None and any(
            c.model_version is not None for c in self.turn.candidates)

    def version(self) -> int | None:
        """The model version that scored the turn."""
        if self.turn is None:
            return None
        versions = [c.model_version for c in self.turn.candidates if c.model_version is not None]
        return versions[0] if versions else None

    def apply_order(self) -> None:
        """Order the cards by score when ranked, else by the provider's order."""
        if self.turn is None:
            return
        if self.is_ranked():
            self.order = [c.index for c in ranked(self.turn.candidates)]
        else:
            self.order = sorted(self.cards)
        self._layout_cards()
        for card in self.cards.values():
            card.refresh_badges()
        self.update_status()

    def update_status(self, note: str = "") -> None:
        """The line above the cards, from the turn's state."""
        if self.turn is None:
            return
        n = len(self.cards)
        keys = f"1–{min(n, 9)}" if n > 1 else "1"
        if self.turn.chosen_candidate_id is not None:
            text = "You picked a reply · it continues the conversation · Ctrl+Z undoes the pick"
        elif self.is_ranked():
            text = (f"{n} replies ranked by reward model v{self.version()} · pick the best "
                    f"(click Best or press {keys})")
        else:
            text = (f"{n} replies in the provider's order (the reward model has not been "
                    f"trained yet) · pick the best (click Best or press {keys})")
        self.set_status(f"{note} · {text}" if note else text)

    # ------------------------------------------------------------------ picks

    def mark_pick(self, candidate_id: int | None) -> None:
        """Highlight the picked card (None: no pick)."""
        if self.turn is not None:
            self.turn.chosen_candidate_id = candidate_id
        for card in self.cards.values():
            if candidate_id is None or card.candidate is None:
                card.set_chosen(None)
            else:
                card.set_chosen(card.candidate.id == candidate_id)
        if candidate_id is None:
            self.reason_row.hide()
        self.update_status()

    def ask_reason(self, pairs: int) -> None:
        """Show the inline reason field after a pick and focus it."""
        self.reason_label.setText(f"Saved {pairs} preference pair{'s' if pairs != 1 else ''}. "
                                  "Why this one?")
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

    def clear_error(self) -> None:
        """Hide the error row."""
        self.error_row.hide()
