"""The sidebar's service: list, search, rename and delete conversations, read their turns
(the branch shown; edit and resend a message, switch branches: :mod:`.branches`), each
chat's own settings (system prompt and model), and the message being typed (the draft: kept
across a quit or a crash, :meth:`ConversationService.save_draft`)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rlhf_desktop import config
from rlhf_desktop.config.files import atomic_write_bytes
from rlhf_desktop.domain import Conversation, Message, Turn
from rlhf_desktop.services.chat import branches
from rlhf_desktop.services.chat.branches import BranchPoint, EditPlan
from rlhf_desktop.services.hooks import SessionHooks
from rlhf_desktop.storage.repo import Repository

DRAFT_FILE = "drafts.json"
"""The messages being typed, per chat, in the data folder: ``{"new" or chat id: text}``
(absent when every box is empty)."""


@dataclass(frozen=True)
class ChatSettings:
    """What one chat sends with every turn."""

    system_prompt: str | None = None
    """None: the Settings' system prompt (chats from before per-chat settings)."""
    model: str | None = None
    """Deployment, model name, or the built-in model or a tuned version of it
    (``<stem>+vNNNN``); None: the provider's configured one."""


class ConversationService:
    """Conversations of the data folder. Writes fire ``conversations_did_change``.

    ``defaults`` gives what a new chat starts from (the Settings' system prompt); a chat
    set up before its first message (:attr:`pending`) starts from that instead.
    """

    def __init__(self, repo: Repository, hooks: SessionHooks,
                 defaults: Callable[[], ChatSettings] = ChatSettings) -> None:
        self._repo = repo
        self._hooks = hooks
        self._defaults = defaults
        self.pending: ChatSettings | None = None
        """Chat settings chosen for the new chat before its first message."""

    def draft(self, conversation_id: int | None) -> str:
        """The message that was being typed in that chat (None: the new chat) when the app
        last closed or crashed, or when the user left the chat ("" for none, or when the
        file cannot be read)."""
        return read_drafts().get(draft_key(conversation_id), "")

    def save_draft(self, conversation_id: int | None, text: str,
                   moved_from: int | None = None) -> None:
        """Keep ``text``, the message being typed in that chat, so that quitting, a crash or
        another chat never loses it (an empty box forgets it); ``moved_from``: the chat the
        text was typed in before it became ``conversation_id`` (the new chat's first send),
        whose draft goes. Written beside the database as a temporary file renamed over the
        old one, so a crash leaves the old drafts or the new, never half; not fsynced (a few
        milliseconds each time the typing pauses): a power cut may lose the last change.
        Readable by the user only, like the messages themselves."""
        drafts = read_drafts()
        key = draft_key(conversation_id)
        if moved_from != conversation_id:
            drafts.pop(draft_key(moved_from), None)
        if text.strip():
            drafts[key] = text
        else:
            drafts.pop(key, None)
        path = draft_path()
        if not drafts:
            path.unlink(missing_ok=True)
            return
        atomic_write_bytes(path, json.dumps(drafts, ensure_ascii=False).encode("utf-8"),
                           mode=0o600, durable=False)

    def recent(self, search: str = "") -> list[Conversation]:
        """Newest first; ``search`` matches titles and any message or reply text."""
        return self._repo.conversations.list_all(search.strip())

    def first_prompts(self, conversation_ids: Sequence[int]) -> dict[int, str]:
        """The first user message of each conversation (for distinguishable titles)."""
        return self._repo.conversations.first_prompts(conversation_ids)

    def get(self, conversation_id: int) -> Conversation | None:
        """One conversation, or None when it does not exist (any more)."""
        return self._repo.conversations.get(conversation_id)

    def create(self, title: str) -> Conversation:
        """A new, empty conversation, with the pending chat settings or the defaults."""
        chat = self.new_chat_settings()
        self.pending = None
        conversation = self._repo.conversations.create(title)
        self._repo.conversations.set_settings(conversation.id, chat.system_prompt, chat.model)
        self._hooks.conversations_did_change()
        return conversation

    def new_chat_settings(self) -> ChatSettings:
        """What the next new chat starts from: the pending settings, else the defaults."""
        return self.pending if self.pending is not None else self._defaults()

    def chat_settings(self, conversation_id: int | None) -> ChatSettings:
        """A chat's settings (None: the new chat's, see :meth:`new_chat_settings`)."""
        if conversation_id is None:
            return self.new_chat_settings()
        found = self._repo.conversations.settings([conversation_id]).get(conversation_id)
        return ChatSettings() if found is None else ChatSettings(*found)

    def chat_settings_of(self, conversation_ids: Sequence[int]) -> dict[int, ChatSettings]:
        """The settings of several chats (for the list's tooltips)."""
        return {cid: ChatSettings(*found)
                for cid, found in self._repo.conversations.settings(conversation_ids).items()}

    def set_chat_settings(self, conversation_id: int | None, chat: ChatSettings) -> None:
        """Use ``chat`` for the chat's next turns (None: for the new chat, once created)."""
        if conversation_id is None:
            self.pending = chat
            return
        self._repo.conversations.set_settings(conversation_id, chat.system_prompt, chat.model)
        self._hooks.conversations_did_change()

    def rename(self, conversation_id: int, title: str) -> None:
        """Set its title (blank: "New chat")."""
        self._repo.conversations.rename(conversation_id, title)
        self._hooks.conversations_did_change()

    def delete(self, conversation_id: int) -> None:
        """Delete it and its turns; labels and pairs already recorded stay."""
        self._repo.conversations.delete(conversation_id)
        self._hooks.conversations_did_change()

    def next_messages(self, conversation_id: int | None, text: str) -> list[Message]:
        """What sending ``text`` in the conversation sends: the history of the branch shown
        (each turn's pick, else its top-ranked reply) plus ``text``. Needs no provider."""
        from rlhf_desktop.services.chat.service import history

        turns = self.turns(conversation_id) if conversation_id is not None else []
        return [*history(turns), Message("user", text.strip())]

    def turns(self, conversation_id: int) -> list[Turn]:
        """The turns of the branch it shows, oldest first, with their replies, scores and
        picks (the other branches: :meth:`branch_points`)."""
        return branches.active_turns(self._repo, conversation_id)

    def branch_points(self, conversation_id: int,
                      turn_ids: Sequence[int]) -> dict[int, BranchPoint]:
        """Each shown turn's place among the edits of its message ("‹ 2/3 ›")."""
        return branches.branch_points(self._repo.conversations.turn_links(conversation_id),
                                      turn_ids)

    def plan_edit(self, conversation_id: int, turn_id: int, text: str) -> EditPlan:
        """What resending ``turn_id``'s message as ``text`` sends (a new branch); raises
        :class:`~.branches.EditRefused` (an empty text, a turn no longer shown)."""
        return branches.plan_edit(self._repo, conversation_id, turn_id, text)

    def switch_branch(self, conversation_id: int, turn_id: int) -> None:
        """Show (and continue) ``turn_id``'s branch, down to its newest turn; remembered
        across restarts."""
        branches.switch_to(self._repo, conversation_id, turn_id)


def draft_path() -> Path:
    """Where the messages being typed are kept (:data:`DRAFT_FILE` in the data folder)."""
    return config.data_dir() / DRAFT_FILE


def draft_key(conversation_id: int | None) -> str:
    """A chat's key in :data:`DRAFT_FILE` ("new" for the new chat)."""
    return "new" if conversation_id is None else str(conversation_id)


def read_drafts() -> dict[str, str]:
    """Every kept draft (none when the file is absent, unreadable or not what it should
    be: a draft is a convenience, never a reason not to start)."""
    try:
        data = json.loads(draft_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): v for k, v in data.items() if isinstance(v, str)}
