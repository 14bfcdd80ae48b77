"""The message box and its bar: what the user types is always text.

Digits typed here never pick a reply (a message may start with one; Alt+1…9 picks), and
Ctrl+Z here only undoes typing (Alt+Z undoes the last pick). A message that obviously
cannot fit the model's context is held back once with a warning, never lost.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QKeyEvent, QKeySequence, QResizeEvent, QShowEvent
from PySide6.QtWidgets import (
    QBoxLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from rlhf_desktop.domain import Message
from rlhf_desktop.services.chat.token_count import TokenCount

log = logging.getLogger(__name__)

CHARS_PER_TOKEN = 4
"""A rough estimate for English text; good enough to tell an obvious overflow."""
REMOTE_CONTEXT_TOKENS = 1_048_576
"""A generous bound for remote models, whose context size the app does not know."""
PLACEHOLDERS = ("Message — Enter sends, Shift+Enter adds a line", "Message — Enter sends",
                "Message")
COUNT_DEBOUNCE_MS = 250
"""The token count follows typing after this pause."""
NARROW_WIDTH = 560
"""Below this width the buttons go under the message box instead of beside it."""


def estimate_tokens(messages: Sequence[Message], system_prompt: str = "") -> int:
    """About how many tokens ``messages`` take (characters / 4, plus a few per message)."""
    chars = len(system_prompt) + sum(len(m.content) for m in messages)
    return chars // CHARS_PER_TOKEN + 4 * (len(messages) + 1)


def context_warning(messages: Sequence[Message], provider_kind: str, n_ctx: int,
                    system_prompt: str = "") -> str | None:
    """The warning when ``messages`` obviously cannot fit the model's context, else None.

    The built-in model's context is ``n_ctx``; a remote model's is not known, so only a
    generous bound applies. Before a provider is chosen (``provider_kind`` empty): None.
    """
    if not provider_kind:
        return None
    local = provider_kind == "local"
    context = n_ctx if local else REMOTE_CONTEXT_TOKENS
    tokens = estimate_tokens(messages, system_prompt)
    chars = sum(len(m.content) for m in messages)
    if tokens < context:
        return None
    where = ("the built-in model's context holds "
             f"{context:,} tokens (Settings → Context size (n_ctx))" if local
             else f"that is more than any model's context ({context:,} tokens)")
    return (f"⚠ This message is about {tokens:,} tokens ({chars:,} characters) with the "
            f"conversation so far; {where}, so every reply would fail. Shorten it, start a new "
            "chat" + (", or raise the context size" if local else "") +
            ". Press Enter again to send it anyway.")


def alt_digit(event: QKeyEvent) -> int | None:
    """Alt+1…9 (keypad included): the card to pick; else None."""
    mods = event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier
    key = event.key()
    if mods == Qt.KeyboardModifier.AltModifier and Qt.Key.Key_1 <= key <= Qt.Key.Key_9:
        return int(key) - int(Qt.Key.Key_0)
    return None


def plain_digit(event: QKeyEvent) -> int | None:
    """1–9 typed without modifiers (keypad included): the card to pick; else None."""
    text = event.text()
    plain = not event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier
    return int(text) if plain and text in tuple("123456789") else None


class Composer(QPlainTextEdit):
    """The message box: Enter or Ctrl+Enter sends, Shift+Enter adds a line.

    Ctrl+Z undoes typing only; with nothing to undo it emits ``undo_empty`` (the chat says
    that Alt+Z undoes a pick). Alt+digits and Alt+Z are left to the window.
    """

    send_requested = Signal()
    undo_empty = Signal()
    edit_last = Signal()  # ↑ in the empty box: edit the last message (as chat apps do)
    undid_typing = Signal()  # Ctrl+Z undid typing (the status bar says which undo happened)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("composer")
        self.setPlaceholderText(PLACEHOLDERS[0])
        self.setToolTip("Enter or Ctrl+Enter sends, Shift+Enter adds a line")
        self.setTabChangesFocus(True)
        self.setMinimumWidth(120)
        self.document().documentLayout().documentSizeChanged.connect(self._fit)
        self._fit()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        """Send on Enter / Ctrl+Enter; Ctrl+Z as the class says; everything else types."""
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and not (
                event.modifiers() & Qt.KeyboardModifier.ShiftModifier):
            self.send_requested.emit()
            return
        if event.key() == Qt.Key.Key_Up and not event.modifiers() \
                and not self.toPlainText():
            self.edit_last.emit()
            return
        if event.matches(QKeySequence.StandardKey.Undo):
            if not self.document().isUndoAvailable():
                self.undo_empty.emit()
                return
            super().keyPressEvent(event)
            self.undid_typing.emit()
            return
        if alt_digit(event) is not None:
            event.ignore()  # the chat view picks (when the window shortcut did not)
            return
        super().keyPressEvent(event)

    def resizeEvent(self, event: QResizeEvent) -> None:
        """The longest hint that fits the width (a cut one reads as just "Message")."""
        super().resizeEvent(event)
        room = self.viewport().width() - 2 * int(self.document().documentMargin())
        metrics = self.fontMetrics()
        fitting = [h for h in PLACEHOLDERS if metrics.horizontalAdvance(h) <= room]
        self.setPlaceholderText(fitting[0] if fitting else PLACEHOLDERS[-1])

    def showEvent(self, event: QShowEvent) -> None:
        """Fit the height once styled (the padding is known then)."""
        super().showEvent(event)
        self._fit()

    def _fit(self) -> None:
        lines = int(self.document().size().height())
        shown = max(1, min(6, lines))
        chrome = self.height() - self.viewport().height()  # frame, padding
        margin = int(2 * self.document().documentMargin())
        self.setFixedHeight(self.fontMetrics().lineSpacing() * shown + margin + max(chrome, 4))
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded if lines > 6
                                        else Qt.ScrollBarPolicy.ScrollBarAlwaysOff)


class ContextWarning(QFrame):
    """A warning above the message box: this message cannot fit the model's context."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("errorRow")
        self.held_text = ""
        layout = QHBoxLayout(self)
        layout.setContentsMargins(12, 6, 8, 6)
        self.label = QLabel("")
        self.label.setWordWrap(True)
        self.send_anyway = QPushButton("Send anyway")
        close = QPushButton("Edit")
        close.setToolTip("Hide the warning and edit the message")
        close.clicked.connect(self.dismiss)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.send_anyway, 0, Qt.AlignmentFlag.AlignTop)
        layout.addWidget(close, 0, Qt.AlignmentFlag.AlignTop)
        self.hide()

    def warn(self, text: str, message: str) -> None:
        """Hold ``text`` back with ``message``."""
        self.held_text = text
        self.label.setText(message)
        self.show()

    def dismiss(self) -> None:
        """Hide the warning (the message stays in the box)."""
        self.held_text = ""
        self.hide()


class ComposerBar(QFrame):
    """The message box with its buttons (beside it, or under it when the view is narrow)."""

    def __init__(self, composer: Composer, buttons: Sequence[QPushButton],
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("composerBar")
        self.composer = composer
        self.warning = ContextWarning()
        outer = QVBoxLayout(self)
        outer.setContentsMargins(24, 10, 24, 12)
        outer.setSpacing(8)
        outer.addWidget(self.warning)
        self.row = QBoxLayout(QBoxLayout.Direction.LeftToRight)
        self.row.addWidget(composer, 1)
        self.buttons = QHBoxLayout()
        self.buttons.addStretch(1)
        for b in buttons:
            self.buttons.addWidget(b, 0, Qt.AlignmentFlag.AlignBottom)
        self.row.addLayout(self.buttons)
        outer.addLayout(self.row)
        self.token_label = QLabel("")
        self.token_label.setObjectName("muted")
        self.token_label.setAlignment(Qt.AlignmentFlag.AlignRight)
        self.token_label.hide()
        outer.addWidget(self.token_label)
        self.narrow = False
        self._counter: Callable[[str], TokenCount] | None = None
        self._count_timer = QTimer(self)
        self._count_timer.setSingleShot(True)
        self._count_timer.setInterval(COUNT_DEBOUNCE_MS)
        self._count_timer.timeout.connect(self.update_count)
        composer.textChanged.connect(self._count_timer.start)
        composer.textChanged.connect(self._text_changed)

    def _text_changed(self) -> None:
        """A warning about a message no longer in the box goes (Enter checks the new one)."""
        if self.warning.isVisible() and \
                self.composer.toPlainText().strip() != self.warning.held_text:
            self.warning.dismiss()

    def set_counter(self, counter: Callable[[str], TokenCount] | None) -> None:
        """How to count the next turn's tokens for a text (None: no count)."""
        self._counter = counter
        self.update_count()

    def update_count(self) -> TokenCount | None:
        """Show the token count of the next turn once it matters (above half the model's
        context, or a few thousand tokens when the context is unknown)."""
        text = self.composer.toPlainText()
        count = None
        if self._counter is not None and text.strip():
            try:
                count = self._counter(text)
            except Exception:  # counting must never get in the way of typing
                log.warning("counting tokens failed", exc_info=True)
        if count is None or not (count.matters or count.squeezed):
            self.token_label.hide()
            return count
        over = " — more than this model takes: shorten it or start a new chat" \
            if count.over else ""
        if count.squeezed:
            over = (f" — {count.room:,} left for the replies (max tokens "
                    f"{count.reply_tokens:,}): they will be cut short or fail; start a new chat"
                    + (" or raise the context size" if count.context_settable else ""))
        warn = count.over or count.squeezed
        self.token_label.setText(f"{'⚠ ' if warn else ''}{count.text()}{over}")
        self.token_label.setToolTip(f"This message with the conversation so far and the "
                                    f"system prompt, counted with {count.how}")
        self.token_label.show()
        return count

    def resizeEvent(self, event: QResizeEvent) -> None:
        """Buttons under the message box when narrow, so the box keeps its width."""
        super().resizeEvent(event)
        narrow = event.size().width() < NARROW_WIDTH
        if narrow != self.narrow:
            self.narrow = narrow
            self.row.setDirection(QBoxLayout.Direction.TopToBottom if narrow
                                  else QBoxLayout.Direction.LeftToRight)
            margin = 12 if narrow else 24
            layout = self.layout()
            if layout is not None:
                layout.setContentsMargins(margin, 10, margin, 12)
