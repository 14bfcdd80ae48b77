"""Arena turns in the chat service: who is asked again when a reply is regenerated.

A reply of an arena turn is asked again from the SAME candidate source (its
``Candidate.origin``), through a view of the current arena that holds only those sources
(:meth:`~rlhf_desktop.providers.arena.ArenaProvider.subset`). When that source is no longer
in the arena, or the arena is off, the regeneration is refused with a message that says what
to do; nothing is changed.
"""

from __future__ import annotations

from collections import Counter

from rlhf_desktop.domain import Turn
from rlhf_desktop.providers.arena import NAME as ARENA
from rlhf_desktop.providers.arena import ArenaProvider
from rlhf_desktop.providers.base import Provider

__all__ = ["ARENA", "RegenerateRefused", "is_arena_turn", "regenerate_plan"]


class RegenerateRefused(RuntimeError):
    """The reply cannot be asked again from where it came (the message says why)."""


def is_arena_turn(turn: Turn) -> bool:
    """Whether ``turn``'s replies came from the arena's candidate sources (also an old turn
    stored before its provider was named "arena": its replies carry an origin)."""
    return turn.provider == ARENA or any(c.origin for c in turn.candidates)


def regenerate_plan(provider: Provider, turn: Turn,
                    indices: list[int]) -> tuple[Provider, dict[int, int]]:
    """The provider to ask for replies ``indices`` of ``turn`` again, and the map from its
    reply indices to the turn's. Raises :class:`RegenerateRefused`."""
    if not is_arena_turn(turn):
        if isinstance(provider, ArenaProvider):
            raise RegenerateRefused(
                "This turn was not an arena turn, and the arena is on now; turn the arena "
                "off to ask this turn's provider again, or send the message again.")
        return provider, dict(enumerate(indices))
    if not isinstance(provider, ArenaProvider):
        raise RegenerateRefused(
            "These replies came from the arena, which is off now; turn it back on to ask "
            "the same source again, or send the message again.")
    origins = {c.index: c.origin for c in turn.candidates}
    names: dict[int, str] = {}
    for index in indices:
        origin = origins.get(index)
        if not origin or not origin.get("name"):
            raise RegenerateRefused(f"Reply {index + 1} has no recorded source, so it cannot "
                                    "be asked again; send the message again.")
        names[index] = str(origin["name"])
    for index in indices:
        if provider.source_of(names[index]) is None:
            raise RegenerateRefused(
                f"Reply {index + 1} came from source '{names[index]}', which is no longer in "
                "the arena; add it back in Settings to ask it again, or send the message "
                "again.")
    view = provider.subset(dict(Counter(names.values())))
    mapping: dict[int, int] = {}
    for slot in view.slots:
        mine = sorted(i for i in indices if names[i] == slot.source.name)
        mapping.update({slot.offset + k: index for k, index in enumerate(mine)})
    return view, mapping
