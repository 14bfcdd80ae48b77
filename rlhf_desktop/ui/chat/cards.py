"""One candidate reply: a card with rank, score and model-version badges and a thumbs-up.

In an arena turn the card also names the source its reply came from ("from tuned v3"), but
only once the turn widget reveals it (after the turn's label): until then nothing on the card
(text, tooltip or accessible name) says which source wrote it.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from rlhf_desktop.core.pick_rules import cut_by_context
from rlhf_desktop.domain import Candidate
from rlhf_desktop.ui.chat.arena_turn import SourceBadge
from rlhf_desktop.ui.icons import thumb_up
from rlhf_desktop.ui.markdown_render import MarkdownRenderer
from rlhf_desktop.ui.markdown_view import MarkdownView

__all__ = ["CandidateCard", "MarkdownView", "badge", "failed"]  # MarkdownView: its old home

RENDER_INTERVAL_MS = 60


def badge(text: str, role: str, parent: QWidget | None = None) -> QLabel:
    """A small rounded label styled by its ``role`` property (see theme.py)."""
    label = QLabel(text, parent)
    label.setProperty("badge", role)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.NoTextInteraction)
    return label


BAD_MARK = "✗"
"""A state badge whose text starts with it ("✗ Bad") is a verdict against the reply: it
shows in the ``bad`` colour, never in the green of "✓ Your pick"."""


class StateBadge(QLabel):
    """The card's state badge ("✓ Your pick", "= Tie", "2nd", "✗ Bad"): its colour follows
    its text, so whoever sets the text gets the right colour (``badge`` role ``bad`` for a
    text starting with :data:`BAD_MARK`, else ``state``)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("", parent)
        self.setProperty("badge", "state")
        self.setTextInteractionFlags(Qt.TextInteractionFlag.NoTextInteraction)

    def setText(self, text: str) -> None:  # Qt's name
        """Set the text and the colour role that goes with it."""
        super().setText(text)
        role = "bad" if text.startswith(BAD_MARK) else "state"
        if self.property("badge") != role:
            self.setProperty("badge", role)
            _repolish(self)


def failed(c: Candidate) -> bool:
    """A reply that failed or came back empty (nothing to pick)."""
    return bool(c.error) or (not c.text.strip() and c.finish_reason != "cancelled")


def _action(text: str, tip: str) -> QPushButton:
    button = QPushButton(text)
    button.setObjectName("cardAction")
    button.setFlat(True)
    button.setToolTip(tip)
    button.setCursor(Qt.CursorShape.PointingHandCursor)
    return button


class CandidateCard(QFrame):
    """A reply card. Its signals carry the candidate index.

    Streaming, it has a Stop button; finished, Copy (the whole reply as Markdown) and
    Regenerate (this reply only). A failed reply shows a short "Failed" and, when
    ``reason_on_card``, its reason (else the turn shows the reason once).
    """

    pick_clicked = Signal(int)
    stop_clicked = Signal(int)
    regenerate_clicked = Signal(int)
    copied = Signal(int)
    why_clicked = Signal(int)

    def __init__(self, index: int, renderer: MarkdownRenderer,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.index = index
        self.candidate: Candidate | None = None
        self.max_tokens: int | None = None
        """The built-in model's max tokens for this reply (a cut below it: the context was
        full); None: not known (a remote server)."""
        self.text = ""
        self._rendered = ""
        self.position = index
        self.reason_on_card = True
        self.streaming = True
        """Whether this reply is being generated (streaming, or waiting for its first text)."""
        self.setObjectName("card")
        self.setProperty("state", "streaming")
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)

        self.rank_badge = badge(f"Reply {index + 1}", "neutral")
        self.score_badge = badge("", "score")
        self.version_badge = badge("", "version")
        self.state_badge = StateBadge()
        self.source_badge = SourceBadge()
        self.origin_shown = False
        """Whether the card names its reply's source (the turn widget decides)."""
        self.pick_button = QToolButton()
        self.pick_button.setObjectName("pickButton")
        self.pick_button.setCursor(Qt.CursorShape.PointingHandCursor)
        self.pick_button.setEnabled(False)
        self.pick_button.setIcon(thumb_up())
        self.pick_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.pick_button.clicked.connect(lambda: self.pick_clicked.emit(self.index))
        self.why_button = QToolButton()
        self.why_button.setObjectName("whyButton")
        self.why_button.setText("Why?")
        self.why_button.setCheckable(True)
        self.why_button.setAutoRaise(True)
        self.why_button.setCursor(Qt.CursorShape.PointingHandCursor)
        self.why_button.setToolTip("Why it ranked here: the style part versus the content "
                                   "part of its score")
        self.why_button.toggled.connect(self._toggle_why)
        self.stop_button = _action("Stop", "Stop this reply and keep what it wrote so far "
                                   "(Esc stops every reply)")
        self.stop_button.clicked.connect(lambda: self.stop_clicked.emit(self.index))
        self.head = head = QHBoxLayout()
        head.setSpacing(6)
        for w in (self.rank_badge, self.score_badge, self.version_badge, self.why_button,
                  self.state_badge):
            head.addWidget(w)
        head.addStretch(1)
        head.addWidget(self.stop_button)  # at the top it stays put while the reply grows
        head.addWidget(self.pick_button)
        self.why_text = ""
        self.why_label = QLabel("")
        self.why_label.setObjectName("cardWhy")
        self.why_label.setWordWrap(True)
        self.why_label.setTextFormat(Qt.TextFormat.RichText)
        self.why_label.setStyleSheet("QLabel#cardWhy { background: rgba(127, 127, 127, 0.1); "
                                     "border-radius: 6px; padding: 6px 8px; font-size: 12px; }")
        self.why_label.hide()

        self.body = MarkdownView(renderer)
        self.same_note = QLabel("")
        self.same_note.setObjectName("cardFooter")
        self.same_note.setWordWrap(True)
        self.same_note.setToolTip("The same reply (ignoring case, spacing and a final full "
                                  "stop): a pick never stores a preference between them, "
                                  "they are a tie")
        self.same_note.hide()
        self.footer = QLabel("")
        self.footer.setObjectName("cardFooter")
        self.footer.setWordWrap(True)
        self.copy_button = _action("Copy", "Copy the whole reply (Markdown) to the clipboard")
        self.copy_button.clicked.connect(self.copy)
        self.regen_button = _action("Regenerate", "Ask again for this reply only")
        self.regen_button.clicked.connect(lambda: self.regenerate_clicked.emit(self.index))
        actions = QHBoxLayout()
        actions.setSpacing(4)
        actions.addWidget(self.footer, 1)
        for b in (self.copy_button, self.regen_button):
            actions.addWidget(b, 0, Qt.AlignmentFlag.AlignBottom)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(14, 10, 14, 10)
        layout.setSpacing(6)
        layout.addLayout(head)
        # The source (and then the state: "✓ Your pick") on a line of their own: all in the
        # header they made a picked card too wide for two cards side by side.
        self.meta = QHBoxLayout()
        self.meta.setSpacing(6)
        self.meta.addWidget(self.source_badge)
        self.meta.addStretch(1)
        layout.addLayout(self.meta)
        layout.addWidget(self.why_label)
        layout.addWidget(self.same_note)
        layout.addWidget(self.body)
        layout.addStretch(1)
        layout.addLayout(actions)

        self._render_timer = QTimer(self)
        self._render_timer.setSingleShot(True)
        self._render_timer.setInterval(RENDER_INTERVAL_MS)
        self._render_timer.timeout.connect(self._render)
        self._copied_timer = QTimer(self)  # dies with the card (a bare singleShot may not)
        self._copied_timer.setSingleShot(True)
        self._copied_timer.setInterval(1500)
        self._copied_timer.timeout.connect(lambda: self.copy_button.setText("Copy"))
        self.set_position(index)
        self.refresh_badges()
        self.footer.setText("waiting…")
        self.set_streaming(True)

    # ------------------------------------------------------------------ content

    def append(self, text: str) -> None:
        """Streamed text (rendered at most every 60 ms)."""
        self.text += text
        if self.footer.text() == "waiting…":
            self.footer.setText("streaming…")
        if not self._render_timer.isActive():
            self._render_timer.start()

    def _render(self) -> None:
        self.body.set_markdown_text(self.text)
        self._rendered = self.text

    def set_candidate(self, candidate: Candidate) -> None:
        """The finished (or saved) candidate: final text, finish reason, score."""
        self.candidate = candidate
        self._render_timer.stop()
        shown = candidate.text
        if not candidate.text.strip():
            shown = self._empty_text(candidate)
        if shown != self._rendered:
            self.body.set_markdown_text(shown)
            self._rendered = shown
        self.text = candidate.text
        self.footer.setText(self._footer_text(candidate, self.max_tokens))
        has_text = bool(candidate.text.strip())
        self.pick_button.setEnabled(has_text and candidate.id is not None)
        self.pick_button.setVisible(has_text)  # a failed or empty reply cannot be picked
        self.copy_button.setEnabled(has_text)
        self.refresh_badges()
        self.show_origin(self.origin_shown)

    def _empty_text(self, c: Candidate) -> str:
        if c.finish_reason == "cancelled":
            return "*Stopped before any text arrived.*"
        if not c.error:
            return "**Failed:** the reply came back empty."
        if self.reason_on_card:
            return f"**Failed:** {c.error}"
        return "**Failed** — the reason is shown below the replies."

    def set_reason_on_card(self, on_card: bool) -> None:
        """Whether a failed card shows its reason (False: the turn shows it once)."""
        if on_card != self.reason_on_card:
            self.reason_on_card = on_card
            if self.candidate is not None:
                self._rendered = ""
                self.set_candidate(self.candidate)

    def copy(self) -> None:
        """The whole reply, as plain Markdown text, to the clipboard."""
        text = self.candidate.text if self.candidate is not None else self.text
        if text:
            QGuiApplication.clipboard().setText(text)
            self.copy_button.setText("Copied ✓")
            self._copied_timer.start()
            self.copied.emit(self.index)

    def set_same_as(self, names: list[str]) -> None:
        """Say that this reply is the same reply as the cards named (e.g. ["Reply 2"] or
        ["#1", "#3"]); an empty list hides the note."""
        if not names:
            self.same_note.setText("")
            self.same_note.hide()
            return
        said = names[0] if len(names) == 1 else ", ".join(names[:-1]) + f" and {names[-1]}"
        self.same_note.setText(f"= same as {said} (a tie: no preference pair)")
        self.same_note.show()

    def set_regenerate(self, allowed: bool, why: str = "") -> None:
        """Enable this card's Regenerate (``why`` says why not, in its tooltip)."""
        self.regen_button.setEnabled(allowed)
        self.regen_button.setToolTip("Ask again for this reply only" if allowed else why)

    @staticmethod
    def _footer_text(c: Candidate, max_tokens: int | None = None) -> str:
        parts = []
        if c.completion_tokens:
            parts.append(f"{c.completion_tokens} tokens")
        if c.latency_s is not None:
            parts.append(f"{c.latency_s:.1f} s")
        notes = {"length": "cut at max tokens", "cancelled": "stopped — partial reply",
                 "content_filter": "stopped by the content filter", "error": "failed"}
        if cut_by_context(c, max_tokens):
            parts.append("cut: the chat's context is full (start a new chat)")
        elif c.finish_reason in notes:
            parts.append(notes[c.finish_reason or ""])
        elif failed(c):
            parts.append("failed")
        if c.error and c.text.strip():
            parts.append(c.error)
        return " · ".join(parts)

    # ------------------------------------------------------------------ why it ranked here

    def set_why(self, text: str) -> None:
        """The explanation of this card's rank (rich text; "" while not known)."""
        self.why_text = text
        self.why_label.setText(text or "Working out why…")
        self.score_badge.setToolTip(text or "Click Why? to see the style and content parts")

    def _toggle_why(self, shown: bool) -> None:
        self.why_label.setText(self.why_text or "Working out why…")
        self.why_label.setVisible(shown)
        if shown and not self.why_text:
            self.why_clicked.emit(self.index)

    # ------------------------------------------------------------------ badges & state

    def set_position(self, position: int) -> None:
        """Where the card is shown (0-based); the key that picks it is ``position + 1``."""
        self.position = position
        key = position + 1
        self.pick_button.setText(f"  Best  ·  {key}" if key <= 9 else "  Best")
        tip = "Pick this reply as the best one"
        self.pick_button.setToolTip(f"{tip} (key {key})" if key <= 9 else tip)
        self.refresh_badges()

    def refresh_badges(self) -> None:
        c = self.candidate
        ranked = c is not None and c.model_version is not None and c.score is not None
        if ranked and c is not None:
            self.rank_badge.setText(f"#{self.position + 1}")
            self.rank_badge.setProperty("badge", "rank1" if self.position == 0 else "rank")
            self.score_badge.setText(f"score {c.score:+.3f}")
            if c.model_version == 0:  # the transformers ranker chosen on the model page
                self.version_badge.setText("ranker")
                self.version_badge.setToolTip(
                    "Scored by the transformers ranker chosen on the model page")
            else:
                self.version_badge.setText(f"v{c.model_version}")
                self.version_badge.setToolTip(f"Scored by reward model v{c.model_version}")
            if not self.why_text:
                self.score_badge.setToolTip("Click Why? to see the style and content parts")
        else:  # by position: in a blind or arena turn the index would tell the source
            self.rank_badge.setText(f"Reply {self.position + 1}")
            self.rank_badge.setProperty("badge", "neutral")
            self.score_badge.setText("")
            self.version_badge.setText("")
        self.score_badge.setVisible(bool(self.score_badge.text()))
        self.version_badge.setVisible(bool(self.version_badge.text()))
        self.why_button.setVisible(ranked)
        if not ranked:
            self.why_button.setChecked(False)
        self.state_badge.setVisible(bool(self.state_badge.text()))
        _repolish(self.rank_badge)

    def show_origin(self, shown: bool) -> None:
        """Name the source of this card's reply (an arena turn after its label), or hide it:
        then no text, tooltip or accessible name of the badge mentions it."""
        self.origin_shown = shown
        self.source_badge.show_origin(
            self.candidate.origin if shown and self.candidate is not None else None)
        below = not self.source_badge.isHidden()
        if below != (self.meta.indexOf(self.state_badge) >= 0):
            (self.head if below else self.meta).removeWidget(self.state_badge)
            if below:
                self.meta.insertWidget(1, self.state_badge)
            else:
                self.head.insertWidget(self.head.indexOf(self.why_button) + 1,
                                       self.state_badge)

    def set_chosen(self, chosen: bool | None) -> None:
        """True: the user's pick; False: another card was picked; None: no pick."""
        state = "chosen" if chosen else "other" if chosen is False else "done"
        self.setProperty("state", state)
        self.state_badge.setText("✓ Your pick" if chosen else "")
        self.state_badge.setVisible(bool(chosen))
        _repolish(self)

    def set_streaming(self, streaming: bool) -> None:
        """Card look and buttons while its text streams."""
        self.streaming = streaming
        self.setProperty("state", "streaming" if streaming else "done")
        self.stop_button.setVisible(streaming)
        self.stop_button.setEnabled(True)
        self.copy_button.setVisible(not streaming)
        self.regen_button.setVisible(not streaming)
        if streaming:
            self.footer.setText("waiting…" if not self.text else "streaming…")
        _repolish(self)

    def restart(self) -> None:
        """Streams again from nothing (this reply is being regenerated)."""
        self.text = ""
        self._rendered = ""
        self._render_timer.stop()
        self.body.set_markdown_text("")
        self.pick_button.setEnabled(False)
        self.pick_button.setVisible(True)
        self.set_streaming(True)


def _repolish(widget: QWidget) -> None:
    style = widget.style()
    style.unpolish(widget)
    style.polish(widget)
    widget.update()
