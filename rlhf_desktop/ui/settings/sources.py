"""Settings → "Candidate sources": the arena's list of sources, edited in place.

Each source is where some of an arena turn's replies come from: a provider (or the chat's
own), a model or deployment, a temperature (or the chat's), how many replies, a tuned
version of the built-in model, a server's base URL. The fields edit a draft of the list, so
a bad value (an empty or repeated name, a base URL that is not http(s)) stays as typed, is
named in plain words under the form, and only blocks Save.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from rlhf_desktop.config import Settings
from rlhf_desktop.core.chat_models import version_name
from rlhf_desktop.domain import CandidateSource
from rlhf_desktop.services.tuning.state import tuned_versions

SOURCE_PROVIDERS = (
    ("auto", "The chat's provider"),
    ("azure", "Azure OpenAI"),
    ("openai", "OpenAI"),
    ("compatible", "OpenAI-compatible server"),
    ("local", "Built-in model"),
)
MAX_REPLIES = 8  # in all, over every source of the arena (Settings.validate)
CHATS_TEMPERATURE = -0.1  # the spin box's special value: the chat's temperature
VERSION_TIP = "A version made by “Tune the chat model” (or rlhf-desktop tune)"


@dataclass
class Problem:
    """What is wrong with the list: the message, the source's row and the field's name."""

    message: str
    row: int
    field: str  # "name", "base_url", "count", "arena" or "active"


def check(sources: list[CandidateSource], arena: bool) -> Problem | None:
    """The first thing wrong with ``sources`` (and the arena switch), in plain words."""
    seen: dict[str, int] = {}
    for row, src in enumerate(sources):
        name = src.name.strip()
        if not name:
            return Problem(f"Source {row + 1} needs a name: it is what the cards show after "
                           "your pick and the leaderboard's row.", row, "name")
        if name in seen:
            return Problem(f"Two sources are called “{name}”: give each its own name (the "
                           "leaderboard tells them apart by it).", row, "name")
        seen[name] = row
        url = src.base_url.strip()
        if src.provider == "compatible" and url and not url.startswith(("http://", "https://")):
            return Problem(f"“{name}”: the base URL must start with http:// or https:// "
                           "(e.g. http://localhost:11434/v1), or stay empty for the one in "
                           "the provider settings.", row, "base_url")
    active = [src for src in sources if src.active]
    total = sum(src.count for src in active)
    if arena and len(sources) >= 2 and len(active) < 2:
        return Problem("The arena needs two or more sources in use: tick “In the arena” "
                       "on another, or untick “Use the arena”.",
                       next((r for r, s in enumerate(sources) if not s.active), 0), "active")
    if arena and len(sources) < 2:
        return Problem("The arena needs two or more sources: add another, or untick "
                       "“Use the arena”.", max(0, len(sources) - 1), "arena")
    if arena and total > MAX_REPLIES:
        return Problem(f"The sources ask for {total} replies per turn; {MAX_REPLIES} is the "
                       "most. Lower a source's replies.", len(sources) - 1, "count")
    return None


def summary(src: CandidateSource) -> str:
    """One line for the list: name — provider · model · temperature · replies."""
    provider = dict(SOURCE_PROVIDERS).get(src.provider, src.provider)
    parts = [provider if src.provider != "auto" else "chat's provider"]
    if src.provider == "local":
        parts.append(version_name(src.chat_model_version))
    elif src.model:
        parts.append(src.model)
    parts.append("chat's temperature" if src.temperature is None
                 else f"temperature {src.temperature:g}")
    parts.append(f"{src.count} repl{'y' if src.count == 1 else 'ies'}")
    off = "" if src.active else " (off)"
    return f"{src.name.strip() or '(no name)'}{off} — " + " · ".join(parts)


class SourcesEditor(QGroupBox):
    """The list, its Add/Remove buttons, one source's form and the arena switch."""

    def __init__(self, settings: Settings, parent: QWidget | None = None) -> None:
        super().__init__("Candidate sources (arena)", parent)
        self.drafts: list[CandidateSource] = settings.sources()
        self._loading = False
        self.versions = tuned_versions()

        intro = QLabel("An arena turn draws its replies from two or more sources (providers, "
                       "models, temperatures, tuned versions) and hides which is which until "
                       "you label it. Choose “Arena” above the chat to use it.")
        intro.setObjectName("muted")
        intro.setWordWrap(True)
        self.list = QListWidget()
        self.list.setAccessibleName("Candidate sources")
        self.list.setMaximumHeight(96)
        # a row longer than the list wraps instead of needing a horizontal scroll (a new
        # user had to scroll sideways to read "… · temperature 1.3 · 1 reply")
        self.list.setWordWrap(True)
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list.setToolTip("Each source: name — provider · model or version · temperature "
                             "· replies")
        self.list.currentRowChanged.connect(self._show_row)
        self.add_button = QPushButton("Add source")
        self.add_button.clicked.connect(self.add)
        self.remove_button = QPushButton("Remove")
        self.remove_button.clicked.connect(self.remove)
        buttons = QVBoxLayout()
        buttons.addWidget(self.add_button)
        buttons.addWidget(self.remove_button)
        buttons.addStretch(1)
        top = QHBoxLayout()
        top.addWidget(self.list, 1)
        top.addLayout(buttons)

        self.name = QLineEdit()
        self.name.setPlaceholderText("e.g. chat model v3, gpt-4o-mini, hot")
        self.provider = QComboBox()
        for value, label in SOURCE_PROVIDERS:
            self.provider.addItem(label, value)
        self.model = QLineEdit()
        self.temperature = QDoubleSpinBox()
        self.temperature.setRange(CHATS_TEMPERATURE, 2.0)
        self.temperature.setSingleStep(0.1)
        self.temperature.setDecimals(2)
        self.temperature.setSpecialValueText("the chat's")
        self.count = QSpinBox()
        self.count.setRange(1, MAX_REPLIES)
        self.count.setSuffix(" per turn")
        self.version = QComboBox()
        self.base_url = QLineEdit()
        self.base_url.setPlaceholderText("empty: the server in the provider settings")
        self.active = QCheckBox("In the arena (untick to keep it in the list without replies)")
        self.form_box = QWidget()
        form = QFormLayout(self.form_box)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("Name", self.name)
        form.addRow("Provider", self.provider)
        self.model_label = QLabel("Model")
        form.addRow(self.model_label, self.model)
        form.addRow("Temperature", self.temperature)
        form.addRow("Replies", self.count)
        self.version_label = QLabel("Tuned version")
        form.addRow(self.version_label, self.version)
        self.base_url_label = QLabel("Base URL")
        form.addRow(self.base_url_label, self.base_url)
        form.addRow("", self.active)

        self.empty_hint = QLabel("No sources yet: click “Add source”, then give it a name, "
                                 "a provider, a temperature and its replies per turn.")
        self.empty_hint.setObjectName("muted")
        self.empty_hint.setWordWrap(True)

        self.arena = QCheckBox("Use the arena for new turns (also chosen above the chat)")
        self.arena.setChecked(settings.arena)
        self.error = QLabel("")
        self.error.setObjectName("sourcesError")
        self.error.setWordWrap(True)
        self.error.setStyleSheet("QLabel#sourcesError { color: #c62828; }")
        self.error.hide()

        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addLayout(top)
        layout.addWidget(self.form_box)
        layout.addWidget(self.empty_hint)
        layout.addWidget(self.arena)
        layout.addWidget(self.error)

        self.name.textEdited.connect(lambda t: self._edit(name=t))
        self.provider.activated.connect(lambda _i: self._edit(
            provider=str(self.provider.currentData())))
        self.model.textEdited.connect(lambda t: self._edit(model=t.strip()))
        self.temperature.valueChanged.connect(lambda v: self._edit(
            temperature=None if v <= CHATS_TEMPERATURE + 1e-9 else round(v, 2)))
        self.count.valueChanged.connect(lambda v: self._edit(count=v))
        self.version.activated.connect(lambda _i: self._edit(
            chat_model_version=int(self.version.currentData())))
        self.base_url.textEdited.connect(lambda t: self._edit(base_url=t.strip()))
        self.active.toggled.connect(lambda on: self._edit(active=on))
        self.arena.toggled.connect(lambda _on: self._validate())
        self._refill(0)

    # ------------------------------------------------------------------ the list

    def add(self) -> None:
        """A new source (the chat's provider at the chat's temperature), selected, its
        name ready to type."""
        taken = {s.name for s in self.drafts}
        k = len(self.drafts) + 1
        while f"source {k}" in taken:
            k += 1
        self.drafts.append(CandidateSource(name=f"source {k}"))
        self._refill(len(self.drafts) - 1)
        self.name.setFocus()
        self.name.selectAll()

    def remove(self) -> None:
        """Remove the selected source."""
        row = self.list.currentRow()
        if 0 <= row < len(self.drafts):
            del self.drafts[row]
            self._refill(min(row, len(self.drafts) - 1))

    def _refill(self, select: int) -> None:
        self._loading = True
        self.list.clear()
        for src in self.drafts:
            self.list.addItem(summary(src))
            self.list.item(self.list.count() - 1).setToolTip(summary(src))
        self._loading = False
        self.list.setCurrentRow(select if self.drafts else -1)
        self._show_row(self.list.currentRow())
        self._validate()

    def _show_row(self, row: int) -> None:
        if self._loading:
            return
        has = 0 <= row < len(self.drafts)
        self.form_box.setEnabled(has)
        self.form_box.setVisible(has)  # a disabled form still looks ready to type in
        self.empty_hint.setVisible(not has)
        self.remove_button.setEnabled(has)
        src = self.drafts[row] if has else CandidateSource(name="")
        self._loading = True
        self.name.setText(src.name)
        self.provider.setCurrentIndex(max(0, [v for v, _ in SOURCE_PROVIDERS]
                                          .index(src.provider)
                                          if src.provider in dict(SOURCE_PROVIDERS) else 0))
        self.model.setText(src.model)
        self.temperature.setValue(CHATS_TEMPERATURE if src.temperature is None
                                  else src.temperature)
        self.count.setValue(src.count)
        self._fill_versions(src.chat_model_version)
        self.base_url.setText(src.base_url)
        self.active.setChecked(src.active)
        self._loading = False
        self._show_fields(src.provider)

    def _fill_versions(self, current: int) -> None:
        self.version.clear()
        known = dict(self.versions)
        for number, label in self.versions:
            self.version.addItem(label, number)
        if current not in known:  # kept, never silently changed to another version
            self.version.addItem(f"v{current} (not in this data folder)", current)
        self.version.setCurrentIndex(self.version.findData(current))

    def _show_fields(self, provider: str) -> None:
        """Enable the fields that apply to ``provider`` and grey out the others, each saying
        why in its tooltip: every row stays where it is, so choosing a provider never moves
        the form under the pointer."""
        local, compatible = provider == "local", provider == "compatible"
        fields: list[tuple[QWidget, QLabel, bool, str, str]] = [
            (self.version, self.version_label, local, VERSION_TIP,
             "Only the built-in model has tuned versions"),
            (self.base_url, self.base_url_label, compatible,
             "The OpenAI-compatible server's base URL (empty: the one in the provider "
             "settings)", "Only an OpenAI-compatible server takes a base URL"),
            (self.model, self.model_label, not local,
             "The model or deployment this source asks for",
             "The built-in model has no model name: choose its tuned version")]
        for field, label, applies, tip, why_not in fields:
            field.setEnabled(applies)
            label.setEnabled(applies)
            field.setToolTip(tip if applies else why_not)
            label.setToolTip(field.toolTip())
        self.model_label.setText("Deployment" if provider == "azure" else "Model")
        self.model.setPlaceholderText("not used by the built-in model" if local else
                                      "empty: the one in the provider settings"
                                      if provider != "auto" else "empty: the chat's model")
        self.base_url.setPlaceholderText("empty: the server in the provider settings"
                                         if compatible else
                                         "only for an OpenAI-compatible server")

    def _edit(self, **change: object) -> None:
        row = self.list.currentRow()
        if self._loading or not 0 <= row < len(self.drafts):
            return
        self.drafts[row] = replace(self.drafts[row], **change)  # type: ignore[arg-type]
        item = self.list.item(row)
        if item is not None:
            item.setText(summary(self.drafts[row]))
        if "provider" in change:
            self._show_fields(str(change["provider"]))
        self._validate()

    # ------------------------------------------------------------------ checking

    def _validate(self) -> Problem | None:
        few = len(self.drafts) < 2
        self.arena.setToolTip("Add two or more sources to use the arena" if few else
                              "Draw each turn's replies from these sources")
        problem = check(self.drafts, self.arena.isChecked())
        self.error.setText(f"⚠ {problem.message}" if problem else "")
        self.error.setVisible(problem is not None)
        return problem

    def problem(self) -> Problem | None:
        """What blocks Save; the source at fault is selected and its field focused."""
        problem = self._validate()
        if problem is None:
            return None
        if problem.field != "arena" and self.list.currentRow() != problem.row:
            self.list.setCurrentRow(problem.row)
        field = {"name": self.name, "base_url": self.base_url, "count": self.count,
                 "arena": self.arena, "active": self.active}[problem.field]
        field.setFocus(Qt.FocusReason.OtherFocusReason)
        return problem

    def sources(self) -> list[CandidateSource]:
        """The sources as edited (names trimmed)."""
        return [replace(s, name=s.name.strip()) for s in self.drafts]

    def apply_to(self, settings: Settings) -> Settings:
        """``settings`` with these sources and the arena switch."""
        return replace(settings, candidate_sources=[s.to_dict() for s in self.sources()],
                       arena=self.arena.isChecked())
