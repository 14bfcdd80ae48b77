"""Branches of a conversation, as stored (a mixin of
:class:`~rlhf_desktop.storage.repo.Repository`).

Each turn names the turn it continues (``turns.parent_turn_id``; NULL: it starts the chat),
so a conversation is a tree of turns: editing a message saves a new turn beside the old one
(the same parent), and the old branch stays. Each conversation remembers the last turn of
the branch it shows and continues (``conversations.active_turn_id``; NULL: its newest
turn). A turn saved without a parent named continues that branch and becomes its end
(:data:`ACTIVE`). Which turns make up a branch, and which branch a switch shows, are rules
of :mod:`rlhf_desktop.services.branches`.

Labels and pairs never depend on a branch: a turn keeps the messages it sent
(``turns.messages_json``) and a pair its own prompt (``pairs.prompt_json``).
"""

from __future__ import annotations

import sqlite3
from contextlib import AbstractContextManager
from enum import Enum
from typing import TYPE_CHECKING

from rlhf_desktop.storage.pairs import StorageError

__all__ = ["ACTIVE", "BranchQueries", "Follow", "Parent"]


class Follow(Enum):
    """Where a turn saved without an explicit parent goes."""

    ACTIVE = "active"
    """After the last turn of the conversation's active branch (the usual next turn)."""


ACTIVE = Follow.ACTIVE

Parent = int | None | Follow
"""A new turn's parent: a turn id of the same conversation, None (it starts the chat: an
edit of the first message), or :data:`ACTIVE`."""


class BranchQueries:
    """Reads and writes of the turn tree and of each conversation's active branch."""

    conn: sqlite3.Connection

    if TYPE_CHECKING:
        def transaction(self) -> AbstractContextManager[sqlite3.Connection]: ...

    def turn_links(self, conversation_id: int) -> list[tuple[int, int | None]]:
        """``(turn id, parent turn id)`` of every turn of the conversation, oldest first."""
        rows = self.conn.execute(
            "SELECT id, parent_turn_id FROM turns WHERE conversation_id = ? ORDER BY id",
            (conversation_id,)).fetchall()
        return [(int(r[0]), None if r[1] is None else int(r[1])) for r in rows]

    @staticmethod
    def _active_end(c: sqlite3.Connection, conversation_id: int) -> int | None:
        row = c.execute(
            "SELECT COALESCE(c.active_turn_id, (SELECT MAX(t.id) FROM turns t"
            " WHERE t.conversation_id = c.id)) FROM conversations c WHERE c.id = ?",
            (conversation_id,)).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def active_turn_id(self, conversation_id: int) -> int | None:
        """The last turn of the branch the conversation shows (None: it has no turns)."""
        return self._active_end(self.conn, conversation_id)

    @staticmethod
    def _check_turn_of(c: sqlite3.Connection, conversation_id: int, turn_id: int) -> None:
        row = c.execute("SELECT conversation_id FROM turns WHERE id = ?",
                        (turn_id,)).fetchone()
        if row is None or int(row[0]) != conversation_id:
            raise StorageError(f"turn {turn_id} is not a turn of conversation "
                               f"{conversation_id}")

    def set_active_turn(self, conversation_id: int, turn_id: int) -> None:
        """Show (and continue) the branch that ends with ``turn_id``."""
        with self.transaction() as c:
            self._check_turn_of(c, conversation_id, turn_id)
            c.execute("UPDATE conversations SET active_turn_id = ? WHERE id = ?",
                      (turn_id, conversation_id))

    def _parent_of_new_turn(self, c: sqlite3.Connection, conversation_id: int,
                            parent: Parent) -> int | None:
        """The parent a new turn of the conversation is saved with (inside its write)."""
        if parent is Follow.ACTIVE:
            return self._active_end(c, conversation_id)
        if parent is not None:
            self._check_turn_of(c, conversation_id, parent)
        return parent
