"""One chat turn: generate N candidates → score them → persist. Qt-free asyncio.

Embedding and scoring run in a worker thread (``run_in_executor``), never on the loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass

from rlhf_desktop.domain import Candidate, Message, SamplingParams, Turn
from rlhf_desktop.providers.base import Delta, Done, Provider, Restart, StreamEvent
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
        cancel: asyncio.Event | None = None,
        on_event: Callable[[StreamEvent], None] | None = None,
    ) -> Turn:
        """Stream N candidates, save the turn, rank it. Raises :class:`TurnFailed`."""
        done: dict[int, Candidate] = {}
        partial: dict[int, str] = {}
        try:
            async for event in self.provider.stream(messages, params, cancel):
                if isinstance(event, Delta):
                    partial[event.index] = partial.get(event.index, "") + event.text
                elif isinstance(event, Done):
                    done[event.index] = event.candidate
                elif isinstance(event, Restart):  # the provider re-requests this reply
                    partial[event.index] = ""
                if on_event is not None:
                    on_event(event)
        except ProviderError as exc:
            cands = exc.partial or [
                Candidate(index=i, text=t, finish_reason="error") for i, t in partial.items()
            ]
            for cand in cands:
                cand.error = cand.error or str(exc)
            turn = self._save(conversation_id, messages, params, cands)
            raise TurnFailed(exc, turn) from exc
        candidates = [done[i] for i in sorted(done)]
        turn = self._save(conversation_id, messages, params, candidates)
        await self.rank(turn)
        return turn

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
