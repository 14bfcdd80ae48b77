"""The arena: one turn whose candidates come from several candidate sources.

:class:`ArenaProvider` follows the :class:`~rlhf_desktop.providers.base.Provider` rules. Each
:class:`~rlhf_desktop.domain.CandidateSource` asks its own provider for ``count`` replies at
its temperature (None: the chat's); the sources' indices are laid end to end (the first
source's replies are 0..count-1, the next source's follow), and every finished candidate
records its source in ``Candidate.origin``.

* Sources run in *lanes*: every built-in (llama.cpp) source shares one lane, since they share
  the machine's cores; an OpenAI-compatible server is one lane (such servers often answer one
  request at a time and cut a running one short); every other remote provider is a lane of
  its own. Lanes run concurrently, the sources of a lane one after another.
* Sources that differ only in temperature (or count) share one provider instance.
* A source that cannot be built or fails ends its candidates as failed with a reason that
  names it (``source 'Azure 4o-mini': AZURE_OPENAI_API_KEY is not set``); those ``Done``
  events are held until some other reply finished, as the base rules say. Only when every
  source fails does the stream raise :class:`ProviderError`, with every candidate in
  ``partial``.
* ``cancel`` reaches every source; a source not started yet ends its replies as cancelled.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from typing import Any

from rlhf_desktop import config
from rlhf_desktop.config import ConfigError, Settings
from rlhf_desktop.domain import Candidate, CandidateSource, Message, SamplingParams
from rlhf_desktop.providers.base import (
    CANCELLED,
    ERROR,
    BaseProvider,
    Delta,
    Done,
    Provider,
    Restart,
    StreamEvent,
)
from rlhf_desktop.providers.errors import ProviderConfigError, ProviderError
from rlhf_desktop.providers.select import ProviderChoice, build, source_choice

log = logging.getLogger(__name__)

__all__ = ["ArenaProvider", "ArenaSlot", "build_arena", "choose_arena"]

NAME = "arena"


def _label(source: CandidateSource) -> str:
    return f"source '{source.name}'"


@dataclass(frozen=True)
class ArenaSlot:
    """One source of the arena: where its replies come from and which indices they take."""

    source: CandidateSource
    offset: int
    """The turn index of the source's first reply."""
    provider: Provider | None
    """None: the source could not be built (``error`` says why)."""
    kind: str
    """The resolved provider kind (``auto`` resolved), for ``Candidate.origin``."""
    lane: str
    error: str = ""

    @property
    def indices(self) -> range:
        """The turn indices of this source's replies."""
        return range(self.offset, self.offset + self.source.count)

    def origin(self, temperature: float) -> dict[str, Any]:
        """``Candidate.origin`` for a reply of this source (``auto`` and an empty model
        replaced by what was actually used)."""
        origin = self.source.origin(temperature)
        if origin["provider"] == "auto":
            origin["provider"] = self.kind
        if not origin["model"] and self.provider is not None:
            origin["model"] = self.provider.model
        return origin


@dataclass(frozen=True)
class _SourceFailed:
    dones: list[Done]
    error: ProviderError


_LANE_END = object()


class ArenaProvider(BaseProvider):
    """Candidates from several sources in one turn (see the module docstring)."""

    name = NAME

    def __init__(self, slots: list[ArenaSlot], owned: list[Provider] | None = None) -> None:
        """``owned``: the sub-providers :meth:`aclose` closes (a :meth:`subset` owns none)."""
        self.slots = list(slots)
        self.model = " vs ".join(s.source.name for s in self.slots)
        self._owned = list(owned or [])

    @property
    def n(self) -> int:
        """Replies per turn: the sum of the sources' counts."""
        return sum(s.source.count for s in self.slots)

    def describe(self) -> str:
        """``Arena: a (2) vs b (2)``, then any source that cannot run and why."""
        text = "Arena: " + " vs ".join(f"{s.source.name} ({s.source.count})"
                                       for s in self.slots)
        broken = [f"{_label(s.source)} cannot run: {s.error}" for s in self.slots
                  if s.provider is None]
        return text + (" — " + "; ".join(broken) if broken else "")

    def source_of(self, name: str) -> ArenaSlot | None:
        """The slot of the source called ``name`` (None: not in this arena)."""
        return next((s for s in self.slots if s.source.name == name), None)

    def subset(self, counts: dict[str, int]) -> ArenaProvider:
        """An arena of only the named sources, ``counts[name]`` replies each, in this arena's
        order, sharing its providers (closing it closes nothing). Used to ask the same
        sources again. Raises KeyError for a name not in this arena."""
        missing = [name for name in counts if self.source_of(name) is None]
        if missing:
            raise KeyError(missing[0])
        slots: list[ArenaSlot] = []
        offset = 0
        for slot in self.slots:
            count = counts.get(slot.source.name, 0)
            if count > 0:
                slots.append(replace(slot, source=replace(slot.source, count=count),
                                     offset=offset))
                offset += count
        return ArenaProvider(slots)

    # ------------------------------------------------------------------ streaming

    async def stream(
        self,
        messages: list[Message],
        params: SamplingParams,
        cancel: asyncio.Event | None = None,
    ) -> AsyncIterator[StreamEvent]:
        """Stream every source's replies (``params.n`` is ignored: the counts decide)."""
        queue: asyncio.Queue[object] = asyncio.Queue()
        lanes: dict[str, list[ArenaSlot]] = {}
        for slot in self.slots:
            lanes.setdefault(slot.lane, []).append(slot)
        tasks = [asyncio.create_task(self._run_lane(lane, messages, params, cancel,
                                                    queue.put_nowait))
                 for lane in lanes.values()]
        remaining = len(tasks)
        held: list[Done] = []
        failures: list[ProviderError] = []
        finished_ok = False
        try:
            while remaining:
                item = await queue.get()
                if item is _LANE_END:
                    remaining -= 1
                elif isinstance(item, _SourceFailed):
                    failures.append(item.error)
                    if finished_ok:
                        for done in item.dones:
                            yield done
                    else:
                        held.extend(item.dones)
                elif isinstance(item, Done):
                    yield item
                    if not finished_ok and item.candidate.finish_reason != ERROR:
                        finished_ok = True
                        for done in held:
                            yield done
                        held = []
                elif isinstance(item, Delta | Restart):
                    yield item
            if held and len(failures) == len(self.slots):
                raise self._all_failed(failures, [d.candidate for d in held])
            for done in held:
                yield done
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _all_failed(self, failures: list[ProviderError],
                    candidates: list[Candidate]) -> ProviderError:
        message = "; ".join(e.message for e in failures)
        if len(failures) > 1:
            message = f"Every candidate source failed: {message}"
        error = ProviderError(message, provider=self.name,
                              partial=sorted(candidates, key=lambda c: c.index))
        error.retryable = any(e.retryable for e in failures)
        return error

    async def _run_lane(self, lane: list[ArenaSlot], messages: list[Message],
                        params: SamplingParams, cancel: asyncio.Event | None,
                        put: Callable[[object], None]) -> None:
        try:
            for slot in lane:
                await self._run_source(slot, messages, params, cancel, put)
        finally:
            put(_LANE_END)

    async def _run_source(self, slot: ArenaSlot, messages: list[Message],
                          params: SamplingParams, cancel: asyncio.Event | None,
                          put: Callable[[object], None]) -> None:
        source = slot.source
        temperature = params.temperature if source.temperature is None else source.temperature
        origin = slot.origin(temperature)

        def failed(message: str, partial: list[Candidate], exc: ProviderError | None) -> None:
            reason = f"{_label(source)}: {message}"
            got = {c.index: c for c in partial}
            dones = []
            for k, index in enumerate(slot.indices):
                base = got.get(k) or Candidate(index=k)
                cand = replace(base, index=index, finish_reason=ERROR, error=reason,
                               origin=dict(origin))
                dones.append(Done(index, cand))
            error = ProviderError(reason, provider=self.name)
            if exc is not None:
                error.retryable = exc.retryable
            put(_SourceFailed(dones, error))

        if slot.provider is None:
            failed(slot.error, [], None)
            return
        if cancel is not None and cancel.is_set():
            for index in slot.indices:
                put(Done(index, Candidate(index=index, finish_reason=CANCELLED,
                                          origin=dict(origin))))
            return
        sub = replace(params, n=source.count, temperature=temperature)
        try:
            async for event in slot.provider.stream(messages, sub, cancel):
                index = slot.offset + event.index
                if isinstance(event, Delta):
                    put(Delta(index, event.text))
                elif isinstance(event, Restart):
                    put(Restart(index))
                elif isinstance(event, Done):
                    cand = replace(event.candidate, index=index, origin=dict(origin))
                    if cand.error:
                        cand.error = f"{_label(source)}: {cand.error}"
                    put(Done(index, cand))
        except ProviderError as exc:
            failed(exc.message, exc.partial, exc)
        except Exception as exc:  # one source's bug must not sink the others
            log.exception("arena source %r failed", source.name)
            failed(f"failed ({type(exc).__name__}); see the log", [], None)

    async def aclose(self) -> None:
        """Close every sub-provider this arena built (each once, all of them)."""
        for provider in self._owned:
            try:
                await provider.aclose()
            except Exception:  # closing one must not keep the others open
                log.warning("closing arena provider %s failed", provider.describe(),
                            exc_info=True)


def _lane(choice: ProviderChoice) -> str:
    if choice.kind == "local":
        return "local"
    if choice.kind == "compatible":
        return f"compatible {choice.endpoint}"
    return f"{choice.kind} {choice.endpoint} {choice.model}"


def build_arena(settings: Settings,
                builder: Callable[[ProviderChoice, Settings], Provider] = build
                ) -> ArenaProvider:
    """The arena of ``settings.candidate_sources`` (whether or not ``settings.arena`` is on).

    Raises :class:`ConfigError` for an invalid list (fewer than two sources, more than 8
    replies, ...) and :class:`ProviderConfigError` when no source at all can be built; a
    source that alone cannot be built becomes a slot whose replies fail, naming it.
    """
    replace(settings, arena=True).validate()
    built: dict[ProviderChoice, Provider] = {}
    slots: list[ArenaSlot] = []
    offset = 0
    for source in settings.arena_sources():
        try:
            choice = source_choice(source, settings)
            key = replace(choice, reason="")  # the same provider, however it was reached
            if key not in built:
                built[key] = builder(choice, settings)
            slots.append(ArenaSlot(source, offset, built[key], choice.kind, _lane(choice)))
        except (ProviderError, ConfigError) as exc:
            slots.append(ArenaSlot(source, offset, None, source.provider,
                                   f"unbuilt {source.name}", config.redact(str(exc))))
        offset += source.count
    if not built:
        raise ProviderConfigError("No candidate source of the arena can run: " + "; ".join(
            f"{_label(s.source)}: {s.error}" for s in slots))
    return ArenaProvider(slots, owned=list(built.values()))


def choose_arena(settings: Settings) -> tuple[ArenaProvider, str]:
    """The arena provider and its one-line description (logged; shown by the window)."""
    arena = build_arena(settings)
    reason = arena.describe()
    log.info("provider: %s", reason)
    return arena, reason
