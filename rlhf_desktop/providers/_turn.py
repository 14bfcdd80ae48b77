"""Bookkeeping of one turn over the OpenAI protocol: which requests run, what failed.

A turn starts with one request for all N choices (or N single-choice requests once the
server is known to ignore ``n``). Missing choices become single-choice requests, run
concurrently. llama-cpp-python's server interrupts a running stream as soon as another
request waits (it sends ``[DONE]`` with no finish reason); a single-choice request that
ends like that is sent again (a :class:`Restart` event voids text already streamed), and
the provider then sends its single-choice requests one at a time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from rlhf_desktop.providers.base import CandidateTracker, Restart
from rlhf_desktop.providers.errors import ProviderError, StreamInterrupted

log = logging.getLogger(__name__)
MAX_RESENDS = 2


@dataclass
class Request:
    """One HTTP request: server choice ``i`` is candidate ``indices[i]``."""

    indices: list[int]
    seed: int | None
    fallback: bool = False
    seen: set[int] = field(default_factory=set)
    error: ProviderError | None = None


@dataclass(frozen=True)
class End:
    """Queued by a request task when it is over (successfully or not)."""

    request: Request


CANCEL = object()


@dataclass
class Concurrency:
    """What the provider learned about the server, kept across turns."""

    n_supported: bool | None = None
    """None until known; False once the server returned fewer choices than asked."""
    single_limit: int | None = None
    """How many single-choice requests may run at once (None: all)."""


class Turn:
    """Schedules the requests of one turn and records per-candidate failures."""

    def __init__(
        self,
        n: int,
        seed: int | None,
        seed_base: int,
        learned: Concurrency,
        label: str,
        runner: Callable[[Request], Coroutine[Any, Any, None]],
    ) -> None:
        self.n = n
        self.tracker = CandidateTracker(n)
        self.queue: asyncio.Queue[object] = asyncio.Queue()
        self.tasks: set[asyncio.Task[None]] = set()
        self.failures: dict[int, ProviderError] = {}
        self.first_failure: ProviderError | None = None
        self.outstanding = 0
        self._seed = seed
        self._seed_base = seed_base
        self._learned = learned
        self._label = label
        self._runner = runner
        self._pending: list[int] = []
        self._running_singles = 0
        self._resends: dict[int, int] = {}

    def start(self) -> None:
        """Launch the first request(s)."""
        if self.n == 1:
            self._launch(Request([0], self._seed))
        elif self._learned.n_supported is False:
            self._queue_singles(list(range(self.n)))
        else:
            self._launch(Request(list(range(self.n)), self._seed))

    def _launch(self, request: Request) -> None:
        self.tasks.add(asyncio.create_task(self._runner(request)))
        self.outstanding += 1
        if request.fallback:
            self._running_singles += 1

    def _queue_singles(self, indices: list[int]) -> None:
        self._pending.extend(indices)
        self._pump()

    def _pump(self) -> None:
        limit = self._learned.single_limit or self.n
        while self._pending and self._running_singles < limit:
            i = self._pending.pop(0)
            self._launch(Request([i], self._seed_base + i, fallback=True))

    def _fail(self, indices: list[int], error: ProviderError) -> None:
        self.first_failure = self.first_failure or error
        for i in indices:
            self.failures[i] = error

    def on_end(self, request: Request) -> list[Restart]:
        """A request is over: record failures, and send what is still missing.

        Returns the :class:`Restart` events to yield (for replies sent again).
        """
        self.outstanding -= 1
        concurrent = self._running_singles > 1
        if request.fallback:
            self._running_singles -= 1
        tracker = self.tracker
        lost = [i for i in request.indices if i not in tracker.finished]
        if request.error is not None:
            self._fail(lost, request.error)
            self._pump()
            return []
        missing = [request.indices[c] for c in range(len(request.indices))
                   if c not in request.seen]
        if len(request.indices) > 1:
            self._learned.n_supported = not missing
            if missing:
                log.info("%s returned %d of %d choices; requesting the other %d one by one",
                         self._label, self.n - len(missing), self.n, len(missing))
                self._queue_singles(missing)
            lost = [i for i in lost if i not in missing]
        elif request.fallback and lost and self._resends.get(lost[0], 0) < MAX_RESENDS:
            # The server ended this reply cleanly but without a finish reason: with other
            # requests running, that is llama-cpp-python's server interrupting it.
            i = lost[0]
            self._resends[i] = self._resends.get(i, 0) + 1
            if concurrent and self._learned.single_limit != 1:
                log.info("%s cut a reply short while others were running; sending "
                         "single-choice requests one at a time", self._label)
                self._learned.single_limit = 1
            events = [tracker.restart(i)] if tracker.has_text(i) else []
            self._queue_singles([i])
            return events
        for i in lost:
            self._fail([i], interrupted(self._label, seen=i not in missing))
        self._pump()
        return []


def interrupted(label: str, *, seen: bool) -> StreamInterrupted:
    """The error for a reply whose stream ended with no finish reason."""
    if seen:
        message = (f"The reply from {label} stopped before it was finished (the stream ended "
                   "without a finish reason); the text so far is kept. Send again to retry.")
    else:
        message = f"{label} ended the stream without sending this reply. Send again to retry."
    return StreamInterrupted(message)


async def put_on_set(event: asyncio.Event, queue: asyncio.Queue[object]) -> None:
    """Queue :data:`CANCEL` when ``event`` is set."""
    await event.wait()
    queue.put_nowait(CANCEL)


async def cancel_all(tasks: set[asyncio.Task[None]]) -> None:
    """Cancel the tasks still running and wait for them."""
    pending = [t for t in tasks if not t.done()]
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
