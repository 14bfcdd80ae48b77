"""What one streamed turn reports and how it is stopped: the listener's callbacks, the
stop controls, and the outcomes of a failed or regenerated turn (used by
:mod:`rlhf_desktop.services.chat.service`, which re-exports them)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from rlhf_desktop.domain import Candidate, Turn
from rlhf_desktop.providers.base import Delta, Done, Restart, StreamEvent
from rlhf_desktop.providers.errors import ProviderError

OnDelta = Callable[[int, str], None]
OnDone = Callable[[Candidate], None]
OnRestart = Callable[[int], None]


@dataclass
class Listener:
    """The callbacks of one streamed turn (each optional)."""

    on_delta: OnDelta | None = None
    on_done: OnDone | None = None
    on_restart: OnRestart | None = None

    def __call__(self, event: StreamEvent) -> None:
        if isinstance(event, Delta):
            if self.on_delta is not None:
                self.on_delta(event.index, event.text)
        elif isinstance(event, Done):
            if self.on_done is not None:
                self.on_done(event.candidate)
        elif isinstance(event, Restart) and self.on_restart is not None:
            self.on_restart(event.index)


class TurnFailed(Exception):
    """A provider fault; the turn (prompt and every partial reply) is saved in ``turn``."""

    def __init__(self, error: ProviderError, turn: Turn) -> None:
        super().__init__(str(error))
        self.error = error
        self.turn = turn


class _Failed(Exception):
    """A provider fault, with every reply of the request as far as it got."""

    def __init__(self, error: ProviderError, candidates: list[Candidate]) -> None:
        super().__init__(str(error))
        self.error = error
        self.candidates = candidates


class TurnControl:
    """Stops for a running generation: every reply (Esc) or one reply (its card's Stop).

    A stopped reply keeps the text streamed up to the stop and ends as ``cancelled``; when
    every unfinished reply is stopped, the provider's request is cancelled too.
    """

    def __init__(self, indices: Iterable[int]) -> None:
        self.cancel = asyncio.Event()
        self.pending = set(indices)
        self.stopped: set[int] = set()

    def stop_all(self) -> None:
        """Stop every reply still streaming."""
        self.cancel.set()

    def stop_one(self, index: int) -> None:
        """Stop reply ``index`` (the others go on)."""
        if index in self.pending:
            self.stopped.add(index)
        if self.pending <= self.stopped:
            self.cancel.set()

    def finished(self, index: int) -> None:
        """Reply ``index`` is done."""
        self.pending.discard(index)


@dataclass
class Regenerated:
    """What :meth:`ChatService.regenerate` did: replies replaced, and those kept because
    the new attempt failed (index → why)."""

    turn: Turn
    replaced: list[int]
    kept: dict[int, str]
