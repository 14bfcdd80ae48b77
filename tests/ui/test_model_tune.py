"""The model page's "Tune the chat model" panel (ui/model/tune.py).

Fast tests drive the panel with a real child process that is scripted instead of trained
(``tests/scripted_tune.py``); the remote part runs the real ``openai`` SDK against the
fine-tuning protocol server over real sockets. ``test_a_real_run_shows_progress_and_cancels``
tunes SmolLM2-135M for real (TRL, peft; marked ``llama`` like tests/tune).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QMessageBox, QPushButton
from pytestqt.qtbot import QtBot

from rlhf_desktop.config import Settings
from rlhf_desktop.domain import Message, PreferencePair
from rlhf_desktop.services.arena.service import ArenaService
from rlhf_desktop.services.tuning.service import TuningService
from rlhf_desktop.ui.backend import Backend
from rlhf_desktop.ui.model.tune import TunePanel
from tests.conftest import REPO_ROOT
from tests.ft_server import FtServer
from tests.ui.conftest import run, wait_until
from tests.ui.helpers import db

pytestmark = pytest.mark.timeout(120)
FAST = {"batch_size": 1, "grad_accum": 1, "max_length": 64, "epochs": 1.0, "pair_budget": 0}
KEY = "sk-test-SECRET-4410"


class Holder:
    def __init__(self) -> None:
        self.settings = Settings()

    def get(self) -> Settings:
        return self.settings

    def apply(self, settings: Settings) -> None:
        self.settings = settings


def add_pairs(n: int) -> None:
    db().pairs.add([PreferencePair(prompt=(Message("user", f"question {i}"),),
                                   chosen=f"good {i}", rejected=f"bad {i}") for i in range(n)])


@pytest.fixture
def holder() -> Holder:
    return Holder()


@pytest.fixture
def panel(qtbot: QtBot, loop: asyncio.AbstractEventLoop, data_home: Path, holder: Holder,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[TunePanel]:
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))
    monkeypatch.setenv("SCRIPTED_TUNE_STEP_S", "0.1")
    backend = Backend()
    service = TuningService(data_home, holder.get, ArenaService(holder.get, holder.apply),
                            apply=holder.apply, overrides=FAST, module="tests.scripted_tune")
    service.remote.poll_interval_s = 0.05
    widget = TunePanel(backend, service)
    qtbot.addWidget(widget)
    widget.resize(900, 500)
    widget.show()
    yield widget
    service.close()
    run(loop, backend.aclose())


def shown_step(panel: TunePanel) -> int:
    found = re.search(r"step (\d+) of ", panel.metrics.text())
    return int(found.group(1)) if found else 0


def click(qtbot: QtBot, button: QPushButton) -> None:
    assert button.isVisible() and button.isEnabled(), button.text()
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def test_tune_shows_progress_cancel_resume_and_the_blind_offer(
        qtbot: QtBot, loop: asyncio.AbstractEventLoop, panel: TunePanel, holder: Holder,
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert not panel.tune_button.isEnabled()
    assert "No preference pairs" in panel.plan_label.text()
    add_pairs(59)
    db().pairs.add([PreferencePair(prompt=(Message("user", "Tell me everything " * 30),),
                                   chosen="ok", rejected="no")])
    panel.refresh(plan=True)
    assert panel.tune_button.isEnabled()
    assert panel.plan_label.text().startswith("60 preference pairs, 60 steps, about ")
    assert not panel.progress.isVisible() and not panel.cancel_button.isVisible()

    click(qtbot, panel.tune_button)
    assert panel.progress.isVisible() and panel.status.text().startswith("Preparing")
    assert not panel.tune_button.isEnabled()
    run(loop, wait_until(lambda: shown_step(panel) >= 2, 60, "progress"))
    assert re.search(r"step \d+ of 59 · loss 0\.6\d\d · reward accuracy 0\.50 · margin "
                     r"\+0\.0\d\d · \d+ s elapsed", panel.metrics.text()), panel.metrics.text()
    assert panel.progress.maximum() == 59 and panel.progress.value() >= 2
    assert panel.fit.text() == ("1 pair left out because the system prompt and the last "
                                "message alone are longer than the length limit: “Tell me "
                                "everything Tell me everything Te…”.")
    click(qtbot, panel.cancel_button)
    assert panel.status.text().startswith("Cancelling: Stopping after the current step")
    assert panel.cancel_button.text() == "Stop now"
    run(loop, wait_until(lambda: panel.status.text().startswith("Cancelled"), 60, "cancel"))
    assert "is kept: Resume continues from it" in panel.status.text()
    assert panel.resume_button.isVisible() and not panel.cancel_button.isVisible()
    assert panel.tune_button.isEnabled()

    monkeypatch.setenv("SCRIPTED_TUNE_STEP_S", "0.01")
    click(qtbot, panel.resume_button)
    run(loop, wait_until(lambda: panel.status.text().startswith("Done"), 60, "done"))
    assert panel.status.text() == "Done: Chat model v1 is ready"
    assert panel.progress.value() == 59
    assert [panel.version_box.itemText(i) for i in range(panel.version_box.count())] == [
        "the base model", "chat model v1 (tuned)"]
    assert panel.ab_button.text() == "Try chat model v1 (tuned) blind against the base"
    # the next step has the accent, not Tune again
    assert panel.ab_button.objectName() == "primary" and panel.tune_button.objectName() == ""
    click(qtbot, panel.ab_button)
    assert holder.settings.arena
    assert [(s.provider, s.chat_model_version) for s in holder.settings.sources()] == [
        ("local", 0), ("local", 1)]
    panel.refresh()  # the next poll keeps the notice
    assert ("your next turns in the Chat tab show base and chat model v1 (tuned)"
            in panel.notice.text())
    assert panel.status.text() == "Done: Chat model v1 is ready"
    assert panel.chat_line.text().startswith("Your chat compares candidate sources blind")
    # "Chat with" during the comparison: the chat then uses that version, not the arena
    panel.version_box.setCurrentIndex(1)
    panel.version_box.activated.emit(1)
    assert holder.settings.chat_model_version == 1 and not holder.settings.arena
    assert panel.notice.text().startswith("The blind comparison is off")
    assert "chat model v1 (tuned)" in panel.chat_line.text()
    # a switch back elsewhere (Settings) redraws the line: it never says v1 once base is used
    from dataclasses import replace

    holder.apply(replace(holder.settings, chat_model_version=0))
    panel.backend.provider_changed.emit()
    assert "the base model" in panel.chat_line.text()
    assert "v1" not in panel.chat_line.text()
    # choosing the version already chosen also ends a comparison that runs
    click(qtbot, panel.ab_button)
    assert holder.settings.arena
    panel.version_box.setCurrentIndex(0)
    panel.version_box.activated.emit(0)
    assert not holder.settings.arena and holder.settings.chat_model_version == 0


def test_the_panel_renders_the_published_progress_with_no_timer_polling(
        qtbot: QtBot, loop: asyncio.AbstractEventLoop, panel: TunePanel) -> None:
    """The service publishes the run (tune_did_progress); the panel renders that and runs no
    timer of its own reading the progress file."""
    add_pairs(6)
    panel.refresh(plan=True)
    click(qtbot, panel.tune_button)
    run(loop, wait_until(lambda: shown_step(panel) >= 2, 60, "progress"))
    assert [t for t in panel.findChildren(QTimer) if t.isActive()] == []
    run(loop, wait_until(lambda: panel.status.text().startswith("Done"), 60, "done"))
    assert panel.status.text() == "Done: Chat model v1 is ready"
    assert shown_step(panel) == 6 and panel.progress.value() == 6
    assert [t for t in panel.findChildren(QTimer) if t.isActive()] == []
    assert len(panel.service.did_progress) == 1  # the panel listens to the service


@pytest.fixture
def azure(monkeypatch: pytest.MonkeyPatch) -> Iterator[FtServer]:
    with FtServer(api_key=KEY) as server:
        monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", server.endpoint)
        monkeypatch.setenv("AZURE_OPENAI_API_KEY", KEY)
        monkeypatch.setenv("AZURE_OPENAI_DEPLOYMENT_NAME", "chat")
        monkeypatch.setenv("AZURE_OPENAI_API_VERSION", "2025-03-01-preview")
        yield server


def test_remote_asks_naming_account_and_pairs_and_no_sends_nothing(
        qtbot: QtBot, loop: asyncio.AbstractEventLoop, panel: TunePanel, azure: FtServer,
        holder: Holder) -> None:
    add_pairs(3)
    host = f"127.0.0.1:{azure.port}"
    click(qtbot, panel.remote_button)
    run(loop, wait_until(lambda: panel.confirm_box is not None, 30, "the confirmation"))
    box = panel.confirm_box
    assert box is not None and box.isVisible()
    assert f"Send 3 preference pairs to the azure account at {host}" in box.text()
    qtbot.mouseClick(box.button(QMessageBox.StandardButton.No), Qt.MouseButton.LeftButton)
    assert panel.confirm_box is None and "Not sent" in panel.remote_status.text()
    assert azure.requests == []

    click(qtbot, panel.remote_button)
    run(loop, wait_until(lambda: panel.confirm_box is not None, 30, "the confirmation"))
    box = panel.confirm_box
    assert box is not None
    qtbot.mouseClick(box.button(QMessageBox.StandardButton.Yes), Qt.MouseButton.LeftButton)
    run(loop, wait_until(lambda: panel.remote_ab.isVisible(), 30, "the job to succeed"))
    (job,) = azure.jobs.values()
    assert job["id"] in panel.remote_status.text() and "succeeded" in \
        panel.remote_status.text()
    assert KEY not in panel.remote_status.text()
    click(qtbot, panel.remote_ab)
    assert holder.settings.arena
    assert holder.settings.sources()[-1].model == job["fine_tuned_model"]


@pytest.mark.llama
def test_a_real_run_shows_progress_and_cancels(qtbot: QtBot, loop: asyncio.AbstractEventLoop,
                                               data_home: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.tune.conftest import TEST_CACHE, needs_tune_stack, short_hh_rows

    needs_tune_stack()
    monkeypatch.setenv("RLHF_DESKTOP_CACHE", str(TEST_CACHE))
    TEST_CACHE.mkdir(parents=True, exist_ok=True)
    from rlhf_desktop.core import formats

    db().pairs.add([formats.parse_record(r) for r in short_hh_rows(8)])
    holder = Holder()
    backend = Backend()
    tiny = {"max_length": 96, "batch_size": 1, "grad_accum": 1, "threads": 1, "lora_r": 4,
            "max_steps": 4}
    service = TuningService(data_home, holder.get, overrides=tiny, nice=19)
    panel = TunePanel(backend, service)
    qtbot.addWidget(panel)
    panel.show()
    try:
        assert panel.plan_label.text().startswith("8 preference pairs, 4 steps")
        click(qtbot, panel.tune_button)
        # Cancel during the first step: the run ends that step and keeps its checkpoint.
        run(loop, wait_until(lambda: panel.status.text().startswith("Tuning: Training"), 90,
                             "training to start"), timeout=95)
        assert panel.progress.isVisible()
        click(qtbot, panel.cancel_button)
        assert panel.status.text().startswith("Cancelling")
        run(loop, wait_until(lambda: panel.status.text().startswith("Cancelled"), 100,
                             "the cancel"), timeout=105)
        snap = service.snapshot()
        assert snap.checkpoint_step == 1 and "step 1 of 4" in panel.metrics.text()
        assert (Path(snap.run_dir) / "checkpoints"
                / f"checkpoint-{snap.checkpoint_step}").is_dir()
        assert panel.resume_button.isVisible()
    finally:
        service.close()
        run(loop, backend.aclose())


def test_status_does_not_repeat_the_state_word(panel: TunePanel) -> None:
    from rlhf_desktop.services.tuning.state import TuneSnapshot

    panel._render(TuneSnapshot(state="preparing", stage="base model",
                               message="Preparing the base model (the first run takes a "
                                       "minute more)…"))
    assert panel.status.text().startswith("Preparing the base model")
    panel._render(TuneSnapshot(state="running", stage="training", message="Training…"))
    assert panel.status.text() == "Tuning: Training…"


def test_blind_offer_is_a_head_to_head_and_names_the_sources_it_turned_off(
        panel: TunePanel, holder: Holder) -> None:
    from dataclasses import replace

    from rlhf_desktop.domain import CandidateSource

    cool = CandidateSource("cool", provider="local", temperature=0.3, count=1)
    holder.settings = replace(holder.settings, candidate_sources=[cool.to_dict()])
    panel._offer_sources(lambda: panel.service.offer_ab(1))
    text = panel.notice.text()
    assert text == ("Blind comparison on: your next turns in the Chat tab show base and "
                    "chat model v1 (tuned) in random order, names hidden until you pick "
                    "(cool turned off for now: Settings → "
                    "Candidate sources turns them back on)."), text
    arena = holder.settings
    tuned = "chat model v1 (tuned)"
    assert arena.arena and [s.name for s in arena.arena_sources()] == ["base", tuned]
    assert [s.name for s in arena.sources()] == ["cool", "base", tuned]  # kept, off
