"""One chat's own settings (system prompt and model): the dialog, and the line above the
chat that shows them."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from rlhf_desktop.core.chat_models import tuned_version, version_name
from rlhf_desktop.services.chat.conversations import ChatSettings
from rlhf_desktop.services.chat.service import StorageError
from rlhf_desktop.ui.backend import Backend
from rlhf_desktop.ui.widgets import ElidedLabel


def models_note(kind: str, count: int) -> str:
    """What the model list under the chooser is."""
    if kind == "azure":
        return ("The configured deployments (Azure does not list them for a key); type the "
                "name of another deployment to use it.")
    if kind == "local":
        return "The built-in model and its tuned versions (model page → Tune)."
    if not count:
        return "The server lists no models; type a model name."
    return f"{count} model{'s' if count != 1 else ''} offered by the server."


class ChatSettingsDialog(QDialog):
    """One chat's own settings: its system prompt and its model, from a list of what the
    provider offers (asked when the dialog opens; an error shows inline, and a model name can
    still be typed). ``saved(ChatSettings)`` is emitted on Save."""

    saved = Signal(object)

    def __init__(self, chat: ChatSettings, *, default_prompt: str, default_model: str,
                 list_models: Callable[[], Awaitable[list[str]]],
                 spawn: Callable[[Coroutine[Any, Any, Any]], object],
                 title: str = "", provider_kind: str = "",
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Chat settings — {title}" if title else "Chat settings")
        self.provider_kind = provider_kind
        self.setMinimumWidth(520)
        self._list_models = list_models
        self._spawn = spawn
        self.default_model = default_model
        self.prompt = QPlainTextEdit()
        self.prompt.setPlaceholderText("No system prompt: the model's own behaviour")
        self.prompt.setPlainText(chat.system_prompt if chat.system_prompt is not None
                                 else default_prompt)
        self.prompt.setToolTip("Sent before the conversation with every turn of this chat")
        self.prompt.setMinimumHeight(90)
        self.prompt.setMaximumHeight(160)
        self.model = QComboBox()
        self.model.setEditable(True)
        self.model.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.model.setToolTip("The model (or Azure deployment) this chat's turns use")
        self.model.addItem(self._default_label(), "")
        if chat.model:
            self.model.addItem(chat.model, chat.model)
            self.model.setCurrentIndex(1)
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.setToolTip("Ask the provider again which models it offers")
        self.refresh_button.clicked.connect(self.refresh_models)
        self.models_note = QLabel("")
        self.models_note.setObjectName("muted")
        self.models_note.setWordWrap(True)
        row = QHBoxLayout()
        row.addWidget(self.model, 1)
        row.addWidget(self.refresh_button)
        form = QFormLayout()
        form.addRow("System prompt", self.prompt)
        form.addRow("Model", row)
        form.addRow("", self.models_note)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save
                                   | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        note = QLabel("New chats start from Settings' system prompt and the provider's model.")
        note.setObjectName("muted")
        note.setWordWrap(True)
        layout.addLayout(form)
        layout.addWidget(note)
        layout.addWidget(buttons)
        self.loading: asyncio.Task[None] | None = None
        self.refresh_models()

    def _default_label(self) -> str:
        return (f"Provider default ({self.default_model})" if self.default_model
                else "Provider default")

    def chosen_model(self) -> str | None:
        """The model typed or chosen; None for the provider's default."""
        text = self.model.currentText().strip()
        if not text or text == self._default_label():
            return None
        return text

    def result_settings(self) -> ChatSettings:
        """What Save stores."""
        return ChatSettings(system_prompt=self.prompt.toPlainText().strip(),
                            model=self.chosen_model())

    def refresh_models(self) -> None:
        """List the provider's models (in the background; the typed text stays)."""
        self.models_note.setText("Asking the provider which models it offers…")
        self.refresh_button.setEnabled(False)
        task = self._spawn(self._load_models())
        self.loading = task if isinstance(task, asyncio.Task) else None

    async def _load_models(self) -> None:
        try:
            models = await self._list_models()
        except Exception as exc:  # shown inline; the dialog stays usable
            if self._alive():
                self.models_note.setText(f"⚠ Could not list the models: {exc} You can still "
                                         "type a model name.")
                self.refresh_button.setEnabled(True)
            return
        if not self._alive():
            return
        typed = self.model.currentText()
        self.model.blockSignals(True)
        while self.model.count() > 1:
            self.model.removeItem(1)
        for name in models:
            self.model.addItem(name, name)
        index = self.model.findText(typed)
        if index >= 0:
            self.model.setCurrentIndex(index)
        else:
            self.model.setEditText(typed)
        self.model.blockSignals(False)
        self.refresh_button.setEnabled(True)
        self.models_note.setText(models_note(self.provider_kind, len(models)))

    def _alive(self) -> bool:
        try:
            self.objectName()
        except RuntimeError:  # the dialog was closed and deleted meanwhile
            return False
        return True

    def accept(self) -> None:
        """Save: emit ``saved``."""
        self.saved.emit(self.result_settings())
        super().accept()


class ChatHeader(QFrame):
    """The line above the chat: this chat's model and system prompt, and Chat settings…
    (``message`` carries what the status bar says)."""

    message = Signal(str)

    def __init__(self, backend: Backend, conversation_id: Callable[[], int | None],
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("chatHeader")
        self.backend = backend
        self._conversation_id = conversation_id
        self.dialog: ChatSettingsDialog | None = None
        row = QHBoxLayout(self)
        row.setContentsMargins(16, 2, 12, 2)
        self.summary = ElidedLabel("")  # never sets the window's minimum width
        self.summary.setObjectName("muted")
        self.button = QPushButton("Chat settings…")
        self.button.setToolTip("This chat's system prompt and model (Ctrl+Shift+,)")
        self.button.clicked.connect(lambda: self.open_dialog())
        row.addWidget(self.summary, 1)
        row.addWidget(self.button)

    def refresh(self) -> None:
        """Show the current chat's model and system prompt."""
        session = self.backend.session
        chat = session.conversations.chat_settings(self._conversation_id())
        default_model = self.backend.provider_model
        kind = self.backend.provider_kind
        if kind == "local" and tuned_version(default_model):
            default_model = version_name(tuned_version(default_model))
        if kind == "arena":  # not one model: each source answers with its own
            model = f"each source's own ({default_model})"
        else:
            model = chat.model or (f"{default_model} (provider default)" if default_model
                                   else "provider default")
        prompt = chat.system_prompt
        if prompt is None:
            prompt = self.backend.settings.system_prompt
        flat = " ".join(prompt.split())
        shown = f"“{flat[:70]}…”" if len(flat) > 70 else (f"“{flat}”" if flat else "none")
        self.summary.setText(f"Model: {model}   ·   System prompt: {shown}")
        self.summary.setToolTip(f"This chat's model: {model}\nIts system prompt: "
                                f"{prompt or '(none)'}\n\nChange them in Chat settings…")

    def open_dialog(self, conversation_id: int | None = None) -> ChatSettingsDialog:
        """The chat's settings (``conversation_id``, else the current chat's; the new
        chat's before its first message)."""
        cid = self._conversation_id() if conversation_id is None else conversation_id
        service = self.backend.session.conversations
        conversation = service.get(cid) if cid is not None else None
        dialog = ChatSettingsDialog(
            service.chat_settings(cid), default_prompt=self.backend.settings.system_prompt,
            default_model=self.backend.provider_model,
            list_models=self.backend.session.list_models,
            spawn=lambda coro: self.backend.spawn(coro, "list models"),
            title=conversation.title if conversation is not None else "new chat",
            provider_kind=self.backend.provider_kind, parent=self.window())

        def saved(chat: ChatSettings) -> None:
            try:
                service.set_chat_settings(cid, chat)
            except StorageError as exc:
                self.message.emit(f"The chat settings were not saved: {exc}")
                return
            self.refresh()
            self.message.emit("Chat settings saved: the next turn uses them")

        dialog.saved.connect(saved)
        dialog.open()
        self.dialog = dialog
        return dialog
