"""One chat turn: generate N candidates → score them → persist. Qt-free asyncio.

:meth:`ChatService.send` takes the conversation (None: a new one) and the user's text,
builds the history from the database, streams the replies to plain callbacks
(``on_delta(index, text)``, ``on_done(candidate)``, ``on_restart(index)``: no provider types
reach the caller), saves the turn, ranks it, and ranks it again when a newer reward model
landed meanwhile. Embedding and scoring run in a worker thread, never on the loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import replace

from rlhf_desktop.core import pick_rules
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
from rlhf_desktop.providers.errors import ContextLengthError, ProviderError
from rlhf_desktop.services.arena.turns import ARENA, RegenerateRefused, regenerate_plan
from rlhf_desktop.services.chat.branches import ACTIVE, Parent
from rlhf_desktop.services.chat.conversations import ConversationService
from rlhf_desktop.services.chat.events import (
    Listener,
    OnDelta,
    OnDone,
    OnRestart,
    Regenerated,
    TurnControl,
    TurnFailed,
    _Failed,
)
from rlhf_desktop.services.ranking.rewards import RewardService, TurnExplanation
from rlhf_desktop.services.turns.order import blind_turn
from rlhf_desktop.storage.repo import Repository, StorageError

log = logging.getLogger(__name__)

__all__ = ["ChatService", "Listener", "RegenerateRefused", "Regenerated", "StorageError",
           "TurnControl", "TurnFailed", "history"]

ProviderFor = Callable[[str], Awaitable[Provider]]
"""The chat's provider with another model (built off the event loop)."""


def reply_for_context(turn: Turn) -> Candidate | None:
    """The reply that continues the conversation (the rule: :func:`pick_rules.context_reply
    <rlhf_desktop.core.pick_rules.context_reply>`; none after "all bad")."""
    return pick_rules.context_reply(turn)


def every_reply_failed(turn: Turn) -> bool:
    """Whether the turn has replies and every one failed (an error and no text)."""
    return bool(turn.candidates) and all(
        c.error is not None and not c.text.strip() for c in turn.candidates)


def history(turns: list[Turn]) -> list[Message]:
    """The conversation as sent on the next turn: each turn's messages plus its reply.

    Turns at the end whose every reply failed are left out: the model never answered their
    message, and one too long for the model's context would fail every later turn too.
    """
    while turns and every_reply_failed(turns[-1]):
        turns = turns[:-1]
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
        executor: Executor,
        *,
        conversations: ConversationService,
        params: Callable[[], SamplingParams],
        provider_for: ProviderFor,
    ) -> None:
        """Built by :class:`~rlhf_desktop.services.session.AppSession` (the window's and the
        command line's): ``executor`` ranks (the runner's ``rank`` lane), ``conversations``
        holds each chat's settings and history, ``params`` says what a turn asks for (the
        session's settings), ``provider_for`` gives the provider with a chat's own model."""
        self.repo = repo
        self.rewards = rewards
        self.provider = provider
        self.executor = executor
        self.conversations = conversations
        self.params = params
        """What a turn asks for (the session passes its settings)."""
        self.provider_for = provider_for
        """The provider with another model (a chat's own)."""
        self.context_limits: dict[tuple[str, str], int] = {}
        """(provider, model) → its context in tokens, as a context-length error said."""

    async def _for_chat(self, conversation_id: int, params: SamplingParams,
                        model: str | None = None) -> tuple[Provider, SamplingParams]:
        """The provider and parameters of a turn in this chat: its own system prompt and
        model (``model`` instead when given: a regenerated reply asks the turn's model)
        when it has them; an arena turn keeps the arena's sources."""
        chat = self.conversations.chat_settings(conversation_id)
        if chat.system_prompt is not None:
            params = replace(params, system_prompt=chat.system_prompt)
        provider = self.provider
        model = model if model is not None else chat.model
        if model and model != provider.model and provider.name != ARENA:
            provider = await self.provider_for(model)
        return provider, params

    def next_messages(self, conversation_id: int | None, text: str) -> list[Message]:
        """What sending ``text`` in the conversation would send: its history plus ``text``."""
        return self.conversations.next_messages(conversation_id, text)

    async def send(
        self,
        conversation_id: int | None,
        text: str,
        on_delta: OnDelta | None = None,
        on_done: OnDone | None = None,
        cancel: asyncio.Event | TurnControl | None = None,
        *,
        on_restart: OnRestart | None = None,
        on_conversation: Callable[[int], None] | None = None,
        params: SamplingParams | None = None,
    ) -> Turn:
        """Send the user's ``text`` as the next turn of the conversation (None: a new one,
        titled after the text, whose id goes to ``on_conversation`` before streaming);
        ``params``: what to ask for instead of the session's settings (the command line's
        options).

        Raises :class:`TurnFailed` (the turn is saved with every partial reply)."""
        messages = self.next_messages(conversation_id, text)
        if conversation_id is None:
            conversation_id = self.new_conversation(text)
            if on_conversation is not None:
                on_conversation(conversation_id)
        return await self.send_messages(conversation_id, messages, cancel,
                                        Listener(on_delta, on_done, on_restart), params)

    def new_conversation(self, text: str) -> int:
        """A new chat titled after its first message (the one home of the title rule: its
        first 60 characters, whitespace collapsed, or "New chat")."""
        title = " ".join(text.split())[:60].strip() or "New chat"
        return self.conversations.create(title).id

    async def send_messages(
        self,
        conversation_id: int,
        messages: list[Message],
        cancel: asyncio.Event | TurnControl | None = None,
        listener: Listener | None = None,
        params: SamplingParams | None = None,
        *,
        parent: Parent = ACTIVE,
    ) -> Turn:
        """Stream N candidates for exactly ``messages`` (a regenerated turn, an edited
        message), save the turn, rank it. Raises :class:`TurnFailed`.

        The turn continues ``parent`` (default: the end of the branch shown; an edit names
        the turn before the edited one, see :mod:`.branches`).

        ``cancel`` is an event (stops every reply) or a :class:`TurnControl` (also stops
        one reply). A failed turn is saved with all N replies, the missing ones as failed.
        """
        control = cancel if isinstance(cancel, TurnControl) else None
        event = cancel.cancel if isinstance(cancel, TurnControl) else cancel
        params = params or self.params()
        try:
            provider, params = await self._for_chat(conversation_id, params)
        except ProviderError as exc:  # the chat's own model cannot be used: say so, keep it
            chat = self.conversations.chat_settings(conversation_id)
            turn = self._save(conversation_id, messages, params, [], model=chat.model,
                              parent=parent)
            turn.candidates = self._keep_rest(turn, {}, [
                Candidate(index=i, finish_reason=ERROR, error=str(exc))
                for i in range(params.n)])
            raise TurnFailed(exc, turn) from exc
        mapping = {i: i for i in range(params.n)}
        # The user's message is stored before anything is asked, and each reply as soon as
        # it is over: closing the window (or a crash) mid-turn loses neither.
        turn = self._save(conversation_id, messages, params, [], provider, parent=parent)
        saved: dict[int, Candidate] = {}

        def keep(cand: Candidate) -> None:
            assert turn.id is not None
            saved[cand.index] = self.repo.conversations.put_candidate(turn.id, cand)

        try:
            done = await self._stream(messages, params, event, control, mapping, listener,
                                      provider, on_finished=keep)
        except _Failed as failed:
            turn.candidates = self._keep_rest(turn, saved, failed.candidates)
            if isinstance(failed.error, ContextLengthError) and failed.error.limit:
                self.context_limits[(provider.name, provider.model)] = failed.error.limit
            raise TurnFailed(failed.error, turn) from failed.error
        turn.candidates = self._keep_rest(turn, saved, [done[i] for i in sorted(done)])
        await self.rank(turn)
        if self.rewards.scoring_version is not None and self._stale(turn):
            await self.rank(turn)  # a newer model landed while this turn was ranked
        return turn

    def _stale(self, turn: Turn) -> bool:
        return any(c.model_version != self.rewards.scoring_version for c in turn.candidates)

    async def regenerate(
        self,
        turn: Turn,
        indices: list[int],
        control: TurnControl | None = None,
        listener: Listener | None = None,
        params: SamplingParams | None = None,
    ) -> Regenerated:
        """Ask again for replies ``indices`` of a saved, unpicked turn and replace them.

        One request for ``len(indices)`` replies; events carry the turn's own indices. A new
        reply that failed or came back empty does not replace a good one (``kept``). The
        turn is ranked again. Raises StorageError when the turn has a pick. A reply of an
        arena turn is asked again from its own source (:class:`RegenerateRefused` when that
        source is no longer in the arena or the arena is off).
        """
        assert turn.id is not None and indices
        try:
            chat_provider, params = await self._for_chat(turn.conversation_id,
                                                         params or self.params(),
                                                         turn.model if turn.provider
                                                         == self.provider.name else None)
        except ProviderError as exc:  # the turn's model cannot be used now: keep the replies
            return Regenerated(turn, [], {index: str(exc) for index in indices})
        provider, mapping = regenerate_plan(chat_provider, turn, indices)
        params = replace(params, n=len(indices))
        event = control.cancel if control is not None else None
        try:
            done = await self._stream(turn.messages, params, event, control, mapping, listener,
                                      provider)
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
            old[index] = self.repo.conversations.put_candidate(turn.id, new)
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
        listener: Listener | None,
        provider: Provider,
        *,
        on_finished: Callable[[Candidate], None] | None = None,
    ) -> dict[int, Candidate]:
        """Run ``provider`` (the chat's, or a view of the arena); events and candidates carry
        ``mapping[provider index]``. Raises :class:`_Failed` with every reply (missing ones
        as failed) on a fault.

        ``on_finished`` gets each reply as soon as it is over (before the listener hears
        of it); when the task is cancelled (the window closes), it also gets every reply
        still streaming, as ``cancelled`` with the text so far, before the cancel goes on.
        """
        done: dict[int, Candidate] = {}
        partial: dict[int, str] = {}
        stopped = control.stopped if control is not None else set()

        def emit(event: StreamEvent) -> None:
            if isinstance(event, Done) and on_finished is not None:
                on_finished(event.candidate)
            if listener is not None:
                listener(event)

        try:
            async for event in provider.stream(messages, params, cancel):
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
        except asyncio.CancelledError:
            if on_finished is not None:
                for index in sorted(set(mapping.values()) - set(done)):
                    on_finished(Candidate(index=index, text=partial.get(index, ""),
                                          finish_reason=CANCELLED))
            raise
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

    def _keep_rest(self, turn: Turn, saved: dict[int, Candidate],
                   candidates: list[Candidate]) -> list[Candidate]:
        """Store the replies not stored yet; all of the turn's replies, by index."""
        assert turn.id is not None
        for cand in candidates:
            if cand.index not in saved:
                saved[cand.index] = self.repo.conversations.put_candidate(turn.id, cand)
        return [saved[i] for i in sorted(saved)]

    def _save(self, conversation_id: int, messages: list[Message], params: SamplingParams,
              candidates: list[Candidate], provider: Provider | None = None, *,
              model: str | None = None, parent: Parent = ACTIVE) -> Turn:
        provider = provider or self.provider
        turn = Turn(
            conversation_id=conversation_id,
            messages=list(messages),
            provider=provider.name,
            model=model or provider.model,
            params=params,
            candidates=candidates,
            # blind mode is applied when the turn settles (services/turns); an arena turn
            blind=blind_turn(blind_mode=False, arena=provider.name == ARENA),
        )
        return self.repo.conversations.save_turn(turn, parent)

    async def rank(self, turn: Turn) -> Turn:
        """Score a turn's replies with the current model (in the worker) and store the scores."""
        loop = asyncio.get_running_loop()
        scores, version = await loop.run_in_executor(  # whole replies only
            self.executor, self.rewards.rank_replies, turn.prompt, list(turn.candidates))
        for cand, score in zip(turn.candidates, scores, strict=True):
            cand.score = score if version is not None else None
            cand.model_version = version
        self.repo.conversations.set_scores([(c.id, c.score, c.model_version)
                                            for c in turn.candidates if c.id is not None])
        return turn

    async def explain(self, turn: Turn) -> TurnExplanation:
        """Why the turn's replies rank as they do with the model in use: each reply's score
        split into style and content, and the turn's confidence (in the rank worker)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, self.rewards.explain_replies,
                                          turn.prompt, list(turn.candidates))
