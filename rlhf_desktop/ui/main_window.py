"""The main window: chat (with the conversation sidebar), dataset and model pages.

Only the chat page is built before the window shows. The dataset and model pages (and their
modules: the charts, the tune panel, the leaderboard) are built the first time they are
shown or asked for (:attr:`MainWindow.dataset`, :attr:`MainWindow.model_view`); the
settings dialog imports its module when it first opens
(``tests/test_lazy_loading.py``)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from PySide6.QtCore import QSettings, Qt
from PySide6.QtGui import QGuiApplication, QKeySequence, QResizeEvent, QShortcut
from PySide6.QtWidgets import (
    QApplication,
    QButtonGroup,
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from rlhf_desktop import config
from rlhf_desktop.config import Settings
from rlhf_desktop.core.chat_models import version_name
from rlhf_desktop.domain import ModelVersion
from rlhf_desktop.services.ranking.retraining import RetrainStatus
from rlhf_desktop.ui import theme
from rlhf_desktop.ui.backend import Backend
from rlhf_desktop.ui.chat.controls import ChatControls
from rlhf_desktop.ui.chat.draft_keeper import DraftKeeper
from rlhf_desktop.ui.chat.settings import ChatHeader, ChatSettingsDialog
from rlhf_desktop.ui.chat.view import ChatView
from rlhf_desktop.ui.orderly_close import OrderlyClose
from rlhf_desktop.ui.shortcuts import OPEN_KEYS, ShortcutsDialog, help_button
from rlhf_desktop.ui.sidebar import Sidebar
from rlhf_desktop.ui.status_area import StatusArea

if TYPE_CHECKING:  # built on first use (see the module docstring)
    from rlhf_desktop.ui.dataset.page import DatasetView
    from rlhf_desktop.ui.model.page import ModelView
    from rlhf_desktop.ui.settings.dialog import SettingsDialog

log = logging.getLogger(__name__)
BANNER_KEY = "builtin_banner_dismissed"
NARROW_WIDTH = 860  # below it the chat list hides (the ☰ button shows it)
MIN_HEIGHT = 480  # below it the conversation had no room left between banner and composer
CHAT_PAGE, DATASET_PAGE, MODEL_PAGE = range(3)


def builtin_banner(version: int) -> str:
    """The banner over a chat with the built-in model: which version it is (0: the base) and
    where better replies come from."""
    who = ("the built-in offline model (SmolLM2-135M)" if not version else
           f"{version_name(version)} of the built-in offline model (SmolLM2-135M, tuned on your "
           "picks)")
    return (f"You are chatting with {who}: private and free, but its replies are short and "
            "simple. Connect Azure OpenAI, OpenAI or a local server in Settings for better "
            "replies.")


class MainWindow(OrderlyClose):
    """Owns the pages; the backend owns the services."""

    def __init__(self, backend: Backend, dark: bool = False) -> None:
        super().__init__()
        self.backend = backend
        self.setWindowTitle("RLHF Desktop")
        self.resize(1320, 860)
        self.setMinimumHeight(MIN_HEIGHT)
        self._init_close()
        self._banner_dismissed = bool(QSettings().value(BANNER_KEY, False, type=bool))
        self._dark = dark

        self.chat = ChatView(backend, dark)
        self.drafts = DraftKeeper(self.chat.composer, backend.session.conversations)
        self.sidebar = Sidebar(backend.session.conversations)
        self._dataset: DatasetView | None = None
        self._model_view: ModelView | None = None
        self.controls = ChatControls()
        chat_page = QWidget()
        chat_column = QVBoxLayout(chat_page)
        chat_column.setContentsMargins(0, 0, 0, 0)
        chat_column.setSpacing(0)
        chat_column.addWidget(self.controls)
        chat_column.addWidget(self._build_chat_header())
        chat_column.addWidget(self.chat, 1)
        self.splitter = splitter = QSplitter()
        splitter.addWidget(self.sidebar)
        splitter.addWidget(chat_page)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([260, 1060])
        splitter.setChildrenCollapsible(False)
        self._narrow = False
        self._shortcuts_dialog: ShortcutsDialog | None = None
        self.pages = QStackedWidget()
        self._placeholders = {DATASET_PAGE: QWidget(), MODEL_PAGE: QWidget()}
        """Empty pages in the stack until their page is built."""
        for page in (splitter, *self._placeholders.values()):
            self.pages.addWidget(page)

        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self._build_nav())
        layout.addWidget(self._build_banner())
        layout.addWidget(self.pages, 1)
        self.setCentralWidget(central)
        self._build_status_bar()
        self._build_shortcuts()
        self._build_help_shortcuts()

        self.sidebar.selected.connect(self._select_conversation)
        self.chat.bar.set_counter(
            lambda text: backend.session.count_tokens(self.chat.conversation_id, text))
        self.sidebar.settings_requested.connect(self.open_chat_settings)
        self.chat.conversation_changed.connect(self._conversation_changed)
        self.chat.message.connect(lambda text: self.statusBar().showMessage(text, 6000))
        self.controls.changed.connect(self.apply_settings)
        self.controls.failed.connect(lambda text: self.statusBar().showMessage(text, 10000))
        self.controls.toggle_sidebar.connect(self.toggle_sidebar)
        backend.provider_changed.connect(self._provider_changed)
        backend.retrain_status.connect(self._retrain_status)
        backend.model_trained.connect(self._model_trained)
        backend.model_rejected.connect(self._model_rejected)
        backend.training_failed.connect(self.chat.on_training_failed)
        backend.labels_changed.connect(self._labels_changed)
        backend.reward_ready.connect(lambda: self.statusBar().showMessage(
            "Reward model ready", 4000))
        self._provider_changed()
        backend.conversations_changed.connect(self.sidebar.refresh)
        self._retrain_status(backend.session.models.status())
        QGuiApplication.styleHints().colorSchemeChanged.connect(self._scheme_changed)
        self.open_latest()

    def open_latest(self) -> None:
        """On start: the most recent chat (the first of the list), where the user left off;
        nothing is created. A data folder without chats starts with the empty new chat."""
        latest = self.sidebar.latest()
        if latest is not None:
            self.sidebar.highlight(latest)
            self.chat.show_conversation(latest)
            self._show_chat_summary()
        self.drafts.show_chat(latest)

    def _scheme_changed(self, scheme: Qt.ColorScheme) -> None:
        """The system switched between light and dark: follow it."""
        app = QApplication.instance()
        if isinstance(app, QApplication):
            self.set_dark(theme.apply(app, scheme == Qt.ColorScheme.Dark))

    def set_dark(self, dark: bool) -> None:
        """Restyle the pages whose colours do not come from the application palette (a
        page not built yet is built in the current scheme)."""
        self._dark = dark
        self.chat.set_dark(dark)
        if self._model_view is not None:
            self._model_view.set_dark(dark)

    # ------------------------------------------------------------------ the pages built late

    @property
    def dataset(self) -> DatasetView:
        """The dataset page, built on first use."""
        if self._dataset is None:
            from rlhf_desktop.ui.dataset.page import DatasetView

            self._dataset = DatasetView(self.backend)
            self._dataset.deleted.connect(self._pairs_deleted)
            self._place(DATASET_PAGE, self._dataset)
        return self._dataset

    @property
    def model_view(self) -> ModelView:
        """The model page, built on first use (it loads its figures as it is built)."""
        if self._model_view is None:
            from rlhf_desktop.ui.model.page import ModelView

            self._model_view = ModelView(self.backend, self._dark)
            self._place(MODEL_PAGE, self._model_view)
        return self._model_view

    def _place(self, index: int, page: QWidget) -> None:
        """Put ``page`` in the stack in place of its placeholder (the shown page stays)."""
        current = self.pages.currentIndex()
        placeholder = self._placeholders.pop(index)
        self.pages.insertWidget(index, page)
        self.pages.removeWidget(placeholder)
        placeholder.deleteLater()
        self.pages.setCurrentIndex(current)

    # ------------------------------------------------------------------ building

    def _build_nav(self) -> QWidget:
        bar = QFrame()
        bar.setObjectName("nav")
        row = QHBoxLayout(bar)
        row.setContentsMargins(12, 4, 12, 0)
        self.nav_group = QButtonGroup(self)
        self.nav_buttons: list[QPushButton] = []
        for i, (name, tip) in enumerate((("Chat", "Chat and pick the best replies (Ctrl+1)"),
                                         ("Dataset", "Your preference pairs (Ctrl+2)"),
                                         ("Model", "The reward model that ranks the replies, "
                                          "and tuning the chat model (Ctrl+3)"))):
            button = QPushButton(name)
            button.setObjectName("nav")
            button.setCheckable(True)
            button.setToolTip(tip)
            self.nav_group.addButton(button, i)
            self.nav_buttons.append(button)
            row.addWidget(button)
        self.nav_buttons[0].setChecked(True)
        self.nav_group.idClicked.connect(self.show_page)
        row.addStretch(1)
        settings = QPushButton("Settings")
        settings.setToolTip("Provider, API keys, replies per turn, retraining (Ctrl+,)")
        settings.clicked.connect(lambda: self.open_settings())
        row.addWidget(settings)
        row.addWidget(help_button(self, self.show_shortcuts))
        return bar

    def _build_banner(self) -> QWidget:
        self.banner = QFrame()
        self.banner.setObjectName("banner")
        row = QHBoxLayout(self.banner)
        row.setContentsMargins(16, 6, 8, 6)
        self.banner_text = QLabel("")
        self.banner_text.setWordWrap(True)
        button = QPushButton("Open Settings")
        button.clicked.connect(lambda: self.open_settings())
        close = QToolButton()
        close.setText("✕")
        close.setToolTip("Dismiss")
        close.setAutoRaise(True)
        close.clicked.connect(self.dismiss_banner)
        row.addWidget(self.banner_text, 1)
        row.addWidget(button)
        row.addWidget(close)
        self.banner.hide()
        return self.banner

    def _build_chat_header(self) -> QWidget:
        """This chat's own settings, in one line, with the button that changes them."""
        self.chat_header = ChatHeader(self.backend, lambda: self.chat.conversation_id)
        self.chat_header.message.connect(lambda text: self.statusBar().showMessage(text, 6000))
        self.chat_summary = self.chat_header.summary
        self.chat_settings_button = self.chat_header.button
        return self.chat_header

    def _show_chat_summary(self) -> None:
        self.chat.bar.update_count()  # another chat, model or provider: another count
        self.chat_header.refresh()

    def open_chat_settings(self, conversation_id: int | None = None) -> ChatSettingsDialog:
        """This chat's system prompt and model (the new chat's, before its first message)."""
        return self.chat_header.open_dialog(conversation_id)

    def _build_status_bar(self) -> None:
        self.status = StatusArea(self.statusBar())
        self.provider_label = self.status.provider_label
        self.provider_why = self.status.provider_why
        self.progress = self.status.progress
        self.retrain_label = self.status.retrain_label

    def _build_shortcuts(self) -> None:
        def add(keys: str | QKeySequence | QKeySequence.StandardKey, slot: object) -> QShortcut:
            shortcut = QShortcut(QKeySequence(keys), self)
            shortcut.setContext(Qt.ShortcutContext.WindowShortcut)
            shortcut.activated.connect(slot)
            return shortcut

        add(QKeySequence.StandardKey.New, self.new_chat)  # Ctrl+N
        add("Ctrl+R", self.chat.regenerate)
        add(QKeySequence.StandardKey.Find, self.focus_search)  # Ctrl+F
        add(QKeySequence.StandardKey.Undo, self.chat.undo_pick)  # Ctrl+Z outside text fields
        add("Alt+Z", self.chat.undo_pick)  # undo the last pick, wherever the focus is
        add("Esc", self.chat.stop)
        add("Ctrl+,", self.open_settings)
        add("Ctrl+Shift+,", self.open_chat_settings)
        add("Ctrl+Q", self.close)  # StandardKey.Quit is empty outside GNOME/KDE themes
        for page in range(3):
            add(f"Ctrl+{page + 1}", lambda p=page: self.show_page(p))
        for key in range(1, 10):  # plain 1…9 pick only on the turns (ChatView.keyPressEvent)
            add(f"Alt+{key}", lambda k=key: self._pick_key(k))

    def _build_help_shortcuts(self) -> None:
        for keys in OPEN_KEYS:
            shortcut = QShortcut(QKeySequence(keys), self)
            shortcut.setContext(Qt.ShortcutContext.WindowShortcut)
            shortcut.activated.connect(self.show_shortcuts)

    # ------------------------------------------------------------------ start & close

    async def start(self) -> None:
        """Choose the provider and load the reward model (after the window shows)."""
        await self.backend.start()

    # ------------------------------------------------------------------ actions

    def show_page(self, index: int) -> None:
        """0 chat, 1 dataset, 2 model. A page shown again reloads; one shown for the first
        time is built, and its constructor has just loaded it."""
        page: DatasetView | ModelView | None = None
        fresh = False
        if index == DATASET_PAGE:
            fresh, page = self._dataset is None, self.dataset
        elif index == MODEL_PAGE:
            fresh, page = self._model_view is None, self.model_view
        self.pages.setCurrentIndex(index)
        self.nav_buttons[index].setChecked(True)
        if page is not None and not fresh:
            page.refresh()

    def show_shortcuts(self) -> ShortcutsDialog:
        """Ctrl+/ or F1: the keyboard shortcuts list."""
        if self._shortcuts_dialog is None:
            self._shortcuts_dialog = ShortcutsDialog(self)
        self._shortcuts_dialog.show()
        self._shortcuts_dialog.raise_()
        self._shortcuts_dialog.activateWindow()
        return self._shortcuts_dialog

    def toggle_sidebar(self) -> None:
        """☰: show or hide the chat list."""
        self.sidebar.setVisible(self.sidebar.isHidden())

    def resizeEvent(self, event: QResizeEvent) -> None:
        """Below :data:`NARROW_WIDTH` the chat list hides; above it, it comes back."""
        super().resizeEvent(event)
        narrow = self.width() < NARROW_WIDTH
        if narrow != self._narrow:
            self._narrow = narrow
            self.sidebar.setVisible(not narrow)

    def new_chat(self) -> None:
        """Ctrl+N."""
        self.show_page(0)
        self.sidebar.new_chat()
        self.chat.composer.setFocus()

    def focus_search(self) -> None:
        """Ctrl+F: search chats (or filter the dataset on that page)."""
        if self.pages.currentIndex() == DATASET_PAGE:
            self.dataset.filter.setFocus()
            self.dataset.filter.selectAll()
        else:
            self.show_page(0)
            self.sidebar.show()
            self.sidebar.focus_search()

    def _pick_key(self, key: int) -> None:
        if self.pages.currentIndex() == CHAT_PAGE:
            self.chat.pick_key(key)

    def open_settings(self, focus: str | None = None) -> SettingsDialog:
        """Show the settings dialog (non-blocking); applies the settings when saved.
        ``focus`` names a setting to show and focus (e.g. ``n_ctx`` from an error)."""
        from rlhf_desktop.ui.settings.dialog import SettingsDialog, ranker_choices

        dialog = SettingsDialog(self.backend.settings, self, self.backend.provider_kind,
                                rankers=ranker_choices(self.backend.session))
        dialog.accepted.connect(lambda: self._settings_saved(dialog))
        dialog.open()
        if focus:
            dialog.focus_field(focus)
        return dialog

    def _settings_saved(self, dialog: SettingsDialog) -> None:
        if dialog.result_settings is not None:
            self.apply_settings(dialog.result_settings, dialog.provider_changed)
        if dialog.data_dir_changed:
            self.statusBar().showMessage(
                f"Data folder {config.remembered_data_dir()} is used from the next start, "
                "by the window and the command line", 10000)

    def apply_settings(self, settings: Settings, rebuild: bool) -> None:
        """Use settings already saved (Settings dialog, the row above the chat)."""
        self.backend.apply_settings(settings)
        self._sync_controls()
        if rebuild:
            self.status.switching()
            self.backend.spawn(self.backend.rebuild_provider(), "provider")
        self.statusBar().showMessage("Settings saved", 4000)

    def _sync_controls(self) -> None:
        b = self.backend
        self.controls.sync(b.settings, b.provider_kind, b.provider_model)

    def _pairs_deleted(self, count: int) -> None:
        pairs = f"{count} preference pair{'s' if count != 1 else ''}"
        self.status.offer_undo(f"Deleted {pairs}", self._undo_delete, f"delete of {pairs}")

    def _undo_delete(self) -> None:
        restored = self.dataset.undo_delete()
        self.statusBar().showMessage(f"Restored {restored} preference pair"
                                     f"{'s' if restored != 1 else ''}", 6000)

    def dismiss_banner(self) -> None:
        """Hide the built-in-model banner (remembered)."""
        self.banner.hide()
        if self.backend.provider_kind == "local":
            self._banner_dismissed = True
            QSettings().setValue(BANNER_KEY, True)

    # ------------------------------------------------------------------ backend signals

    def _provider_changed(self) -> None:
        b = self.backend
        self._sync_controls()
        self._show_chat_summary()
        self.status.show_provider(b)
        if b.provider_error:
            self.banner_text.setText(f"⚠ The provider is not configured: {b.provider_error}")
            self.banner.show()
            return
        if not b.provider_kind:
            return
        if b.provider_kind == "arena":  # shown again whenever it starts (not remembered)
            self.banner_text.setText(b.session.arena.banner())
            self.banner.show()
        elif b.provider_kind == "local" and not self._banner_dismissed:
            self.banner_text.setText(builtin_banner(b.settings.chat_model_version))
            self.banner.show()
        else:
            self.banner.hide()

    def _retrain_status(self, status: RetrainStatus) -> None:
        self.status.show_retrain(self.backend.status_text(status), status)

    def _model_trained(self, version: ModelVersion) -> None:
        self.chat.on_model_trained(version)
        self.statusBar().showMessage(f"Ranking with reward model v{version.version}", 6000)
        self._retrain_status(self.backend.session.models.status())

    def _model_rejected(self, version: ModelVersion) -> None:
        reason = (version.metrics.get("adoption") or {}).get("reason", "")
        self.statusBar().showMessage(
            f"Reward model v{version.version} was trained but not adopted"
            + (f": {reason}" if reason else "") + " (the model page lists it)", 10000)
        self._retrain_status(self.backend.session.models.status())

    def _labels_changed(self) -> None:
        if self.pages.currentIndex() == DATASET_PAGE and self._dataset is not None:
            self._dataset.refresh()

    def _select_conversation(self, conversation_id: object) -> None:
        cid = conversation_id if isinstance(conversation_id, int) else None
        if cid is None:  # a new chat starts from the defaults again
            self.backend.session.conversations.pending = None
        self.chat.show_conversation(cid)
        self.drafts.show_chat(cid)
        self._show_chat_summary()
        if self._narrow:  # a narrow window gives the room back to the chat
            self.sidebar.hide()

    def _conversation_changed(self) -> None:
        self.drafts.chat_created(self.chat.conversation_id)
        self.sidebar.current_id = self.chat.conversation_id
        self.sidebar.refresh()
        self._show_chat_summary()
