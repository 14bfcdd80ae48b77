"""The provider interface: N candidate replies streamed as events, then one result each.

A provider's :meth:`Provider.stream` yields :class:`Delta` events (text for candidate
``index``) interleaved across candidates, and one :class:`Done` event per candidate with the
finished :class:`~rlhf_desktop.domain.Candidate` (text, finish reason, latency, time to first
token, token usage where reported, and ``error`` when that candidate failed).

Rules every provider follows:

* a candidate that finished with a reason the server gave (``stop``, ``length``,
  ``content_filter``, ...) gets its ``Done`` as soon as it finishes;
* a :class:`Restart` tells that a candidate's text so far is void and streams again
  (rare; see its docstring);
* when the ``cancel`` event is set, streaming stops and every unfinished candidate gets a
  ``Done`` with ``finish_reason="cancelled"`` and the text streamed so far; no exception;
* a candidate lost to a request-level fault (HTTP error, dropped connection, timeout) gets a
  ``Done`` with ``finish_reason="error"`` and ``error`` set, at the end of the stream, when
  at least one other candidate finished; when none did, the stream raises the typed
  :class:`~rlhf_desktop.providers.errors.ProviderError` instead, with every candidate (partial
  texts included) in ``exc.partial``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from typing import Protocol, runtime_checkable

from rlhf_desktop.domain import Candidate, Message, SamplingParams

CANCELLED = "cancelled"
ERROR = "error"


@dataclass(frozen=True)
class Delta:
    """New text for candidate ``index``."""

    index: int
    text: str


@dataclass(frozen=True)
class Done:
    """Candidate ``index`` is finished (successfully, filtered, cancelled or failed)."""

    index: int
    candidate: Candidate


@dataclass(frozen=True)
class Restart:
    """Candidate ``index`` starts over: drop the text streamed for it so far.

    Rare: only when a server cut a single-choice reply short on its own (llama-cpp-python's
    server does so when requests overlap) and the reply is requested again. Consumers that
    ignore it still get the right text in ``Done``.
    """

    index: int


StreamEvent = Delta | Done | Restart
EventCallback = Callable[[StreamEvent], None]


@runtime_checkable
class Provider(Protocol):
    """What the services layer uses to get N candidates for one turn."""

    name: str
    """``azure``, ``openai``, ``compatible`` or ``local``."""
    model: str
    """The deployment, model name or GGUF file stem."""

    def stream(
        self,
        messages: list[Message],
        params: SamplingParams,
        cancel: asyncio.Event | None = None,
    ) -> AsyncIterator[StreamEvent]:
        """Stream ``params.n`` candidates (see the module docstring for the rules)."""
        ...

    async def generate(
        self,
        messages: list[Message],
        params: SamplingParams,
        cancel: asyncio.Event | None = None,
        on_event: EventCallback | None = None,
    ) -> list[Candidate]:
        """Run :meth:`stream` to the end and return the candidates ordered by index."""
        ...

    def describe(self) -> str:
        """A one-line description for the window (never contains a secret)."""
        ...

    async def aclose(self) -> None:
        """Release connections, threads and the model."""
        ...


class BaseProvider:
    """Shared behaviour: :meth:`generate` on top of :meth:`stream`, and a safe ``repr``."""

    name: str = "provider"
    model: str = ""

    def stream(
        self,
        messages: list[Message],
        params: SamplingParams,
        cancel: asyncio.Event | None = None,
    ) -> AsyncIterator[StreamEvent]:
        """Stream ``params.n`` candidates; implemented by each provider."""
        raise NotImplementedError

    async def generate(
        self,
        messages: list[Message],
        params: SamplingParams,
        cancel: asyncio.Event | None = None,
        on_event: EventCallback | None = None,
    ) -> list[Candidate]:
        """Consume :meth:`stream`; return the candidates sorted by index."""
        done: dict[int, Candidate] = {}
        async for event in self.stream(messages, params, cancel):
            if on_event is not None:
                on_event(event)
            if isinstance(event, Done):
                done[event.index] = event.candidate
        return [done[i] for i in sorted(done)]

    def describe(self) -> str:
        """``name: model``."""
        return f"{self.name}: {self.model}"

    async def aclose(self) -> None:
        """Nothing to release by default."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"


def build_messages(messages: list[Message], params: SamplingParams) -> list[dict[str, str]]:
    """OpenAI-style message dicts with ``params.system_prompt`` prepended when non-empty.

    A conversation that already starts with the same system message is left as it is.
    """
    out = [m.to_dict() for m in messages]
    system = params.system_prompt.strip()
    if system and not (out and out[0]["role"] == "system" and out[0]["content"] == system):
        out.insert(0, {"role": "system", "content": system})
    return out


class CandidateTracker:
    """Accumulates the N candidates of one turn and times them.

    ``latency_s`` and ``ttft_s`` are measured from the tracker's creation (the moment the
    turn was sent) to the last and first token of each candidate.
    """

    def __init__(self, n: int, *, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self.started = clock()
        self.candidates = [Candidate(index=i) for i in range(n)]
        self._parts: list[list[str]] = [[] for _ in range(n)]
        self.finished: set[int] = set()

    @property
    def n(self) -> int:
        """How many candidates were asked for."""
        return len(self.candidates)

    def text(self, index: int) -> str:
        """The text of candidate ``index`` so far."""
        return "".join(self._parts[index])

    def add(self, index: int, text: str) -> Delta | None:
        """Record streamed text; returns the event to yield (None for empty text)."""
        if not text or index in self.finished:
            return None
        if not self._parts[index]:
            self.candidates[index].ttft_s = self._clock() - self.started
        self._parts[index].append(text)
        return Delta(index, text)

    def restart(self, index: int) -> Restart:
        """Forget the text of unfinished candidate ``index``; returns the event to yield."""
        self._parts[index] = []
        self.candidates[index].ttft_s = None
        return Restart(index)

    def has_text(self, index: int) -> bool:
        """True once candidate ``index`` received any text."""
        return bool(self._parts[index])

    def finish(
        self,
        index: int,
        finish_reason: str | None,
        *,
        error: str | None = None,
        prompt_tokens: int | None = None,
        completion_tokens: int | None = None,
        latency_s: float | None = None,
    ) -> Done | None:
        """Mark candidate ``index`` finished; returns its ``Done`` (None when already done).

        ``latency_s`` is the time of its last token when that was recorded earlier (see
        :meth:`elapsed`); by default, now.
        """
        if index in self.finished:
            return None
        self.finished.add(index)
        cand = self.candidates[index]
        cand.text = self.text(index)
        cand.finish_reason = finish_reason
        cand.latency_s = self.elapsed() if latency_s is None else latency_s
        if error is not None:
            cand.error = error
        if prompt_tokens is not None:
            cand.prompt_tokens = prompt_tokens
        if completion_tokens is not None:
            cand.completion_tokens = completion_tokens
        return Done(index, replace(cand))

    def elapsed(self) -> float:
        """Seconds since the turn was sent."""
        return self._clock() - self.started

    def unfinished(self) -> list[int]:
        """Indices not finished yet, in order."""
        return [i for i in range(self.n) if i not in self.finished]

    def snapshot(self) -> list[Candidate]:
        """Copies of every candidate as far as it got (for ``ProviderError.partial``)."""
        out = []
        for i, cand in enumerate(self.candidates):
            copy = replace(cand)
            if i not in self.finished:
                copy.text = self.text(i)
            out.append(copy)
        return out
