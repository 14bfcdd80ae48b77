"""One chat turn: generate N candidates → score them → persist. Qt-free asyncio.

Embedding and scoring run in a worker thread (``run_in_executor``), never on the loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, replace

from rlhf_desktop.domain import Candidate, Message, SamplingParams, Turn
from rlhf_desktop.providers.base import (
    CANCELLED,
    ERROR,
    Delta,
    Done,
    Provider,
    Restart,
    StreamEvent,
)
from rlhf_desktop.providers.errors import ProviderError
from rlhf_desktop.services.rewards import RewardService
from rlhf_desktop.storage.repo import Repository

log = logging.getLogger(__name__)


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


def failed_indices(turn: Turn) -> list[int]:
    """Replies of ``turn`` that failed or came back empty (they cannot be picked)."""
    return [c.index for c in turn.candidates if c.error or not c.text.strip()]


@dataclass
class TurnContext:
    """What the next turn sends: the conversation so far."""

    messages: list[Message]


def reply_for_context(turn: Turn) -> Candidate | None:
    """The reply that continues the conversation: the pick, else the top-ranked reply."""
    usable = [c for c in turn.candidates if c.text.strip()]
    if not usable:
        return None
    if turn.chosen_candidate_id is not None:
        for cand in usable:
            if cand.id == turn.chosen_candidate_id:
                return cand
    return ranked(usable)[0]


def ranked(candidates: list[Candidate]) -> list[Candidate]:
    """Best score first; unscored candidates keep the provider's order."""
    return sorted(candidates, key=lambda c: (-(c.score or 0.0), c.index))


def history(turns: list[Turn]) -> list[Message]:
    """The conversation as sent on the next turn: each turn's messages plus its reply."""
    if not turns:
        return []
    last = turns[-1]
    messages = list(last.messages)
    reply = reply_for_context(last)
    if reply is not None:
        messages.append(Message("assistant", reply.text))
    return messages


class ChatService:
    """Runs turns against a provider and keeps the database and the ranking current."""

    def __init__(
        self,
        repo: Repository,
        rewards: RewardService,
        provider: Provider,
        executor: Executor | None = None,
    ) -> None:
        self.repo = repo
        self.rewards = rewards
        self.provider = provider
        self.executor = executor or ThreadPoolExecutor(1, thread_name_prefix="rank")

    async def send(
        self,
        conversation_id: int,
        messages: list[Message],
        params: SamplingParams,
        cancel: asyncio.Event | TurnControl | None = None,
        on_event: Callable[[StreamEvent], None] | None = None,
    ) -> Turn:
        """Stream N candidates, save the turn, rank it. Raises :class:`TurnFailed`.

        ``cancel`` is an event (stops every reply) or a :class:`TurnControl` (also stops
        one reply). A failed turn is saved with all N replies, the missing ones as failed.
        """
        control = cancel if isinstance(cancel, TurnControl) else None
        event = cancel.cancel if isinstance(cancel, TurnControl) else cancel
        mapping = {i: i for i in range(params.n)}
        try:
            done = await self._stream(messages, params, event, control, mapping, on_event)
        except _Failed as failed:
            turn = self._save(conversation_id, messages, params, failed.candidates)
            raise TurnFailed(failed.error, turn) from failed.error
        candidates = [done[i] for i in sorted(done)]
        turn = self._save(conversation_id, messages, params, candidates)
        await self.rank(turn)
        return turn

    async def regenerate(
        self,
        turn: Turn,
        indices: list[int],
        params: SamplingParams,
        control: TurnControl | None = None,
        on_event: Callable[[StreamEvent], None] | None = None,
    ) -> Regenerated:
        """Ask again for replies ``indices`` of a saved, unpicked turn and replace them.

        One request for ``len(indices)`` replies; events carry the turn's own indices. A new
        reply that failed or came back empty does not replace a good one (``kept``). The
        turn is ranked again. Raises StorageError when the turn has a pick.
        """
        assert turn.id is not None and indices
        mapping = dict(enumerate(indices))
        params = replace(params, n=len(indices))
        event = control.cancel if control is not None else None
        try:
            done = await self._stream(turn.messages, params, event, control, mapping, on_event)
        except _Failed as failed:
            done = {c.index: c for c in failed.candidates}
        old = {c.index: c for c in turn.candidates}
        replaced: list[int] = []
        kept: dict[int, str] = {}
        for index in indices:
            new = done[index]
            before = old.get(index)
            if before is not None and before.text.strip() and not new.text.strip():
                kept[index] = new.error or "the new reply was empty"
                continue
            old[index] = self.repo.put_candidate(turn.id, new)
            replaced.append(index)
        turn.candidates = [old[i] for i in sorted(old)]
        if replaced:
            await self.rank(turn)
        return Regenerated(turn, replaced, kept)

    async def _stream(
        self,
        messages: list[Message],
        params: SamplingParams,
        cancel: asyncio.Event | None,
        control: TurnControl | None,
        mapping: dict[int, int],
        on_event: Callable[[StreamEvent], None] | None,
    ) -> dict[int, Candidate]:
        """Run the provider; events and candidates carry ``mapping[provider index]``.
        Raises :class:`_Failed` with every reply (missing ones as failed) on a fault."""
        done: dict[int, Candidate] = {}
        partial: dict[int, str] = {}
        stopped = control.stopped if control is not None else set()

        def emit(event: StreamEvent) -> None:
            if on_event is not None:
                on_event(event)

        try:
            async for event in self.provider.stream(messages, params, cancel):
                index = mapping.get(event.index, event.index)
                if isinstance(event, Delta):
                    if index in stopped:
                        continue
                    partial[index] = partial.get(index, "") + event.text
                    emit(Delta(index, event.text))
                elif isinstance(event, Done):
                    cand = replace(event.candidate, index=index)
                    if index in stopped and cand.finish_reason != CANCELLED:
                        cand = replace(cand, text=partial.get(index, ""), error=None,
                                       finish_reason=CANCELLED, completion_tokens=None)
                    done[index] = cand
                    if control is not None:
                        control.finished(index)
                    emit(Done(index, cand))
                elif isinstance(event, Restart):  # the provider re-requests this reply
                    partial[index] = ""
                    emit(Restart(index))
        except ProviderError as exc:
            got = {mapping.get(c.index, c.index): replace(c, index=mapping.get(c.index, c.index))
                   for c in exc.partial}
            for index in mapping.values():
                if index in done:
                    got[index] = done[index]
                    continue
                cand = got.get(index) or Candidate(
                    index=index, text=partial.get(index, ""), finish_reason=ERROR)
                if index in stopped:
                    cand = replace(cand, text=partial.get(index, ""), error=None,
                                   finish_reason=CANCELLED)
                else:
                    cand.error = cand.error or str(exc)
                got[index] = cand
            raise _Failed(exc, [got[i] for i in sorted(got)]) from exc
        return done

    def _save(self, conversation_id: int, messages: list[Message], params: SamplingParams,
              candidates: list[Candidate]) -> Turn:
        turn = Turn(
            conversation_id=conversation_id,
            messages=list(messages),
            provider=self.provider.name,
            model=self.provider.model,
            params=params,
            candidates=candidates,
        )
        return self.repo.save_turn(turn)

    async def rank(self, turn: Turn) -> Turn:
        """Score a turn's replies with the current model (in the worker) and store the scores."""
        texts = [c.text for c in turn.candidates]
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(self.executor, self.rewards.rank, turn.prompt, texts)
        for cand, score in zip(turn.candidates, result.scores, strict=True):
            cand.score = score if result.version is not None else None
            cand.model_version = result.version
        self.repo.set_scores([(c.id, c.score, c.model_version) for c in turn.candidates
                              if c.id is not None])
        return turn
