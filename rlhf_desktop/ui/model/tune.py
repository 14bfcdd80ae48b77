"""The model page's "Tune the chat model" section: a local DPO run on your pairs in a separate
low-priority process, its progress, cancel/resume, the blind A/B against the base, the
chosen chat-model version, and a remote DPO job on Azure OpenAI / OpenAI.

Everything goes through :class:`~rlhf_desktop.services.tuning.service.TuningService`; this widget
only renders its snapshots, as the service publishes them (``tune_did_progress``, on the
window's event loop: a run's progress, the measurements, the install, the remote job; no timer
here) and when the user acts; it never blocks the window: the export runs in the service's
worker, the remote calls in worker threads, and the confirmation dialog is window-modal but
not a nested loop.
Where the ``tune`` extra is missing, the panel offers to install it (pip in the service's
low-priority child, with a progress bar, the current line and Cancel); in the desktop bundle
it says that tuning needs a Python install.
"""

from __future__ import annotations

import logging
from typing import Any

import shiboken6
from PySide6.QtCore import Qt
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from rlhf_desktop.config import ConfigError, load_settings
from rlhf_desktop.core.chat_models import version_name
from rlhf_desktop.services.tuning.effect import effect_words
from rlhf_desktop.services.tuning.remote import (
    DEFAULT_MODEL,
    RemoteError,
    RemoteOffer,
    RemoteSnapshot,
)
from rlhf_desktop.services.tuning.service import InstallSnapshot, TuneSnapshot, TuningService
from rlhf_desktop.services.tuning.state import ab_notice
from rlhf_desktop.ui.backend import KIND_NAMES

log = logging.getLogger(__name__)


def _num(value: float | None, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def _minutes(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min"


def metrics_text(snap: TuneSnapshot) -> str:
    """``step 3 of 25 · loss 0.690 · reward accuracy 0.50 · margin +0.004 · …``."""
    parts = []
    if snap.step is not None:
        parts.append(f"step {snap.step} of {snap.max_steps or '?'}")
        parts += [f"loss {_num(snap.loss, '.3f')}",
                  f"reward accuracy {_num(snap.accuracy, '.2f')}",
                  f"margin {_num(snap.margin, '+.3f')}"]
    if snap.elapsed_s is not None and snap.active:
        parts.append(f"{_minutes(snap.elapsed_s)} elapsed")
    if snap.eta_s and snap.active:
        parts.append(f"about {_minutes(snap.eta_s)} left")
    return " · ".join(parts)


def fit_text(snap: TuneSnapshot) -> str:
    """The pairs that did not fit (reported, never silently dropped)."""
    if not snap.left_out and not snap.truncated and not snap.context_cut:
        return ""
    text = []
    if snap.left_out:
        n = len(snap.left_out)
        shown = [f"“{str(p.get('preview') or '').strip()[:40]}…”" if p.get("preview")
                 else f"line {p.get('line')}" for p in snap.left_out[:3]]
        more = f" and {n - 3} more" if n > 3 else ""
        text.append(f"{n} pair{'s' if n != 1 else ''} left out because the system prompt and "
                    f"the last message alone are longer than the length limit: "
                    f"{', '.join(shown)}{more}")
    if snap.context_cut:
        text.append(f"{snap.context_cut} from later turns of a chat used with their earliest "
                    "turns cut to fit")
    if snap.truncated:
        text.append(f"{snap.truncated} with replies cut at the length limit")
    return "; ".join(text) + "."


def set_primary(button: QPushButton, on: bool) -> None:
    """Give ``button`` the accent of the page's next step (or take it away)."""
    name = "primary" if on else ""
    if button.objectName() != name:
        button.setObjectName(name)
        button.style().unpolish(button)
        button.style().polish(button)


class TunePanel(QWidget):
    """"Tune the chat model" (see the module docstring)."""

    def __init__(self, backend: Any, service: TuningService | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.backend = backend
        session = backend.session
        self.service: TuningService = (service or getattr(session, "tuning", None)
                                       or TuningService.for_session(session))
        self.confirm_box: QMessageBox | None = None
        self._offer: RemoteOffer | None = None
        self._last_state = ""
        self._checking = False
        """The plan waits for the pairs' measurement: re-plan on every event until it ends."""
        self._install_state = ""

        title = QLabel("Tune the chat model")
        title.setObjectName("kpiValue")
        title.setStyleSheet("font-size: 16px;")
        about = QLabel("Fine-tune the built-in chat model on your preference pairs (DPO with "
                       "LoRA) in a separate low-priority process; the window stays usable. "
                       "The result is a new chat-model version; choosing the base rolls back.")
        about.setObjectName("muted")
        about.setWordWrap(True)
        self.tune_button = QPushButton("Tune")
        self.tune_button.setObjectName("primary")
        self.tune_button.clicked.connect(self.start)
        self.plan_label = QLabel("")
        self.plan_label.setWordWrap(True)
        self.cut_box = QCheckBox("Tune on pairs against a reply cut at max tokens")
        self.cut_box.setChecked(self.service.use_cut_pairs)
        self.cut_box.setToolTip("Included by default: you preferred a whole reply over one that "
                                "stops mid-sentence, a real preference that teaches the model "
                                "to finish its replies. Untick to leave them out (the reward "
                                "model leaves them out of its training).")
        self.cut_box.toggled.connect(self._cut_toggled)
        self.cut_box.hide()
        self.amplify_box = QCheckBox("Let my reward model label extra pairs (experimental)")
        self.amplify_box.setChecked(self.service.amplify)
        self.amplify_box.setToolTip(
            "Before training, the chat model answers your past prompts again and your reward "
            "model labels its best reply against its worst, only while it is right on at least "
            "70 % of the pairs it never saw. Those pairs stay in the run's folder: never in "
            "your data or your exports. Off by default until the benchmark shows it beats "
            "your pairs alone (docs/benchmarks.md).")
        self.amplify_box.toggled.connect(self._amplify_toggled)
        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        self.progress.hide()
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.metrics = QLabel("")
        self.metrics.setObjectName("muted")
        self.fit = QLabel("")
        self.fit.setObjectName("muted")
        self.fit.setWordWrap(True)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop after the current step; the checkpoint is kept")
        self.cancel_button.clicked.connect(self.cancel)
        self.resume_button = QPushButton("Resume")
        self.resume_button.setToolTip("Continue the last run from its checkpoint")
        self.resume_button.clicked.connect(self.resume)
        self.ab_button = QPushButton("Try it blind against the base")
        self.ab_button.setToolTip("Next turns show one reply from the base model and one from "
                                  "the tuned version, in random order, names hidden until you "
                                  "pick")
        self.ab_button.clicked.connect(self.try_blind)
        self.effect = QLabel("")
        """The measured effect of the newest tuned version on the user's taste, in words."""
        self.effect.setObjectName("effect")
        self.effect.setWordWrap(True)
        self.effect.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.effect.hide()
        self.effect_button = QPushButton("Measure the effect")
        self.effect_button.setToolTip("One reply from the base and one from the tuned version "
                                      "for each of up to 40 of your past prompts (same seeds), "
                                      "judged by your ranker, in a low-priority process")
        self.effect_button.clicked.connect(self.measure_effect)
        self.effect_button.hide()
        self.notice = QLabel("")
        """What the last action did (the blind comparison, a refusal); kept until the next."""
        self.notice.setWordWrap(True)
        self.notice.hide()
        self.version_box = QComboBox()
        self.version_box.setToolTip("The chat-model version the built-in model chats with")
        self.version_box.activated.connect(self._version_chosen)
        self.chat_line = QLabel("")
        """Which model the chat uses now (the service's words, redrawn with the settings)."""
        self.chat_line.setObjectName("muted")
        self.chat_line.setWordWrap(True)

        row = QHBoxLayout()
        row.addWidget(self.tune_button)
        row.addWidget(self.plan_label, 1)
        buttons = QHBoxLayout()
        for b in (self.cancel_button, self.resume_button, self.ab_button, self.effect_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        buttons.addWidget(QLabel("Chat with:"))
        buttons.addWidget(self.version_box)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        widgets: list[QWidget] = [title, about]
        for w in widgets:
            layout.addWidget(w)
        layout.addWidget(self._install_box())
        layout.addLayout(row)
        layout.addWidget(self.cut_box)
        layout.addWidget(self.amplify_box)
        widgets = [self.progress, self.status, self.metrics, self.fit, self.effect]
        for w in widgets:
            layout.addWidget(w)
        layout.addLayout(buttons)
        layout.addWidget(self.chat_line)
        layout.addWidget(self.notice)
        layout.addWidget(self._remote_box())

        hook, listener = self.service.did_progress, self._progressed
        hook.append(listener)
        self.destroyed.connect(lambda *_: hook.remove(listener))
        labels_changed = getattr(backend, "labels_changed", None)
        if labels_changed is not None:
            labels_changed.connect(lambda: self.refresh(plan=True))
        provider_changed = getattr(backend, "provider_changed", None)
        if provider_changed is not None:  # a switch in Settings or above the chat
            provider_changed.connect(self._render_versions)
        self.refresh(plan=True)

    def _install_box(self) -> QGroupBox:
        box = QGroupBox("The tuning packages")
        self.install_box = box
        self.install_text = QLabel("")
        self.install_text.setWordWrap(True)
        self.install_text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.install_button = QPushButton("Install the tuning packages")
        self.install_button.setObjectName("primary")
        self.install_button.setToolTip("pip install of the 'tune' extra into this Python, in a "
                                       "low-priority process")
        self.install_button.clicked.connect(self.install)
        self.install_cancel = QPushButton("Cancel")
        self.install_cancel.setToolTip("Stop pip now")
        self.install_cancel.clicked.connect(self.cancel_install)
        self.install_progress = QProgressBar()
        self.install_progress.setTextVisible(True)
        self.install_line = QLabel("")
        self.install_line.setObjectName("muted")
        self.install_line.setWordWrap(True)
        self.install_errors = QLabel("")
        self.install_errors.setWordWrap(True)
        self.install_errors.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        buttons = QHBoxLayout()
        buttons.addWidget(self.install_button)
        buttons.addWidget(self.install_cancel)
        buttons.addStretch(1)
        layout = QVBoxLayout(box)
        for w in (self.install_text, self.install_progress, self.install_line,
                  self.install_errors):
            layout.addWidget(w)
        layout.addLayout(buttons)
        return box

    def _remote_box(self) -> QGroupBox:
        box = QGroupBox("Remote: a DPO fine-tuning job on Azure OpenAI or OpenAI")
        self.remote_model = QLineEdit(DEFAULT_MODEL)
        self.remote_model.setToolTip("The base model to tune on the configured account")
        self.remote_button = QPushButton("Send pairs…")
        self.remote_button.setToolTip("Asks first, naming the account and the number of pairs")
        self.remote_button.clicked.connect(self.send_remote)
        self.remote_check = QPushButton("Check status")
        self.remote_check.clicked.connect(self.service.remote.refresh)
        self.remote_cancel = QPushButton("Cancel job")
        self.remote_cancel.clicked.connect(self.service.remote.cancel)
        self.remote_ab = QPushButton("Try it blind against the base")
        self.remote_ab.clicked.connect(self.try_remote_blind)
        self.remote_status = QLabel("")
        self.remote_status.setWordWrap(True)
        top = QHBoxLayout()
        top.addWidget(QLabel("Base model:"))
        top.addWidget(self.remote_model, 1)
        top.addWidget(self.remote_button)
        bottom = QHBoxLayout()
        for b in (self.remote_check, self.remote_cancel, self.remote_ab):
            bottom.addWidget(b)
        bottom.addStretch(1)
        layout = QVBoxLayout(box)
        layout.addLayout(top)
        layout.addWidget(self.remote_status)
        layout.addLayout(bottom)
        return box

    # ------------------------------------------------------------------ rendering

    def showEvent(self, event: QShowEvent) -> None:
        """Recount the pairs when shown (a chat may have added some)."""
        super().showEvent(event)
        self.refresh(plan=True)

    def _progressed(self, _snap: TuneSnapshot) -> None:
        """``tune_did_progress`` (on the window's event loop): render what moved. The state
        now, not the published snapshot: one published before a click here (a cancel) may
        arrive after it."""
        if shiboken6.isValid(self):
            self.refresh()

    def refresh(self, plan: bool = False) -> None:
        """Render the service's snapshots (``plan``: also recount the pairs)."""
        snap = self.service.snapshot()
        extra = self.service.install.snapshot()
        if extra.state != self._install_state:  # installed, failed or cancelled: plan again
            plan, self._install_state = True, extra.state
        if plan or snap.state != self._last_state or self._checking:  # not every tick
            self._last_state = snap.state
            self._render_plan(snap)
            self._render_versions()
        self._render(snap)
        self._render_install(self.service.install.snapshot())
        self._render_remote(self.service.remote.snapshot())

    def _render_plan(self, snap: TuneSnapshot) -> None:
        if snap.active:
            return
        try:
            plan = self.service.plan()
        except Exception as exc:  # a locked or damaged database must not break the page
            log.exception("planning a tuning run failed")
            self.plan_label.setText(f"Cannot plan a run: {exc}")
            self.tune_button.setEnabled(False)
            return
        if plan.blocker is None and plan.stored is None and not plan.checking:
            if self.service.check_fit():  # count only the pairs that fit, before starting
                plan = self.service.plan()  # (its end is published: the plan is made again)
        self._checking = plan.checking
        self.cut_box.setVisible(plan.cut_pairs > 0)
        self.cut_box.setEnabled(not snap.active)
        self.amplify_box.setEnabled(not snap.active)
        self.plan_label.setText(plan.text())
        self.tune_button.setEnabled(plan.blocker is None)

    def _render(self, snap: TuneSnapshot) -> None:
        shown = snap.state != "idle"
        self.progress.setVisible(snap.active or snap.state == "done")
        if snap.fraction is None:
            self.progress.setRange(0, 0 if snap.active else 1)  # busy until the first step
            if not snap.active:
                self.progress.setValue(1 if snap.state == "done" else 0)
        else:
            self.progress.setRange(0, snap.max_steps or 1)
            self.progress.setValue(snap.step or 0)
            self.progress.setFormat("step %v of %m")
        state = {"preparing": "Preparing", "running": "Tuning", "cancelling": "Cancelling",
                 "done": "Done", "failed": "Failed"}.get(snap.state)
        self.status.setText("" if not shown else f"{state}: {snap.message}" if state
                            and not snap.message.startswith(state) else snap.message)
        self.metrics.setText(metrics_text(snap))
        self.fit.setText(fit_text(snap))
        for label in (self.status, self.metrics, self.fit):
            label.setVisible(bool(label.text()))
        if snap.active:
            self.tune_button.setEnabled(False)
        self.cancel_button.setVisible(snap.active)
        self.cancel_button.setText("Stop now" if snap.state == "cancelling" else "Cancel")
        self.resume_button.setVisible(snap.can_resume)
        made = snap.state == "done" and bool(snap.version)
        self.ab_button.setVisible(made)
        if snap.version:
            self.ab_button.setText(f"Try {version_name(snap.version)} blind against the base")
        # after a run the next step is trying the version, not tuning again: it gets the
        # accent (a new user saw only the blue Tune button)
        set_primary(self.ab_button, made)
        set_primary(self.tune_button, not made)
        self._render_effect(snap)

    def _render_effect(self, snap: TuneSnapshot) -> None:
        """The newest version's measured effect, or the measurement's progress."""
        measuring, note = self.service.effect_status()
        versions = self.service.versions()
        newest = versions[-1] if versions else None
        effect = self.service.effect(newest) if newest is not None else None
        lines = []
        if effect is not None:
            lines.append("Measured effect: " + effect_words(effect))
        if note:
            lines.append(note)
        self.effect.setText("\n".join(lines))
        self.effect.setVisible(bool(lines))
        self.effect_button.setVisible(newest is not None and effect is None
                                      and measuring is None and not snap.active)
        if newest is not None:
            self.effect_button.setText(f"Measure {version_name(newest)} on your past prompts")

    def _render_versions(self) -> None:
        versions = [0, *self.service.versions()]
        chosen = self.service.chosen_version()
        if [self.version_box.itemData(i) for i in range(self.version_box.count())] != versions:
            self.version_box.clear()
            for v in versions:
                self.version_box.addItem(version_name(v), v)
        index = self.version_box.findData(chosen)
        if index >= 0 and index != self.version_box.currentIndex():
            self.version_box.setCurrentIndex(index)
        self.render_chat_line()

    def render_chat_line(self) -> None:
        """Which model the chat uses now (also after a change in Settings or above the chat)."""
        b = self.backend
        kind = getattr(b, "provider_kind", "")
        name = f"{KIND_NAMES.get(kind, kind)} · {getattr(b, 'provider_model', '')}"
        self.chat_line.setText(self.service.chat_line(kind, name))

    def _render_install(self, extra: InstallSnapshot) -> None:
        """The offer to install the tune extra, pip's progress, or why it cannot be here."""
        self.install_box.setVisible(not extra.available)
        if extra.available:
            return
        self.install_text.setText(extra.message)
        self.install_button.setVisible(extra.can_install)
        self.install_button.setText("Try the install again" if extra.state == "failed"
                                    else "Install the tuning packages")
        self.install_cancel.setVisible(extra.active)
        self.install_progress.setVisible(extra.active)
        if extra.active:
            self.install_progress.setRange(0, max(extra.total, 1))
            self.install_progress.setValue(min(extra.step, extra.total))
            self.install_progress.setFormat("step %v of %m")
        self.install_line.setText(extra.line if extra.active else "")
        self.install_line.setVisible(extra.active and bool(extra.line))
        self.install_errors.setText("\n".join(extra.errors) if extra.state == "failed" else "")
        self.install_errors.setVisible(bool(self.install_errors.text()))

    def _render_remote(self, snap: RemoteSnapshot) -> None:
        if snap.state == "idle":
            text = "No remote job yet."
        else:
            where = f"{snap.provider} at {snap.host}" if snap.host else snap.provider
            job = f"job {snap.job_id} · " if snap.job_id else ""
            text = (f"{job}{snap.status or snap.state} · {snap.model} · {snap.pairs} pairs · "
                    f"{where}" + (f"\n{snap.message}" if snap.message else ""))
        self.remote_status.setText(text)
        self.remote_button.setEnabled(not snap.active and self.confirm_box is None)
        self.remote_check.setVisible(bool(snap.job_id) and snap.state == "running")
        self.remote_cancel.setVisible(bool(snap.job_id) and snap.state == "running")
        self.remote_ab.setVisible(snap.state == "succeeded" and bool(snap.fine_tuned_model))

    # ------------------------------------------------------------------ actions

    def start(self) -> None:
        """Start a run with the measured defaults."""
        try:
            self.service.start()
        except RuntimeError as exc:
            self._notify(str(exc))
        self.refresh()

    def install(self) -> None:
        """Install the tune extra (pip in the service's low-priority child process)."""
        try:
            self.service.install.start()
        except RuntimeError as exc:
            self._notify(str(exc))
        self.refresh(plan=True)

    def cancel_install(self) -> None:
        """Kill pip."""
        self.service.install.cancel()
        self.refresh()

    def cancel(self) -> None:
        """Stop after the current step (a second click: stop now); shown at once."""
        self.service.cancel()
        self.refresh()

    def resume(self) -> None:
        """Continue the last run from its checkpoint."""
        try:
            self.service.resume()
        except RuntimeError as exc:
            self._notify(str(exc))
        self.refresh()

    def _amplify_toggled(self, checked: bool) -> None:
        self.service.amplify = checked

    def _cut_toggled(self, checked: bool) -> None:
        self.service.use_cut_pairs = checked
        self.refresh(plan=True)

    def measure_effect(self) -> None:
        """Measure the newest version against the base on the user's past prompts."""
        versions = self.service.versions()
        if versions:
            self.service.measure_effect(versions[-1])
        self.refresh()

    def try_blind(self) -> None:
        """Add base and the tuned version as candidate sources; the arena is on."""
        self._offer_sources(self.service.offer_ab)

    def try_remote_blind(self) -> None:
        """The remote job's base and fine-tuned model as candidate sources; arena on."""
        self._offer_sources(self.service.offer_remote_ab)

    def _offer_sources(self, offer: Any) -> None:
        try:
            sources = offer()
        except (ConfigError, RemoteError) as exc:
            self._notify(f"Cannot start the blind comparison: {exc}")
            return
        self._notify(ab_notice(sources, load_settings().sources()))
        self.render_chat_line()

    def _notify(self, text: str) -> None:
        self.notice.setText(text)
        self.notice.setVisible(bool(text))

    def _version_chosen(self, index: int) -> None:
        version = self.version_box.itemData(index)
        if version is None or (version == self.service.chosen_version()
                               and not self.service.comparing):
            return
        try:
            ended = self.service.use_version(int(version))
        except (ConfigError, RuntimeError) as exc:
            self._notify(f"Cannot switch the chat model: {exc}")
            return
        # what the chat uses now is the line beside the box; a notice only for what ended
        self._notify("The blind comparison is off (Settings → Candidate sources keeps its "
                     "sources)." if ended else "")
        self.render_chat_line()

    def send_remote(self) -> None:
        """Prepare the upload in a worker, then ask (naming account and pairs)."""
        self.remote_button.setEnabled(False)
        self.remote_status.setText("Checking your pairs and the account…")
        model = self.remote_model.text()
        self.backend.session.runner.run(lambda _job: self.service.remote.prepare(model),
                                        self._ask_remote, self._remote_refused,
                                        name="prepare remote")

    def _remote_refused(self, exc: BaseException) -> None:
        if not isinstance(exc, RemoteError):
            log.error("preparing the remote job failed", exc_info=exc)
        if shiboken6.isValid(self):
            self.remote_status.setText(f"Not sent: {exc}")
            self.remote_button.setEnabled(True)

    def _ask_remote(self, offer: RemoteOffer) -> None:
        if not shiboken6.isValid(self):  # the window closed meanwhile
            return
        self._offer = offer
        box = QMessageBox(QMessageBox.Icon.Question, "Send your pairs?",
                          offer.question, QMessageBox.StandardButton.Yes
                          | QMessageBox.StandardButton.No, self)
        box.setInformativeText("Your prompts and replies leave this computer. The job is "
                               "billed to that account.")
        box.setDefaultButton(QMessageBox.StandardButton.No)
        box.finished.connect(self._confirmed)
        self.confirm_box = box
        box.open()  # window-modal, no nested event loop

    def _confirmed(self, result: int) -> None:
        offer, self._offer, self.confirm_box = self._offer, None, None
        if offer is None:
            return
        yes = result == QMessageBox.StandardButton.Yes.value
        try:
            self.service.remote.start(offer, confirmed=yes)
        except RemoteError as exc:
            self.remote_status.setText(str(exc))
            self.remote_button.setEnabled(True)
            return
        self.refresh()
