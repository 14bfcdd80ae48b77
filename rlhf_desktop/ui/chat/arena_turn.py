"""What an arena turn shows: no source before the label, each card's source after it.

An arena turn (``Turn.provider == "arena"``) draws its replies from several candidate
sources. It is always blind until labeled: random order, no score, no rank and no source
name on any card (text, tooltip or accessible name). After any label (pick, tie, all bad,
ranking, edit) each card names its source with a badge ("from tuned v3") beside the model's
ranking that blind mode reveals. Used by :class:`~.turn_widget.TurnWidget` and
:class:`~.cards.CandidateCard`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtWidgets import QLabel, QWidget

from rlhf_desktop.core.chat_models import version_name
from rlhf_desktop.domain import Turn
from rlhf_desktop.services.arena.turns import is_arena_turn
from rlhf_desktop.ui.chat.label_view import LABEL_KEYS

if TYPE_CHECKING:
    from rlhf_desktop.ui.chat.turn_widget import TurnWidget

SOURCE_NAME_CHARS = 28  # longer names are cut on the badge (its tooltip has the whole name)
KIND_WORDS = {"auto": "the chat's provider", "azure": "Azure OpenAI", "openai": "OpenAI",
              "compatible": "OpenAI-compatible server", "local": "Built-in model"}


def is_arena(turn: Turn | None) -> bool:
    """Whether ``turn`` drew its replies from candidate sources (the rule:
    :func:`~rlhf_desktop.services.arena.turns.is_arena_turn`); False without a turn."""
    return turn is not None and is_arena_turn(turn)


def origin_details(origin: dict[str, Any]) -> str:
    """A source's details in words, e.g. ``Built-in model · chat model v3 (tuned) ·
    temperature 0.7``."""
    provider = str(origin.get("provider") or "")
    parts = [KIND_WORDS.get(provider, provider)] if provider else []
    version = origin.get("chat_model_version")
    if provider == "local":
        parts.append(version_name(version if isinstance(version, int) else 0))
    elif origin.get("model"):
        parts.append(str(origin["model"]))
    temperature = origin.get("temperature")
    if isinstance(temperature, int | float):
        parts.append(f"temperature {temperature:g}")
    return " · ".join(parts)


class SourceBadge(QLabel):
    """A card's "from <source>" badge; empty, hidden and silent until shown."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("", parent)
        self.setObjectName("sourceBadge")
        self.setProperty("badge", "source")
        self.setStyleSheet(
            "QLabel#sourceBadge { border: 1px solid palette(highlight); color: palette(text); }")
        self.hide()

    def show_origin(self, origin: dict[str, Any] | None) -> None:
        """Name ``origin``'s source, or (None) say nothing at all."""
        name = str(origin.get("name") or "") if origin else ""
        if not name or origin is None:
            self.setText("")
            self.setToolTip("")
            self.setAccessibleName("")
            self.hide()
            return
        cut = name if len(name) <= SOURCE_NAME_CHARS else name[:SOURCE_NAME_CHARS - 1] + "…"
        details = origin_details(origin)
        self.setText(f"from {cut}")
        self.setToolTip(f"This reply came from the source “{name}”"
                        + (f": {details}" if details else ""))
        self.setAccessibleName(f"Source: {name}")
        self.show()


def arena_status(widget: TurnWidget, text: str, keys: str) -> str:
    """Show or hide every card's source from the turn's label; the status line for it."""
    turn = widget.turn
    arena = is_arena(turn)
    revealed = arena and turn is not None and turn.labeled
    for card in widget.cards.values():
        card.show_origin(revealed)
    if not arena or turn is None or widget.regenerating:
        return text
    n = len([c for c in turn.candidates if c.source != "edit"])
    sources = len({str((c.origin or {}).get("name", "")) for c in turn.candidates
                   if c.origin})
    if turn.hidden:
        return (f"Arena: {n} replies from {sources} sources, shuffled · who wrote which stays "
                f"hidden until you pick · click Best or press {keys} · {LABEL_KEYS}")
    if revealed:
        return f"{text} · each card now shows the source it came from"
    return text
