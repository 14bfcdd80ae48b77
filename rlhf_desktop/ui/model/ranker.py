"""The model page's "Which reward model ranks the replies" section: the transformers rankers
trained with ``method: reward`` (TRL's RewardTrainer), the held-out accuracy of one beside the tiny
model's on the same pairs, and the choice between them (``Settings.ranker``).

Everything goes through :class:`~rlhf_desktop.services.ranking.evaluation.RankerEvalService`; the
comparison (it loads the ranker and scores up to a hundred pairs, minutes on two cores) runs
in the session's background runner, which brings its progress and result back to the loop,
so the window never waits for it.
"""

from __future__ import annotations

import logging
from typing import Any

import shiboken6
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from rlhf_desktop.config import ConfigError
from rlhf_desktop.services.ranking.evaluation import (
    Comparison,
    RankerEvalService,
    RankerInfo,
    accuracy_text,
    describe,
)
from rlhf_desktop.services.runner import Job

log = logging.getLogger(__name__)


def ranker_label(info: RankerInfo) -> str:
    """``r0002 · SmolLM2-135M… · 300 pairs · held out 71.2 % on 60 pairs · in use``."""
    parts = [info.name, info.base]
    if info.trained_pairs is not None:
        parts.append(f"{info.trained_pairs} pairs")
    if info.held_out_accuracy is not None:
        parts.append(f"held out {accuracy_text(info.held_out_accuracy)} on "
                     f"{info.held_out_pairs} pairs")
    if info.in_use:
        parts.append("in use")
    return " · ".join(parts)


class RankerPanel(QWidget):
    """Choose the ranker; compare it with the tiny model (see the module docstring)."""

    def __init__(self, backend: Any, service: RankerEvalService | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.backend = backend
        session = backend.session
        self.service: RankerEvalService = (service or getattr(session, "rankers", None)
                                           or RankerEvalService.for_session(session))
        self.comparing = False
        self.last: Comparison | None = None

        title = QLabel("Which reward model ranks the replies")
        title.setObjectName("kpiValue")
        title.setStyleSheet("font-size: 16px;")
        about = QLabel("A reward model trained with TRL's RewardTrainer (python -m "
                       "rlhf_desktop.tune with method: reward) can rank the replies instead of "
                       "the tiny model. It is larger and slower: on two cores it needs seconds "
                       "per turn where the tiny model needs milliseconds. Compare both on pairs "
                       "neither was trained on before you choose.")
        about.setObjectName("muted")
        about.setWordWrap(True)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.choice = QComboBox()
        self.choice.setToolTip("Rankers in the data folder's rankers/ (newest first)")
        self.test_file = QLineEdit()
        self.test_file.setPlaceholderText("Optional: a test file of pairs (JSONL) instead of "
                                          "your own held-out pairs")
        self.compare_button = QPushButton("Compare with the tiny model")
        self.compare_button.clicked.connect(self.compare)
        self.use_button = QPushButton("Use as ranker")
        self.use_button.setObjectName("primary")
        self.use_button.clicked.connect(self.use_selected)
        self.tiny_button = QPushButton("Use the tiny model")
        self.tiny_button.clicked.connect(self.use_tiny)
        self.progress = QProgressBar()
        self.progress.hide()
        self.result = QLabel("")
        self.result.setWordWrap(True)
        self.result.setObjectName("muted")

        buttons = QHBoxLayout()
        for button in (self.compare_button, self.use_button, self.tiny_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for widget in (title, about, self.status, self.choice, self.test_file):
            layout.addWidget(widget)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.result)
        self.refresh()

    # ------------------------------------------------------------------ view

    def showEvent(self, event: QShowEvent) -> None:
        """Re-read the rankers each time the page is shown (a run may have added one)."""
        super().showEvent(event)
        if not self.comparing:
            self.refresh()

    def refresh(self) -> None:
        """Re-read the rankers, the one in use and the status."""
        rankers = self.service.rankers()
        current = self.choice.currentData()
        self.choice.clear()
        for info in rankers:
            self.choice.addItem(ranker_label(info), info.folder)
        if not rankers:
            self.choice.addItem("No ranker yet: train one with method: reward "
                                "(docs/scale-out.md)", "")
        index = self.choice.findData(current) if current else -1
        if index < 0:
            index = next((i for i, r in enumerate(rankers) if r.in_use), 0)
        self.choice.setCurrentIndex(index)
        self.status.setText(self.service.status())
        has = bool(rankers)
        self.compare_button.setEnabled(has and not self.comparing)
        self.use_button.setEnabled(has)
        self.tiny_button.setEnabled(bool(self.service.in_use))

    def selected(self) -> str:
        """The folder chosen in the list ("" when there is none)."""
        return str(self.choice.currentData() or "")

    # ------------------------------------------------------------------ choosing

    def use_selected(self) -> None:
        """Rank with the chosen folder from the next turn on."""
        self._use(self.selected())

    def use_tiny(self) -> None:
        """Rank with the tiny model again."""
        self._use("")

    def _use(self, folder: str) -> None:
        try:
            self.service.use(folder)
        except ConfigError as exc:
            self.result.setText(str(exc))
            return
        self.refresh()
        self.result.setText("The tiny model ranks from the next turn on." if not folder else
                            "This ranker ranks from the next turn on (it loads then: a few "
                            "seconds).")

    # ------------------------------------------------------------------ comparing

    def compare(self) -> None:
        """Held-out accuracy of the chosen ranker and of the tiny model (in a worker)."""
        folder = self.selected()
        if not folder or self.comparing:
            return
        self.comparing = True
        self.compare_button.setEnabled(False)
        self.progress.setRange(0, 0)
        self.progress.show()
        self.result.setText("Loading the ranker and scoring the pairs…")
        test_file = self.test_file.text().strip()

        def compare(job: Job) -> Comparison:  # the runner's worker: no Qt here
            return self.service.compare(folder, test_file,
                                        progress=lambda done, total: job.report((done, total)))

        self.backend.session.runner.run(compare, self._compared, self._compare_failed,
                                        self._show_progress, name="compare rankers")

    def _show_progress(self, value: tuple[int, int]) -> None:
        done, total = value
        if total and shiboken6.isValid(self):
            self.progress.setRange(0, total)
            self.progress.setValue(done)
            self.progress.setFormat(f"{done} of {total} pairs")

    def _compared(self, comparison: Comparison) -> None:
        self.last = comparison
        self._finish(describe(comparison))

    def _compare_failed(self, exc: BaseException) -> None:
        if isinstance(exc, ConfigError):
            self._finish(str(exc))
            return
        log.error("comparing the rankers failed", exc_info=exc)  # never leave it spinning
        self._finish(f"The comparison failed: {type(exc).__name__}: {exc}")

    def _finish(self, text: str) -> None:
        self.comparing = False
        if not shiboken6.isValid(self):  # the window closed meanwhile
            return
        self.progress.hide()
        self.result.setText(text)
        self.refresh()
