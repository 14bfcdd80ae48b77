"""The chat: turns with N streamed, ranked reply cards, picks, undo, retry, regenerate."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeyEvent, QKeySequence
from PySide6.QtWidgets import (
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from rlhf_desktop.domain import Message, ModelVersion, last_user_text
from rlhf_desktop.providers.base import Delta, Done, StreamEvent
from rlhf_desktop.services.chat import TurnFailed, history
from rlhf_desktop.services.labeling import Pick
from rlhf_desktop.storage.repo import StorageError
from rlhf_desktop.ui.backend import Backend
from rlhf_desktop.ui.cards import MarkdownView
from rlhf_desktop.ui.markdown_render import MarkdownRenderer
from rlhf_desktop.ui.turn_widget import TurnWidget

log = logging.getLogger(__name__)

EXAMPLES: tuple[tuple[str, str], ...] = (
    ("Education", "Explain gravity like I'm 5 years old."),
    ("Professional", "Write a thank-you email after a job interview."),
    ("Creative", "Describe the ocean as if it could talk."),
    ("Technical", "Write a Python function to check if a number is prime."),
    ("Empathy", "How would you comfort a friend who failed an exam?"),
)
NOT_READY = "ranking when the reward model is ready…"


def pick_digit(event: QKeyEvent) -> int | None:
    """1–9 typed without modifiers (keypad included): the card to pick; else None."""
    text = event.text()
    plain = not event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier
    return int(text) if plain and text in tuple("123456789") else None


class Composer(QPlainTextEdit):
    """The message box: Enter or Ctrl+Enter sends, Shift+Enter adds a line.

    While it is empty, 1–9 pick on a turn still waiting for a pick (``pick_hook`` says
    whether it took the key), and Ctrl+Z with no typing to undo undoes the last pick.
    """

    send_requested = Signal()
    undo_pick_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("composer")
        self.setPlaceholderText("Message — Ctrl+Enter (or Enter) sends, Shift+Enter adds a line")
        self.setTabChangesFocus(True)
        self.pick_hook: Callable[[int], bool] | None = None
        self.document().documentLayout().documentSizeChanged.connect(self._fit)
        self._fit()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        """Send on Enter / Ctrl+Enter; digits and Ctrl+Z as the class says."""
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and not (
                event.modifiers() & Qt.KeyboardModifier.ShiftModifier):
            self.send_requested.emit()
            return
        if event.matches(QKeySequence.StandardKey.Undo) and not self.document().isUndoAvailable():
            self.undo_pick_requested.emit()
            return
        digit = pick_digit(event)
        if (digit is not None and not self.toPlainText()
                and self.pick_hook is not None and self.pick_hook(digit)):
            return
        super().keyPressEvent(event)

    def _fit(self) -> None:
        lines = max(1, min(6, int(self.document().size().height())))
        height = self.fontMetrics().lineSpacing() * lines + 20
        self.setFixedHeight(height)


class ChatView(QWidget):
    """Shows one conversation and runs its turns through the backend."""

    conversation_changed = Signal()  # created or renamed: the sidebar refreshes
    busy_changed = Signal(bool)
    message = Signal(str)  # a transient status-bar message

    def __init__(self, backend: Backend, dark: bool = False,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.backend = backend
        self.renderer = MarkdownRenderer(dark)
        self.renderer.render("*warm* | up\n--|--\n1 | 2")  # load extensions before any turn
        self.conversation_id: int | None = None
        self.widgets: list[TurnWidget] = []
        self._picks: dict[int, Pick] = {}  # turn id → last pick (for its reason)
        self._task: asyncio.Task[None] | None = None
        self._current: TurnWidget | None = None
        self._cancel: asyncio.Event | None = None

        self.scroll_area = QScrollArea()
        self.scroll_area.setObjectName("chatScroll")
        self.scroll_area.setWidgetResizable(True)
        self.scroll_area.setFrameShape(QFrame.Shape.NoFrame)
        self.scroll_area.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.scroll_area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        page = QWidget()
        page.setObjectName("chatPage")
        outer = QHBoxLayout(page)
        outer.setContentsMargins(24, 12, 24, 12)
        self.column = QWidget()
        self.column.setMaximumWidth(1180)
        self.column_layout = QVBoxLayout(self.column)
        self.column_layout.setContentsMargins(0, 0, 0, 0)
        self.column_layout.setSpacing(14)
        self.empty = self._build_empty_state()
        self.column_layout.addWidget(self.empty)
        self.column_layout.addStretch(1)
        outer.addStretch(0)
        outer.addWidget(self.column, 1)
        outer.addStretch(0)
        self.scroll_area.setWidget(page)
        self._follow: QWidget | None = None
        self._auto_scrolling = False
        vbar = self.scroll_area.verticalScrollBar()
        vbar.rangeChanged.connect(lambda _lo, _hi: self._follow_top())
        vbar.actionTriggered.connect(lambda _a: self._user_scrolled())

        self.composer = Composer()
        self.composer.send_requested.connect(self.send_from_composer)
        self.composer.undo_pick_requested.connect(self.undo_pick)
        self.composer.pick_hook = self._digit_in_empty_composer
        self.send_button = QPushButton("Send")
        self.send_button.setObjectName("primary")
        self.send_button.setToolTip("Send (Ctrl+Enter)")
        self.send_button.clicked.connect(self.send_from_composer)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Stop generating and keep the partial replies (Esc)")
        self.stop_button.clicked.connect(self.stop)
        self.stop_button.hide()
        self.regen_button = QPushButton("Regenerate")
        self.regen_button.setToolTip("Ask again for the last message (Ctrl+R)")
        self.regen_button.clicked.connect(self.regenerate)
        bar = QFrame()
        bar.setObjectName("composerBar")
        bar_layout = QHBoxLayout(bar)
        bar_layout.setContentsMargins(24, 10, 24, 12)
        bar_layout.addWidget(self.composer, 1)
        for b in (self.regen_button, self.stop_button, self.send_button):
            bar_layout.addWidget(b, 0, Qt.AlignmentFlag.AlignBottom)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.scroll_area, 1)
        layout.addWidget(bar)
        self._update_buttons()

    # ------------------------------------------------------------------ layout helpers

    def _build_empty_state(self) -> QWidget:
        box = QWidget()
        box.setObjectName("emptyState")
        layout = QVBoxLayout(box)
        layout.setContentsMargins(0, 40, 0, 0)
        title = QLabel("What would you like to talk about?")
        title.setObjectName("emptyTitle")
        title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        hint = QLabel("Every message gets several replies, ranked by your own reward model. "
                      "Pick the best one with the thumbs-up (or keys 1–9): each pick teaches "
                      "the model.")
        hint.setObjectName("emptyHint")
        hint.setWordWrap(True)
        hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        grid = QGridLayout()
        grid.setSpacing(10)
        self.chips: list[QPushButton] = []
        for i, (category, prompt) in enumerate(EXAMPLES):
            chip = QPushButton(f"{category}\n{prompt}")
            chip.setObjectName("chip")
            chip.setToolTip(f"Send “{prompt}”")
            chip.setCursor(Qt.CursorShape.PointingHandCursor)
            chip.clicked.connect(lambda _=False, p=prompt: self.send_prompt(p))
            grid.addWidget(chip, i // 2, i % 2)
            self.chips.append(chip)
        layout.addWidget(title)
        layout.addWidget(hint)
        layout.addSpacing(18)
        layout.addLayout(grid)
        return box

    def _add_widget(self, widget: TurnWidget) -> None:
        widget.pick_requested.connect(self.pick)
        widget.retry_requested.connect(self._retry)
        widget.reason_done.connect(self._reason_done)
        self.column_layout.insertWidget(self.column_layout.count() - 1, widget)
        self.widgets.append(widget)
        self.empty.hide()

    def _clear(self) -> None:
        for widget in self.widgets:
            self.column_layout.removeWidget(widget)
            widget.deleteLater()
        self.widgets = []
        self.empty.show()

    def scroll_to(self, widget: QWidget) -> None:
        """Keep ``widget``'s top at the top of the view while it grows (streaming), until
        the user scrolls or the turn ends."""
        self._follow = widget
        self._follow_top()

    def _follow_top(self) -> None:
        widget, page = self._follow, self.scroll_area.widget()
        if widget is None or page is None:
            return
        top = widget.mapTo(page, widget.rect().topLeft()).y()
        bar = self.scroll_area.verticalScrollBar()
        self._auto_scrolling = True
        bar.setValue(min(bar.maximum(), max(0, top - 8)))
        self._auto_scrolling = False

    def _user_scrolled(self) -> None:
        if not self._auto_scrolling:
            self._follow = None

    @property
    def generating(self) -> bool:
        """Whether a turn is streaming or being ranked."""
        return self._task is not None and not self._task.done()

    def _update_buttons(self) -> None:
        busy = self.generating
        self.send_button.setVisible(not busy)
        self.stop_button.setVisible(busy)
        self.regen_button.setEnabled(not busy and bool(self.widgets))
        self.busy_changed.emit(busy)

    # ------------------------------------------------------------------ conversations

    def show_conversation(self, conversation_id: int | None) -> None:
        """Show a stored conversation (None: a new, empty chat), stopping a running turn."""
        if self.generating and self._task is not None:
            self.stop()
            task = self._task

            async def later() -> None:
                await asyncio.wait([task])
                self._load(conversation_id)

            self.backend.spawn(later(), "switch conversation")
            return
        self._load(conversation_id)

    def _load(self, conversation_id: int | None) -> None:
        self._clear()
        self._follow = None
        self.conversation_id = conversation_id
        if conversation_id is None:
            self._update_buttons()
            return
        turns = self.backend.repo.list_turns(conversation_id)
        for turn in turns:
            widget = TurnWidget(turn.prompt, len(turn.candidates), self.renderer)
            widget.messages = list(turn.messages)
            self._add_widget(widget)
            widget.set_turn(turn)
            errors = [c.error for c in turn.candidates if c.error]
            if errors and not any(c.text.strip() for c in turn.candidates):
                widget.show_error(errors[0])
        if self.widgets:
            self.scroll_to(self.widgets[-1])
        self._update_buttons()

    # ------------------------------------------------------------------ sending

    def send_from_composer(self) -> None:
        """Send what is in the message box."""
        text = self.composer.toPlainText().strip()
        if text and not self.generating:
            self.composer.clear()
            self.send_prompt(text)

    def send_prompt(self, text: str) -> None:
        """Send a user message as the next turn."""
        if self.generating or not text.strip():
            return
        turns = [w.turn for w in self.widgets if w.turn is not None]
        self.start_turn([*history(turns), Message("user", text.strip())])

    def regenerate(self) -> None:
        """Ask again for the last turn's messages (Ctrl+R)."""
        if not self.generating and self.widgets and self.widgets[-1].messages:
            self.start_turn(list(self.widgets[-1].messages))

    def _retry(self, widget: TurnWidget) -> None:
        if widget.retry_action == "train":
            widget.clear_error()
            self.backend.train_now()
        elif not self.generating and widget.messages:
            widget.clear_error()
            widget.retry_button.hide()
            self.start_turn(list(widget.messages))

    def start_turn(self, messages: list[Message]) -> TurnWidget:
        """Create the turn's widget and stream its replies."""
        n = self.backend.settings.candidates_per_turn
        widget = TurnWidget(last_user_text(messages), n, self.renderer)
        widget.messages = messages
        self._add_widget(widget)
        widget.set_status(f"Generating {n} replies… (Esc stops and keeps what arrived)")
        self._current = widget
        self._task = self.backend.spawn(self._run_turn(messages, widget), "turn")
        self._update_buttons()
        self.scroll_to(widget)
        return widget

    def stop(self) -> None:
        """Stop the running turn (Esc); partial replies are kept."""
        if self._cancel is not None:
            self._cancel.set()

    async def _run_turn(self, messages: list[Message], widget: TurnWidget) -> None:
        self._cancel = cancel = asyncio.Event()
        try:
            chat = await self.backend.wait_provider()
            if chat is None:
                widget.set_status("")
                widget.show_error(self.backend.provider_error or "No provider is configured.",
                                  button="Retry")
                return
            if self.conversation_id is None:
                title = last_user_text(messages)[:60].strip() or "New chat"
                self.conversation_id = self.backend.repo.create_conversation(title).id
                self.conversation_changed.emit()
            remaining = set(widget.cards)

            def on_event(event: StreamEvent) -> None:
                if isinstance(event, Delta):
                    widget.on_delta(event.index, event.text)
                elif isinstance(event, Done):
                    widget.on_done(event.index, event.candidate)
                    remaining.discard(event.index)
                    if not remaining:
                        widget.set_status("ranking…" if self.backend.reward_is_ready
                                          else NOT_READY)

            try:
                turn = await chat.send(self.conversation_id, messages,
                                       self.backend.sampling_params(), cancel, on_event)
            except TurnFailed as exc:
                widget.set_turn(exc.turn)
                widget.show_error(str(exc.error))
                return
            except (StorageError, OSError, RuntimeError) as exc:
                log.exception("turn failed")
                widget.show_error(f"The turn could not be completed: {exc}")
                return
            widget.set_turn(turn)
            self.conversation_changed.emit()
            failed = [c for c in turn.candidates if c.error]
            if failed:
                widget.show_error(f"{len(failed)} of {len(turn.candidates)} replies failed: "
                                  f"{failed[0].error}")
            if cancel.is_set():
                widget.update_status("Stopped")
            current = self.backend.rewards.version
            if current is not None and widget.version() != current:
                await self._rerank(widget)
        finally:
            self._cancel = None
            self._current = None
            self._task = None
            self._update_buttons()
            focused = self.window().focusWidget()
            if focused in (None, self.composer) and not self.composer.toPlainText():
                self.scroll_area.setFocus(Qt.FocusReason.OtherFocusReason)

    # ------------------------------------------------------------------ ranking

    def set_dark(self, dark: bool) -> None:
        """Render every message again in the dark (or light) palette."""
        self.renderer.set_dark(dark)
        for view in self.findChildren(MarkdownView):
            view.restyle()

    def on_model_trained(self, version: ModelVersion) -> None:
        """A new reward model landed: re-rank the visible unlabeled turn."""
        widget = self.widgets[-1] if self.widgets else None
        if widget is None or widget is self._current or widget.turn is None:
            return
        if widget.turn.chosen_candidate_id is not None:
            return
        self.backend.spawn(self._rerank(widget), "re-rank")

    async def _rerank(self, widget: TurnWidget) -> None:
        chat = self.backend.chat
        if chat is None or widget.turn is None or not widget.turn.candidates:
            return
        await chat.rank(widget.turn)
        widget.rerank_count += 1
        widget.apply_order()
        widget.update_status(f"Re-ranked by the new reward model v{widget.version()}")

    def on_training_failed(self, message: str) -> None:
        """Show a training error in the last turn, with a Retry."""
        if self.widgets:
            self.widgets[-1].show_error(message, action="train", button="Retry training")
        else:
            self.message.emit(message)

    # ------------------------------------------------------------------ picks

    def pick_key(self, key: int) -> None:
        """Keys 1..9: pick the card shown at that position in the last turn."""
        widget = self.widgets[-1] if self.widgets else None
        if widget is None or widget is self._current:
            return
        card = widget.card_at(key - 1)
        if card is not None:
            self.pick(widget, card.index)

    def _digit_in_empty_composer(self, key: int) -> bool:
        """A digit typed into the empty message box picks while the last turn awaits a
        pick; once picked, digits type (a message may start with one)."""
        widget = self.widgets[-1] if self.widgets else None
        if (widget is None or widget is self._current or widget.turn is None
                or widget.turn.chosen_candidate_id is not None or widget.card_at(key - 1) is None):
            return False
        self.pick_key(key)
        return True

    def pick(self, widget: TurnWidget, index: int) -> None:
        """Record a thumbs-up on candidate ``index`` of ``widget``'s turn."""
        turn = widget.turn
        card = widget.cards.get(index)
        if turn is None or card is None or card.candidate is None or card.candidate.id is None:
            return
        if turn.chosen_candidate_id == card.candidate.id:
            return
        try:
            pick = self.backend.labeling.pick(turn, card.candidate.id)
        except StorageError as exc:
            self.message.emit(str(exc))
            return
        self._picks[pick.turn_id] = pick
        widget.mark_pick(card.candidate.id)
        widget.ask_reason(pick.pairs)
        agreed = "" if pick.agreed is None else (
            " · the model agreed" if pick.agreed else " · the model ranked another reply first")
        self.message.emit(f"Saved your pick: {pick.pairs} preference pairs{agreed}")
        self.backend.label_recorded()

    def _reason_done(self, widget: TurnWidget, reason: object) -> None:
        turn = widget.turn
        pick = self._picks.get(turn.id) if turn is not None and turn.id is not None else None
        if pick is not None and isinstance(reason, str) and reason:
            self.backend.labeling.set_reason(pick, reason)
            self.message.emit("Reason saved")
        self.composer.setFocus(Qt.FocusReason.OtherFocusReason)

    def undo_pick(self) -> None:
        """Ctrl+Z: undo the last pick of this session and its pairs."""
        pick = self.backend.labeling.undo()
        if pick is None:
            self.message.emit("Nothing to undo")
            return
        self._picks.pop(pick.turn_id, None)
        for widget in self.widgets:
            if widget.turn is not None and widget.turn.id == pick.turn_id:
                widget.mark_pick(None)
        self.message.emit(f"Undid the pick and its {pick.pairs} pairs")
        self.backend.labels_removed()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        """Keys 1..9 pick and Esc stops (also where window shortcuts are not delivered);
        other typing anywhere in the chat goes to the message box."""
        text = event.text()
        plain = not event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier
        digit = pick_digit(event)
        if digit is not None:
            self.pick_key(digit)
            return
        if plain and event.key() == Qt.Key.Key_Escape:
            self.stop()
            return
        if text and text.isprintable() and not event.modifiers() & (
                Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.AltModifier):
            self.composer.setFocus(Qt.FocusReason.OtherFocusReason)
            self.composer.insertPlainText(text)
            return
        super().keyPressEvent(event)
