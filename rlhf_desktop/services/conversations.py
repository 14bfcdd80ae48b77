"""The sidebar's service: list, search, rename and delete conversations, read their turns."""

from __future__ import annotations

import builtins
from collections.abc import Sequence

from rlhf_desktop.domain import Conversation, Message, Turn
from rlhf_desktop.services.hooks import SessionHooks
from rlhf_desktop.storage.repo import Repository


class ConversationService:
    """Conversations of the data folder. Writes fire ``conversations_did_change``."""

    def __init__(self, repo: Repository, hooks: SessionHooks) -> None:
        self._repo = repo
        self._hooks = hooks

    def list(self, search: str = "") -> builtins.list[Conversation]:
        """Newest first; ``search`` matches titles and any message or reply text."""
        return self._repo.list_conversations(search.strip())

    def first_prompts(self, conversation_ids: Sequence[int]) -> dict[int, str]:
        """The first user message of each conversation (for distinguishable titles)."""
        return self._repo.first_prompts(conversation_ids)

    def get(self, conversation_id: int) -> Conversation | None:
        """One conversation, or None when it does not exist (any more)."""
        return self._repo.get_conversation(conversation_id)

    def create(self, title: str) -> Conversation:
        """A new, empty conversation."""
        conversation = self._repo.create_conversation(title)
        self._hooks.conversations_did_change()
        return conversation

    def rename(self, conversation_id: int, title: str) -> None:
        """Set its title (blank: "New chat")."""
        self._repo.rename_conversation(conversation_id, title)
        self._hooks.conversations_did_change()

    def delete(self, conversation_id: int) -> None:
        """Delete it and its turns; labels and pairs already recorded stay."""
        self._repo.delete_conversation(conversation_id)
        self._hooks.conversations_did_change()

    def next_messages(self, conversation_id: int | None, text: str) -> builtins.list[Message]:
        """What sending ``text`` in the conversation sends: its history (each turn's pick,
        else its top-ranked reply) plus ``text``. Needs no provider."""
        from rlhf_desktop.services.chat import history

        turns = self.turns(conversation_id) if conversation_id is not None else []
        return [*history(turns), Message("user", text.strip())]

    def turns(self, conversation_id: int) -> builtins.list[Turn]:
        """Its turns, oldest first, with their replies, scores and picks."""
        return self._repo.list_turns(conversation_id)
