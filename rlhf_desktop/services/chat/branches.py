"""Branches of a conversation: edit and resend a message, browse the branches. Qt-free.

A conversation is a tree of turns (:mod:`rlhf_desktop.storage.conversations`): every turn
continues its parent's reply. The chat shows one branch, the *active* one: the path from the
first turn to the conversation's active end. Only that branch is history for the next turn
(:func:`active_turns`, then :func:`rlhf_desktop.services.chat.service.history`, the one rule for
what a turn sends).

Editing a user message never changes the turn that holds it: the edit is a new turn beside
it (the same parent) whose messages are the history of the turns before it on the branch
plus the edited text (:func:`plan_edit`), and the new turn's replies are generated, ranked
and shown as any turn's. The old turn and everything after it stay as a branch: the edited
message's switcher (:class:`BranchPoint`, "‹ 1/2 ›") shows it again. Labels made on either
branch stay as they are: a turn keeps the messages it sent and a pair its own prompt.

Switching to another turn of a switcher shows that turn's branch down to its newest end:
at each turn, its newest child (:func:`newest_end`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rlhf_desktop.domain import Message, Turn
from rlhf_desktop.storage.conversations import ACTIVE, Parent
from rlhf_desktop.storage.repo import Repository, StorageError

__all__ = ["ACTIVE", "BranchPoint", "EditPlan", "EditRefused", "Links", "Parent",
           "active_turns", "branch_points", "newest_end", "path_to", "plan_edit", "siblings",
           "switch_to"]

Links = Sequence[tuple[int, int | None]]
"""``(turn id, parent turn id)`` of a conversation's turns, oldest first."""

EMPTY_EDIT = ("The edited message is empty: type the message to send, or Cancel to keep "
              "the old one.")


class EditRefused(ValueError):
    """An edit that cannot be sent; the message says why and what to do."""


@dataclass(frozen=True)
class BranchPoint:
    """Where a turn stands among the turns that continue the same turn (its siblings,
    itself included): the switcher "‹ position/count ›" on its user message."""

    turn_id: int
    position: int
    """1-based, oldest first."""
    count: int
    previous: int | None
    """The sibling before it (None: it is the first)."""
    next: int | None
    """The sibling after it (None: it is the last)."""


@dataclass(frozen=True)
class EditPlan:
    """What sending an edited message sends: exactly ``messages``, as a turn continuing
    ``parent`` (None: the edit of the first message starts the chat again)."""

    messages: list[Message]
    parent: int | None
    edited_turn_id: int


# ---------------------------------------------------------------------- the tree's rules


def path_to(links: Links, end: int | None) -> list[int]:
    """The turn ids from the first turn down to ``end`` (none for None or an unknown id)."""
    parents = dict(links)
    path: list[int] = []
    seen: set[int] = set()
    turn = end
    while turn is not None and turn in parents and turn not in seen:
        seen.add(turn)
        path.append(turn)
        turn = parents[turn]
    return path[::-1]


def siblings(links: Links, turn_id: int) -> list[int]:
    """The turns that continue the same turn as ``turn_id`` (itself included), oldest
    first."""
    parents = dict(links)
    if turn_id not in parents:
        return []
    parent = parents[turn_id]
    return sorted(t for t, p in links if p == parent)


def newest_end(links: Links, turn_id: int) -> int:
    """The end of ``turn_id``'s branch shown when switching to it: its newest child, that
    child's newest child, and so on."""
    children: dict[int, int] = {}
    for turn, parent in links:
        if parent is not None:
            children[parent] = max(children.get(parent, turn), turn)
    end = turn_id
    seen = {end}
    while end in children and children[end] not in seen:
        end = children[end]
        seen.add(end)
    return end


def branch_points(links: Links, path: Sequence[int]) -> dict[int, BranchPoint]:
    """The switcher of each turn of ``path`` (a turn without siblings has count 1)."""
    points: dict[int, BranchPoint] = {}
    for turn in path:
        group = siblings(links, turn) or [turn]
        i = group.index(turn)
        points[turn] = BranchPoint(turn, i + 1, len(group),
                                   group[i - 1] if i > 0 else None,
                                   group[i + 1] if i + 1 < len(group) else None)
    return points


# ---------------------------------------------------------------------- on the database


def active_turns(repo: Repository, conversation_id: int) -> list[Turn]:
    """The turns of the conversation's active branch, oldest first (what the chat shows
    and what the next turn's history is built from)."""
    conversations = repo.conversations
    path = path_to(conversations.turn_links(conversation_id),
                   conversations.active_turn_id(conversation_id))
    return [conversations.get_turn(turn_id) for turn_id in path]


def plan_edit(repo: Repository, conversation_id: int, turn_id: int, text: str) -> EditPlan:
    """What sending ``text`` as the edit of ``turn_id``'s user message sends.

    The turn must be on the active branch (the one shown). Raises :class:`EditRefused`
    for an empty text or a turn that is not shown."""
    from rlhf_desktop.services.chat.service import history  # the one rule for a turn's history

    if not text.strip():
        raise EditRefused(EMPTY_EDIT)
    links = repo.conversations.turn_links(conversation_id)
    path = path_to(links, repo.conversations.active_turn_id(conversation_id))
    if turn_id not in path:
        raise EditRefused("That message is not on the branch shown any more; open the chat "
                          "again and edit it there.")
    before = path[:path.index(turn_id)]
    turns = [repo.conversations.get_turn(t) for t in before]
    return EditPlan([*history(turns), Message("user", text.strip())],
                    before[-1] if before else None, turn_id)


def switch_to(repo: Repository, conversation_id: int, turn_id: int) -> int:
    """Show ``turn_id``'s branch (down to :func:`newest_end`); returns that end. Raises
    :class:`StorageError` for a turn of another conversation."""
    links = repo.conversations.turn_links(conversation_id)
    if turn_id not in dict(links):
        raise StorageError(f"turn {turn_id} is not a turn of conversation {conversation_id}")
    end = newest_end(links, turn_id)
    repo.conversations.set_active_turn(conversation_id, end)
    return end
