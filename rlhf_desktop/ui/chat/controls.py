"""The row above the chat: show/hide the chat list, replies per turn, where the replies come
from (a provider, or the arena of candidate sources) and the model.

Each change is written through the same path as the Settings dialog: the settings file
(:func:`config.save_settings`), then the window applies them and, for the provider or
the model, rebuilds the provider.
"""

from __future__ import annotations

from dataclasses import replace

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QStandardItemModel
from PySide6.QtWidgets import (
    QComboBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QSpinBox,
    QToolButton,
    QWidget,
)

from rlhf_desktop import config
from rlhf_desktop.config import Settings
from rlhf_desktop.domain import CandidateSource

PROVIDER_CHOICES = (
    ("auto", "Automatic"),
    ("azure", "Azure OpenAI"),
    ("openai", "OpenAI"),
    ("compatible", "OpenAI-compatible"),
    ("local", "Built-in model"),
)
MIN_REPLIES = 2  # one reply gives nothing to compare
ARENA = "arena"  # the chooser's last item: replies from the candidate sources
NO_ARENA_TIP = ("The arena compares replies from two or more candidate sources with their "
                "names hidden until you pick. Add sources in Settings → Candidate sources "
                "to use it.")


def max_replies() -> int:
    """The most replies per turn the settings accept (9 pick keys; the settings decide)."""
    for n in (9, 8):
        try:
            replace(Settings(), candidates_per_turn=n).validate()
        except config.ConfigError:
            continue
        return n
    return MIN_REPLIES


def model_setting(kind: str) -> str | None:
    """The setting that names the model for a provider kind (None: not editable here)."""
    return {"azure": "azure_deployment", "openai": "openai_model",
            "compatible": "openai_model"}.get(kind)


MODEL_VARIABLES = {"azure_deployment": "AZURE_OPENAI_DEPLOYMENT_NAME",
                   "openai_model": "OPENAI_MODEL"}  # they win over the setting


class ChatControls(QFrame):
    """Emits ``changed(settings, rebuild)`` after the settings file has been written, and
    ``failed(message)`` when it could not be."""

    changed = Signal(object, bool)  # Settings, whether the provider must be rebuilt
    failed = Signal(str)
    toggle_sidebar = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("chatControls")
        self.settings = Settings()
        self.kind = ""  # the provider in use (what "auto" resolved to)
        self.sidebar_button = QToolButton()
        self.sidebar_button.setText("☰")
        self.sidebar_button.setAutoRaise(True)
        self.sidebar_button.setToolTip("Show or hide the chat list")
        self.sidebar_button.clicked.connect(self.toggle_sidebar)
        self.replies = QSpinBox()
        self.replies.setRange(MIN_REPLIES, max_replies())
        self.replies.setToolTip("Replies per turn: how many answers to compare and pick from")
        self.replies.setAccessibleName("Replies per turn")
        self.replies.valueChanged.connect(self._replies_changed)
        self.provider = QComboBox()
        for value, label in PROVIDER_CHOICES:
            self.provider.addItem(label, value)
        self.provider.insertSeparator(len(PROVIDER_CHOICES))
        self.provider.addItem("Arena", ARENA)
        self.provider.setAccessibleName("Replies from")
        self.provider.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.provider.activated.connect(self._provider_changed)
        self.model = QLineEdit()
        self.model.setPlaceholderText("model")
        self.model.setAccessibleName("Model")
        self.model.setMinimumWidth(90)
        self.model.editingFinished.connect(self._model_changed)
        replies_label = QLabel("Replies")
        replies_label.setBuddy(self.replies)
        from_label = QLabel("from")
        from_label.setBuddy(self.provider)
        row = QHBoxLayout(self)
        row.setContentsMargins(6, 4, 10, 4)
        row.setSpacing(6)
        row.addWidget(self.sidebar_button)
        row.addStretch(1)
        row.addWidget(replies_label)
        row.addWidget(self.replies)
        row.addWidget(from_label)
        row.addWidget(self.provider)
        row.addWidget(self.model, 1)
        self.model.setMaximumWidth(260)

    # ------------------------------------------------------------------ showing

    def sync(self, settings: Settings, kind: str, model: str) -> None:
        """Show ``settings`` and the provider in use (``kind``, ``model``) without writing."""
        self.settings, self.kind = settings, kind
        for w in (self.replies, self.provider, self.model):
            w.blockSignals(True)
        arena = self._sync_arena(settings)
        self.replies.setValue(sum(s.count for s in self._sources(settings)) if arena
                              else settings.candidates_per_turn)
        values = [v for v, _ in PROVIDER_CHOICES]
        self.provider.setCurrentIndex(
            self.provider.findData(ARENA) if arena else
            values.index(settings.provider) if settings.provider in values else 0)
        self.model.setText(model)
        self.model.setCursorPosition(0)  # the start of a long name shows
        self.model.setModified(False)
        editable = model_setting(kind) is not None
        self.model.setReadOnly(not editable)
        self.model.setToolTip(
            f"Model or deployment of the provider in use; Enter switches to it ({kind})"
            if editable else "The built-in model's GGUF file (choose another in Settings)"
            if kind == "local" else "No provider in use")
        for w in (self.replies, self.provider, self.model):
            w.blockSignals(False)

    @staticmethod
    def _sources(settings: Settings) -> list[CandidateSource]:
        try:
            return settings.arena_sources()
        except config.ConfigError:
            return []

    def _sync_arena(self, settings: Settings) -> bool:
        """The arena item: its text names the sources; disabled (saying what to do) with
        fewer than two. Returns whether the arena is in use."""
        sources = self._sources(settings)
        usable = len(sources) >= 2
        index = self.provider.findData(ARENA)
        self.provider.setItemText(index, "Arena: " + " vs ".join(
            f"{s.name} ({s.count})" for s in sources) if usable else "Arena (no sources yet)")
        self.provider.setItemData(index, None if usable else NO_ARENA_TIP,
                                  Qt.ItemDataRole.ToolTipRole)
        model = self.provider.model()
        if isinstance(model, QStandardItemModel):
            item = model.item(index)
            if item is not None:
                item.setEnabled(usable)
        arena = settings.arena and usable
        self.provider.setToolTip(
            "Replies from the arena's sources, their names hidden until you pick (Settings → "
            "Candidate sources edits them)" if arena else
            "Replies from this provider (Automatic: Azure → OpenAI → built-in), or from an "
            "arena of candidate sources" + ("" if usable else f".\n{NO_ARENA_TIP}"))
        self.replies.setEnabled(not arena)
        self.replies.setToolTip(
            "In the arena each source gives its own number of replies (Settings → Candidate "
            "sources)" if arena else "Replies per turn: how many answers to compare and pick "
            "from")
        self.model.setVisible(not arena)
        return arena

    # ------------------------------------------------------------------ writing

    def _write(self, settings: Settings, rebuild: bool) -> bool:
        try:
            config.save_settings(settings)
        except (config.ConfigError, OSError) as exc:
            self.failed.emit(f"Settings not saved: {exc}")
            self.sync(self.settings, self.kind, self.model.text())  # show what is in use
            return False
        self.settings = settings
        self.changed.emit(settings, rebuild)
        return True

    def _replies_changed(self, n: int) -> None:
        if n != self.settings.candidates_per_turn:
            self._write(replace(self.settings, candidates_per_turn=n), rebuild=False)

    def _provider_changed(self, _index: int = 0) -> None:
        value = str(self.provider.currentData())
        if value == ARENA:
            if not self.settings.arena:
                self._write(replace(self.settings, arena=True), rebuild=True)
        elif value != self.settings.provider or self.settings.arena:
            self._write(replace(self.settings, provider=value, arena=False), rebuild=True)

    def _model_changed(self) -> None:
        name = model_setting(self.kind)
        text = self.model.text().strip()
        if name is None or not self.model.isModified() or not text:
            return
        self.model.setModified(False)
        variable = MODEL_VARIABLES[name]
        if config.lookup(variable):
            self.failed.emit(f"{variable} is set in the environment or .env and wins over "
                             "this field; change it there to switch the model.")
            return
        if text != getattr(self.settings, name):
            changed = replace(self.settings)
            setattr(changed, name, text)
            self._write(changed, rebuild=True)
