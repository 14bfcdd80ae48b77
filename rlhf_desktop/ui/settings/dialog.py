"""Settings: provider and its fields, generation, retraining, data folder; and on a second
tab the arena's candidate sources (:mod:`~rlhf_desktop.ui.settings.sources`).

API keys go to the OS keyring (or the owner-only ``secrets.json``) through
``config.store_secret``; they are never written to settings.json, QSettings or the database.

A provider variable set in the environment or a ``.env`` file wins over its setting
(:func:`rlhf_desktop.config.lookup_origin`, the lookup the provider's choice uses): its field
shows the value in use, read-only, with "from .env" or "from the environment" beside it, and
saving keeps the stored setting. A key that is set only says so (``•••• set in .env``): its
characters never reach a widget.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from rlhf_desktop import config
from rlhf_desktop.config import Settings
from rlhf_desktop.services.ranking.evaluation import accuracy_text
from rlhf_desktop.ui.settings.sources import SourcesEditor

log = logging.getLogger(__name__)

PROVIDER_LABELS = (
    ("auto", "Automatic (Azure → OpenAI → built-in)"),
    ("azure", "Azure OpenAI"),
    ("openai", "OpenAI"),
    ("compatible", "OpenAI-compatible server (Ollama, LM Studio, vLLM, llama.cpp)"),
    ("local", "Built-in offline model"),
)
N_CTX_RANGE = (256, 131072)  # tokens; the built-in SmolLM2-135M was trained on 8,192
VARIABLES = {"azure_endpoint": "AZURE_OPENAI_ENDPOINT",
             "azure_deployment": "AZURE_OPENAI_DEPLOYMENT_NAME",
             "azure_api_version": "AZURE_OPENAI_API_VERSION",
             "openai_model": "OPENAI_MODEL", "openai_base_url": "OPENAI_BASE_URL"}
"""The setting each provider variable wins over (providers/select.py reads the same)."""


def key_state(name: str) -> str:
    """Where a key currently comes from, for the placeholder (never the key itself)."""
    _value, origin = config.lookup_origin(name)
    if origin:
        return f"•••• set in {origin} (it wins over a stored key)"
    if config.get_secret(name):
        return "•••• stored — leave empty to keep it"
    return "not set"


def ranker_choices(session: Any) -> list[tuple[str, str]]:
    """The session's transformers rankers as (folder, label) for the Ranker choice."""
    try:
        found = session.rankers.rankers()
    except (OSError, ValueError):
        log.exception("listing the rankers failed")
        return []
    return [(r.folder, f"{r.name} · held-out accuracy {accuracy_text(r.held_out_accuracy)}"
                       f" · {r.base}") for r in found]


class SettingsDialog(QDialog):
    """Edit and save :class:`Settings`; ``provider_changed`` tells whether to rebuild it."""

    def __init__(self, settings: Settings, parent: QWidget | None = None,
                 active_kind: str = "", rankers: list[tuple[str, str]] | None = None) -> None:
        """``active_kind``: the provider in use, whose tab "Automatic" opens on;
        ``rankers``: the transformers rankers to offer, as (folder, label)."""
        super().__init__(parent)
        self.active_kind = active_kind
        self.setWindowTitle("Settings")
        self.setMinimumWidth(620)
        self.original = settings
        self.result_settings: Settings | None = None
        self.provider_changed = False
        self.data_dir_changed = False
        self.from_variables: dict[str, str] = {}
        """The settings a variable wins over, and where it is set (``.env``, ``the
        environment``): their fields show the value in use, read-only."""
        s = settings

        self.provider = QComboBox()
        for value, label in PROVIDER_LABELS:
            self.provider.addItem(label, value)
        self.provider.setCurrentIndex(max(0, [v for v, _ in PROVIDER_LABELS].index(s.provider)))
        # One tab per kind of provider, all reachable (the built-in model's context size
        # matters under "Automatic" too); choosing a provider opens its tab.
        self.pages = QTabWidget()
        self.azure_endpoint = QLineEdit(s.azure_endpoint)
        self.azure_endpoint.setPlaceholderText("https://<resource>.openai.azure.com")
        self.azure_deployment = QLineEdit(s.azure_deployment)
        self.azure_version = QLineEdit(s.azure_api_version)
        self.azure_key = self._key_field("AZURE_OPENAI_API_KEY")
        self.openai_model = QLineEdit(s.openai_model)
        self.openai_base_url = QLineEdit(s.openai_base_url)
        self.openai_base_url.setPlaceholderText("empty: api.openai.com · e.g. "
                                                "http://localhost:11434/v1")
        self.openai_key = self._key_field("OPENAI_API_KEY")
        self.gguf_path = QLineEdit(s.gguf_path)
        self.gguf_path.setPlaceholderText("empty: the built-in SmolLM2-135M-Instruct")
        self.n_threads = QSpinBox()
        self.n_threads.setRange(1, 64)
        self.n_threads.setValue(s.n_threads)
        self.chat_model_version = QSpinBox()
        self.chat_model_version.setRange(0, 9999)
        self.chat_model_version.setSpecialValueText("the base model")
        self.chat_model_version.setPrefix("v")
        self.chat_model_version.setValue(s.chat_model_version)
        self.chat_model_version.setToolTip("A version made by `rlhf-desktop tune` (listed by "
                                           "`rlhf-desktop tune --list`); the base is v0")
        self.n_ctx = QSpinBox()
        self.n_ctx.setRange(*N_CTX_RANGE)
        self.n_ctx.setSingleStep(1024)
        self.n_ctx.setSuffix(" tokens")
        self.n_ctx.setValue(min(max(s.n_ctx, N_CTX_RANGE[0]), N_CTX_RANGE[1]))
        self.n_ctx.setToolTip(
            "How many tokens the model reads at once: the conversation, the system prompt "
            "and the reply. A larger context takes longer prompts but more memory; the "
            "built-in model was trained on 8,192.")
        self._show_variables()
        self._build_pages()
        self.provider.currentIndexChanged.connect(self._show_page)
        self._show_page()

        self.candidates = QSpinBox()
        self.candidates.setRange(1, 8)
        self.candidates.setValue(s.candidates_per_turn)
        self.temperature = QDoubleSpinBox()
        self.temperature.setRange(0.0, 2.0)
        self.temperature.setSingleStep(0.1)
        self.temperature.setValue(s.temperature)
        self.max_tokens = QSpinBox()
        self.max_tokens.setRange(1, 32768)
        self.max_tokens.setValue(s.max_tokens)
        self.system_prompt = QPlainTextEdit(s.system_prompt)
        self.system_prompt.setFixedHeight(70)
        self.blind = QCheckBox("Blind labeling: replies in a random order, no scores until "
                               "you pick")
        self.blind.setChecked(s.blind)
        self.retrain_every = QSpinBox()
        self.retrain_every.setRange(1, 10000)
        self.retrain_every.setValue(s.retrain_every)
        self.retrain_every.setSuffix(" new labels")
        self.train_on_cut = QCheckBox("Also train on pairs against replies cut at max tokens")
        self.train_on_cut.setChecked(s.train_on_cut_pairs)
        self.train_on_cut.setToolTip(
            "Off (the default): a pair whose rejected reply was cut at max tokens is stored and "
            "exported but the reward model does not train on it. Cut replies are the longest "
            "ones, so such pairs teach \"shorter wins\" rather than \"better wins\", and the "
            "ranking already puts a cut reply after every finished one. With a small built-in "
            "model most replies are cut at 256 tokens: raise Max tokens, or turn this on to "
            "train on those pairs too.")
        gen = QGroupBox("Replies and training")
        gen_form = QFormLayout(gen)
        gen_form.addRow("Replies per turn", self.candidates)
        gen_form.addRow("Temperature", self.temperature)
        gen_form.addRow("Max tokens", self.max_tokens)
        gen_form.addRow("System prompt", self.system_prompt)
        gen_form.addRow("Retrain every", self.retrain_every)
        gen_form.addRow("", self.train_on_cut)
        gen_form.addRow("", self.blind)
        self.ranker = QComboBox()
        self.ranker.addItem("the tiny reward model (retrained on your labels)", "")
        for folder, label in rankers or []:
            self.ranker.addItem(label, folder)
        if s.ranker and self.ranker.findData(s.ranker) < 0:
            self.ranker.addItem(f"{s.ranker} (not among this data folder's rankers)", s.ranker)
        self.ranker.setCurrentIndex(max(0, self.ranker.findData(s.ranker)))
        self.ranker.setToolTip(
            "What ranks the replies: the tiny reward model, or a transformers reward model "
            "trained with `python -m rlhf_desktop.tune` (method: reward). The model page "
            "compares them on pairs neither saw.")
        gen_form.addRow("Ranker", self.ranker)

        self.data_dir = QLineEdit(str(config.data_dir()))
        browse_data = QPushButton("Choose…")
        browse_data.clicked.connect(self._choose_data_dir)
        data_row = QHBoxLayout()
        data_row.addWidget(self.data_dir, 1)
        data_row.addWidget(browse_data)
        data_box = QGroupBox("Data folder (database, models, logs)")
        data_layout = QVBoxLayout(data_box)
        data_layout.addLayout(data_row)
        note = QLabel("A new folder takes effect at the next start. RLHF_DESKTOP_HOME and "
                      "--data-dir win over it.")
        note.setObjectName("muted")
        note.setWordWrap(True)
        data_layout.addWidget(note)

        provider_box = QGroupBox("Provider")
        provider_layout = QVBoxLayout(provider_box)
        provider_layout.addWidget(self.provider)
        provider_layout.addWidget(self.pages)

        self.sources_editor = SourcesEditor(s)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save
                                   | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        general = QWidget()
        general_layout = QVBoxLayout(general)
        general_layout.setContentsMargins(8, 10, 8, 8)
        general_layout.setSpacing(14)
        general_layout.addWidget(provider_box)
        general_layout.addWidget(gen)
        general_layout.addWidget(data_box)
        sources_page = QWidget()
        sources_layout = QVBoxLayout(sources_page)
        sources_layout.setContentsMargins(8, 10, 8, 8)
        sources_layout.addWidget(self.sources_editor)
        sources_layout.addStretch(1)
        self.tabs = QTabWidget()
        self.tabs.addTab(general, "General")
        self.tabs.addTab(sources_page, "Candidate sources")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(18, 16, 18, 14)
        layout.setSpacing(14)
        layout.addWidget(self.tabs)
        layout.addWidget(buttons)

    def _variable_fields(self) -> dict[str, QLineEdit]:
        return {"azure_endpoint": self.azure_endpoint, "azure_deployment": self.azure_deployment,
                "azure_api_version": self.azure_version, "openai_model": self.openai_model,
                "openai_base_url": self.openai_base_url}

    def _show_variables(self) -> None:
        """Fields whose variable is set show the value in use, read-only (see the module
        docstring)."""
        for setting, field in self._variable_fields().items():
            name = VARIABLES[setting]
            value, origin = config.lookup_origin(name)
            if not origin or value is None:
                continue
            self.from_variables[setting] = origin
            field.setText(value.strip())
            field.setReadOnly(True)
            field.setToolTip(f"{name} in {origin} wins over this setting: change it there")

    def _beside(self, setting: str, field: QWidget) -> QWidget:
        """``field``, with "from .env" / "from the environment" beside it when a variable
        wins over its setting."""
        origin = self.from_variables.get(setting)
        if origin is None:
            return field
        row = QWidget()
        layout = QHBoxLayout(row)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(field, 1)
        where = QLabel(f"from {origin}")
        where.setObjectName("muted")
        where.setToolTip(field.toolTip())
        layout.addWidget(where)
        return row

    def _key_field(self, name: str) -> QLineEdit:
        field = QLineEdit()
        field.setEchoMode(QLineEdit.EchoMode.Password)
        field.setPlaceholderText(key_state(name))
        field.setToolTip(f"{name}: kept in the OS keyring (or an owner-only file), never in "
                         "the settings file or the database")
        return field

    def _build_pages(self) -> None:
        def page(rows: list[tuple[str, QWidget]], note: str = "") -> QWidget:
            w = QWidget()
            form = QFormLayout(w)
            form.setContentsMargins(10, 10, 10, 6)
            for label, field in rows:
                form.addRow(label, field)
            if note:
                hint = QLabel(note)
                hint.setObjectName("muted")
                hint.setWordWrap(True)
                form.addRow(hint)
            return w

        browse = QPushButton("Browse…")
        browse.clicked.connect(self._choose_gguf)
        gguf_row = QWidget()
        row = QHBoxLayout(gguf_row)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.gguf_path, 1)
        row.addWidget(browse)
        azure = page([("Endpoint", self._beside("azure_endpoint", self.azure_endpoint)),
                      ("Deployment", self._beside("azure_deployment", self.azure_deployment)),
                      ("API version", self._beside("azure_api_version", self.azure_version)),
                      ("API key", self.azure_key)],
                     "Environment variables and .env (AZURE_OPENAI_*) win over these fields.")
        openai = page([("Model", self._beside("openai_model", self.openai_model)),
                       ("Base URL", self._beside("openai_base_url", self.openai_base_url)),
                       ("API key", self.openai_key)],
                      "Local servers usually need no key.")
        local = page([("GGUF file", gguf_row), ("Threads", self.n_threads),
                      ("Context size (n_ctx)", self.n_ctx),
                      ("Tuned version", self.chat_model_version)],
                     "Runs offline on this computer; 1 thread is fastest on small machines. "
                     "Raise the context size when a long message does not fit.")
        self._page_of = {"azure": azure, "openai": openai, "compatible": openai,
                         "local": local}
        for w, title in ((azure, "Azure OpenAI"), (openai, "OpenAI / compatible server"),
                         (local, "Built-in model")):
            self.pages.addTab(w, title)

    def _show_page(self) -> None:
        kind = str(self.provider.currentData())
        if kind == "auto":
            kind = self.active_kind if self.active_kind in self._page_of else "azure"
        self.pages.setCurrentWidget(self._page_of[kind])

    def focus_field(self, name: str) -> None:
        """Show and focus one field by its setting name (e.g. ``n_ctx`` from an error)."""
        if name in ("candidate_sources", "arena"):
            self.tabs.setCurrentIndex(1)
            self.sources_editor.list.setFocus()
            return
        self.tabs.setCurrentIndex(0)
        if name in ("n_ctx", "n_threads", "gguf_path"):
            self.pages.setCurrentWidget(self._page_of["local"])
        field = getattr(self, name, None)
        if isinstance(field, QWidget):
            field.setFocus()

    def _choose_gguf(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose a GGUF model", "",
                                              "GGUF models (*.gguf)")
        if path:
            self.gguf_path.setText(path)

    def _choose_data_dir(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Choose the data folder",
                                                self.data_dir.text())
        if path:
            self.data_dir.setText(path)

    def collect(self) -> Settings:
        """The settings as entered (validated)."""
        settings = replace(
            self.original,
            provider=str(self.provider.currentData()),
            azure_endpoint=self.azure_endpoint.text().strip(),
            azure_deployment=self.azure_deployment.text().strip(),
            azure_api_version=self.azure_version.text().strip() or "2024-08-01-preview",
            openai_model=self.openai_model.text().strip() or "gpt-4o-mini",
            openai_base_url=self.openai_base_url.text().strip(),
            gguf_path=self.gguf_path.text().strip(),
            n_threads=self.n_threads.value(),
            n_ctx=self.n_ctx.value(),
            candidates_per_turn=self.candidates.value(),
            temperature=round(self.temperature.value(), 2),
            max_tokens=self.max_tokens.value(),
            system_prompt=self.system_prompt.toPlainText().strip(),
            retrain_every=self.retrain_every.value(),
            train_on_cut_pairs=self.train_on_cut.isChecked(),
            blind=self.blind.isChecked(),
            chat_model_version=self.chat_model_version.value(),
            ranker=str(self.ranker.currentData() or ""),
        )
        for setting in self.from_variables:  # shown, not stored: the variable wins
            setattr(settings, setting, getattr(self.original, setting))
        settings = self.sources_editor.apply_to(settings)
        settings.validate()
        low, high = N_CTX_RANGE
        if not low <= settings.n_ctx <= high:
            raise config.ConfigError(f"Context size (n_ctx) must be between {low:,} and "
                                     f"{high:,} tokens.")
        return settings

    def save(self) -> Settings:
        """Store settings, keys and the data folder. Raises ConfigError on a bad value."""
        settings = self.collect()
        config.save_settings(settings)
        stored = False
        for name, field in (("AZURE_OPENAI_API_KEY", self.azure_key),
                            ("OPENAI_API_KEY", self.openai_key)):
            value = field.text().strip()
            if value:
                config.store_secret(name, value)
                field.clear()
                stored = True
        folder = self.data_dir.text().strip()
        if folder and folder != str(config.data_dir()):
            config.remember_data_dir(folder)  # the command line uses it too
            self.data_dir_changed = True
        keys = ("provider", "azure_endpoint", "azure_deployment", "azure_api_version",
                "openai_model", "openai_base_url", "gguf_path", "n_threads", "n_ctx",
                "chat_model_version")
        arena_changed = settings.arena != self.original.arena or (
            settings.arena and settings.candidate_sources != self.original.candidate_sources)
        self.provider_changed = stored or arena_changed or any(
            getattr(settings, k) != getattr(self.original, k) for k in keys)
        self.result_settings = settings
        return settings

    def accept(self) -> None:
        """Save, or say what is wrong and stay open (a source's problem is said under its
        form, on its tab)."""
        if self.sources_editor.problem() is not None:
            self.tabs.setCurrentIndex(1)
            self.sources_editor.problem()  # focus the field now that it shows
            return
        try:
            self.save()
        except config.ConfigError as exc:
            QMessageBox.warning(self, "Settings", str(exc))
            return
        super().accept()

