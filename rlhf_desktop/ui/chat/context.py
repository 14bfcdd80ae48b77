"""What the parts of the chat (picks, labels, the tie or ranking being chosen) ask of the
chat view: passed to each part explicitly when the view composes it, never inherited."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from PySide6.QtWidgets import QWidget

from rlhf_desktop.services.chat.service import TurnControl
from rlhf_desktop.services.turns import TurnLifecycle
from rlhf_desktop.ui.backend import Backend
from rlhf_desktop.ui.chat.turn_widget import TurnWidget

__all__ = ["ChatContext"]


@dataclass(frozen=True)
class ChatContext:
    """The chat view's services and state, read through callables (always current)."""

    backend: Backend
    widgets: Callable[[], list[TurnWidget]]
    """The turns shown, in order."""
    current: Callable[[], TurnWidget | None]
    """The turn streaming (or being ranked) now, if any."""
    generating: Callable[[], bool]
    control: Callable[[], TurnControl | None]
    """The stops of the running turn, if any."""
    start_task: Callable[[Coroutine[Any, Any, None], TurnWidget, TurnControl], None]
    """Run a turn's (or a reply's) streaming as the chat's one running task."""
    stop: Callable[[], None]
    say: Callable[[str], None]
    """A transient status-bar message."""
    reveal: Callable[[QWidget], None]
    """Scroll a widget (a reason field, an error) into view."""
    focus_composer: Callable[[], None]
    focused: Callable[[], QWidget | None]
    """The window's focus widget."""

    @property
    def turns(self) -> TurnLifecycle:
        """The session's turn lifecycle: the shown turns' state and the label intents."""
        return self.backend.session.turns

    def last(self) -> TurnWidget | None:
        """The last turn, when it is saved and not streaming (what Alt+T, B, S, R act on)."""
        widgets = self.widgets()
        widget = widgets[-1] if widgets else None
        if widget is None or widget is self.current() or widget.turn is None:
            return None
        return widget
