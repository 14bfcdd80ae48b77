"""The requests of one turn over the OpenAI protocol, and the rules for how each one ends.

A turn starts with one request for all N choices (or single-choice requests once the
server is known to ignore ``n``). Choices the server did not return become single-choice
requests, and those go ONE AT A TIME unless the server has shown that it handles
concurrent requests (it honoured ``n``) or the provider was told so
(``parallel_requests``). Even then, the first sign of an interruption switches the
provider to one request at a time for the rest of the session.

Why: llama-cpp-python's server (``python -m llama_cpp.server``) generates one reply at a
time and ends the running stream as soon as another request waits. Talked to directly,
the cut stream ends without a finish reason; behind a proxy such as LiteLLM it ends with
``finish_reason: "stop"``, often with no text at all.

The end-of-stream rules live in :meth:`TurnRequests.on_end` and nowhere else. For each
candidate of a request that is over:

* it finished with a reason and has text: its ``Done`` (with the token usage reported);
* it finished ``stop`` with no text (an empty reply), or its single-choice stream ended
  without a finish reason: it is requested again as a single-choice request (a
  :class:`~rlhf_desktop.providers.base.Restart` voids text already streamed), at most
  :data:`MAX_RESENDS` times; after that it fails with an ``error`` that says what happened
  (an empty reply of the turn's first request, alone, is asked unstreamed first: see
  :meth:`TurnRequests._void`; a context-length error fails the replies not yet asked);
* it finished ``stop`` in a single-choice request that overlapped another request of the
  turn (sent while it ran, or running when it was sent), and it is far shorter (under
  :data:`CUT_RATIO`) than the longest complete sibling: it was cut short, and is requested
  again in the same way (judged once a complete sibling exists, so its ``Done`` waits until
  then);
* a multi-choice stream ended before this choice finished, or the request failed: it
  fails with that error (the text so far is kept).

An empty, unfinished or cut reply from a request that overlapped another switches the
provider to one request at a time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from rlhf_desktop.providers.base import CANCELLED, ERROR, CandidateTracker, Done, Restart
from rlhf_desktop.providers.errors import (
    ChoicesRefusedError,
    ContextLengthError,
    ProviderError,
    StreamInterrupted,
)

log = logging.getLogger(__name__)
MAX_RESENDS = 2
"""How many times one reply is requested again after it came back empty, unfinished or cut."""
CUT_RATIO = 1 / 3
"""A ``stop`` reply shorter than this share of the longest sibling, from a request that
overlapped another one, counts as cut short."""
STOP_REASONS = frozenset({"stop", "eos", "end_turn"})
OK_FINISH = STOP_REASONS | {"length", "tool_calls", "function_call"}
EMPTY, UNFINISHED, CUT = "empty", "unfinished", "cut"


@dataclass(frozen=True)
class Usage:
    """Token usage as the server reported it for one request."""

    prompt_tokens: int | None
    completion_tokens: int | None

    @staticmethod
    def of(usage: Any) -> Usage:
        """From the ``usage`` object of a chunk or response."""
        prompt = getattr(usage, "prompt_tokens", None)
        completion = getattr(usage, "completion_tokens", None)
        return Usage(prompt if isinstance(prompt, int) else None,
                     completion if isinstance(completion, int) else None)


@dataclass(frozen=True)
class ChoiceEnd:
    """How the server ended one choice: its reason, an error for the card, and when."""

    reason: str
    error: str | None
    latency_s: float


@dataclass(eq=False)
class Request:
    """One HTTP request: server choice ``i`` is candidate ``indices[i]``."""

    indices: list[int]
    seed: int | None
    fallback: bool = False
    stream: bool = True
    """False: asked unstreamed (a server that hides its errors in a stream says them)."""
    seen: set[int] = field(default_factory=set)
    """Server choice positions that arrived."""
    ended: dict[int, ChoiceEnd] = field(default_factory=dict)
    """Candidate index -> how the server finished it."""
    usage: Usage | None = None
    error: ProviderError | None = None
    overlapped: bool = False
    """Another request of the turn was sent while this one was running."""
    cancelled: bool = False
    """Stopped by the turn's cancel before it was over."""
    opened: bool = False
    """The server started answering (a stream was opened) on the current attempt."""
    got_text: bool = False
    """Text arrived on the current attempt (it is then never retried)."""

    def reset(self) -> None:
        """Forget what an attempt recorded (before the request is retried)."""
        self.seen.clear()
        self.ended.clear()
        self.usage = None
        self.opened = self.got_text = False


@dataclass(frozen=True)
class End:
    """Queued by a request task when it is over (successfully or not)."""

    request: Request


CANCEL = object()


@dataclass
class Concurrency:
    """What the provider knows about the server, kept across turns."""

    n_supported: bool | None = None
    """None until known; False once the server returned fewer choices than asked."""
    parallel: bool = False
    """Told that the server handles concurrent requests (``parallel_requests``)."""
    interrupted: bool = False
    """The server cut a reply while another request ran: one at a time from then on."""

    @property
    def single_limit(self) -> int | None:
        """How many requests of a turn may run at once (None: all)."""
        if self.interrupted or not (self.parallel or self.n_supported):
            return 1
        return None


class TurnRequests:
    """Schedules the requests of one turn and applies the end-of-stream rules."""

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
        self.running: set[Request] = set()
        self.failures: dict[int, ProviderError] = {}
        self.first_failure: ProviderError | None = None
        self._seed = seed
        self._seed_base = seed_base
        self._learned = learned
        self._label = label
        self._runner = runner
        self._pending: list[int] = []
        self._resends: dict[int, int] = {}
        self._unstreamed: set[int] = set()
        self._first: Request | None = None  # whose empty reply is asked unstreamed
        """Replies that came back empty from a stream: asked again without streaming."""
        self._suspects: dict[int, tuple[Request, ChoiceEnd]] = {}

    # ------------------------------------------------------------------ scheduling

    def start(self) -> None:
        """Send the first request(s)."""
        if self.n == 1:
            self._launch(Request([0], self._seed))
        elif self._learned.n_supported is False:
            self._pending.extend(range(self.n))
            self._pump()
        else:
            self._launch(Request(list(range(self.n)), self._seed))

    def _launch(self, request: Request) -> None:
        if self._first is None:
            self._first = request
        # Overlap is mutual: a server that cannot serve two requests at once may cut the
        # one that arrives as well as the ones it interrupts.
        request.overlapped = bool(self.running)
        for other in self.running:
            other.overlapped = True
        self.running.add(request)
        self.tasks.add(asyncio.create_task(self._runner(request)))

    def _pump(self) -> None:
        limit = self._learned.single_limit or self.n
        while self._pending and len(self.running) < limit:
            i = self._pending.pop(0)
            self._launch(Request([i], self._seed_base + i, fallback=True,
                                 stream=i not in self._unstreamed))

    def _fail(self, index: int, error: ProviderError) -> None:
        self.first_failure = self.first_failure or error
        self.failures[index] = error

    def finish(self, *, cancelled: bool) -> list[Done]:
        """When no request runs any more: ``Done`` for every candidate still unfinished.

        Failed ones get ``finish_reason="error"`` and their ``error``; on a cancel the rest
        become ``cancelled`` with the text that arrived. When every candidate failed, the
        first error is raised instead, with all candidates in its ``partial``.
        """
        tracker = self.tracker
        if not cancelled and self.first_failure is not None and not tracker.finished:
            for i, error in self.failures.items():
                tracker.finish(i, ERROR, error=error.message)
            self.first_failure.partial = tracker.snapshot()
            raise self.first_failure
        events = []
        for i in tracker.unfinished():
            failure = self.failures.get(i)
            if failure is not None:
                done = tracker.finish(i, ERROR, error=failure.message)
            else:
                done = tracker.finish(i, CANCELLED) if cancelled else None
            if done is not None:
                events.append(done)
        return events

    # ------------------------------------------------------------------ end-of-stream rules

    def on_end(
        self, request: Request, *, final: bool = False, cancelled: bool = False
    ) -> list[Done | Restart]:
        """A request is over: apply the rules; returns the events to yield.

        ``final``: the turn was cancelled, so nothing is sent again (a reply that would be
        requested again stays unfinished and becomes ``cancelled``). ``cancelled``: this
        request was itself cut by the cancel, so what it lacks says nothing about the server.
        """
        self.running.discard(request)
        cancelled = cancelled or request.cancelled
        if (isinstance(request.error, ChoicesRefusedError) and len(request.indices) > 1
                and not request.seen):
            # Refused for asking several choices at once (llama.cpp's server above its slot
            # count): ask for these replies one request each, now and on later turns.
            self._learned.n_supported = False
            log.info("%s refused n=%d; requesting the replies one at a time", self._label,
                     len(request.indices))
            self._pending.extend(request.indices)
            if not final:
                self._pump()
            return []
        tracker = self.tracker
        returned_one = len(request.seen) <= 1
        missing: list[int] = []
        if request.error is None and not cancelled and len(request.indices) > 1:
            missing = [request.indices[p] for p in range(len(request.indices))
                       if p not in request.seen]
            self._learned.n_supported = not missing
            if missing:
                how = ("one at a time" if self._learned.single_limit == 1
                       else "as concurrent requests")
                log.info("%s returned %d of %d choices; requesting the other %d %s",
                         self._label, self.n - len(missing), self.n, len(missing), how)
                self._pending.extend(missing)
        events: list[Done | Restart] = []
        for index in request.indices:
            if index in missing or index in tracker.finished:
                continue
            end = request.ended.get(index)
            if end is not None:
                if end.reason in STOP_REASONS and not tracker.text(index).strip():
                    events += self._void(index, EMPTY, request.overlapped, final,
                                         first=request is self._first)
                elif (end.reason in STOP_REASONS and request.overlapped and returned_one
                      and request.error is None):
                    self._suspects[index] = (request, end)
                else:
                    events += self._done(index, request, end)
            elif cancelled:
                continue  # stays unfinished: the turn finishes it as cancelled
            elif request.error is not None:
                self._fail(index, request.error)
            elif not returned_one and not request.ended:
                self._fail(index, interrupted(self._label, seen=tracker.has_text(index)))
            elif not returned_one:
                # The stream ended cleanly and finished its other choices, but not this one
                # (LiteLLM in front of llama.cpp's server drops some choices' finish reason):
                # ask for this reply again on its own, as for a single reply without one.
                events += self._void(index, UNFINISHED, request.overlapped, final)
            else:
                events += self._void(index, UNFINISHED, request.overlapped, final)
        events += self._judge_suspects(final)
        if isinstance(request.error, ContextLengthError):
            # No reply of this turn can fit: fail the ones not asked yet instead of asking.
            for index in self._pending:
                self._fail(index, request.error)
            self._pending.clear()
        if not final:
            self._pump()
        return events

    def _done(self, index: int, request: Request, end: ChoiceEnd) -> list[Done | Restart]:
        usage = request.usage or Usage(None, None)
        # A request that returned several choices reports one completion total for all.
        completion = usage.completion_tokens if len(request.seen) <= 1 else None
        done = self.tracker.finish(index, end.reason, error=end.error,
                                   prompt_tokens=usage.prompt_tokens,
                                   completion_tokens=completion, latency_s=end.latency_s)
        return [] if done is None else [done]

    def _void(self, index: int, kind: str, overlapped: bool, final: bool, *,
              first: bool = False) -> list[Done | Restart]:
        """An empty, unfinished or cut reply: request it again, or fail it when spent."""
        if overlapped and not self._learned.interrupted:
            log.info("%s ended a reply %s while another request was running; sending "
                     "requests one at a time from now on", self._label, _WHAT[kind])
            self._learned.interrupted = True
        if final:
            return []
        tries = self._resends.get(index, 0)
        if tries >= MAX_RESENDS:
            self._fail(index, void_error(self._label, kind, tries + 1,
                                         has_text=self.tracker.has_text(index)))
            return []
        self._resends[index] = tries + 1
        hidden = kind == EMPTY and first and not overlapped
        if hidden:
            # The turn's first request, empty with no other request about: not an
            # interruption. llama-cpp-python's
            # server (also behind LiteLLM) ends a stream empty when the request fails, e.g.
            # a prompt over its context; asked without streaming, it answers with the error
            # (or with the reply).
            self._unstreamed.add(index)
        log.info("%s ended reply %d %s; requesting it again (%d of %d)", self._label,
                 index + 1, _WHAT[kind], tries + 1, MAX_RESENDS)
        events: list[Done | Restart] = []
        if self.tracker.has_text(index):
            events.append(self.tracker.restart(index))
        if hidden:
            self._pending.insert(0, index)  # first: its answer may say that none can work
        else:
            self._pending.append(index)
        return events

    def _judge_suspects(self, final: bool) -> list[Done | Restart]:
        """Decide on ``stop`` replies from overlapping requests, against complete siblings."""
        if not self._suspects:
            return []
        tracker = self.tracker
        complete = [len(tracker.text(i).strip()) for i in tracker.finished
                    if tracker.candidates[i].finish_reason in OK_FINISH
                    and tracker.candidates[i].error is None]
        if not complete and (final or self.running or self._pending):
            return []  # nothing whole to compare with yet
        # With no whole sibling at all (every reply came from overlapping requests), the
        # suspects are compared with each other: the longest one sets the bar.
        longest = max(complete + [len(tracker.text(i).strip()) for i in self._suspects],
                      default=0)
        events: list[Done | Restart] = []
        for index, (request, end) in list(self._suspects.items()):
            del self._suspects[index]
            if longest and len(tracker.text(index).strip()) < CUT_RATIO * longest:
                events += self._void(index, CUT, True, final)
            else:
                events += self._done(index, request, end)
        return events


_WHAT = {EMPTY: "empty (finish_reason 'stop' with no text)",
         UNFINISHED: "without a finish reason", CUT: "cut short"}


def void_error(label: str, kind: str, times: int, *, has_text: bool) -> StreamInterrupted:
    """The error for a reply that came back empty, unfinished or cut ``times`` times."""
    kept = ("; the text that arrived is kept, but it is not used for preference pairs"
            if has_text else "")
    what = {
        EMPTY: f"{label} sent this reply empty {times} times (it ended with finish_reason "
               "'stop' and no text)",
        UNFINISHED: f"{label} stopped this reply before it was finished {times} times (the "
                    "stream ended without a finish reason)",
        CUT: f"{label} cut this reply short {times} times (it ended with 'stop' far sooner "
             "than the other replies, while another request was running)",
    }[kind]
    return StreamInterrupted(
        f"{what}{kept}. A server that handles one request at a time (llama.cpp's server, "
        "also behind a proxy such as LiteLLM) does this when another request interrupts "
        "it. Ask for it again (Regenerate), and check that no other program uses the "
        "server at the same time.")


def interrupted(label: str, *, seen: bool) -> StreamInterrupted:
    """The error for a choice of a multi-choice stream that ended before it finished."""
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
