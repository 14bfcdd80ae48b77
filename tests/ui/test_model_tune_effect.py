"""The tune panel states a tuned version's measured effect (stored with the version) in
words, and offers to measure it when it is not stored yet."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from rlhf_desktop.config import Settings
from rlhf_desktop.services.tuning.effect import EFFECT_FILE
from rlhf_desktop.services.tuning.service import TuningService
from rlhf_desktop.tune.versions import register
from rlhf_desktop.ui.backend import Backend
from rlhf_desktop.ui.model.tune import TunePanel
from tests.ui.conftest import run


@pytest.fixture
def backend(loop: asyncio.AbstractEventLoop, data_home: Path) -> Iterator[Backend]:
    backend = Backend(provider=None)
    yield backend
    run(loop, backend.aclose())


def test_the_panel_states_the_measured_effect_of_the_newest_version(
        qtbot: QtBot, backend: Backend, data_home: Path) -> None:
    adapter = data_home / "adapter.gguf"
    adapter.write_bytes(b"not loaded here")
    version = register(adapter, {"kind": "lora", "steps": 2})
    service = TuningService(data_home, Settings, module="tests.scripted_tune")
    panel = TunePanel(backend, service)
    qtbot.addWidget(panel)
    panel.refresh(plan=True)
    assert not panel.effect.isVisibleTo(panel)
    assert panel.effect_button.isVisibleTo(panel)
    assert panel.effect_button.text() == "Measure chat model v1 (tuned) on your past prompts"
    (version.folder / EFFECT_FILE).write_text(json.dumps({
        "version": 1, "prompts": 40, "wins": 27, "losses": 12, "ties": 1, "rate": 0.6875,
        "low": 0.58, "high": 0.77, "ranker": "reward model v4", "agreement": 0.71,
        "agreement_pairs": 35, "agreement_basis": "blind"}), encoding="utf-8")
    panel.refresh()
    assert panel.effect.isVisibleTo(panel) and not panel.effect_button.isVisibleTo(panel)
    text = panel.effect.text()
    assert text.startswith("Measured effect: Chat model v1 (tuned) wins 69 % (58–77 %) against "
                           "the base on "
                           "40 of your past prompts"), text
    assert "agrees with your blind picks 71 % of the time" in text
    service.close()
