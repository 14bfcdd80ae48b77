"""The conversation list: new, rename, delete, search by text (all stored in the database)."""

from __future__ import annotations

import html
import time

from PySide6.QtCore import QPoint, Qt, QTextBoundaryFinder, QTimer, Signal
from PySide6.QtWidgets import (
    QInputDialog,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from rlhf_desktop.domain import Conversation
from rlhf_desktop.services.chat.conversations import ChatSettings, ConversationService

ID_ROLE = Qt.ItemDataRole.UserRole
AUTO_TITLE_CHARS = 60  # the chat view titles a new chat with its first message cut here
TOOLTIP_CHARS = 1200


def display_title(title: str, first_prompt: str | None) -> str:
    """The title to list: an automatic title cut from a long first message becomes its
    start and its end, so that long prompts that begin alike stay distinguishable."""
    if not first_prompt:
        return title
    flat = " ".join(first_prompt.split())
    if len(flat) <= AUTO_TITLE_CHARS or title != first_prompt[:AUTO_TITLE_CHARS].strip():
        return title  # short, or renamed by the user
    head = " ".join(title.split())
    head = head[:grapheme_cut(head, 36)].rstrip()
    tail = flat[grapheme_cut(flat, len(flat) - 34, before=False):].lstrip()
    return f"{head} … {tail}"


def grapheme_cut(text: str, at: int, before: bool = True) -> int:
    """The grapheme boundary nearest to code point ``at`` (at or before it; with ``before``
    False, at or after it), so a cut never splits an emoji sequence (👨‍👩‍👧‍👦, 🇫🇷, 👍🏽) or
    a letter from its marks."""
    at = max(0, min(at, len(text)))
    finder = QTextBoundaryFinder(QTextBoundaryFinder.BoundaryType.Grapheme, text)
    finder.setPosition(len(text[:at].encode("utf-16-le")) // 2)  # Qt counts UTF-16 units
    if not finder.isAtBoundary():
        finder.toPreviousBoundary() if before else finder.toNextBoundary()
    units = finder.position()
    return len(text.encode("utf-16-le")[:units * 2].decode("utf-16-le"))


def tooltip(title: str, first_prompt: str | None, chat: ChatSettings | None = None) -> str:
    """The title, the chat's own model and system prompt, and the first message (long ones
    cut), as wrapped rich text."""
    text = html.escape(title)
    if chat is not None and chat.model:
        text += f"<br><i>Model:</i> {html.escape(chat.model)}"
    if chat is not None and chat.system_prompt:
        prompt = " ".join(chat.system_prompt.split())
        cut = prompt if len(prompt) <= 300 else prompt[:299] + "…"
        text += f"<br><i>System prompt:</i> {html.escape(cut)}"
    if first_prompt:
        prompt = first_prompt.strip()
        left_out = len(prompt) - TOOLTIP_CHARS
        if left_out > 0:  # its start and its end, where the question usually is
            head, tail = prompt[: TOOLTIP_CHARS * 3 // 4], prompt[-(TOOLTIP_CHARS // 4):]
            prompt = f"{head} … [{left_out:,} characters] … {tail}"
        text += f"<br><br><i>First message:</i> {html.escape(prompt)}"
    return f"<p style='white-space:pre-wrap'>{text}</p>"


def when(ts: float) -> str:
    """A short, human date for the list."""
    now = time.time()
    if now - ts < 86400 and time.localtime(ts).tm_mday == time.localtime(now).tm_mday:
        return time.strftime("%H:%M", time.localtime(ts))
    return time.strftime("%d %b", time.localtime(ts))


class Sidebar(QWidget):
    """Emits ``selected(id)`` (``None``: a new chat)."""

    selected = Signal(object)
    settings_requested = Signal(int)  # "Chat settings…" on a chat of the list

    def __init__(self, conversations: ConversationService,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("sidebar")
        self.conversations = conversations
        self.current_id: int | None = None
        self.new_button = QPushButton("＋  New chat")
        self.new_button.setObjectName("newChat")
        self.new_button.setToolTip("Start a new chat (Ctrl+N)")
        self.new_button.clicked.connect(self.new_chat)
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search chats (Ctrl+F)")
        self.search.setClearButtonEnabled(True)
        self.search.setToolTip("Search titles and message text (Ctrl+F)")
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(200)
        self._debounce.timeout.connect(self.refresh)
        self.search.textChanged.connect(lambda _t: self._debounce.start())
        self.list = QListWidget()
        self.list.setObjectName("conversations")
        # Long titles lose their middle ("…"; the tooltip has the first message), never
        # their end, and never scroll sideways.
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.list.setWordWrap(False)
        self.list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.list.customContextMenuRequested.connect(self._menu)
        self.list.itemClicked.connect(self._clicked)
        self.list.itemDoubleClicked.connect(lambda item: self.rename(item.data(ID_ROLE)))
        self.list.setToolTip("Right-click to rename or delete; double-click to rename")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 10, 6, 10)
        layout.setSpacing(8)
        layout.addWidget(self.new_button)
        layout.addWidget(self.search)
        layout.addWidget(self.list, 1)
        self.refresh()

    def refresh(self) -> None:
        """Reload the list (keeps the selection)."""
        convs = self.conversations.recent(self.search.text())
        prompts = self.conversations.first_prompts([c.id for c in convs])
        chats = self.conversations.chat_settings_of([c.id for c in convs])
        self.list.blockSignals(True)
        self.list.clear()
        for conv in convs:
            self.list.addItem(self._item(conv, prompts.get(conv.id), chats.get(conv.id)))
        self.list.blockSignals(False)
        self.highlight(self.current_id)

    @staticmethod
    def _item(conv: Conversation, first_prompt: str | None,
              chat: ChatSettings | None = None) -> QListWidgetItem:
        title = display_title(conv.title, first_prompt)
        item = QListWidgetItem(f"{title}\n{when(conv.updated_at)}")
        item.setData(ID_ROLE, conv.id)
        item.setToolTip(tooltip(conv.title, first_prompt, chat))
        return item

    def highlight(self, conversation_id: int | None) -> None:
        """Select the row of ``conversation_id`` without emitting ``selected``."""
        self.current_id = conversation_id
        self.list.blockSignals(True)
        self.list.clearSelection()
        self.list.setCurrentRow(-1)  # the new chat: no row looks current either
        for row in range(self.list.count()):
            item = self.list.item(row)
            if item.data(ID_ROLE) == conversation_id:
                item.setSelected(True)
                self.list.setCurrentItem(item)
        self.list.blockSignals(False)

    def latest(self) -> int | None:
        """The most recently updated chat (None: there is none yet)."""
        convs = self.conversations.recent()
        return convs[0].id if convs else None

    def _clicked(self, item: QListWidgetItem) -> None:
        self.current_id = int(item.data(ID_ROLE))
        self.selected.emit(self.current_id)

    def new_chat(self) -> None:
        """Start a new chat (stored when its first message is sent)."""
        self.highlight(None)
        self.selected.emit(None)

    def focus_search(self) -> None:
        """Ctrl+F."""
        self.search.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self.search.selectAll()

    def _menu(self, pos: QPoint) -> None:
        item = self.list.itemAt(pos)
        if item is None:
            return
        cid = int(item.data(ID_ROLE))
        menu = QMenu(self)
        menu.addAction("Chat settings…", lambda: self.settings_requested.emit(cid))
        menu.addAction("Rename…", lambda: self.rename(cid))
        menu.addAction("Delete…", lambda: self.delete(cid))
        menu.exec(self.list.mapToGlobal(pos))

    def rename(self, conversation_id: int, title: str | None = None) -> None:
        """Rename (asks for the title when not given)."""
        if title is None:
            conv = self.conversations.get(conversation_id)
            current = conv.title if conv is not None else ""
            title, ok = QInputDialog.getText(self, "Rename chat", "Title:", text=current)
            if not ok:
                return
        self.conversations.rename(conversation_id, title)
        self.refresh()

    def delete(self, conversation_id: int, confirm: bool = True) -> None:
        """Delete a chat (the preference pairs it produced stay in the dataset)."""
        if confirm:
            answer = QMessageBox.question(
                self, "Delete chat",
                "Delete this chat? The preference pairs you recorded in it stay in the dataset.")
            if answer != QMessageBox.StandardButton.Yes:
                return
        self.conversations.delete(conversation_id)
        if self.current_id == conversation_id:
            self.current_id = None
            self.selected.emit(None)
        self.refresh()
