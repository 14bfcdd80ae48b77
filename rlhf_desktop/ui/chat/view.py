"""The chat: turns with N streamed, ranked reply cards; sending, stopping, regenerating;
editing and resending a message as a new branch, and browsing the branches (the rules:
:mod:`rlhf_desktop.services.chat.branches`).

The view composes its parts, each its own class: the turns (:class:`~.turn_widget.
TurnWidget`, one per turn, with its label bar), picks, undo and per-reply actions
(:class:`~.chat_picks.PickActions`), the other labels and the tie or ranking being chosen
(:class:`~.chat_labels.LabelActions`, :class:`~.chat_ranking.RankChooser`), the message box
(:mod:`.composer`) and the empty page (:mod:`.empty_state`). The parts reach the view only
through the :class:`~.chat_context.ChatContext` it gives them. A turn's state is
``session.turns``'s (:mod:`rlhf_desktop.services.turns`), and so is its run from send to
its end (``session.turns.run``, spawned on the session's runner): the view creates the
turn's widget, passes it the streamed text, and renders the snapshots.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import (
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from rlhf_desktop.core.pick_rules import failed_indices
from rlhf_desktop.domain import Message, ModelVersion, Turn, last_user_text
from rlhf_desktop.services.chat.branches import ACTIVE, EditRefused, Parent
from rlhf_desktop.services.chat.service import StorageError, TurnControl
from rlhf_desktop.services.turns import ERROR, FAILED, UNSENT, TurnLifecycle, TurnView
from rlhf_desktop.ui.backend import Backend
from rlhf_desktop.ui.chat.cards import MarkdownView
from rlhf_desktop.ui.chat.composer import (
    Composer,
    ComposerBar,
    alt_digit,
    context_warning,
    plain_digit,
)
from rlhf_desktop.ui.chat.context import ChatContext
from rlhf_desktop.ui.chat.empty_state import EXAMPLES
from rlhf_desktop.ui.chat.label_widgets import EditDialog
from rlhf_desktop.ui.chat.labels import LabelActions
from rlhf_desktop.ui.chat.picks import PickActions
from rlhf_desktop.ui.chat.turn_list import TurnList
from rlhf_desktop.ui.chat.turn_widget import NOT_READY, TurnWidget
from rlhf_desktop.ui.markdown_render import MarkdownRenderer

__all__ = ["EXAMPLES", "NOT_READY", "ChatView"]


class ChatView(QWidget):
    """Shows one conversation; its turns run in ``session.turns``, spawned through the
    backend."""

    conversation_changed = Signal()  # created or renamed: the sidebar refreshes
    busy_changed = Signal(bool)
    message = Signal(str)  # a transient status-bar message

    def __init__(self, backend: Backend, dark: bool = False,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.backend = backend
        self.renderer = MarkdownRenderer(dark)
        """Built on the first render; python-markdown is imported and warmed in the session's
        loading worker after the window shows (``Backend.warm_up``)."""
        self.conversation_id: int | None = None
        self._replacing: dict[TurnWidget, TurnWidget] = {}
        """A retry of a turn whose replies all failed -> that turn: hidden once it ends."""
        self._task: asyncio.Task[None] | None = None
        self._current: TurnWidget | None = None
        self._control: TurnControl | None = None

        self.scroll_area = TurnList(self.send_prompt, self._dropped)
        """The turns, one under the other (the empty page while there are none)."""
        self.empty, self.chips = self.scroll_area.empty, self.scroll_area.chips
        self.follower = self.scroll_area.follower
        backend.session.hooks.turn_did_change.append(self._turn_changed)

        self.composer = Composer()
        self.composer.send_requested.connect(self.send_from_composer)
        self.composer.edit_last.connect(self.edit_last_message)
        self.composer.undid_typing.connect(lambda: self._say(
            "Undid typing in the message box · Alt+Z undoes the last pick"))
        self.send_button = QPushButton("Send")
        self.send_button.setObjectName("primary")
        self.send_button.setToolTip("Send (Enter or Ctrl+Enter)")
        self.send_button.clicked.connect(self.send_from_composer)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Stop generating and keep the partial replies (Esc)")
        self.stop_button.clicked.connect(self.stop)
        self.stop_button.hide()
        self.regen_button = QPushButton("Regenerate all")
        self.regen_button.setToolTip("Ask again for the last message: a new turn with new "
                                     "replies (Ctrl+R); each reply also has its own Regenerate")
        self.regen_button.clicked.connect(self.regenerate)
        context = ChatContext(
            backend, widgets=lambda: self.widgets, current=lambda: self._current,
            generating=lambda: self.generating, control=lambda: self._control,
            start_task=self._start_task, stop=self.stop, say=self._say, reveal=self._reveal,
            focus_composer=lambda: self.composer.setFocus(Qt.FocusReason.OtherFocusReason),
            focused=lambda: self.window().focusWidget())
        self.labels = LabelActions(context, self)
        """Tie, ranking, all bad, skip, edit, Blind; the tie or ranking being chosen."""
        self.picks = PickActions(context, self.labels)
        """Picks, undo, reasons, one reply's Stop and Regenerate."""
        self.blind_button = self.labels.blind_button
        self.composer.undo_empty.connect(self.picks.undo_empty_composer)
        self.bar = ComposerBar(self.composer, (self.blind_button, self.regen_button,
                                               self.stop_button, self.send_button))
        self.warning = self.bar.warning
        self.warning.send_anyway.clicked.connect(self._send_anyway)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.scroll_area, 1)
        layout.addWidget(self.bar)
        self._update_buttons()

    # ------------------------------------------------------------------ layout helpers

    def _say(self, text: str) -> None:
        self.message.emit(text)

    @property
    def turns(self) -> TurnLifecycle:
        """The session's turn lifecycle: the shown turns' state and the label intents."""
        return self.backend.session.turns

    def _turn_changed(self, view: TurnView) -> None:
        """``turn_did_change``: the widget of that turn renders the snapshot."""
        for widget in self.widgets:
            if widget.key == view.key:
                self._render(widget, view)

    def _render(self, widget: TurnWidget, view: TurnView) -> None:
        """Hand ``view`` to ``widget`` with what no snapshot carries (read from
        ``session.turns``, never written): the replies that finished since the last one,
        and the saved turn once it settles. A turn sent in a new chat makes it this page's."""
        before = widget.view
        if before is not None and view.turn_id is None:
            for reply in view.replies:
                old = before.reply(reply.index)
                if reply.state != "streaming" and (old is None or old.state == "streaming"):
                    candidate = self.turns.reply(view.key, reply.index)
                    if candidate is not None:
                        widget.on_done(reply.index, candidate)
        if before is not None and before.outcome is None and view.turn_id is not None \
                and view.outcome is not None:
            turn = self.turns.turn(view.key)
            if turn is not None:
                widget.set_turn(turn)
        widget.show_view(view)
        if self.conversation_id is None and view.conversation_id is not None:
            self.conversation_id = view.conversation_id
            self.conversation_changed.emit()

    def _add_widget(self, widget: TurnWidget) -> None:
        widget.max_tokens_now = lambda: self.backend.settings.max_tokens
        widget.pick_requested.connect(self.picks.pick)
        widget.retry_requested.connect(self._retry)
        widget.reason_done.connect(self.picks.reason_done)
        widget.stop_requested.connect(self.picks.stop_one)
        widget.regenerate_requested.connect(self.picks.regenerate_reply)
        widget.copied.connect(self.picks.copied)
        widget.undo_requested.connect(self.picks.undo_button)
        widget.edit_requested.connect(self.resend_edit)
        widget.branch_requested.connect(self.show_branch)
        self.labels.attach(widget)
        self.scroll_area.add(widget)

    def _clear(self) -> None:
        self.labels.cancel_tie()
        self.scroll_area.clear()

    @property
    def widgets(self) -> list[TurnWidget]:
        """The turns shown, in order."""
        return self.scroll_area.widgets

    def _dropped(self, widget: TurnWidget) -> None:
        """``widget`` left the page: its turn is no longer shown."""
        if widget.key is not None:
            self.turns.drop(widget.key)

    def scroll_to(self, widget: QWidget) -> None:
        """Keep ``widget``'s top at the top of the view while it grows (streaming), until
        the user scrolls or the turn ends."""
        self.scroll_area.scroll_to(widget)

    def _reveal(self, widget: QWidget) -> None:
        """Scroll ``widget`` (a reason field, an error) into view."""
        self.scroll_area.reveal(widget)

    @property
    def generating(self) -> bool:
        """Whether a turn (or a reply) is streaming or being ranked."""
        return self._task is not None and not self._task.done()

    def _update_buttons(self) -> None:
        busy = self.generating
        self.send_button.setVisible(not busy)
        self.stop_button.setVisible(busy)
        self.regen_button.setEnabled(not busy and bool(self.widgets))
        for widget in self.widgets:
            if widget.turn is not None:
                widget.refresh_actions(busy)
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
        self.follower.stop()
        self.warning.dismiss()
        self.conversation_id = conversation_id
        if conversation_id is None:
            self._update_buttons()
            return
        turns = self.backend.session.conversations.turns(conversation_id)
        for turn, after in zip(turns, [*turns[1:], None], strict=False):  # after: the next
            if after is not None and _retried(turn, after):
                continue  # its retry stands in for it (the message shows once)
            view = self.turns.show(turn)  # its display positions are recorded
            widget = TurnWidget(turn.prompt, len(turn.candidates), self.renderer)
            widget.show_view(view)
            self._add_widget(widget)
            widget.set_turn(turn)
            self.labels.displayed(widget)
        self._refresh_branches()
        if self.widgets:
            self.scroll_to(self.widgets[-1])
        self._update_buttons()

    # ------------------------------------------------------------------ branches

    def _refresh_branches(self) -> None:
        """Each shown message's switcher ("‹ 2/3 ›"), as the service says."""
        if self.conversation_id is None:
            return
        ids = [w.turn.id for w in self.widgets if w.turn is not None and w.turn.id is not None]
        points = self.backend.session.conversations.branch_points(self.conversation_id, ids)
        for widget in self.widgets:
            turn_id = widget.turn.id if widget.turn is not None else None
            widget.bubble.set_branch(points.get(turn_id) if turn_id is not None else None)

    def edit_last_message(self) -> None:
        """↑ in the empty message box: edit the last message shown."""
        saved = [w for w in self.widgets if w.turn is not None and w.turn.id is not None]
        if saved:
            saved[-1].bubble.start_edit()
            self._reveal(saved[-1].bubble)

    def resend_edit(self, widget: TurnWidget, text: str) -> None:
        """Send ``widget``'s message, edited to ``text``, as a new branch: the turns after
        it leave the view (kept, behind its switcher) and the new turn streams. Refused,
        the editor staying open, while replies stream and for an empty text."""
        turn = widget.turn
        if self.conversation_id is None or turn is None or turn.id is None:
            return
        if self.generating:
            why = ("Replies are still streaming: wait for them or stop them (Esc), then send "
                   "the edit.")
            widget.bubble.refuse(why)
            self._say(why)
            return
        try:
            plan = self.backend.session.conversations.plan_edit(
                self.conversation_id, turn.id, text)
        except (EditRefused, StorageError) as exc:
            widget.bubble.refuse(str(exc))
            self._say(str(exc))
            return
        widget.bubble.cancel_edit()
        self.labels.cancel_tie()
        self.warning.dismiss()
        self.scroll_area.remove_from(self.widgets.index(widget))
        self.start_turn(plan.messages, parent=plan.parent)
        self._say("Sent the edited message as a new branch · the earlier version stays: "
                  "‹ › on the message shows it")

    def show_branch(self, widget: TurnWidget, turn_id: int) -> None:
        """Show the branch of ``widget``'s message that starts with ``turn_id``."""
        if self.conversation_id is None:
            return
        if self.generating:
            self._say("Replies are still streaming: wait for them or stop them (Esc), then "
                      "switch versions")
            return
        at = self.widgets.index(widget) if widget in self.widgets else 0
        focus = self.window().focusWidget()
        button = focus.objectName() if focus in (widget.bubble.prev_button,
                                                 widget.bubble.next_button) else ""
        try:
            self.backend.session.conversations.switch_branch(self.conversation_id, turn_id)
        except StorageError as exc:
            self._say(str(exc))
            return
        self._load(self.conversation_id)
        if at < len(self.widgets):
            shown = self.widgets[at]
            self.follower.reveal(shown)
            point = shown.bubble.branch
            if point is not None:
                self._say(f"Showing version {point.position} of {point.count} of this "
                          "message and the replies after it")
            again = shown.bubble.findChild(QPushButton, button) if button else None
            if again is not None and again.isEnabled():  # the keyboard can step on
                again.setFocus(Qt.FocusReason.OtherFocusReason)

    # ------------------------------------------------------------------ sending

    def send_from_composer(self) -> None:
        """Send what is in the message box (held back once when it cannot fit)."""
        text = self.composer.toPlainText().strip()
        if not text or self.generating:
            return
        if self.warning.isVisible() and self.warning.held_text == text:
            self._send_anyway()
            return
        warning = self._context_warning(text)
        if warning is not None:
            self.warning.warn(text, warning)
            self._say("The message was not sent: it is too long for the model's context")
            return
        self.warning.dismiss()
        self.composer.clear()
        self.send_prompt(text)

    def _send_anyway(self) -> None:
        text = self.composer.toPlainText().strip()
        self.warning.dismiss()
        if text and not self.generating:
            self.composer.clear()
            self.send_prompt(text)

    def _context_warning(self, text: str) -> str | None:
        """The warning when the next turn obviously cannot fit the model's context."""
        settings = self.backend.settings
        return context_warning(self._next_messages(text), self.backend.provider_kind,
                               settings.n_ctx, settings.system_prompt)

    def _next_messages(self, text: str) -> list[Message]:
        return self.backend.session.conversations.next_messages(self.conversation_id, text)

    def send_prompt(self, text: str) -> None:
        """Send a user message as the next turn (its history comes from the database)."""
        if self.generating or not text.strip():
            return
        self.start_turn(self._next_messages(text), text=text)

    def regenerate(self) -> None:
        """Ask again for the last turn's messages, as a new turn (Ctrl+R)."""
        if not self.generating and self.widgets and self.widgets[-1].messages:
            self.start_turn(list(self.widgets[-1].messages))

    def _retry(self, widget: TurnWidget) -> None:
        if widget.retry_action == "train":
            widget.clear_error()
            self.backend.train_now()
        elif widget.retry_action == "retry_failed":
            self.picks.retry_failed(widget)
        elif not self.generating and widget.messages:
            widget.clear_error()
            widget.retry_button.hide()
            parent: Parent = ACTIVE
            if widget.turn is None and widget is self.widgets[-1]:
                self.scroll_area.remove(widget)  # never stored: replaced (it keeps its view)
                parent = widget.parent_turn  # an unsent edit still branches where it was
            retried = self.start_turn(list(widget.messages), parent=parent)
            if widget.turn is not None and widget in self.widgets:
                # Stored, all failed: the retry continues it in the database; on screen
                # its replies replace the failed turn (the message shows once).
                self._replacing[retried] = widget

    def start_turn(self, messages: list[Message], text: str | None = None,
                   parent: Parent = ACTIVE) -> TurnWidget:
        """Begin the turn in ``session.turns``, create its widget and spawn the lifecycle's
        run: the user's new ``text``, or exactly ``messages`` (regenerate, retry, an edited
        message continuing ``parent``)."""
        settings = self.backend.settings
        n = self.backend.sampling_params().n  # in the arena: the sources' replies in all
        view = self.turns.begin(messages, n, blind_mode=settings.blind, arena=settings.arena)
        widget = TurnWidget(last_user_text(messages), n, self.renderer, order=view.order)
        if self.backend.provider_kind == "local":
            widget.context_max_tokens = self.backend.sampling_params().max_tokens
        widget.show_view(view)
        widget.parent_turn = parent
        self._add_widget(widget)
        widget.set_status(f"Generating {n} replies… (Esc stops them all; each reply has "
                          "its own Stop)")
        control = TurnControl(widget.cards)
        self._start_task(self._run_turn(widget, text, control, parent), widget, control)
        self.scroll_to(widget)
        return widget

    def _start_task(self, coro: Coroutine[Any, Any, None], widget: TurnWidget,
                    control: TurnControl) -> None:
        self._current, self._control = widget, control
        self._task = self.backend.spawn(self._guarded(coro), "turn")
        self._update_buttons()

    async def _guarded(self, coro: Coroutine[Any, Any, None]) -> None:
        try:
            await coro
        finally:
            self._control = None
            self._current = None
            self._task = None
            self._update_buttons()
            if self.window().focusWidget() is None:
                self.composer.setFocus(Qt.FocusReason.OtherFocusReason)

    def stop(self) -> None:
        """Stop every reply still streaming (Esc); partial replies are kept."""
        if self._control is not None:
            self._control.stop_all()

    def _drop_replaced(self, retried: TurnWidget) -> None:
        """Hide the failed turn that ``retried`` retried (its replies stand in for it)."""
        failed = self._replacing.pop(retried, None)
        if failed is not None and failed in self.widgets:
            self.scroll_area.remove(failed)

    async def _run_turn(self, widget: TurnWidget, text: str | None, control: TurnControl,
                        parent: Parent = ACTIVE) -> None:
        """Run the turn through ``session.turns`` (its snapshots render on ``widget``), then
        the page's part once it ends: the branch switchers, the label bar, the sidebar."""
        key = widget.key
        assert key is not None
        try:
            view = await self.turns.run(key, control, conversation_id=self.conversation_id,
                                        text=text, parent=parent, on_delta=widget.on_delta)
            if view.turn_id is not None:  # saved: complete, stopped, or failed
                self._refresh_branches()
                self.labels.displayed(widget)
                self.conversation_changed.emit()
            if view.outcome in (FAILED, UNSENT, ERROR) or widget.error_row.isVisible():
                self._reveal(widget.error_row)
        finally:
            self._drop_replaced(widget)

    # ------------------------------------------------------------------ labels and keys

    def pick(self, widget: TurnWidget, index: int) -> None:
        """Best on reply ``index`` of ``widget``'s turn (:meth:`PickActions.pick`)."""
        self.picks.pick(widget, index)

    def pick_key(self, key: int) -> None:
        """Alt+1…9 (or 1…9 on the turns): the card at that position of the last turn."""
        self.picks.pick_key(key)

    def undo_pick(self) -> None:
        """Alt+Z: undo the session's last label."""
        self.picks.undo_pick()

    def rank(self, widget: TurnWidget) -> None:
        """Start ranking ``widget``'s turn, or save the ranking being chosen there."""
        self.labels.rank(widget)

    @property
    def ranking(self) -> list[int] | None:
        """Candidate ids placed so far, best first (None: no ranking being chosen)."""
        return self.labels.ranks.ranking

    @property
    def edit_dialog(self) -> EditDialog | None:
        """The open rewrite of a reply, if any."""
        return self.labels.edit_dialog

    def keyPressEvent(self, event: QKeyEvent) -> None:
        """On the turns (not in a text field): 1…9 pick; Alt+1…9 pick anywhere here (where
        the window's shortcut was not delivered); Esc stops; other typing goes to the
        message box."""
        digit = plain_digit(event) or alt_digit(event)
        if digit is not None:
            self.pick_key(digit)
            return
        plain = not event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier
        if plain and event.key() == Qt.Key.Key_Escape:
            self.stop()
            return
        text = event.text()
        if text and text.isprintable() and not event.modifiers() & (
                Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.AltModifier):
            self.composer.setFocus(Qt.FocusReason.OtherFocusReason)
            self.composer.insertPlainText(text)
            return
        super().keyPressEvent(event)

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
        if widget.key is not None:
            self.turns.refresh(widget.key)  # its new order, recorded
        widget.rerank_count += 1
        widget.apply_order()
        self.labels.displayed(widget)
        widget.update_status(f"Re-ranked by the new reward model v{widget.version()}")

    def on_training_failed(self, message: str) -> None:
        """Show a training error in the last turn, with a Retry."""
        if self.widgets:
            self.widgets[-1].show_error(message, action="train", button="Retry training")
        else:
            self.message.emit(message)


def _retried(turn: Turn, after: Turn) -> bool:
    """``after`` is a Retry of ``turn``, whose replies all failed: the same messages."""
    failed = len(failed_indices(turn)) == len(turn.candidates) > 0
    return failed and list(after.messages) == list(turn.messages)
