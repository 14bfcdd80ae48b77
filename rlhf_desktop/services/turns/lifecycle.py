"""The lifecycle of the turns a page shows (``session.turns``): see the package docstring.

A turn is known by a key from the moment it is sent (:meth:`TurnLifecycle.begin`) or shown
(:meth:`TurnLifecycle.show`). :meth:`TurnLifecycle.run` then sends it and streams it to its
end, for the window as for any other caller: it waits for the provider, reports each
finished or restarted reply (:meth:`~TurnLifecycle.reply_done`,
:meth:`~TurnLifecycle.reply_restarted`), settles the saved turn
(:meth:`~TurnLifecycle.settle`: complete, stopped, or saved with the provider's fault), or
says why nothing was settled (:meth:`~TurnLifecycle.unsent`). The label intents
(:meth:`~TurnLifecycle.pick`, ``tie``, ``all_bad``, ``rank``, ``edit``, ``skip``,
:meth:`~TurnLifecycle.undo`) go through the session's labels. Every change publishes the
turn's :class:`~.view.TurnView` through ``hooks.turn_did_change``; when the label that undo
would remove moves to another turn, both turns are published.

Streamed text itself is not part of a snapshot (a delta is a few characters, many times a
second): :meth:`~TurnLifecycle.run`'s ``on_delta`` goes to the page directly; a snapshot
follows each finished reply, and the finished reply itself is read with
:meth:`~TurnLifecycle.reply`.
"""

from __future__ import annotations

import itertools
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from rlhf_desktop.core.pick_rules import is_whole_reply
from rlhf_desktop.domain import Candidate, Message, Turn, last_user_text
from rlhf_desktop.services.arena.turns import is_arena_turn
from rlhf_desktop.services.chat.branches import ACTIVE, Parent
from rlhf_desktop.services.chat.events import Listener, OnDelta, TurnControl, TurnFailed
from rlhf_desktop.services.hooks import SessionHooks
from rlhf_desktop.services.labels.labeling import LabelingService, RecordedLabel, StorageError
from rlhf_desktop.services.turns.labels import TurnLabels
from rlhf_desktop.services.turns.order import blind_turn, display_order, settle_blind
from rlhf_desktop.services.turns.view import (
    COMPLETE,
    ERROR,
    FAILED,
    STOPPED,
    UNSENT,
    ReplyView,
    TurnView,
    UndoView,
    reply_state,
)

if TYPE_CHECKING:  # services.chat.service imports this package (its blindness rule)
    from rlhf_desktop.services.chat.service import ChatService

__all__ = ["NO_PROVIDER", "ChatSource", "Refused", "TurnLifecycle"]

log = logging.getLogger(__name__)

PickFn = Callable[[Turn, int], RecordedLabel]
UndoFn = Callable[[], "RecordedLabel | None"]


NO_PROVIDER = "No provider is configured."
"""Why a turn was not sent when the session gives no other reason."""


class Refused(Exception):
    """An intent the turn's state refuses now; the message says why (safe to show)."""


class ChatSource(Protocol):
    """Where :meth:`TurnLifecycle.run` gets the chat from (the session)."""

    @property
    def provider_error(self) -> str | None:
        """Why no provider could be chosen (safe to show)."""

    @property
    def reward_is_ready(self) -> bool:
        """Whether the reward model is loaded (a finished turn is scored now)."""

    async def wait_provider(self) -> ChatService | None:
        """The chat service once a provider is chosen (None when it could not be)."""


@dataclass
class _Live:
    """The lifecycle's own record of one turn (never handed out)."""

    messages: list[Message]
    blind_mode: bool
    shuffled: bool
    streamed: list[int]
    done: dict[int, Candidate] = field(default_factory=dict)
    turn: Turn | None = None
    streaming: bool = True
    regenerating: set[int] = field(default_factory=set)
    restarts: dict[int, int] = field(default_factory=dict)
    conversation_id: int | None = None
    outcome: str | None = None
    error: str | None = None


class TurnLifecycle:
    """The turns a page shows, from send through their labels; see the module docstring."""

    def __init__(self, labeling: LabelingService, labels: TurnLabels, hooks: SessionHooks,
                 pick: PickFn, undo: UndoFn,
                 shuffle: Callable[[list[int]], None] = random.shuffle,
                 chats: ChatSource | None = None) -> None:
        """``chats``: where :meth:`run` gets the chat service (None: every turn run is
        unsent, for a page that only shows turns)."""
        self._chats = chats
        self._labeling = labeling
        self._labels = labels
        self._hooks = hooks
        self._pick = pick
        self._undo = undo
        self._shuffle = shuffle
        self._live: dict[int, _Live] = {}
        self._by_turn_id: dict[int, int] = {}
        self._keys = itertools.count(1)

    # ------------------------------------------------------------------ reads

    def view(self, key: int) -> TurnView:
        """The turn's snapshot now."""
        live = self._live[key]
        turn = live.turn
        last = self._labeling.last
        undo = None if last is None else UndoView(last.turn_id, last.kind, last.pairs)
        sent = (live.conversation_id, live.outcome, live.error,
                self._chats is not None and self._chats.reward_is_ready)
        if turn is None:
            order = tuple(live.streamed)
            replies = tuple(self._streaming_reply(live, index, pos)
                            for pos, index in enumerate(order))
            return TurnView(key, None, last_user_text(live.messages), tuple(live.messages),
                            live.streaming, tuple(sorted(live.regenerating)),
                            live.shuffled, live.shuffled,
                            order, replies, None, None, (), False, False, undo, *sent)
        order = tuple(display_order(turn))
        by_index = {c.index: c for c in turn.candidates}
        replies = tuple(self._reply(live, turn, by_index[index], pos)
                        for pos, index in enumerate(order))
        undoable = last is not None and last.turn_id == turn.id and turn.labeled
        return TurnView(key, turn.id, turn.prompt, tuple(turn.messages), live.streaming,
                        tuple(sorted(live.regenerating)), turn.blind, turn.hidden, order,
                        replies, turn.label_kind, turn.chosen_candidate_id,
                        tuple(turn.ranked_candidate_ids), turn.skipped, undoable, undo,
                        *sent)

    def turn(self, key: int) -> Turn | None:
        """The saved turn (None while streaming). Pages read it; they never write it."""
        live = self._live.get(key)
        return None if live is None else live.turn

    def reply(self, key: int, index: int) -> Candidate | None:
        """Reply ``index`` once it is over (None while it streams): its text, which no
        snapshot carries. Pages read it; they never write it."""
        live = self._live.get(key)
        if live is None:
            return None
        if live.turn is None:
            return live.done.get(index)
        return next((c for c in live.turn.candidates if c.index == index), None)

    def last_label(self, key: int) -> RecordedLabel | None:
        """The turn's label of this session (what a reason attaches to)."""
        turn = self.turn(key)
        return None if turn is None or turn.id is None else self._labeling.label_of(turn.id)

    @property
    def can_undo(self) -> bool:
        """Whether undo would remove a label."""
        return self._labeling.last is not None

    @staticmethod
    def _streaming_reply(live: _Live, index: int, position: int) -> ReplyView:
        cand = live.done.get(index)
        return ReplyView(index, cand.id if cand else None, position, reply_state(cand),
                         cand is not None and is_whole_reply(cand), False, False, None, None,
                         live.restarts.get(index, 0))

    @staticmethod
    def _reply(live: _Live, turn: Turn, cand: Candidate, position: int) -> ReplyView:
        again = cand.index in live.regenerating
        state = "streaming" if again else reply_state(cand)
        rewrite = cand.source == "edit"
        pickable = (cand.id is not None and bool(cand.text.strip()) and not rewrite
                    and not live.regenerating and not live.streaming)
        score = None if turn.hidden or cand.model_version is None else cand.score
        source = None
        if is_arena_turn(turn) and turn.labeled and cand.origin:
            source = str(cand.origin.get("name") or "") or None
        return ReplyView(cand.index, cand.id, position, state,
                         not again and is_whole_reply(cand), pickable, rewrite, score, source,
                         live.restarts.get(cand.index, 0))

    def _publish(self, *keys: int | None) -> TurnView | None:
        """Fire ``turn_did_change`` once per known key (in order, no repeats); the first
        key's view."""
        first: TurnView | None = None
        for key in dict.fromkeys(k for k in keys if k is not None and k in self._live):
            view = self.view(key)
            first = first or view
            self._hooks.turn_did_change(view)
        return first

    @property
    def undo_hidden(self) -> bool:
        """The label undo would remove is on a turn this page does not show (another chat,
        or another branch of this one): undoing it would change what the user cannot see, so
        :meth:`undo` refuses and the page says where the label is."""
        return self._labeling.last is not None and self._undo_key() is None

    def _undo_key(self) -> int | None:
        last = self._labeling.last
        return None if last is None else self._by_turn_id.get(last.turn_id)

    # ------------------------------------------------------------------ send and stream

    def begin(self, messages: Sequence[Message], n: int, *, blind_mode: bool,
              arena: bool) -> TurnView:
        """A turn is being sent: ``n`` replies stream, in a random order when the turn will
        be blind (:func:`~.order.blind_turn`)."""
        order = list(range(n))
        shuffled = blind_turn(blind_mode, arena)
        if shuffled:
            self._shuffle(order)
        key = next(self._keys)
        self._live[key] = _Live(list(messages), blind_mode, shuffled, order)
        view = self._publish(key)
        assert view is not None
        return view

    def reply_done(self, key: int, candidate: Candidate) -> None:
        """Reply ``candidate.index`` finished streaming."""
        live = self._live.get(key)
        if live is None:
            return
        live.done[candidate.index] = candidate
        self._publish(key)

    def reply_restarted(self, key: int, index: int) -> None:
        """Reply ``index`` streams again from nothing (its ``restarts`` grows)."""
        live = self._live.get(key)
        if live is not None:
            live.done.pop(index, None)
            live.restarts[index] = live.restarts.get(index, 0) + 1
            self._publish(key)

    def settle(self, key: int, turn: Turn, outcome: str = COMPLETE,
               error: str | None = None) -> TurnView:
        """The turn is saved (``outcome``: complete, stopped, or failed with ``error``): its
        blindness, its display positions (recorded, starting the time to pick)."""
        live = self._live[key]
        settle_blind(turn, live.blind_mode, live.streamed if live.shuffled else [])
        live.turn, live.streaming, live.messages = turn, False, list(turn.messages)
        live.outcome, live.error = outcome, error
        live.conversation_id = turn.conversation_id
        live.done.clear()
        if turn.id is not None:
            self._by_turn_id[turn.id] = key
        return self._displayed(key)

    def unsent(self, key: int, error: str = NO_PROVIDER, outcome: str = UNSENT) -> TurnView:
        """Nothing was settled: ``unsent`` (no provider), or ``error`` (storage or the
        system failed before the turn was saved); ``error`` says why, safe to show."""
        live = self._live[key]
        live.streaming, live.outcome, live.error = False, outcome, error
        view = self._publish(key)
        assert view is not None
        return view

    async def run(self, key: int, control: TurnControl, *, conversation_id: int | None,
                  text: str | None = None, parent: Parent = ACTIVE,
                  on_delta: OnDelta | None = None) -> TurnView:
        """Send the turn :meth:`begin` started and stream it to its end; its last snapshot.

        Waits for the provider, then sends the user's new ``text`` in ``conversation_id``
        (None: a new chat, created for it and published before anything streams), or
        exactly the messages given to :meth:`begin` when ``text`` is None (Regenerate,
        Retry, an edited message continuing ``parent``). ``control`` stops every reply or
        one; streamed text goes only to ``on_delta``. Each finished or restarted reply is
        published; the turn then settles (``complete``, ``stopped``, or ``failed``: saved
        with the partial replies and the provider's fault), or ends ``unsent`` (no
        provider) or ``error`` (storage or the system failed), with the reason in
        :attr:`TurnView.error`."""
        live = self._live[key]
        live.conversation_id = conversation_id
        chat = None if self._chats is None else await self._chats.wait_provider()
        if chat is None:  # nothing was sent: Retry sends the same messages
            why = self._chats.provider_error if self._chats is not None else None
            return self.unsent(key, why or NO_PROVIDER)

        def on_done(candidate: Candidate) -> None:
            self.reply_done(key, candidate)

        def on_restart(index: int) -> None:
            self.reply_restarted(key, index)

        def on_conversation(conversation_id: int) -> None:
            live.conversation_id = conversation_id
            self._publish(key)

        try:
            if text is not None:
                turn = await chat.send(conversation_id, text, on_delta, on_done, control,
                                       on_restart=on_restart, on_conversation=on_conversation)
            else:
                if conversation_id is None:
                    on_conversation(chat.new_conversation(last_user_text(live.messages)))
                assert live.conversation_id is not None
                turn = await chat.send_messages(live.conversation_id, list(live.messages),
                                                control, Listener(on_delta, on_done, on_restart),
                                                parent=parent)
        except TurnFailed as exc:  # saved with every partial reply
            return self.settle(key, exc.turn, FAILED, str(exc.error))
        except (StorageError, OSError, RuntimeError) as exc:
            log.exception("turn failed")
            return self.unsent(key, f"The turn could not be completed: {exc}", ERROR)
        stopped = control.cancel.is_set() or bool(control.stopped)
        return self.settle(key, turn, STOPPED if stopped else COMPLETE)

    def show(self, turn: Turn) -> TurnView:
        """A stored turn is shown (a conversation was opened)."""
        key = self._by_turn_id.get(turn.id) if turn.id is not None else None
        if key is None or key not in self._live:
            key = next(self._keys)
        self._live[key] = _Live(list(turn.messages), False, False, [], turn=turn,
                                streaming=False, conversation_id=turn.conversation_id)
        if turn.id is not None:
            self._by_turn_id[turn.id] = key
        return self._displayed(key)

    def drop(self, key: int) -> None:
        """The page no longer shows the turn."""
        live = self._live.pop(key, None)
        if live is not None and live.turn is not None and live.turn.id is not None \
                and self._by_turn_id.get(live.turn.id) == key:
            del self._by_turn_id[live.turn.id]

    def refresh(self, key: int) -> TurnView:
        """The turn was scored again (a new reward model): its order and positions."""
        return self._displayed(key)

    def _displayed(self, key: int) -> TurnView:
        view = self._publish(key)  # the snapshot's order sets the display positions
        assert view is not None
        turn = self._live[key].turn
        if turn is not None and turn.id is not None:
            try:
                self._labels.record_display(turn)
            except StorageError:
                log.exception("recording the display positions failed")
        return view

    # ------------------------------------------------------------------ regenerate

    def begin_regenerate(self, key: int, indices: Sequence[int]) -> Turn:
        """Replies ``indices`` of the saved turn stream again (Regenerate, Retry failed);
        refused while the turn has a label (its pairs hold the replies' texts)."""
        turn = self.turn(key)
        if turn is None or turn.id is None or not indices:
            raise Refused("")
        if turn.chosen_candidate_id is not None:
            raise Refused("Undo the pick first (Alt+Z): its preference pairs hold these "
                          "replies")
        live = self._live[key]
        live.regenerating = set(indices)
        self._publish(key)
        return turn

    def end_regenerate(self, key: int, turn: Turn) -> TurnView:
        """The regeneration is over (``turn``: with the replies it replaced)."""
        live = self._live[key]
        live.regenerating = set()
        live.turn = turn
        live.done.clear()
        return self._displayed(key)

    # ------------------------------------------------------------------ labels

    def _labeled(self, key: int, before: int | None) -> None:
        self._publish(key, before, self._undo_key())

    def _saved(self, key: int, doing: str = "") -> Turn:
        live = self._live.get(key)
        turn = None if live is None else live.turn
        if live is None or turn is None or turn.id is None:
            raise Refused("")
        if live.regenerating:
            raise Refused(f"Wait for the reply being regenerated (or stop it){doing}")
        return turn

    def pick(self, key: int, candidate_id: int) -> RecordedLabel | None:
        """The user's pick of reply ``candidate_id`` (None: nothing to do, it is the pick
        already or the user's rewrite). Raises :class:`Refused` or StorageError."""
        turn = self._saved(key, " before picking")
        cand = next((c for c in turn.candidates if c.id == candidate_id), None)
        if cand is None:
            return None
        if not cand.text.strip():
            raise Refused("That reply is empty or failed; pick one with text")
        if cand.source == "edit" or (turn.label_kind == "pick"
                                     and turn.chosen_candidate_id == candidate_id):
            return None
        before = self._undo_key()
        pick = self._pick(turn, candidate_id)
        self._labeled(key, before)
        return pick

    def tie(self, key: int, candidate_ids: Sequence[int]) -> RecordedLabel:
        """Two or more replies equally good."""
        turn = self._saved(key)
        before = self._undo_key()
        pick = self._labels.tie(turn, candidate_ids)
        self._labeled(key, before)
        return pick

    def all_bad(self, key: int) -> RecordedLabel:
        """Every reply is bad."""
        turn = self._saved(key)
        before = self._undo_key()
        pick = self._labels.all_bad(turn)
        self._labeled(key, before)
        return pick

    def rank(self, key: int, order: Sequence[int]) -> RecordedLabel:
        """The user's order of the replies (candidate ids, best first)."""
        turn = self._saved(key)
        before = self._undo_key()
        pick = self._labels.rank(turn, order)
        self._labeled(key, before)
        return pick

    def edit(self, key: int, candidate_id: int, text: str) -> tuple[RecordedLabel, Candidate]:
        """The user's rewrite of reply ``candidate_id``, chosen over every reply."""
        turn = self._saved(key)
        before = self._undo_key()
        pick, cand = self._labels.edit(turn, candidate_id, text)
        self._labeled(key, before)
        return pick, cand

    def skip(self, key: int) -> None:
        """No label for this turn (a blind turn shows its ranking)."""
        turn = self._saved(key)
        if turn.labeled:
            raise Refused("This turn has a label; Alt+Z undoes it")
        self._labels.skip(turn)
        self._publish(key)

    def set_reason(self, key: int, reason: str) -> bool:
        """Attach the optional one-line reason to the turn's label; False: no label."""
        pick = self.last_label(key)
        if pick is None or not reason:
            return False
        self._labeling.set_reason(pick, reason)
        return True

    def undo(self) -> RecordedLabel | None:
        """Remove the session's last label and its pairs, when its turn is shown (None when
        there is nothing to undo or it is on a hidden turn: :attr:`undo_hidden`)."""
        if self.undo_hidden:
            return None
        before = self._undo_key()
        pick = self._undo()
        if pick is None:
            return None
        key = self._by_turn_id.get(pick.turn_id)
        turn = self.turn(key) if key is not None else None
        if turn is not None:
            LabelingService.unlabel(turn, pick)
        self._publish(key, before, self._undo_key())
        return pick
